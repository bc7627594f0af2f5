"""The whole lab on this machine: `lab up`, real pods, the agent, the operator, `lab down`.

The agent's figures are compared with the container's own cpu.stat, sampled here every
20 ms while the agent measures; delivery is checked across a 30 s operator outage.
"""

import itertools
import json
import os
import re
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from operator_harness import get_resource, list_resources

from kernel_gossip.lab.apiserver import LabApi
from kernel_gossip.lab.stack import AGENT_INTERVAL_SECONDS, OPERATOR_NAMESPACE

pytestmark = [pytest.mark.slow, pytest.mark.kernel, pytest.mark.usefixtures("kernel_prereqs")]

CLI = str(Path(sys.executable).with_name("kernel-gossip"))
PODS = Path(__file__).resolve().parent.parent / "lab" / "pods"
CPU_ROOT = Path("/sys/fs/cgroup/cpu")
OUTAGE_SECONDS = 30.0


@dataclass
class Lab:
    dir: Path
    status: dict[str, Any]
    api: LabApi

    def cli(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KERNEL_GOSSIP_LAB_DIR": str(self.dir)}
        return subprocess.run(
            [CLI, *args], capture_output=True, text=True, timeout=timeout, env=env
        )

    def pods(self) -> list[dict[str, Any]]:
        result = self.cli("lab", "pods", "get", "--json")
        assert result.returncode == 0, result.stderr
        pods: list[dict[str, Any]] = json.loads(result.stdout)
        return pods

    def pod(self, name: str) -> dict[str, Any]:
        return next(p for p in self.pods() if p["name"] == name)

    def agent_metric(self, name: str) -> float:
        with urllib.request.urlopen(f"{self.status['agentMetricsUrl']}/metrics") as response:
            text = response.read().decode()
        match = re.search(rf"^{name}(?:_total)? ([0-9.e+]+)$", text, re.MULTILINE)
        assert match, f"{name} not in the agent's metrics"
        return float(match.group(1))


def lab_processes(lab_dir: Path) -> list[str]:
    """Command lines of live processes that belong to this lab (they name its dir)."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            command = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            state = (proc / "stat").read_text().rsplit(")", 1)[-1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            continue
        if str(lab_dir) in command and state != "Z":
            found.append(command)
    return found


def bridges() -> set[str]:
    result = subprocess.run(
        ["ip", "-o", "link", "show", "type", "bridge"], capture_output=True, text=True, check=True
    )
    return {line.split(":")[1].strip() for line in result.stdout.splitlines()}


def mounts_under(lab_dir: Path) -> list[str]:
    return [
        line
        for line in Path("/proc/self/mountinfo").read_text().splitlines()
        if str(lab_dir) in line
    ]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """One lab for the module; `lab down` must then leave nothing of it behind."""
    lab_dir = tmp_path_factory.mktemp("stack")
    env = {**os.environ, "KERNEL_GOSSIP_LAB_DIR": str(lab_dir)}
    bridges_before = bridges()
    try:
        up = subprocess.run(
            [CLI, "lab", "up"], capture_output=True, text=True, timeout=3000, env=env
        )
        assert up.returncode == 0, up.stderr
        status = json.loads(up.stdout)
        assert status["up"] is True
        for key in ("kubeconfig", "containerdSocket", "operatorUrl", "agentMetricsUrl"):
            assert status[key], key
        assert lab_processes(lab_dir)
    except BaseException:
        subprocess.run([CLI, "lab", "down"], capture_output=True, timeout=300, env=env)
        raise
    api_dir = lab_dir / "api"
    api = LabApi(
        api_dir,
        status["apiServer"],
        api_dir / "kubeconfig",
        api_dir / "pki" / "ca.crt",
        api_dir / "bin" / "kubectl",
    )
    running = Lab(lab_dir, status, api)
    yield running
    pods_cgroups = [CPU_ROOT / p["cgroupParent"].lstrip("/") for p in running.pods()]
    assert pods_cgroups  # the tests applied pods: their removal is checked below
    down = subprocess.run(
        [CLI, "lab", "down"], capture_output=True, text=True, timeout=300, env=env
    )
    assert down.returncode == 0, down.stderr
    assert lab_processes(lab_dir) == []
    assert bridges() <= bridges_before
    assert mounts_under(lab_dir) == []
    assert [path for path in pods_cgroups if path.exists()] == []
    assert json.loads(running.cli("lab", "status", "--json").stdout)["up"] is False


@dataclass
class CpuStatSampler:
    """cpu.stat of one cgroup, read every 20 ms with the wall-clock time of each read."""

    path: Path
    samples: list[tuple[float, int, int]] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            stat = dict(line.split() for line in (self.path / "cpu.stat").read_text().splitlines())
            self.samples.append((time.time(), int(stat["nr_periods"]), int(stat["nr_throttled"])))
            time.sleep(0.02)

    def percent_between(self, start: float, end: float) -> float:
        def at(moment: float) -> tuple[float, int, int]:
            return min(self.samples, key=lambda sample: abs(sample[0] - moment))

        _, periods_0, throttled_0 = at(start)
        _, periods_1, throttled_1 = at(end)
        return 100.0 * (throttled_1 - throttled_0) / (periods_1 - periods_0)


def wait_for(what: str, check: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def container_cgroup(lab: Lab, pod_name: str) -> Path:
    (container,) = lab.pod(pod_name)["containers"]
    return CPU_ROOT / container["cgroup"].lstrip("/")


def test_throttled_pod_gets_a_kernel_whisper_matching_cpu_stat(lab: Lab) -> None:
    applied = lab.cli("lab", "pods", "apply", "-f", str(PODS / "busy-loop.yaml"))
    assert applied.returncode == 0, applied.stderr
    sampler = CpuStatSampler(container_cgroup(lab, "busy-loop"))
    thread = threading.Thread(target=sampler.run, daemon=True)
    thread.start()
    sampling_since = time.time()

    def fresh_whisper() -> dict[str, Any] | None:
        whisper = get_resource(lab.api, OPERATOR_NAMESPACE, "kernelwhispers", "busy-loop-kw")
        if whisper is None:
            return None
        observed = datetime.fromisoformat(whisper["spec"]["observedAt"]).timestamp()
        window = whisper["spec"]["kernelTruth"]["windowSeconds"]
        return whisper if observed - window > sampling_since + 0.1 else None

    whisper = wait_for("busy-loop-kw over a sampled window", fresh_whisper, timeout=90)
    sampler.stop.set()
    thread.join()
    truth = whisper["spec"]["kernelTruth"]
    observed = datetime.fromisoformat(whisper["spec"]["observedAt"]).timestamp()
    expected = sampler.percent_between(observed - truth["windowSeconds"], observed)
    assert abs(truth["throttledPercent"] - expected) <= 2.0
    assert truth["cpuLimitCores"] == pytest.approx(0.2)
    assert truth["nrPeriods"] == pytest.approx(truth["windowSeconds"] * 10, abs=3)
    assert whisper["spec"]["podName"] == "busy-loop"
    assert whisper["spec"]["podNamespace"] == "default"
    assert whisper["status"]["severity"] == "critical"
    assert whisper["status"]["recommendations"]


def test_new_pod_gets_a_birth_certificate(lab: Lab) -> None:
    applied = lab.cli("lab", "pods", "apply", "-f", str(PODS / "nginx-monitored.yaml"))
    assert applied.returncode == 0, applied.stderr
    uid = lab.pod("nginx-monitored")["uid"]

    def complete_certificate() -> dict[str, Any] | None:
        """The pod's certificate once it holds both births (sandbox and nginx): a loaded
        node may report the sandbox first and refine the certificate when nginx starts."""
        cert = get_resource(
            lab.api, OPERATOR_NAMESPACE, "podbirthcertificates", "nginx-monitored-cert"
        )
        phases = {step["name"] for step in cert["spec"]["syscallTimeline"]} if cert else set()
        return cert if "c1-entrypoint-exec" in phases else None

    cert = wait_for("nginx-monitored-cert with both births", complete_certificate)
    spec = cert["spec"]
    assert spec["podUid"] == uid
    assert spec["podNamespace"] == "default"
    assert {"mnt", "uts", "ipc", "pid"} <= set(spec["namespacesCreated"])
    assert spec["totalSyscalls"] == sum(step["count"] for step in spec["syscallTimeline"])
    assert spec["totalSyscalls"] >= sum(spec["syscalls"].values()) > 0
    phases = [step["name"] for step in spec["syscallTimeline"]]
    assert "c0-entrypoint-exec" in phases  # the sandbox's pause
    assert "c1-entrypoint-exec" in phases  # nginx
    assert spec["execs"] >= 2
    assert spec["mounts"] > 0
    assert spec["cgroupWrites"] > 0
    assert 0 < spec["durationMs"] < 60_000
    assert cert["status"]["summary"]


def test_operator_outage_loses_and_duplicates_nothing(lab: Lab) -> None:
    """busy-loop keeps signalling (test order: it runs since the first test)."""
    wait_for(
        "the first readings",
        lambda: get_resource(lab.api, OPERATOR_NAMESPACE, "kernelwhispers", "busy-loop-kw"),
    )
    delivered_before = lab.agent_metric("kernel_gossip_agent_delivered")
    operator_pid = int((lab.dir / "operator.pid").read_text())
    os.kill(operator_pid, 15)
    outage_start = time.time()
    time.sleep(OUTAGE_SECONDS)
    spooled = lab.agent_metric("kernel_gossip_agent_spool_depth")
    assert spooled >= OUTAGE_SECONDS / AGENT_INTERVAL_SECONDS - 2
    restarted = lab.cli("lab", "up")
    assert restarted.returncode == 0, restarted.stderr
    outage_end = time.time()
    wait_for("the spool to drain", lambda: lab.agent_metric("kernel_gossip_agent_spool_depth") == 0)
    delivered = lab.agent_metric("kernel_gossip_agent_delivered") - delivered_before
    assert delivered >= spooled
    assert lab.agent_metric("kernel_gossip_agent_spool_dropped") == 0

    whispers = [
        w
        for w in list_resources(lab.api, OPERATOR_NAMESPACE, "kernelwhispers")
        if w["spec"]["podName"] == "busy-loop"
    ]
    assert [w["metadata"]["name"] for w in whispers] == ["busy-loop-kw"]  # no extra CR
    history = [
        datetime.fromisoformat(reading["observedAt"]).timestamp()
        for reading in whispers[0]["status"]["history"]
    ]
    assert history == sorted(set(history))  # in order, nothing twice
    during = [moment for moment in history if outage_start <= moment <= outage_end]
    assert len(during) >= spooled - 1  # the readings taken while the operator was down
    gaps = [later - earlier for earlier, later in itertools.pairwise(history)]
    assert max(gaps) < 2.5 * AGENT_INTERVAL_SECONDS  # no window missing in between
