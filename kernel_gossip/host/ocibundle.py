"""A tiny OCI runtime bundle for runc and crun, and the commands that run it.

No registry is reachable here, so the root file system is Debian's busybox-static: one
static binary and its applet links, built once under paths.cache_dir() (keyed by the
binary's digest) and shared read-only by every bundle. config.json starts from the
runtime's own `runc spec` / `crun spec` and is adjusted for a non-interactive start in a
Kubernetes-shaped cgroup (/kubepods/<qos>/pod<uid>/<64-hex id>), with CPU and memory
limits and optional extra tmpfs mounts (a visible, per-container difference).

crun 1.8 refuses hybrid hosts whose cgroup2 still holds controllers (here: hugetlb, which no
v1 hierarchy binds). run_command() then starts crun in a private mount namespace where a
scratch tmpfs hides /sys/fs/cgroup/unified, so crun sees the v1 hierarchies only.
"""

import copy
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kernel_gossip.core.cgroups import CgroupMode, parse_mountinfo
from kernel_gossip.errors import UserError
from kernel_gossip.paths import cache_dir

BUSYBOX = Path("/bin/busybox")
APPLETS = ("sh", "true", "sleep", "echo", "cat", "ls")
MAX_EXTRA_MOUNTS = 16  # mount points /mnt/0 .. /mnt/15 exist in the shared rootfs
UNIFIED = Path("/sys/fs/cgroup/unified")


@dataclass(frozen=True)
class ContainerSpec:
    container_id: str
    cgroups_path: str
    args: tuple[str, ...] = ("/bin/true",)
    extra_tmpfs_mounts: int = 0
    cpu_shares: int = 256
    cpu_quota_us: int = 50_000
    cpu_period_us: int = 100_000
    memory_limit_bytes: int = 64 * 1024 * 1024


def pod_cgroups_path(pod_uid: str, container_id: str, qos: str = "besteffort") -> str:
    """Where a cgroupfs-driver kubelet puts a container: /kubepods/<qos>/pod<uid>/<id>."""
    return f"/kubepods/{qos}/pod{pod_uid}/{container_id}"


def configure(base: dict[str, Any], spec: ContainerSpec, rootfs: Path) -> dict[str, Any]:
    """config.json for one container, from the runtime's default spec."""
    if not 0 <= spec.extra_tmpfs_mounts <= MAX_EXTRA_MOUNTS:
        raise ValueError(f"extra_tmpfs_mounts must be within 0..{MAX_EXTRA_MOUNTS}")
    config = copy.deepcopy(base)
    process = config["process"]
    process["terminal"] = False
    process["args"] = list(spec.args)
    process.pop("oomScoreAdj", None)  # a negative one needs CAP_SYS_RESOURCE
    config["root"] = {"path": str(rootfs), "readonly": True}
    config["hostname"] = spec.container_id[:12]
    config["mounts"] = list(config.get("mounts", [])) + [
        {"destination": f"/mnt/{i}", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid"]}
        for i in range(spec.extra_tmpfs_mounts)
    ]
    linux = config.setdefault("linux", {})
    linux["cgroupsPath"] = spec.cgroups_path
    namespaces = linux.setdefault("namespaces", [])
    if not any(ns.get("type") == "cgroup" for ns in namespaces):
        namespaces.append({"type": "cgroup"})
    resources = linux.setdefault("resources", {})
    resources["cpu"] = {
        "shares": spec.cpu_shares,
        "quota": spec.cpu_quota_us,
        "period": spec.cpu_period_us,
    }
    resources["memory"] = {"limit": spec.memory_limit_bytes}
    return config


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def busybox_rootfs() -> Path:
    """The shared read-only root file system, built once per busybox binary."""
    if not BUSYBOX.is_file():
        raise UserError(f"{BUSYBOX} is missing: install busybox-static (scripts/setup.sh)")
    target = cache_dir() / "oci" / f"busybox-{_digest(BUSYBOX)}" / "rootfs"
    if target.is_dir():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    building = Path(tempfile.mkdtemp(prefix="rootfs-", dir=target.parent))
    for folder in ("bin", "proc", "sys", "dev", "tmp", "etc", "mnt"):
        (building / folder).mkdir()
    for index in range(MAX_EXTRA_MOUNTS):
        (building / "mnt" / str(index)).mkdir()
    shutil.copy2(BUSYBOX, building / "bin" / "busybox")
    for applet in APPLETS:
        (building / "bin" / applet).symlink_to("busybox")
    try:
        building.rename(target)
    except OSError:  # another process built it meanwhile
        shutil.rmtree(building)
    return target


def default_spec(runtime: str) -> dict[str, Any]:
    """The runtime's own default config.json (`runc spec`, `crun spec`)."""
    with tempfile.TemporaryDirectory(prefix="spec-") as folder:
        result = subprocess.run(
            [runtime, "spec", "--bundle", folder], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise UserError(f"{runtime} spec failed: {result.stderr.strip() or result.stdout}")
        loaded: dict[str, Any] = json.loads((Path(folder) / "config.json").read_text())
        return loaded


def write_bundle(directory: Path, spec: ContainerSpec, runtime: str = "runc") -> Path:
    """A bundle folder holding config.json; its root is the shared busybox rootfs."""
    directory.mkdir(parents=True, exist_ok=True)
    config = configure(default_spec(runtime), spec, busybox_rootfs())
    (directory / "config.json").write_text(json.dumps(config, indent=2, allow_nan=False))
    return directory


def crun_needs_v1_view(mountinfo: str, unified_controllers: str | None) -> bool:
    """crun 1.8 refuses a hybrid host whose cgroup2 root still lists controllers."""
    try:
        mode = parse_mountinfo(mountinfo).mode
    except ValueError:
        return False
    return mode is CgroupMode.HYBRID and bool((unified_controllers or "").split())


def _host_needs_v1_view() -> bool:
    controllers = UNIFIED / "cgroup.controllers"
    return crun_needs_v1_view(
        Path("/proc/self/mountinfo").read_text(),
        controllers.read_text() if controllers.is_file() else None,
    )


def run_command(
    runtime: str,
    state_root: Path,
    bundle: Path,
    container_id: str,
    tracer: Sequence[str] = (),
) -> list[str]:
    """`<runtime> run` of a bundle in the foreground; tracer (e.g. strace -f) goes in front."""
    argv = [*tracer, runtime, "--root", str(state_root), "run", "--bundle", str(bundle)]
    argv.append(container_id)
    if os.path.basename(runtime) == "crun" and _host_needs_v1_view():
        hide = 'mount -t tmpfs -o size=1m kg-no-cgroup2 "$1" && shift && exec "$@"'
        private = ["unshare", "--mount", "--propagation", "private"]
        return [*private, "sh", "-c", hide, "sh", str(UNIFIED), *argv]
    return argv
