"""`kernel-gossip observe`: per container, what the kernel knows about its CPU over a window.

Throttling, usage and limit come from the kernel's own cgroup counters (cpu.stat,
cpuacct.usage / usage_usec, cpu.cfs_quota_us / cpu.max) read at both ends of the window;
run-queue latency and involuntary switches come from bpf/runqlat.c over the same window.
"""

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType

from kernel_gossip.core.cgroups import (
    CgroupIdentity,
    CgroupMode,
    CpuCounters,
    CpuDelta,
    cpu_delta,
    identify,
    parse_proc_cgroup,
)
from kernel_gossip.core.histogram import percentile
from kernel_gossip.errors import UserError
from kernel_gossip.host.cgroupfs import CgroupFs
from kernel_gossip.probes.runqlat import MAX_TARGETS, KeyMode, RunqueueProbe, TargetSample
from kernel_gossip.schema.report import ContainerCpuTruth, ObserveReport
from kernel_gossip.schema.signal import MAX_WINDOW_SECONDS

REFRESH_SECONDS = 0.5


@dataclass(frozen=True)
class Target:
    index: int
    path: str
    identity: CgroupIdentity


def container_truth(target: Target, delta: CpuDelta, runqueue: TargetSample) -> ContainerCpuTruth:
    """Join the counters' delta and the probe's sample into the published figures."""
    return ContainerCpuTruth(
        cgroup_path=target.path,
        pod_uid=target.identity.pod_uid,
        container_id=target.identity.container_id,
        runtime=target.identity.runtime,
        cpu_limit_cores=delta.limit_cores,
        cpu_usage_cores=max(delta.usage_cores, 0.0),
        nr_periods=delta.nr_periods,
        nr_throttled=delta.nr_throttled,
        throttled_percent=delta.throttled_percent,
        throttled_seconds=delta.throttled_seconds,
        runqueue_latency_p50_us=percentile(runqueue.latency_slots, 0.50),
        runqueue_latency_p99_us=percentile(runqueue.latency_slots, 0.99),
        involuntary_switches=runqueue.involuntary_switches,
    )


def resolve_targets(fs: CgroupFs, paths: Iterable[str], every: bool) -> list[Target]:
    """The cgroups to observe, each checked to exist, in the order given."""
    chosen: list[str] = []
    for path in paths:
        rel = fs.normalise(path)
        if not fs.exists(rel):
            raise UserError(f"unknown cgroup {path}: {fs.dir(rel)} does not exist")
        chosen.append(rel)
    if every:
        chosen.extend(_interesting_cgroups(fs))
    if not chosen and not every:
        raise UserError("nothing to observe: name a cgroup with --cgroup PATH, or use --all")
    unique = list(dict.fromkeys(chosen))
    if len(unique) > MAX_TARGETS:
        raise UserError(f"{len(unique)} cgroups is more than {MAX_TARGETS} at once: name fewer")
    return [Target(index, rel, identify(rel)) for index, rel in enumerate(unique)]


def _interesting_cgroups(fs: CgroupFs) -> list[str]:
    """Cgroups that hold processes and are a container or have a CPU quota."""
    found = []
    for rel in _populated(fs):
        try:
            limited = fs.read_counters(rel).quota is not None
        except FileNotFoundError:
            continue
        if limited or identify(rel).container_id is not None:
            found.append(rel)
    return found


def container_cgroups(fs: CgroupFs) -> list[Target]:
    """Every container on the host that holds processes, as targets."""
    found = [(rel, identify(rel)) for rel in _populated(fs)]
    containers = [(rel, who) for rel, who in found if who.container_id is not None]
    return [Target(index, rel, who) for index, (rel, who) in enumerate(containers[:MAX_TARGETS])]


def _populated(fs: CgroupFs) -> list[str]:
    return [rel for rel in fs.walk_cpu() if rel != "/" and fs.procs(rel)]


def choose_key_mode(fs: CgroupFs, targets: list[Target]) -> KeyMode:
    """Cgroup ids identify containers when every target's processes sit in the same cgroup2
    path as in the cpu hierarchy (v2; hybrid hosts where the runtime mirrors cgroups)."""
    if fs.mode is CgroupMode.V2:
        return KeyMode.CGROUP_ID
    if fs.mode is CgroupMode.V1:
        return KeyMode.TGID
    for target in targets:
        if fs.v2_inode(target.path) is None:
            return KeyMode.TGID
        for rel in fs.descendants(target.path):
            for pid in fs.procs(rel):
                paths = _proc_cgroups(pid)
                if paths is not None and paths.get("unified") != paths.get("cpu", rel):
                    return KeyMode.TGID
    return KeyMode.CGROUP_ID


def _proc_cgroups(pid: int) -> dict[str, str] | None:
    try:
        return parse_proc_cgroup(Path(f"/proc/{pid}/cgroup").read_text())
    except (FileNotFoundError, ProcessLookupError):
        return None  # exited meanwhile


class Observation:
    """Probe attached to a set of targets; begin() and end() bound one window.

    Tests read their ground truth right before begin() and right after end().
    """

    def __init__(
        self, fs: CgroupFs, targets: list[Target], probe: RunqueueProbe | None = None
    ) -> None:
        """With a probe of its own unless given one (a daemon keeps one loaded)."""
        self.fs = fs
        self.targets = targets
        self._owns_probe = probe is None
        self.mode = probe.mode if probe else choose_key_mode(fs, targets)
        self._probe = probe or RunqueueProbe(self.mode)
        self._started = 0.0
        self.ended_at = datetime.now(UTC)  # the wall-clock end of the last window, set by end()
        self._counters: dict[int, CpuCounters] = {}
        self._samples: dict[int, TargetSample] = {}
        self.window_samples: dict[int, TargetSample] = {}  # per target index, set by end()
        self.refresh()

    def refresh(self) -> None:
        """(Re)load which keys and threads belong to which target (new pids in TGID mode)."""
        keys: dict[int, int] = {}
        threads: dict[int, int] = {}
        for target in self.targets:
            for rel in self.fs.descendants(target.path):
                threads.update(dict.fromkeys(self.fs.threads(rel), target.index))
                if self.mode is KeyMode.TGID:
                    keys.update(dict.fromkeys(self.fs.procs(rel), target.index))
            if self.mode is KeyMode.CGROUP_ID and self.fs.unified_root is not None:
                for rel in self.fs.descendants(target.path, self.fs.unified_root):
                    inode = self.fs.v2_inode(rel)
                    if inode is not None:
                        keys[inode] = target.index
        self._probe.set_targets(keys)
        self._probe.seed_tasks(threads)

    def _read_counters(self) -> dict[int, CpuCounters]:
        try:
            return {t.index: self.fs.read_counters(t.path) for t in self.targets}
        except FileNotFoundError as error:
            raise UserError(f"a cgroup disappeared while observed: {error.filename}") from None

    def begin(self) -> None:
        # The window is the span between the two cpu.stat reads: the clock is read right
        # beside them, the BPF maps (slower to read under load) outside that span.
        self._samples = self._probe.sample()
        self._counters = self._read_counters()
        self._started = time.monotonic()

    def end(self) -> ObserveReport:
        counters = self._read_counters()
        window = time.monotonic() - self._started
        self.ended_at = datetime.now(UTC)
        samples = self._probe.sample()
        containers = []
        for target in self.targets:
            delta = cpu_delta(self._counters[target.index], counters[target.index], window)
            runqueue = samples.get(target.index, TargetSample()).since(
                self._samples.get(target.index, TargetSample())
            )
            self.window_samples[target.index] = runqueue
            containers.append(container_truth(target, delta, runqueue))
        return ObserveReport(window_seconds=window, containers=containers)

    def close(self) -> None:
        if self._owns_probe:
            self._probe.close()

    def __enter__(self) -> "Observation":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def observe(
    paths: Iterable[str],
    every: bool,
    duration: float,
    on_tick: Callable[[float], None] | None = None,
    fs: CgroupFs | None = None,
) -> ObserveReport:
    """Observe the cgroups for `duration` seconds; on_tick gets the seconds elapsed."""
    if not 0 < duration <= MAX_WINDOW_SECONDS:
        raise UserError(
            f"--duration must be within (0, {MAX_WINDOW_SECONDS:g}] seconds, not {duration}"
        )
    fs = fs or CgroupFs.detect()
    targets = resolve_targets(fs, paths, every)
    with Observation(fs, targets) as observation:
        observation.begin()
        deadline = time.monotonic() + duration
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(REFRESH_SECONDS, left))
            if observation.mode is KeyMode.TGID:
                observation.refresh()
            if on_tick:
                on_tick(duration - max(deadline - time.monotonic(), 0.0))
        return observation.end()
