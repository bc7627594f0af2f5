"""The `kernel-gossip observe` command as other tools call it: JSON contract and errors."""

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Require
from kernel_gossip.host.cgroupfs import CgroupFs
from kernel_gossip.host.workload import BUSY_LOOP, CgroupWorkload

CLI = str(Path(sys.executable).with_name("kernel-gossip"))
CONTAINER_KEYS = {
    "cgroupPath",
    "podUid",
    "containerId",
    "runtime",
    "cpuLimitCores",
    "cpuUsageCores",
    "nrPeriods",
    "nrThrottled",
    "throttledPercent",
    "throttledSeconds",
    "runqueueLatencyP50Us",
    "runqueueLatencyP99Us",
    "involuntarySwitches",
}
POD_UID = "7c1e9a52-33b1-4d2e-9f0a-5b6c7d8e9f01"
CONTAINER_ID = "ab" * 32


def run_cli(*args: str, user: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [CLI, *args]
    if user:
        command = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *command]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


def assert_one_line_error(result: subprocess.CompletedProcess[str], *words: str) -> None:
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for word in words:
        assert word in lines[0]


@pytest.fixture(scope="module")
def pod_workload(kernel_prereqs: None) -> Iterator[CgroupWorkload]:
    """A busy loop in a cgroup laid out like a Burstable pod's container."""
    fs = CgroupFs.detect()
    # kubepods nested under a root of our own, as kind nests it under the node's cgroup
    path = f"/kernel-gossip-test-{os.getpid()}/kubepods/burstable/pod{POD_UID}/{CONTAINER_ID}"
    with CgroupWorkload(fs, path, limit_cores=0.3) as workload:
        workload.start(BUSY_LOOP, count=1)
        yield workload


@pytest.mark.kernel
def test_json_contract(pod_workload: CgroupWorkload) -> None:
    result = run_cli("observe", "--cgroup", pod_workload.path, "--duration", "2", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert set(report) == {"windowSeconds", "containers"}
    assert report["windowSeconds"] == pytest.approx(2.0, abs=0.5)
    (container,) = report["containers"]
    assert set(container) == CONTAINER_KEYS
    assert container["cgroupPath"] == pod_workload.path
    assert container["podUid"] == POD_UID
    assert container["containerId"] == CONTAINER_ID
    assert container["runtime"] is None  # cgroupfs driver: the path does not name it
    assert container["cpuLimitCores"] == pytest.approx(0.3)
    assert container["cpuUsageCores"] == pytest.approx(0.3, abs=0.05)
    assert container["nrPeriods"] > 0
    assert container["throttledPercent"] > 50


@pytest.mark.kernel
def test_absolute_path_and_human_table(pod_workload: CgroupWorkload) -> None:
    absolute = CgroupFs.detect().dir(pod_workload.path)
    result = run_cli("observe", "--cgroup", str(absolute), "--duration", "1")
    assert result.returncode == 0, result.stderr
    assert pod_workload.path in result.stdout
    assert "throttled" in result.stdout


@pytest.mark.kernel
def test_all_finds_containers_and_limited_cgroups(pod_workload: CgroupWorkload) -> None:
    result = run_cli("observe", "--all", "--duration", "1", "--json")
    assert result.returncode == 0, result.stderr
    paths = {c["cgroupPath"] for c in json.loads(result.stdout)["containers"]}
    assert pod_workload.path in paths
    assert "/" not in paths


@pytest.mark.kernel
def test_unknown_cgroup(kernel_prereqs: None) -> None:
    result = run_cli("observe", "--cgroup", "/no/such/cgroup", "--duration", "1")
    assert_one_line_error(result, "unknown cgroup", "/no/such/cgroup")


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["observe", "--duration", "-1", "--all"], ["--duration"]),
        (["observe", "--duration", "soon", "--all"], ["--duration", "soon"]),
        (["observe", "--bogus"], ["--bogus"]),
        (["frobnicate"], ["frobnicate"]),
    ],
)
def test_bad_arguments(args: list[str], words: list[str]) -> None:
    assert_one_line_error(run_cli(*args), *words)


@pytest.mark.kernel
def test_nothing_to_observe(kernel_prereqs: None) -> None:
    assert_one_line_error(run_cli("observe", "--duration", "1"), "--cgroup", "--all")


def test_not_root_is_a_clear_error(require: Require) -> None:
    require(os.geteuid() == 0 and shutil.which("setpriv") is not None, "root and setpriv")
    result = run_cli("observe", "--all", "--duration", "1", user="65534")
    assert_one_line_error(result, "root")
