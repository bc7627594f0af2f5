"""The main job: `kernel-gossip demo` prints measured figures and leaves nothing behind."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from kernel_gossip.cgroupfs import CgroupFs
from kernel_gossip.demo import DEMO_CGROUP, contrast
from kernel_gossip.models import ContainerCpuTruth

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
    result = subprocess.run([CLI, "demo"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    usage = re.search(r"kubectl top.*?: (\d+)m CPU = (\d+)% of its 0.5-core limit", result.stdout)
    kernel = re.search(
        r"kernel knows: ([\d.]+)% of CFS periods throttled \((\d+)/(\d+)\)", result.stdout
    )
    assert usage, result.stdout
    assert kernel, result.stdout
    assert 0 < int(usage.group(1)) <= 550  # capped by the 0.5-core quota
    periods = int(kernel.group(3))
    assert 120 <= periods <= 160  # 15 s of 100 ms periods, while the workload ran
    fs = CgroupFs.detect()
    assert not fs.dir(DEMO_CGROUP).exists()
    assert not fs.dir(str(Path(DEMO_CGROUP).parent)).exists()
