"""Bare runc containers from kernel_gossip.host.ocibundle's busybox bundle, in pod-shaped
cgroups (/kubepods/besteffort/pod<uid>/<id>): started at once or kept running, then
removed with every cgroup they left."""

import contextlib
import json
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kernel_gossip.host import ocibundle
from kernel_gossip.host.cgroupfs import remove_cgroup

CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class Container:
    container_id: str
    pod_uid: str
    bundle: Path
    state_root: Path

    @property
    def cgroups_path(self) -> str:
        return ocibundle.pod_cgroups_path(self.pod_uid, self.container_id)

    @property
    def name(self) -> str:
        return self.container_id[:16]


def new_container(folder: Path, args: Sequence[str], base_spec: dict[str, object]) -> Container:
    container_id = uuid.uuid4().hex + uuid.uuid4().hex
    pod_uid = str(uuid.uuid4())
    spec = ocibundle.ContainerSpec(
        container_id=container_id,
        cgroups_path=ocibundle.pod_cgroups_path(pod_uid, container_id),
        args=tuple(args),
    )
    home = folder / container_id[:12]
    bundle = home / "bundle"
    bundle.mkdir(parents=True)
    config = ocibundle.configure(base_spec, spec, ocibundle.busybox_rootfs())
    (bundle / "config.json").write_text(json.dumps(config))
    return Container(container_id, pod_uid, bundle, home / "state")


class Fleet:
    """Containers of one benchmark; close() kills, deletes and rmdirs all of them."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.base_spec = ocibundle.default_spec("runc")
        self.containers: list[Container] = []

    def add(self, args: Sequence[str]) -> Container:
        container = new_container(self.folder, args, self.base_spec)
        self.containers.append(container)
        return container

    def run_command(self, container: Container, detach: bool = False) -> list[str]:
        argv = ocibundle.run_command("runc", container.state_root, container.bundle, container.name)
        if detach:
            argv.insert(argv.index("run") + 1, "--detach")
        return argv

    def start(self, container: Container, detach: bool = False) -> subprocess.Popen[bytes]:
        """runc's output goes to a file: a detached container keeps what it inherits."""
        with (container.bundle.parent / "runc.log").open("wb") as log:
            return subprocess.Popen(
                self.run_command(container, detach),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def run_detached(self, count: int, args: Sequence[str]) -> None:
        """`count` long-running containers, one after the other."""
        for _ in range(count):
            container = self.add(args)
            process = self.start(container, detach=True)
            if process.wait(timeout=120) != 0:
                log = (container.bundle.parent / "runc.log").read_text(errors="replace")
                raise RuntimeError(f"runc run --detach failed: {log.strip()}")

    def close(self) -> None:
        for container in self.containers:
            root = ["runc", "--root", str(container.state_root)]
            subprocess.run([*root, "kill", container.name, "KILL"], capture_output=True)
            subprocess.run([*root, "delete", "--force", container.name], capture_output=True)
        time.sleep(0.2)
        self._remove_cgroups()
        self.containers = []

    def _remove_cgroups(self) -> None:
        for hierarchy in [p for p in CGROUP_ROOT.iterdir() if p.is_dir() and not p.is_symlink()]:
            for container in self.containers:
                leaf = hierarchy / container.cgroups_path.lstrip("/")
                for directory in (leaf, leaf.parent):
                    if directory.is_dir():
                        with contextlib.suppress(OSError):
                            remove_cgroup(directory)
            for parent in (hierarchy / "kubepods" / "besteffort", hierarchy / "kubepods"):
                if parent.is_dir() and not any(c.is_dir() for c in parent.iterdir()):
                    with contextlib.suppress(OSError):
                        remove_cgroup(parent)
