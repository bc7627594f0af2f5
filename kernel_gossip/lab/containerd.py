"""The lab's own containerd: started and stopped by the lab, nothing shared with the host.

Root, state (pods' network namespaces included), socket, CNI configuration and IPAM state
all live under <lab dir>/containerd (the repo's ignored .lab/). The CRI plugin runs with
the cgroupfs driver, overlayfs and a CNI bridge with host-local addresses;
`restrict_oom_score_adj = true` because root here lacks CAP_SYS_RESOURCE (a negative
oom_score_adj is refused and RunPodSandbox would fail).
Each lab has its own bridge and /24 of 10.244.0.0/16. The bridge does no masquerading, so
the lab adds no iptables rules; it does switch on IPv4 forwarding, which stop_containerd()
puts back as it found it.

start_containerd(lab) -> socket and stop_containerd(lab) are idempotent: `lab up`/`lab down`
and the test fixtures call them as often as they like.
"""

import hashlib
import ipaddress
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from kernel_gossip import Say, paths, quiet
from kernel_gossip.cri import CriClient, CriError
from kernel_gossip.errors import UserError
from kernel_gossip.lab import images, pods, processes
from kernel_gossip.lab.cri import runtime_api

POD_SUPERNET = ipaddress.IPv4Network("10.244.0.0/16")  # one /24 of it per lab
CNI_BIN_DIR = Path("/usr/lib/cni")
CNI_RESULTS = Path("/var/lib/cni/results")
IP_FORWARD = Path("/proc/sys/net/ipv4/ip_forward")
MAX_SOCKET_PATH = 107  # sun_path holds 108 bytes with the final NUL
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class Layout:
    """Where one lab's containerd keeps everything."""

    base: Path

    @property
    def root(self) -> Path:
        return self.base / "root"

    @property
    def state(self) -> Path:
        return self.base / "state"

    @property
    def socket(self) -> Path:
        return self.base / "containerd.sock"

    @property
    def config(self) -> Path:
        return self.base / "config.toml"

    @property
    def cni_conf_dir(self) -> Path:
        return self.base / "cni"

    @property
    def ipam_dir(self) -> Path:
        return self.base / "ipam"

    @property
    def log(self) -> Path:
        return self.base / "containerd.log"

    @property
    def pid_file(self) -> Path:
        return self.base / "containerd.pid"

    @property
    def ip_forward_before(self) -> Path:
        return self.base / "ip_forward.before"

    @property
    def network_file(self) -> Path:
        return self.base / "network.json"


@dataclass(frozen=True)
class PodNetwork:
    """The lab's bridge and pod subnet: its own, so labs of several checkouts (or a test
    session beside a developer's lab) never share a bridge or an address."""

    bridge: str
    subnet: str

    @property
    def name(self) -> str:
        """The CNI network's name: libcni names its cached results after it."""
        return f"kernel-gossip-{self.bridge}"


def choose_network(base: Path, routes: list[tuple[str, str]]) -> PodNetwork:
    """A bridge named after the lab directory and the first /24 of 10.244.0.0/16, from a
    place the directory picks, that no route on another device overlaps. routes: (dst, dev)."""
    digest = hashlib.sha256(str(base).encode()).hexdigest()
    bridge = f"kg-{digest[:8]}"
    others = [
        ipaddress.IPv4Network(dst, strict=False)
        for dst, dev in routes
        if dev != bridge and dst != "default"
    ]
    subnets = list(POD_SUPERNET.subnets(new_prefix=24))[1:-1]
    start = int(digest[8:12], 16)
    for offset in range(len(subnets)):
        candidate = subnets[(start + offset) % len(subnets)]
        if not any(candidate.overlaps(other) for other in others):
            return PodNetwork(bridge, str(candidate))
    raise UserError(f"every /24 of {POD_SUPERNET} is routed already: no room for the lab's pods")


def parse_routes(text: str) -> list[tuple[str, str]]:
    """`ip -4 -o route show` -> [(destination, device)]."""
    routes = []
    for line in text.splitlines():
        fields = line.split()
        if fields and "dev" in fields[:-1]:
            routes.append((fields[0], fields[fields.index("dev") + 1]))
    return routes


def _routes() -> list[tuple[str, str]]:
    result = subprocess.run(
        ["ip", "-4", "-o", "route", "show"], capture_output=True, text=True, check=True
    )
    return parse_routes(result.stdout)


def _network(where: Layout) -> PodNetwork | None:
    try:
        saved = json.loads(where.network_file.read_text())
        return PodNetwork(str(saved["bridge"]), str(saved["subnet"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def layout(lab: Path | None = None) -> Layout:
    return Layout((lab or paths.lab_dir()).resolve() / "containerd")


def _toml(value: str) -> str:
    """A TOML basic string (JSON's escaping is TOML's for these paths and names)."""
    return json.dumps(value, allow_nan=False)


def render_config(where: Layout, sandbox_image: str) -> str:
    """containerd's config.toml (version 2) for the lab."""
    cri = '[plugins."io.containerd.grpc.v1.cri"'
    return f"""\
version = 2
root = {_toml(str(where.root))}
state = {_toml(str(where.state))}
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = {_toml(str(where.socket))}

[ttrpc]
  address = {_toml(str(where.socket) + ".ttrpc")}

{cri}]
  sandbox_image = {_toml(sandbox_image)}
  restrict_oom_score_adj = true
  enable_selinux = false
  netns_mounts_under_state_dir = true

{cri}.containerd]
  snapshotter = "overlayfs"
  default_runtime_name = "runc"

{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"

{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false

{cri}.cni]
  bin_dir = {_toml(str(CNI_BIN_DIR))}
  conf_dir = {_toml(str(where.cni_conf_dir))}
  max_conf_num = 1
"""


def render_cni(where: Layout, network: PodNetwork) -> str:
    """The pod network: one bridge, host-local addresses, no masquerade (no iptables)."""
    config = {
        "cniVersion": "1.0.0",
        "name": network.name,
        "plugins": [
            {
                "type": "bridge",
                "bridge": network.bridge,
                "isGateway": True,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": network.subnet}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                    "dataDir": str(where.ipam_dir),
                },
            }
        ],
    }
    return json.dumps(config, indent=2, allow_nan=False) + "\n"


def running_pid(where: Layout) -> int | None:
    """The lab containerd's PID when it is alive (not a zombie, not a reused PID)."""
    return processes.running_pid(where.pid_file, str(where.config))


def start_containerd(lab: Path | None = None, say: Say = quiet) -> Path:
    """Start the lab's containerd unless it runs; wait until the CRI is ready (runtime
    and network) and the pause image is imported. Returns the CRI socket."""
    where = layout(lab)
    runtime_api(say)
    if running_pid(where) is None:
        _check_host(where)
        if where.pid_file.exists():
            say("cleaning up after a containerd that is gone")
            stop_containerd(lab, say)
        _spawn(where, say)
    _wait_ready(where, int(where.pid_file.read_text()))
    with CriClient(where.socket) as cri:
        images.ensure_imported(images.PAUSE, where.socket, cri, say)
    return where.socket


def _check_host(where: Layout) -> None:
    if os.geteuid() != 0:
        raise UserError("the lab's containerd needs root (cgroups, network namespaces)")
    for binary in ("containerd", "containerd-shim-runc-v2", "runc", "ctr", "ip"):
        if shutil.which(binary) is None:
            raise UserError(f"{binary} is missing: run scripts/setup.sh")
    if not (CNI_BIN_DIR / "bridge").is_file():
        raise UserError(f"CNI plugins missing in {CNI_BIN_DIR}: run scripts/setup.sh")
    if len(str(where.socket)) > MAX_SOCKET_PATH:
        raise UserError(f"socket path too long for a unix socket: {where.socket}")


def _spawn(where: Layout, say: Say) -> None:
    for folder in (where.base, where.root, where.state, where.cni_conf_dir, where.ipam_dir):
        folder.mkdir(parents=True, exist_ok=True)
    where.config.write_text(render_config(where, images.PAUSE.ref))
    network = choose_network(where.base, _routes())
    where.network_file.write_text(json.dumps(network.__dict__, allow_nan=False) + "\n")
    for stale in where.cni_conf_dir.glob("*.conflist"):
        stale.unlink()
    (where.cni_conf_dir / f"10-{network.name}.conflist").write_text(render_cni(where, network))
    if not where.ip_forward_before.exists():
        where.ip_forward_before.write_text(IP_FORWARD.read_text())
    where.socket.unlink(missing_ok=True)
    say(f"starting containerd (socket {where.socket}, pods on {network.bridge} {network.subnet})")
    processes.spawn_detached(
        ["containerd", "--config", str(where.config)], where.log, where.pid_file
    )


def _wait_ready(where: Layout, pid: int) -> None:
    """Until the CRI answers with RuntimeReady and NetworkReady (the CNI config loaded)."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    problem = "no answer yet"
    while time.monotonic() < deadline:
        if not processes.alive(pid):
            raise UserError(f"containerd exited: {_log_tail(where)}")
        if where.socket.exists():
            try:
                with CriClient(where.socket, timeout=5) as cri:
                    not_ready = cri.not_ready_conditions()
            except CriError as error:
                problem = str(error)
            else:
                if not not_ready:
                    return
                problem = "; ".join(not_ready)
        time.sleep(0.2)
    raise UserError(f"containerd's CRI not ready after {READY_TIMEOUT_S:.0f} s: {problem}")


def _log_tail(where: Layout, lines: int = 5) -> str:
    try:
        return " | ".join(where.log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "no log"


def stop_containerd(lab: Path | None = None, say: Say = quiet) -> None:
    """Remove every pod at once (a teardown: in parallel, no grace; through the CRI while
    it answers), stop containerd by PID, then
    remove what could outlive it: shims, pod cgroups and network namespaces, mounts under
    the lab's root/state, the bridge, CNI results; put IPv4 forwarding back."""
    where = layout(lab)
    pid = running_pid(where)
    if pid is not None:
        try:
            with CriClient(where.socket, timeout=10) as cri:
                pods.remove_all(cri, lab, say, grace=0)
        except CriError as error:
            say(f"the CRI did not answer ({error}): cleaning up by hand")
        say(f"stopping containerd (pid {pid})")
        processes.terminate(pid, STOP_TIMEOUT_S)
    for shim in _shims(where):
        say(f"killing a leftover shim (pid {shim})")
        processes.terminate(shim, 5.0)
    pods.clean_leftovers(lab, say)
    _unmount_under(where.base)
    network = _network(where)
    if network is not None:
        if Path(f"/sys/class/net/{network.bridge}").exists():
            command = ["ip", "link", "delete", network.bridge]
            subprocess.run(command, check=False, capture_output=True)
        for result in CNI_RESULTS.glob(f"{network.name}-*"):
            result.unlink(missing_ok=True)
    shutil.rmtree(where.ipam_dir, ignore_errors=True)
    if where.ip_forward_before.exists():
        IP_FORWARD.write_text(where.ip_forward_before.read_text())
        where.ip_forward_before.unlink()
    for leftover in (where.pid_file, where.socket, Path(f"{where.socket}.ttrpc")):
        leftover.unlink(missing_ok=True)


def _shims(where: Layout) -> list[int]:
    """containerd-shim-runc-v2 processes serving this lab's containerd (by its address)."""
    address = str(where.socket).encode()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if cmdline and cmdline[0].endswith(b"containerd-shim-runc-v2") and address in cmdline:
            found.append(int(proc.name))
    return found


def _unmount_under(base: Path) -> None:
    """Lazily unmount what a killed containerd or shim left mounted under base."""
    prefix = f"{base}/"
    mounted = [
        line.split()[4]
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if line.split()[4].startswith(prefix)
    ]
    for mount_point in sorted(mounted, key=len, reverse=True):
        subprocess.run(["umount", "-l", mount_point], check=False, capture_output=True)


@dataclass(frozen=True)
class LabContainerd:
    """A running lab containerd, as tests (and `lab up`) reach it."""

    lab: Path
    socket: Path
