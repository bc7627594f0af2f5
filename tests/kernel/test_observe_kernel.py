"""`observe` against the kernel's own counters, on real cgroups and processes.

Ground truth is read here straight from the files (cpu.stat, cpuacct.usage,
/proc/PID/schedstat, /proc/PID/status), right before the window opens and right after it
closes, independently of kernel_gossip's parsing: the cgroup's directory is found from the
process's own /proc/PID/cgroup and the mount table, never through the CgroupFs under test.
"""

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import Require
from kernel_gossip.core.cgroups import CgroupMode
from kernel_gossip.host.cgroupfs import CgroupFs
from kernel_gossip.host.workload import BUSY_LOOP, HALF_THROTTLED, CgroupWorkload
from kernel_gossip.probes.observe import Observation, resolve_targets
from kernel_gossip.probes.runqlat import KeyMode, TargetSample
from kernel_gossip.schema.report import ContainerCpuTruth, ObserveReport

pytestmark = [pytest.mark.kernel, pytest.mark.usefixtures("kernel_prereqs")]

WINDOW_SECONDS = 5.0
ROOT = f"/kernel-gossip-test-{os.getpid()}"


@dataclass(frozen=True)
class Truth:
    """Raw kernel counters of one cgroup and its processes at one instant."""

    at: float
    nr_periods: int
    nr_throttled: int
    throttled_ns: int
    usage_ns: int
    run_delay_ns: int
    nonvoluntary_switches: int


def cgroup_dir(pid: int, controller: str) -> Path | None:
    """The directory of a process's cgroup for one v1 controller ("" for cgroup2), found
    from /proc/PID/cgroup and /proc/self/mountinfo; None where it has none."""
    paths = {}
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        for name in controllers.split(",") if controllers else [""]:
            paths[name] = path
    if controller not in paths:
        return None
    for mount in Path("/proc/self/mountinfo").read_text().splitlines():
        fields, _, post = mount.partition(" - ")
        fstype, _, options = post.split()[:3]
        if (fstype, controller) == ("cgroup2", "") or (
            fstype == "cgroup" and controller in options.split(",")
        ):
            return Path(fields.split()[4]) / paths[controller].lstrip("/")
    return None


def read_truth(workload: CgroupWorkload) -> Truth:
    pid = workload.processes[0].pid
    cpu, cpuacct = cgroup_dir(pid, "cpu"), cgroup_dir(pid, "cpuacct")
    if cpu is not None and cpuacct is not None:
        stat = _keyed(cpu / "cpu.stat")
        throttled_ns = stat["throttled_time"]
        usage_ns = int((cpuacct / "cpuacct.usage").read_text())
    else:
        unified = cgroup_dir(pid, "")
        assert unified is not None, f"pid {pid} is in no CPU cgroup"
        stat = _keyed(unified / "cpu.stat")
        throttled_ns, usage_ns = stat["throttled_usec"] * 1000, stat["usage_usec"] * 1000
    run_delay = switches = 0
    for process in workload.processes:
        run_delay += int(Path(f"/proc/{process.pid}/schedstat").read_text().split()[1])
        status = _keyed(Path(f"/proc/{process.pid}/status"), separator=":")
        switches += status["nonvoluntary_ctxt_switches"]
    return Truth(
        at=time.monotonic(),
        nr_periods=stat.get("nr_periods", 0),
        nr_throttled=stat.get("nr_throttled", 0),
        throttled_ns=throttled_ns,
        usage_ns=usage_ns,
        run_delay_ns=run_delay,
        nonvoluntary_switches=switches,
    )


def _keyed(path: Path, separator: str | None = None) -> dict[str, int]:
    values = {}
    for line in path.read_text().splitlines():
        key, _, value = line.partition(separator) if separator else line.partition(" ")
        if value.strip().isdigit():
            values[key.strip()] = int(value.strip())
    return values


@dataclass
class Measured:
    report: ObserveReport
    samples: dict[int, TargetSample]
    mode: KeyMode
    before: list[Truth]
    after: list[Truth]
    runners: list[int]
    """Each workload's processes: the most run queues its cgroup can be throttled on."""

    def container(self, index: int) -> ContainerCpuTruth:
        return self.report.containers[index]


def measure(fs: CgroupFs, workloads: list[CgroupWorkload]) -> Measured:
    time.sleep(0.5)  # let the processes start and join their cgroups
    targets = resolve_targets(fs, [w.path for w in workloads], every=False)
    with Observation(fs, targets) as observation:
        before = [read_truth(w) for w in workloads]
        observation.begin()
        time.sleep(WINDOW_SECONDS)
        report = observation.end()
        after = [read_truth(w) for w in workloads]
        runners = [len(w.processes) for w in workloads]
        return Measured(
            report, observation.window_samples, observation.mode, before, after, runners
        )


@pytest.fixture(scope="module")
def fs() -> CgroupFs:
    return CgroupFs.detect()


MakeWorkload = Callable[..., CgroupWorkload]


@pytest.fixture
def make_workload(fs: CgroupFs) -> Iterator[MakeWorkload]:
    """Workload cgroups under this test run's root, all removed afterwards."""
    made: list[CgroupWorkload] = []

    def make(name: str, limit_cores: float | None = None, mirror_v2: bool = True) -> CgroupWorkload:
        workload = CgroupWorkload(fs, f"{ROOT}/{name}", limit_cores, mirror_v2=mirror_v2)
        made.append(workload)
        return workload

    yield make
    for workload in reversed(made):  # the first made the shared root: it goes last
        workload.close()
    assert [d for w in made for d in w.leftovers()] == [], "a workload's cgroup stayed"


def assert_matches_truth(measured: Measured, index: int) -> None:
    """Throttling within 2 points, usage within 3% of the kernel's counters."""
    container = measured.container(index)
    before, after = measured.before[index], measured.after[index]
    periods = after.nr_periods - before.nr_periods
    throttled = after.nr_throttled - before.nr_throttled
    truth_percent = 100.0 * throttled / periods if periods else 0.0
    assert abs(container.throttled_percent - truth_percent) <= 2.0
    truth_usage = (after.usage_ns - before.usage_ns) / 1e9 / (after.at - before.at)
    assert container.cpu_usage_cores == pytest.approx(truth_usage, rel=0.03, abs=0.005)
    # The truth's reads bracket the window (taken just before begin() and after end()):
    # scaled to the window's length, as usage is compared per second, so the time the
    # reads of several cgroups take on a loaded host is not counted as throttling.
    truth_throttled_s = (
        (after.throttled_ns - before.throttled_ns)
        / 1e9
        * measured.report.window_seconds
        / (after.at - before.at)
    )
    # The kernel adds a cfs_rq's throttled time when it is unthrottled, at most a period
    # later, one cfs_rq per CPU the cgroup's tasks run on: a window's edge can cut that
    # much off either reading.
    edge_s = CFS_PERIOD_S * min(os.cpu_count() or 1, max(measured.runners[index], 1))
    assert container.throttled_seconds == pytest.approx(truth_throttled_s, rel=0.01, abs=edge_s)


WAIT_TOLERANCE_NS = 20_000_000
CFS_PERIOD_S = 0.1  # the workloads' cpu.cfs_period_us: the kernel's default, 100 ms


def assert_runqueue_matches_schedstat(measured: Measured, index: int) -> bool:
    """Involuntary switches match the kernel's per-task counters, and the summed wait of
    the histogram matches schedstat's run_delay (time spent waiting on a run queue) where
    the true wait is far above the tolerance (a probe reporting 0 would pass below it).
    Returns whether the wait was compared."""
    before, after = measured.before[index], measured.after[index]
    sample = measured.samples[index]
    truth_switches = after.nonvoluntary_switches - before.nonvoluntary_switches
    assert sample.involuntary_switches == pytest.approx(truth_switches, rel=0.1, abs=5)
    assert measured.container(index).involuntary_switches == sample.involuntary_switches
    truth_wait = after.run_delay_ns - before.run_delay_ns
    if truth_wait < 10 * WAIT_TOLERANCE_NS:
        return False
    assert sample.wait_ns == pytest.approx(truth_wait, rel=0.1, abs=WAIT_TOLERANCE_NS)
    return True


@pytest.mark.slow
def test_quota_two_busy_loops(fs: CgroupFs, make_workload: MakeWorkload) -> None:
    throttled = make_workload("throttled", limit_cores=0.2)
    throttled.start(BUSY_LOOP, count=2)
    measured = measure(fs, [throttled])
    container = measured.container(0)
    assert measured.mode is (KeyMode.CGROUP_ID if fs.unified_root else KeyMode.TGID)
    assert container.cgroup_path == throttled.path
    assert container.cpu_limit_cores == pytest.approx(0.2)
    assert container.throttled_percent > 50  # two loops want 2 cores, the quota gives 0.2
    assert_matches_truth(measured, 0)
    assert container.runqueue_latency_p99_us is not None
    assert container.runqueue_latency_p99_us > 10_000  # a throttled task waits a period
    assert assert_runqueue_matches_schedstat(measured, 0)  # throttled: seconds of wait


@pytest.mark.slow
def test_bursty_workload_throttled_in_about_half_its_periods(
    fs: CgroupFs, make_workload: MakeWorkload
) -> None:
    """150 ms bursts every 300 ms under 0.1 cores: only the bursts' periods are throttled,
    so an all-or-nothing (or inverted) ratio cannot match cpu.stat within 2 points."""
    bursty = make_workload("bursty", limit_cores=HALF_THROTTLED.limit_cores)
    bursty.start(HALF_THROTTLED.argv())
    measured = measure(fs, [bursty])
    before, after = measured.before[0], measured.after[0]
    truth_percent = (
        100.0 * (after.nr_throttled - before.nr_throttled) / (after.nr_periods - before.nr_periods)
    )
    assert 30 <= truth_percent <= 70, f"not bursty: {truth_percent:.1f}% of periods throttled"
    assert_matches_truth(measured, 0)


@pytest.mark.slow
def test_no_quota_one_busy_loop(fs: CgroupFs, make_workload: MakeWorkload) -> None:
    free = make_workload("free")
    free.start(BUSY_LOOP, count=1)
    measured = measure(fs, [free])
    container = measured.container(0)
    assert container.cpu_limit_cores is None
    assert container.throttled_percent == 0
    assert container.nr_throttled == 0
    # One loop runs on at most one core; how much of it a shared host grants varies, so
    # the figure is held to cpuacct (above), and here only to what is physically possible.
    assert 0 < container.cpu_usage_cores <= 1.0 + 0.03
    assert_matches_truth(measured, 0)
    assert_runqueue_matches_schedstat(measured, 0)


@pytest.mark.slow
def test_several_containers_are_not_mixed_up(fs: CgroupFs, make_workload: MakeWorkload) -> None:
    tight = make_workload("tight", limit_cores=0.1)
    tight.start(BUSY_LOOP, count=2)
    half = make_workload("half", limit_cores=0.5)
    half.start(BUSY_LOOP, count=1)
    idle = make_workload("idle")
    idle.start(["/bin/sleep", "3600"], count=1)
    measured = measure(fs, [tight, half, idle])
    limits = [c.cpu_limit_cores for c in measured.report.containers]
    assert limits == [pytest.approx(0.1), pytest.approx(0.5), None]
    for index in range(3):
        assert_matches_truth(measured, index)
        assert_runqueue_matches_schedstat(measured, index)
    # Each held to its own cpuacct above; never above its quota, however loaded the host.
    assert 0 < measured.container(0).cpu_usage_cores <= 0.1 * 1.03
    assert 0 < measured.container(1).cpu_usage_cores <= 0.5 * 1.03
    assert measured.container(2).cpu_usage_cores < 0.01
    assert measured.container(2).involuntary_switches == 0
    assert measured.container(2).runqueue_latency_p99_us is None  # it never became runnable


@pytest.mark.slow
def test_cgroup_without_v2_mirror_is_keyed_by_pid(
    fs: CgroupFs, make_workload: MakeWorkload, require: Require
) -> None:
    """What pure-v1 hosts get: the probe keys by process and user space maps pids. Only a
    v1 hierarchy can hold a cgroup without a cgroup2 twin; in CI a host without one fails."""
    require(fs.mode is not CgroupMode.V2, "a v1 cpu hierarchy (hybrid or v1 host)")
    v1_only = make_workload("v1-only", limit_cores=0.2, mirror_v2=False)
    v1_only.start(BUSY_LOOP, count=2)
    measured = measure(fs, [v1_only])
    assert measured.mode is KeyMode.TGID
    container = measured.container(0)
    assert_matches_truth(measured, 0)
    assert container.runqueue_latency_p99_us is not None
    assert container.runqueue_latency_p99_us > 10_000
    assert assert_runqueue_matches_schedstat(measured, 0)
