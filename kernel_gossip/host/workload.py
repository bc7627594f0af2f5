"""CPU workloads in cgroups of their own, for the demo and the tests.

A workload cgroup is made the way runc makes a container's on this kind of host: in the
cpu and cpuacct hierarchies (v1) and mirrored in cgroup2 when it is mounted, so the
kernel's cgroup id identifies it as it would identify a container.
"""

import contextlib
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from kernel_gossip.core.cgroups import CgroupMode
from kernel_gossip.host.cgroupfs import CgroupFs, kill_cgroup_processes, remove_cgroup

STRAGGLER_TIMEOUT_S = 10.0
BUSY_LOOP = ["/bin/sh", "-c", "while :; do :; done"]


def bursty_loop(busy_ms: int, idle_ms: int) -> list[str]:
    """A shell that burns a CPU for busy_ms of wall time, then sleeps idle_ms, forever.

    Under a quota below busy_ms per CFS period only the periods of its bursts are
    throttled: a bursty workload. Plain POSIX sh (busybox too), so the same loop runs on a
    host and in a lab pod; a `sleep` in the background times each burst."""
    script = (
        "trap 'exit 0' TERM; while :; do "
        f"sleep {busy_ms / 1000:g} & burst=$!; "
        'while kill -0 "$burst" 2>/dev/null; do :; done; '
        f"sleep {idle_ms / 1000:g}; done"
    )
    return ["/bin/sh", "-c", script]


@dataclass(frozen=True)
class Bursts:
    """A bursty_loop and the CPU limit it runs under."""

    busy_ms: int
    idle_ms: int
    limit_cores: float

    def argv(self) -> list[str]:
        return bursty_loop(self.busy_ms, self.idle_ms)


HALF_THROTTLED = Bursts(busy_ms=150, idle_ms=350, limit_cores=0.1)
"""About half the CFS periods throttled: each burst outlasts the 10 ms quota of the 2-3
periods it spans (the shell resumes only at a period boundary), then ~4 idle periods follow.
Measured here: 57% on an idle host and 56-59% with six busy loops on 2 cores; 150/150 gave
79% idle, too close to the all-periods case to tell a ratio from a flag."""


class CgroupWorkload:
    """A cgroup (optionally CPU-limited) and the processes started in it; removed on close."""

    def __init__(
        self,
        fs: CgroupFs,
        path: str,
        limit_cores: float | None = None,
        period_us: int = 100_000,
        mirror_v2: bool = True,
    ) -> None:
        self.fs = fs
        self.path = "/" + path.strip("/")
        self.processes: list[subprocess.Popen[bytes]] = []
        self._dirs = self._hierarchy_dirs(mirror_v2)
        self._created: list[Path] = []  # every directory we made, parents first
        for directory in self._dirs:
            missing = [d for d in (directory, *directory.parents) if not d.exists()]
            directory.mkdir(parents=True, exist_ok=True)
            self._created.extend(reversed(missing))
        if limit_cores is not None:
            self._set_limit(limit_cores, period_us)

    def _hierarchy_dirs(self, mirror_v2: bool) -> list[Path]:
        rel = self.path.lstrip("/")
        if self.fs.mode is CgroupMode.V2:
            return [self.fs.cpu_root / rel]
        dirs = [Path(self.fs.mounts.v1[c]) / rel for c in ("cpu", "cpuacct")]
        dirs = list(dict.fromkeys(dirs))  # co-mounted cpu,cpuacct is one directory
        if mirror_v2 and self.fs.unified_root is not None:
            dirs.append(self.fs.unified_root / rel)
        return dirs

    def _set_limit(self, cores: float, period_us: int) -> None:
        self.fs.set_cpu_limit(self.path, round(cores * period_us), period_us)

    def start(self, argv: Sequence[str], count: int = 1) -> None:
        """Start `count` processes that join the cgroup before they exec."""
        procs_files = [str(d / "cgroup.procs") for d in self._dirs]

        def join() -> None:
            for name in procs_files:
                with open(name, "w") as procs:
                    procs.write("0")

        for _ in range(count):
            self.processes.append(
                subprocess.Popen(
                    list(argv),
                    preexec_fn=join,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )

    def close(self) -> None:
        for process in self.processes:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGKILL)
        for process in self.processes:
            process.wait(timeout=10)
        self._kill_stragglers()
        for directory in reversed(self._created):
            _remove_cgroup(directory)

    def _kill_stragglers(self, timeout: float = STRAGGLER_TIMEOUT_S) -> None:
        """SIGKILL what the started processes left in the cgroup (a bursty loop's
        background `sleep`), until the cgroup is empty, as runc empties a container's."""
        kill_cgroup_processes(lambda: self._dirs, timeout)  # what stays shows in leftovers()

    def leftovers(self) -> list[Path]:
        """The directories this workload made that are still there after close."""
        return [directory for directory in self._created if directory.exists()]

    def __enter__(self) -> "CgroupWorkload":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _remove_cgroup(directory: Path) -> None:
    """A cgroup we made; one that still holds cgroups of other workloads is left to the
    last of them, and one that cannot be removed is left rather than failing the close."""
    if directory.is_dir() and any(child.is_dir() for child in directory.iterdir()):
        return
    with contextlib.suppress(OSError):
        remove_cgroup(directory)
