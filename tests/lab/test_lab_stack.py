"""The whole lab on this machine: `lab up`, real pods, the agent, the operator, `lab down`.

The agent's figures are compared with the container's own cpu.stat, sampled here every
20 ms while the agent measures, for a pod throttled in every period and for a bursty one
(about half its periods); delivery is checked across an operator outage that lasts until
the agent has spooled a set number of readings.
"""

import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from cpu_stat_sampler import WindowTruth, whisper_over_sampled_window
from lab_workloads import BURSTY_CONTAINER, bursty_pod
from operator_harness import get_resource, list_resources

from kernel_gossip.host.workload import HALF_THROTTLED
from kernel_gossip.lab.apiserver import LabApi
from kernel_gossip.lab.stack import OPERATOR_NAMESPACE
from kernel_gossip.operator.naming import certificate_name, whisper_name

pytestmark = [pytest.mark.slow, pytest.mark.kernel, pytest.mark.usefixtures("kernel_prereqs")]

CLI = str(Path(sys.executable).with_name("kernel-gossip"))
PODS = Path(__file__).resolve().parents[2] / "lab" / "pods"
CPU_ROOT = Path("/sys/fs/cgroup/cpu")
SPOOLED_DURING_OUTAGE = 4
"""Readings the agent must have spooled before the operator comes back."""


def kw_name(pod: str) -> str:
    """The whisper of a pod of namespace default (`default.<pod>-kw`)."""
    return whisper_name(OPERATOR_NAMESPACE, "default", pod)


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
    api = LabApi.at(lab_dir / "api", status["apiServer"])
    running = Lab(lab_dir, status, api)
    (network,) = lab_dir.rglob("network.json")
    own_bridge = json.loads(network.read_text())["bridge"]  # other labs' come and go
    yield running
    pods_cgroups = [CPU_ROOT / p["cgroupParent"].lstrip("/") for p in running.pods()]
    assert pods_cgroups  # the tests applied pods: their removal is checked below
    down = subprocess.run(
        [CLI, "lab", "down"], capture_output=True, text=True, timeout=300, env=env
    )
    assert down.returncode == 0, down.stderr
    assert lab_processes(lab_dir) == []
    assert own_bridge not in bridges()
    assert mounts_under(lab_dir) == []
    assert [path for path in pods_cgroups if path.exists()] == []
    assert json.loads(running.cli("lab", "status", "--json").stdout)["up"] is False


def wait_for(what: str, check: Any, timeout: float = 60.0) -> Any:
    """Polls `check`; a connection refused or reset on the way (a loaded host, a process
    restarting) is retried until the timeout, then reported with the wait."""
    deadline = time.monotonic() + timeout
    last_error: OSError | None = None
    while time.monotonic() < deadline:
        try:
            found = check()
        except OSError as error:
            last_error, found = error, None
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what} (last error: {last_error})")


def container_cgroup(lab: Lab, pod_name: str, container: str | None = None) -> str:
    """The cgroup of the pod's container of that name (or of its only container)."""
    containers = lab.pod(pod_name)["containers"]
    (found,) = [c for c in containers if container in (None, c["name"])]
    cgroup: str = found["cgroup"]
    return cgroup


def apply(lab: Lab, manifest: Path) -> None:
    applied = lab.cli("lab", "pods", "apply", "-f", str(manifest))
    assert applied.returncode == 0, applied.stderr


@pytest.fixture(scope="module")
def busy_loop(lab: Lab) -> str:
    """busy-loop, throttled in every period, for every test that needs readings."""
    apply(lab, PODS / "busy-loop.yaml")
    return "busy-loop"


@pytest.fixture(scope="module")
def bursty(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> str:
    manifest = tmp_path_factory.mktemp("bursty") / "bursty.yaml"
    manifest.write_text(yaml.safe_dump(bursty_pod("bursty", "default")))
    apply(lab, manifest)
    return "bursty"


def sampled_whisper(
    lab: Lab, pod: str, container: str | None = None
) -> tuple[dict[str, Any], WindowTruth]:
    return whisper_over_sampled_window(
        container_cgroup(lab, pod, container),
        lambda: get_resource(
            lab.api,
            OPERATOR_NAMESPACE,
            "kernelwhispers",
            whisper_name(OPERATOR_NAMESPACE, "default", pod),
        ),
    )


def expected_severity(percent: float) -> str:
    """The README's rule (kubernetes-mixin's CPUThrottlingHigh): warning from 25%,
    critical from 50% of periods throttled."""
    return "critical" if percent >= 50 else "warning" if percent >= 25 else "info"


def test_throttled_pod_gets_a_kernel_whisper_matching_cpu_stat(lab: Lab, busy_loop: str) -> None:
    whisper, expected = sampled_whisper(lab, busy_loop)
    truth = whisper["spec"]["kernelTruth"]
    assert abs(truth["throttledPercent"] - expected.throttled_percent) <= 2.0
    assert truth["cpuUsageCores"] == pytest.approx(expected.usage_cores, rel=0.03, abs=0.005)
    assert truth["cpuLimitCores"] == pytest.approx(0.2)
    assert truth["nrPeriods"] == pytest.approx(truth["windowSeconds"] * 10, abs=3)
    assert whisper["spec"]["podName"] == "busy-loop"
    assert whisper["spec"]["podNamespace"] == "default"
    assert whisper["status"]["severity"] == expected_severity(truth["throttledPercent"])
    assert whisper["status"]["recommendations"]


def test_bursty_pod_is_throttled_in_part_of_its_periods_as_cpu_stat_says(
    lab: Lab, bursty: str
) -> None:
    whisper, expected = sampled_whisper(lab, bursty, BURSTY_CONTAINER)
    truth = whisper["spec"]["kernelTruth"]
    percent = expected.throttled_percent
    assert 30 <= percent <= 70, f"not bursty: cpu.stat counted {percent:.1f}% throttled"
    assert abs(truth["throttledPercent"] - percent) <= 2.0
    assert truth["cpuUsageCores"] == pytest.approx(expected.usage_cores, rel=0.03, abs=0.005)
    assert truth["cpuLimitCores"] == pytest.approx(HALF_THROTTLED.limit_cores)
    assert whisper["status"]["severity"] == expected_severity(truth["throttledPercent"])


def test_new_pod_gets_a_birth_certificate(lab: Lab) -> None:
    applied = lab.cli("lab", "pods", "apply", "-f", str(PODS / "nginx-monitored.yaml"))
    assert applied.returncode == 0, applied.stderr
    uid = lab.pod("nginx-monitored")["uid"]

    def complete_certificate() -> dict[str, Any] | None:
        """The pod's certificate once it holds both births (sandbox and nginx) and its
        status: a loaded node may report the sandbox first and refine the certificate when
        nginx starts, and the operator writes the status subresource after the spec."""
        cert = get_resource(
            lab.api,
            OPERATOR_NAMESPACE,
            "podbirthcertificates",
            certificate_name(OPERATOR_NAMESPACE, "default", "nginx-monitored"),
        )
        phases = {step["name"] for step in cert["spec"]["syscallTimeline"]} if cert else set()
        return cert if "c1-entrypoint-exec" in phases and "status" in cert else None

    cert = wait_for(
        "default.nginx-monitored-cert with both births and its status",
        complete_certificate,
        timeout=300,
    )
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


def test_operator_outage_loses_and_duplicates_nothing(lab: Lab, busy_loop: str) -> None:
    """busy-loop keeps signalling; the operator stays down until the agent has spooled
    SPOOLED_DURING_OUTAGE readings, and each of them is in the history afterwards."""
    wait_for(
        "the first readings",
        lambda: get_resource(
            lab.api,
            OPERATOR_NAMESPACE,
            "kernelwhispers",
            whisper_name(OPERATOR_NAMESPACE, "default", busy_loop),
        ),
    )
    delivered_before = lab.agent_metric("kernel_gossip_agent_delivered")
    operator_pid = int((lab.dir / "operator.pid").read_text())
    os.kill(operator_pid, 15)
    outage_start = time.time()
    wait_for(
        f"{SPOOLED_DURING_OUTAGE} spooled readings",
        lambda: lab.agent_metric("kernel_gossip_agent_spool_depth") >= SPOOLED_DURING_OUTAGE,
        timeout=180,
    )
    restarted = lab.cli("lab", "up")
    assert restarted.returncode == 0, restarted.stderr
    wait_for("the spool to drain", lambda: lab.agent_metric("kernel_gossip_agent_spool_depth") == 0)
    delivered = lab.agent_metric("kernel_gossip_agent_delivered") - delivered_before
    assert delivered >= SPOOLED_DURING_OUTAGE
    assert lab.agent_metric("kernel_gossip_agent_spool_dropped") == 0

    whispers = list_resources(lab.api, OPERATOR_NAMESPACE, "kernelwhispers")
    names = [w["metadata"]["name"] for w in whispers]
    assert names.count(kw_name(busy_loop)) == 1  # no extra CR
    taken_since = 0
    for whisper in whispers:  # the spool holds the readings of every throttled pod
        history = [
            datetime.fromisoformat(reading["observedAt"]).timestamp()
            for reading in whisper["status"]["history"]
        ]
        assert history == sorted(set(history)), whisper["metadata"]["name"]  # nothing twice
        taken_since += sum(moment >= outage_start for moment in history)
    assert taken_since >= SPOOLED_DURING_OUTAGE  # every reading taken while it was down
