"""The rehearsal's pure parts: verdicts over pinned evidence, kubectl output parsing, the
birth timeline's bars, per-second throttling from cpu.stat samples, the report's files."""

import json
import struct
from pathlib import Path
from typing import Any

import pytest

from kernel_gossip.rehearse import moments
from kernel_gossip.rehearse.demos import DemoResult
from kernel_gossip.rehearse.report import throttled_per_second, write_report
from kernel_gossip.rehearse.terminal import Step


def certificate(**spec: Any) -> dict[str, Any]:
    base = {
        "podName": "test-pod",
        "node": "lab",
        "startedAt": "2026-12-02T10:00:00.000000Z",
        "totalSyscalls": 5263,
        "syscalls": {"read": 900, "mmap": 300, "openat": 1200, "close": 800},
        "namespaceOperations": 6,
        "namespacesCreated": ["mnt", "uts", "ipc", "pid"],
        "mounts": 102,
        "cgroupWrites": 54,
        "execs": 8,
        "durationMs": 117.0,
        "syscallTimeline": [
            {"name": "c0-runtime-start", "timestamp": "2026-12-02T10:00:00.000000Z", "count": 10},
            {"name": "c0-entrypoint-exec", "timestamp": "2026-12-02T10:00:00.040000Z", "count": 5},
            {"name": "c1-runtime-start", "timestamp": "2026-12-02T10:00:00.050000Z", "count": 20},
            {"name": "c1-mounts", "timestamp": "2026-12-02T10:00:00.080000Z", "count": 30},
        ],
    }
    return {"metadata": {"name": "test-pod-cert"}, "spec": base | spec}


def whisper(throttled: float, percent_of_limit: float | None, source: str = "metrics-api",
            actions: tuple[str, ...] = ()) -> dict[str, Any]:  # fmt: skip
    return {
        "spec": {
            "podName": "bursty-worker",
            "kernelTruth": {"throttledPercent": throttled, "cpuLimitCores": 0.2, "nrPeriods": 150},
        },
        "status": {
            "severity": "critical",
            "recommendation": "raise the limit",
            "reportedUsage": {"source": source, "cores": 0.05, "percentOfLimit": percent_of_limit},
            "recommendations": [
                {"action": a, "reason": "r", "suggestedValue": "4"} for a in actions
            ],
        },
    }


def test_birth_verdict_states_the_kernel_figures() -> None:
    verdict = moments.birth_verdict(certificate(), 3.25, 180)
    assert verdict.ok
    assert (
        "5263 syscalls, 6 namespace operations, 102 mounts, 8 execs in 117 ms over 2 "
        in verdict.line
    )
    assert "3.2 s after `kubectl run`" in verdict.line
    assert verdict.figures["totalSyscalls"] == 5263


def test_birth_verdict_fails_without_a_certificate_or_with_an_empty_one() -> None:
    missing = moments.birth_verdict(None, None, 180)
    assert not missing.ok
    assert "no PodBirthCertificate within 180 s" in missing.line
    assert not moments.birth_verdict(certificate(totalSyscalls=0), 1.0, 180).ok


@pytest.mark.parametrize(
    ("output", "millicores"),
    [
        ("NAME            CPU(cores)   MEMORY(bytes)\nbursty-worker   47m          1Mi\n", 47),
        ("NAME   CPU(cores)   MEMORY(bytes)\nweb    1            3Mi\n", None),
        ("NAME   CPU(cores)   MEMORY(bytes)\nbursty-worker   2   3Mi\n", 2000),
        ("error: Metrics API not available\n", None),
        ("NAME   CPU(cores)\nbursty-worker   garbage\n", None),
    ],
)
def test_parse_top_millicores(output: str, millicores: int | None) -> None:
    assert moments.parse_top_millicores(output, "bursty-worker") == millicores


def test_the_lie_is_the_gap_between_two_real_sources() -> None:
    verdict = moments.lie_verdict(whisper(86.7, 23.5), 47)
    assert verdict.ok
    assert verdict.figures["liesByPoints"] == 63.2
    assert "Metrics API: 24% of the 0.2 core limit (kubectl top: 47m)" in verdict.line
    assert "kernel: 86.7% of 150 CFS periods throttled" in verdict.line


@pytest.mark.parametrize(
    ("evidence", "says"),
    [
        (whisper(86.7, 23.5, source="payload"), "not the Metrics API"),
        (whisper(20.0, 40.0), "no lie measured"),
        (whisper(50.0, None), "lacks the throttling or the limit"),
        (None, "no KernelWhisper"),
    ],
)
def test_no_lie_without_both_sources_and_a_gap(evidence: Any, says: str) -> None:
    verdict = moments.lie_verdict(evidence, 47)
    assert not verdict.ok
    assert says in verdict.line


def test_webhook_verdict_against_the_talks_two_seconds() -> None:
    fast = moments.webhook_verdict(202, 0.031, whisper(78.5, 40))
    assert fast.ok
    assert "in 31 ms (within the talk's < 2 s)" in fast.line
    slow = moments.webhook_verdict(202, 2.5, whisper(78.5, 40))
    assert not slow.ok
    assert "OVER" in slow.line
    assert not moments.webhook_verdict(None, None, None).ok
    assert "answered nothing" in moments.webhook_verdict(None, None, None).line
    assert "answered 401" in moments.webhook_verdict(401, None, None).line
    assert not moments.webhook_verdict(202, None, None).ok


def test_scale_out_whisper_is_found_wherever_it_is_listed() -> None:
    listed = [whisper(10, 5), whisper(90, 40, actions=("raise_cpu_limit", "scale_out_replicas"))]
    assert moments.scale_out_whisper(listed) == 1
    assert moments.scale_out_whisper(listed[:1]) is None
    assert (
        moments.jsonpath_for("web-1") == '{.items[?(@.spec.podName=="web-1")]'
        '.status.recommendations[?(@.action=="scale_out_replicas")].reason}'
    )


def test_hpa_verdict_names_the_hpa_figure_and_the_advice() -> None:
    hpa = {
        "metadata": {"name": "web"},
        "spec": {"metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
            "type": "Utilization", "averageUtilization": 80}}}]},
        "status": {
            "currentReplicas": 2,
            "desiredReplicas": 2,
            "currentMetrics": [
                {"type": "Resource",
                 "resource": {"name": "cpu", "current": {"averageUtilization": 41}}}
            ],
        },
    }  # fmt: skip
    advised = whisper(88, 40, actions=("scale_out_replicas",))
    verdict = moments.hpa_verdict(hpa, [whisper(10, 5), advised])
    assert verdict.ok
    assert "HPA: 2 replicas at 41% average utilization (target 80%)" in verdict.line
    assert "advice scale_out_replicas to 4" in verdict.line
    assert verdict.figures["whisperIndex"] == 1
    assert not moments.hpa_verdict(hpa, [whisper(10, 5)]).ok
    assert not moments.hpa_verdict(None, [advised]).ok
    above = json.loads(json.dumps(hpa))
    above["status"]["currentMetrics"][0]["resource"]["current"]["averageUtilization"] = 121
    assert "121% against its 80% target" in moments.hpa_verdict(above, [advised]).line
    assert not moments.hpa_verdict(above, [advised]).ok
    unknown = {"metadata": {"name": "web"}, "status": {"currentMetrics": [{"type": ""}]}}
    assert moments.hpa_utilization(unknown) is None
    assert "no CPU utilization" in moments.hpa_verdict(unknown, [advised]).line


def test_birth_bars_last_until_the_next_phase_of_the_same_container() -> None:
    bars = moments.birth_bars(certificate())
    assert [(b.container, b.phase, b.start_ms, b.end_ms, b.count) for b in bars] == [
        ("c0", "runtime-start", 0.0, 40.0, 10),
        ("c0", "entrypoint-exec", 40.0, 40.0, 5),
        ("c1", "runtime-start", 50.0, 80.0, 20),
        ("c1", "mounts", 80.0, 80.0, 30),
    ]
    assert moments.births_in(certificate()) == 2
    single = certificate(syscallTimeline=[
        {"name": "runtime-start", "timestamp": "2026-12-02T10:00:00Z", "count": 3}
    ])  # fmt: skip
    assert moments.births_in(single) == 1
    assert moments.birth_bars(single)[0].container == "c0"
    assert moments.births_in(certificate(syscallTimeline=[])) == 0


def test_top_syscalls_most_first_then_by_name() -> None:
    assert moments.top_syscalls(certificate(), 3) == [
        ("openat", 1200),
        ("read", 900),
        ("close", 800),
    ]


def test_throttled_per_second_from_counter_deltas() -> None:
    samples = [
        {"t": 0.0, "nrPeriods": 100.0, "nrThrottled": 40.0},
        {"t": 1.0, "nrPeriods": 110.0, "nrThrottled": 47.0},
        {"t": 2.0, "nrPeriods": 110.0, "nrThrottled": 47.0},  # idle: no period elapsed
        {"t": 3.0, "nrPeriods": 115.0, "nrThrottled": 48.0},
    ]
    assert throttled_per_second(samples) == [(1.0, 70.0), (3.0, 20.0)]


def png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


def test_report_files_and_pictures_at_slide_size(tmp_path: Path) -> None:
    lie = whisper(86.7, 23.5)
    lie["status"]["history"] = [{"observedAt": "2026-12-02T10:00:05Z", "throttledPercent": 86.7}]
    results = {
        "birth": DemoResult(moments.birth_verdict(certificate(), 3.2, 180),
                            {"certificate": certificate()}),
        "lie": DemoResult(moments.lie_verdict(lie, 47), {
            "whisper": lie,
            "kernelSamples": [{"t": 1796205600.0 + i, "nrPeriods": 10.0 * i,
                               "nrThrottled": 8.0 * i} for i in range(5)],
            "metricsSamples": [{"timestamp": "2026-12-02T10:00:03Z", "window": "15s",
                                "cores": 0.047}],
        }),
    }  # fmt: skip
    steps = [Step("birth", "kubectl run test-pod --image=nginx:alpine -n kernel-gossip",
                  "pod/test-pod created", 0, "2026-12-02T10:00:00+00:00", 0.21)]  # fmt: skip
    write_report(tmp_path, results, steps, "a test")
    for name in ("metrics-lie.png", "birth-timeline.png", "birth-syscalls.png"):
        assert png_size(tmp_path / name) == (1280, 720)
    markdown = (tmp_path / "report.md").read_text()
    assert "kubectl run test-pod --image=nginx:alpine -n kernel-gossip" in markdown
    assert "pod/test-pod created" in markdown
    assert results["lie"].verdict.line in markdown
    assert "base64," in (tmp_path / "report.html").read_text()


@pytest.mark.parametrize(
    ("window", "seconds"), [("15s", 15.0), ("15.004s", 15.004), ("1m0s", 60.0), ("1h2m3s", 3723.0)]
)
def test_window_seconds_reads_go_durations(window: str, seconds: float) -> None:
    assert moments.window_seconds(window) == pytest.approx(seconds)
