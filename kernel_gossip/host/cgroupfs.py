"""Reads (and, for workloads we start, writes) cgroups on this host: the I/O side of cgroups.py."""

import contextlib
import errno
import os
import signal
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from kernel_gossip.core.cgroups import (
    CgroupMode,
    CgroupMounts,
    CpuCounters,
    MemoryCounters,
    counters_v1,
    counters_v2,
    memory_v1,
    memory_v2,
    parse_mountinfo,
)
from kernel_gossip.errors import UserError

CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class CgroupFs:
    mounts: CgroupMounts

    @classmethod
    def detect(cls) -> "CgroupFs":
        return cls(parse_mountinfo(Path("/proc/self/mountinfo").read_text()))

    @property
    def mode(self) -> CgroupMode:
        return self.mounts.mode

    @property
    def cpu_root(self) -> Path:
        """The hierarchy where CPU quotas and throttling live."""
        if self.mode is CgroupMode.V2:
            assert self.mounts.unified is not None
            return Path(self.mounts.unified)
        return Path(self.mounts.v1["cpu"])

    @property
    def unified_root(self) -> Path | None:
        return Path(self.mounts.unified) if self.mounts.unified else None

    @property
    def hierarchies(self) -> list[Path]:
        """Every mounted cgroup hierarchy: v1 controllers, named ones, cgroup2."""
        return [Path(mount) for mount in self.mounts.hierarchies]

    def normalise(self, path: str) -> str:
        """Accept a path relative to the cgroup root or absolute under /sys/fs/cgroup."""
        candidate = Path(path)
        roots = [Path(p) for p in self.mounts.v1.values()]
        if self.mounts.unified:
            roots.append(Path(self.mounts.unified))
        for root in sorted(roots, key=lambda r: len(r.parts), reverse=True):
            if candidate.is_relative_to(root):
                return _relative(candidate, root)
        if candidate.is_relative_to(CGROUP_ROOT):
            raise UserError(
                f"{path} is not inside a mounted cgroup hierarchy "
                f"(mounted: {', '.join(str(r) for r in roots)})"
            )
        return "/" + path.strip("/")

    def dir(self, rel: str, hierarchy: Path | None = None) -> Path:
        return (hierarchy or self.cpu_root) / rel.lstrip("/")

    def exists(self, rel: str) -> bool:
        return self.dir(rel).is_dir()

    def read_counters(self, rel: str) -> CpuCounters:
        cpu = self.dir(rel)
        if self.mode is CgroupMode.V2:
            cpu_max = cpu / "cpu.max"
            return counters_v2(
                (cpu / "cpu.stat").read_text(),
                cpu_max.read_text() if cpu_max.exists() else None,
            )
        cpuacct = self.dir(rel, Path(self.mounts.v1["cpuacct"]))
        return counters_v1(
            (cpu / "cpu.stat").read_text(),
            (cpu / "cpu.cfs_quota_us").read_text(),
            (cpu / "cpu.cfs_period_us").read_text(),
            (cpuacct / "cpuacct.usage").read_text(),
        )

    def read_memory(self, rel: str) -> MemoryCounters:
        """Memory usage and inactive page cache, from the memory controller's hierarchy."""
        if self.mode is CgroupMode.V2:
            memory = self.dir(rel)
            current = memory / "memory.current"
            return memory_v2(
                current.read_text() if current.exists() else None,
                (memory / "memory.stat").read_text(),
            )
        memory = self.dir(rel, Path(self.mounts.v1["memory"]))
        return memory_v1(
            (memory / "memory.usage_in_bytes").read_text(), (memory / "memory.stat").read_text()
        )

    def descendants(self, rel: str, hierarchy: Path | None = None) -> Iterator[str]:
        """rel itself and every cgroup below it, as relative paths."""
        top = self.dir(rel, hierarchy)
        base = hierarchy or self.cpu_root
        for dirpath, _dirnames, _files in os.walk(top):
            yield _relative(Path(dirpath), base)

    def procs(self, rel: str) -> list[int]:
        """Process IDs (tgids) directly in this cgroup."""
        return _read_ids(self.dir(rel) / "cgroup.procs")

    def threads(self, rel: str) -> list[int]:
        """Thread IDs directly in this cgroup."""
        name = "cgroup.threads" if self.mode is CgroupMode.V2 else "tasks"
        return _read_ids(self.dir(rel) / name)

    def v2_inode(self, rel: str) -> int | None:
        """The cgroup v2 id of rel (the inode of its cgroup2 directory), if it has one."""
        if self.unified_root is None:
            return None
        try:
            return (self.unified_root / rel.lstrip("/")).stat().st_ino
        except FileNotFoundError:
            return None

    def v2_path(self, cgroup_id: int) -> str | None:
        """The cgroup2 path whose directory inode is this cgroup id (v2_inode's inverse)."""
        root = self.unified_root
        if root is None or cgroup_id == 0:
            return None
        for dirpath, _dirs, _files in os.walk(root):
            try:
                if os.stat(dirpath).st_ino == cgroup_id:
                    return _relative(Path(dirpath), root)
            except FileNotFoundError:
                continue
        return None

    def set_cpu_limit(self, rel: str, quota_us: int, period_us: int) -> None:
        """CFS bandwidth: `quota_us` of CPU time per `period_us` (cpu.max on v2, else
        cfs_period_us then cfs_quota_us, the order the kernel accepts any pair in)."""
        cpu = self.dir(rel)
        if self.mode is CgroupMode.V2:
            (cpu / "cpu.max").write_text(f"{quota_us} {period_us}")
        else:
            (cpu / "cpu.cfs_period_us").write_text(str(period_us))
            (cpu / "cpu.cfs_quota_us").write_text(str(quota_us))

    def walk_cpu(self) -> Iterator[str]:
        return self.descendants("/")


def _relative(directory: Path, root: Path) -> str:
    """A cgroup's path as the kernel writes it: relative to its hierarchy, from "/"."""
    return "/" + str(directory.relative_to(root)).removeprefix(".")


def cgroup_pids(directory: Path) -> set[int]:
    """The processes directly in a cgroup directory; none when it is gone."""
    return set(_read_ids(directory / "cgroup.procs"))


def kill_cgroup_processes(directories: Callable[[], Iterable[Path]], timeout: float) -> set[int]:
    """SIGKILL the processes in the cgroup directories `directories()` lists (listed again
    each round) until none is left, as runc empties a container's cgroup; returns those
    still there when the timeout runs out."""
    deadline = time.monotonic() + timeout
    while pids := {pid for directory in directories() for pid in cgroup_pids(directory)}:
        if time.monotonic() > deadline:
            return pids
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)
    return set()


def _read_ids(path: Path) -> list[int]:
    try:
        return [int(line) for line in path.read_text().split()]
    except (FileNotFoundError, ProcessLookupError):
        return []


def remove_cgroup(directory: Path, timeout: float = 5.0) -> None:
    """rmdir a cgroup, retried while the kernel still counts tasks that just exited in it
    (EBUSY); the OSError is raised when it stays busy past the timeout or fails otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            directory.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as error:
            if error.errno != errno.EBUSY or time.monotonic() > deadline:
                raise
        time.sleep(0.05)
