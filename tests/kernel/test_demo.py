"""The main job: `kernel-gossip demo` prints measured figures and leaves nothing behind."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
from cpu_stat_sampler import CpuStatSampler
from cpu_stat_sampler import percent as percent_between

from kernel_gossip.cli.demo import DEMO_CGROUP, METRICS_WINDOW_SECONDS, contrast
from kernel_gossip.schema.report import ContainerCpuTruth

CLI = str(Path(sys.executable).with_name("kernel-gossip"))


def truth(**overrides: object) -> ContainerCpuTruth:
    figures: dict[str, object] = {
        "cgroup_path": "/demo",
        "pod_uid": None,
        "container_id": None,
        "runtime": None,
        "cpu_limit_cores": 0.5,
        "cpu_usage_cores": 0.271,
        "nr_periods": 150,
        "nr_throttled": 51,
        "throttled_percent": 34.0,
        "throttled_seconds": 1.25,
        "runqueue_latency_p50_us": 20.0,
        "runqueue_latency_p99_us": 63_700.0,
        "involuntary_switches": 812,
    }
    figures.update(overrides)
    return ContainerCpuTruth.model_validate(figures)


def test_contrast_states_each_figure() -> None:
    text = contrast(truth())
    assert "271m CPU = 54% of its 0.5-core limit" in text
    assert "34.0% of CFS periods throttled (51/150)" in text
    assert "1.25 s throttled" in text
    assert "p99 63.7 ms" in text
    assert "812 involuntary" in text


def test_contrast_without_limit_or_samples() -> None:
    text = contrast(truth(cpu_limit_cores=None, runqueue_latency_p99_us=None))
    assert "of its" not in text
    assert "p99" not in text


@pytest.mark.slow
@pytest.mark.kernel
@pytest.mark.usefixtures("kernel_prereqs")
def test_demo_runs_and_cleans_up() -> None:
    """The figures printed are cpu.stat's and cpuacct's over the demo's own 15 s window:
    the window closes just before the workload stops, so it is one of the 15 s windows of
    the sampled run ending in its last 3 s, and its counts match one of them exactly."""
    with CpuStatSampler(DEMO_CGROUP) as sampler:
        result = subprocess.run([CLI, "demo"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    usage = re.search(r"kubectl top.*?: (\d+)m CPU = (\d+)% of its 0.5-core limit", result.stdout)
    kernel = re.search(
        r"kernel knows: ([\d.]+)% of CFS periods throttled \((\d+)/(\d+)\)", result.stdout
    )
    assert usage, result.stdout
    assert kernel, result.stdout
    millicores, percent = int(usage.group(1)), float(kernel.group(1))
    throttled, periods = int(kernel.group(2)), int(kernel.group(3))
    assert percent == pytest.approx(100 * throttled / periods, abs=0.05)

    stopped = min(s.at for s in sampler.samples if s.usage_ns == sampler.samples[-1].usage_ns)
    candidates = [
        (first, last)
        for first, last in sampler.windows(METRICS_WINDOW_SECONDS)
        if stopped - 3 <= last.at <= stopped
    ]
    assert candidates, "the run was not sampled through a whole window"
    matching = [
        (first, last)
        for first, last in candidates
        if abs(last.nr_periods - first.nr_periods - periods) <= 1
        and abs(last.nr_throttled - first.nr_throttled - throttled) <= 1
    ]
    assert matching, f"no window of the run has {throttled}/{periods} periods throttled"
    first, last = matching[0]
    assert abs(percent - percent_between(first, last)) <= 2.0
    truth_millicores = (last.usage_ns - first.usage_ns) / 1e6 / (last.at - first.at)
    assert millicores == pytest.approx(truth_millicores, rel=0.03, abs=5)
    # Gone from every hierarchy, found from the mount table, not through CgroupFs.
    hierarchies = [
        Path(line.split(" - ")[0].split()[4])
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if line.partition(" - ")[2].split()[:1] in (["cgroup"], ["cgroup2"])
    ]
    assert hierarchies
    for hierarchy in hierarchies:
        assert not (hierarchy / DEMO_CGROUP.lstrip("/")).exists(), hierarchy
        assert not (hierarchy / Path(DEMO_CGROUP.lstrip("/")).parent).exists(), hierarchy
