"""Pod cgroups on a cgroup v1 or hybrid host, as the kubelet's pod container manager makes
them: kubepods/<qos>/pod<uid> in every hierarchy (runc makes each container's cgroup in
each), the pod-level CPU and memory limits, and their removal with what is left inside.
The ancestors a lab created are remembered in a file of the lab's and go when empty.
"""

import errno
import os
from collections.abc import Iterator
from pathlib import Path

from kernel_gossip.core import podspec
from kernel_gossip.core.cgroups import CgroupMode
from kernel_gossip.errors import UserError
from kernel_gossip.host.cgroupfs import CgroupFs, kill_cgroup_processes, remove_cgroup

KILL_TIMEOUT_S = 10.0


def _v1_cgroups() -> CgroupFs:
    """This host's cgroups, where lab pods can have them: v1 or the hybrid layout."""
    fs = CgroupFs.detect()
    if fs.mode is CgroupMode.V2:
        raise UserError("lab pods need the cgroup v1 cpu controller (hybrid or v1 layout)")
    return fs


def create_pod_cgroup(parent: str, config: podspec.PodCgroupConfig, ancestors: Path) -> None:
    """mkdir the pod cgroup in every hierarchy and write the pod-level CPU and memory
    limits, as the kubelet's pod container manager does before RunPodSandbox."""
    fs = _v1_cgroups()
    created: list[str] = []
    for hierarchy in fs.hierarchies:  # runc makes the containers' cgroups in each
        for ancestor in _ancestors(parent):
            folder = hierarchy / ancestor.lstrip("/")
            try:
                folder.mkdir()
            except FileExistsError:
                continue
            if ancestor != parent:
                created.append(str(folder))
            _inherit_cpuset(folder)
    _remember_ancestors(ancestors, created)
    (fs.dir(parent) / "cpu.shares").write_text(str(config.cpu_shares))
    if config.cpu_period_us is not None and config.cpu_quota_us is not None:
        fs.set_cpu_limit(parent, config.cpu_quota_us, config.cpu_period_us)
    if config.memory_limit_bytes is not None:
        memory = fs.mounts.v1.get("memory")
        if memory is None:
            raise UserError("a memory limit needs the cgroup v1 memory controller")
        (fs.dir(parent, Path(memory)) / "memory.limit_in_bytes").write_text(
            str(config.memory_limit_bytes)
        )


def _ancestors(parent: str) -> list[str]:
    """/kubepods/burstable/podX -> [/kubepods, /kubepods/burstable, /kubepods/burstable/podX]."""
    parts = parent.strip("/").split("/")
    return ["/" + "/".join(parts[: index + 1]) for index in range(len(parts))]


def _inherit_cpuset(folder: Path) -> None:
    """A new v1 cpuset cgroup starts with no CPUs or memory nodes: copy the parent's."""
    for name in ("cpuset.cpus", "cpuset.mems"):
        own = folder / name
        if own.exists() and not own.read_text().strip():
            own.write_text((folder.parent / name).read_text())


def _remember_ancestors(path: Path, created: list[str]) -> None:
    """QoS-level cgroups the lab created (shared by its pods): removed once empty."""
    if not created:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    known = path.read_text().split() if path.exists() else []
    path.write_text("".join(f"{entry}\n" for entry in dict.fromkeys([*known, *created])))


def forget_empty_ancestors(path: Path) -> None:
    if not path.exists():
        return
    remaining = []
    for entry in sorted(path.read_text().split(), key=len, reverse=True):
        try:
            os.rmdir(entry)
        except FileNotFoundError:
            continue
        except OSError as error:
            if error.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                raise
            remaining.append(entry)
    if remaining:
        path.write_text("".join(f"{entry}\n" for entry in remaining))
    else:
        path.unlink()


def remove_pod_cgroup(parent: str) -> None:
    """Kill what is still inside, then rmdir the pod cgroup tree in every hierarchy."""
    hierarchies = CgroupFs.detect().hierarchies
    _kill_cgroup_processes(parent, hierarchies)
    for hierarchy in hierarchies:
        top = hierarchy / parent.lstrip("/")
        if not top.is_dir():
            continue
        for folder in sorted(_walk_dirs(top), key=lambda p: len(p.parts), reverse=True):
            _rmdir_when_empty(folder)


def _walk_dirs(top: Path) -> Iterator[Path]:
    for dirpath, _dirnames, _files in os.walk(top):
        yield Path(dirpath)


def _kill_cgroup_processes(parent: str, hierarchies: list[Path]) -> None:
    tops = [hierarchy / parent.lstrip("/") for hierarchy in hierarchies]
    survivors = kill_cgroup_processes(
        lambda: [folder for top in tops if top.is_dir() for folder in _walk_dirs(top)],
        KILL_TIMEOUT_S,
    )
    if survivors:
        raise UserError(f"processes {sorted(survivors)} in {parent} survive SIGKILL")


def _rmdir_when_empty(folder: Path) -> None:
    """rmdir a cgroup, retrying while the kernel still counts exiting tasks in it."""
    try:
        remove_cgroup(folder, KILL_TIMEOUT_S)
    except OSError as error:
        raise UserError(f"cannot remove cgroup {folder}: {error.strerror}") from None
