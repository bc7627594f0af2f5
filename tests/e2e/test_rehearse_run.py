"""`kernel-gossip rehearse` on the real lab: the report's numbers are the cluster's numbers
(CRs read back through the API, the container's cpu.stat samples it holds), its pictures are
PNGs at slide size, and each verdict is computed: without the agent the birth demo fails,
without the operator the webhook demo does."""

import json
import struct
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import Require
from kernel_gossip.kube.client import KubeClient
from kernel_gossip.lab import stack
from kernel_gossip.paths import REPO_DIR

pytestmark = [pytest.mark.slow, pytest.mark.kernel]
NAMESPACE = "kernel-gossip"
CR_PATH = f"/apis/kernel-gossip.dev/v1alpha1/namespaces/{NAMESPACE}"


@pytest.fixture(scope="module")
def lab(
    require: Require, kernel_prereqs: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """A lab of its own (its own directory, bridge and ports), brought down at the end."""
    directory = tmp_path_factory.mktemp("rehearse-lab")
    environment = {"KERNEL_GOSSIP_LAB_DIR": str(directory)}
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KERNEL_GOSSIP_LAB_DIR", str(directory))
        try:
            stack.up(directory, say=lambda _: None)
            yield {"dir": directory, "env": environment, "status": stack.status(directory)}
        finally:
            stack.down(directory, say=lambda _: None)


def rehearse(lab: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kernel_gossip", "rehearse", *args],
        cwd=REPO_DIR,
        env={"PATH": "/usr/bin:/bin", "HOME": "/root", **lab["env"]},
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", path
    width, height = struct.unpack(">II", header[16:24])
    return width, height


def test_rehearsal_report_holds_the_clusters_numbers(lab: dict[str, Any], tmp_path: Path) -> None:
    result = rehearse(lab, "--report", str(tmp_path))
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    report = json.loads((tmp_path / "report.json").read_text())
    client = KubeClient(Path(lab["status"]["kubeconfig"]))
    verdicts = report["verdicts"]
    assert set(verdicts) == {"birth", "lie", "webhook", "hpa"}

    birth = verdicts["birth"]["figures"]
    certificate = client.request("GET", f"{CR_PATH}/podbirthcertificates/{birth['name']}")
    for key in ("totalSyscalls", "namespaceOperations", "mounts", "cgroupWrites", "execs"):
        assert birth[key] == certificate["spec"][key], key
    assert (
        f"{certificate['spec']['totalSyscalls']} syscalls" in (tmp_path / "report.md").read_text()
    )

    lie = verdicts["lie"]["figures"]
    whisper = report["evidence"]["lie"]["whisper"]
    assert lie["reportedSource"] == "metrics-api"
    assert lie["throttledPercent"] == whisper["spec"]["kernelTruth"]["throttledPercent"]
    # The kernel's own counters, sampled every second over the demo, cover the whisper's
    # window: its throttled % is the cpu.stat delta over some window of that length.
    samples = report["evidence"]["lie"]["kernelSamples"]
    assert len(samples) >= 10
    window = whisper["spec"]["kernelTruth"]["windowSeconds"]
    deltas = [
        100 * (b["nrThrottled"] - a["nrThrottled"]) / (b["nrPeriods"] - a["nrPeriods"])
        for i, a in enumerate(samples)
        for b in samples[i + 1 :]
        if abs((b["t"] - a["t"]) - window) <= 1.5 and b["nrPeriods"] > a["nrPeriods"]
    ]
    assert deltas, "no cpu.stat samples spanning the whisper's window"
    assert min(abs(d - lie["throttledPercent"]) for d in deltas) <= 10, (deltas, lie)
    assert lie["liesByPoints"] > 0

    webhook = verdicts["webhook"]["figures"]
    assert webhook["httpStatus"] == 202
    live = client.request("GET", f"{CR_PATH}/kernelwhispers/live-demo-kw")
    assert live["spec"]["kernelTruth"]["throttledPercent"] == 78.5
    assert webhook["secondsToReadable"] < 2.0

    hpa = verdicts["hpa"]["figures"]
    held = report["evidence"]["hpa"]["hpa"]
    assert (
        client.request(
            "GET", f"/apis/autoscaling/v2/namespaces/{NAMESPACE}/horizontalpodautoscalers/web"
        )["metadata"]["uid"]
        == held["metadata"]["uid"]
    )
    assert hpa["currentReplicas"] == held["status"]["currentReplicas"]
    assert held["spec"]["minReplicas"] <= hpa["currentReplicas"] <= held["spec"]["maxReplicas"]
    assert hpa["averageUtilization"] == next(
        m["resource"]["current"]["averageUtilization"] for m in held["status"]["currentMetrics"]
    )
    assert hpa["averageUtilization"] < 80  # the HPA sits under its target: it does not act

    for picture in ("metrics-lie.png", "birth-timeline.png", "birth-syscalls.png"):
        assert png_size(tmp_path / picture) == (1280, 720)
    assert (
        "kubectl run test-pod --image=nginx:alpine -n kernel-gossip"
        in (tmp_path / "report.html").read_text()
    )


@pytest.mark.parametrize(("stopped", "moment"), [("agent", "birth"), ("operator", "webhook")])
def test_a_missing_part_fails_its_demo(lab: dict[str, Any], stopped: str, moment: str) -> None:
    where = stack.stack_layout(lab["dir"])
    stack._stop(where, stopped, say=lambda _: None)
    try:
        result = rehearse(lab, "--only", moment)
    finally:
        stack.up(lab["dir"], say=lambda _: None)
    assert result.returncode == 1, result.stdout[-3000:]
    assert f"[FAILED] {moment}:" in result.stdout
    assert f"kernel-gossip rehearse: failed: {moment}" in result.stderr
