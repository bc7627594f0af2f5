"""The webhook payload models: the talk's body, every figure mapped, every bad body refused."""

import ast
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from signal_strategies import (
    BIRTH,
    TALK_CURL_BODY,
    THROTTLE_FULL,
    BadRequest,
    bad_bodies,
    throttle_signals,
)

from kernel_gossip.schema.report import ContainerCpuTruth
from kernel_gossip.schema.resources import KernelTruth
from kernel_gossip.schema.signal import (
    CpuThrottlePayload,
    PodCreationPayload,
    birth_certificate_spec,
    human_duration,
    kernel_truth,
    parse_signal,
)


def test_the_talk_curl_body_validates_as_is() -> None:
    signal = parse_signal(TALK_CURL_BODY)
    assert isinstance(signal, CpuThrottlePayload)
    assert (signal.pod_name, signal.namespace, signal.container_name) == (
        "live-demo",
        "kernel-gossip",
        "app",
    )
    assert signal.throttle_percentage == 78.5
    assert signal.timestamp == datetime(2025, 8, 25, 11, 0, tzinfo=UTC)
    truth = kernel_truth(signal)
    assert truth.throttled_percent == 78.5
    assert truth.cpu_usage_cores == 1.5
    assert truth.window_seconds == 60


def test_every_throttle_figure_reaches_kernel_truth() -> None:
    signal = parse_signal(json.dumps(THROTTLE_FULL))
    assert isinstance(signal, CpuThrottlePayload)
    truth = kernel_truth(signal).model_dump()
    expected = {
        "window_seconds": THROTTLE_FULL["period_seconds"],
        "pod_uid": THROTTLE_FULL["pod_uid"],
        "cpu_limit_cores": THROTTLE_FULL["cpu_limit_cores"],
        "cpu_usage_cores": THROTTLE_FULL["actual_cpu_usage"],
        "nr_periods": THROTTLE_FULL["nr_periods"],
        "nr_throttled": THROTTLE_FULL["nr_throttled"],
        "throttled_percent": THROTTLE_FULL["throttle_percentage"],
        "throttled_seconds": THROTTLE_FULL["throttled_seconds"],
        "runqueue_latency_p50_us": THROTTLE_FULL["runqueue_latency_p50_us"],
        "runqueue_latency_p99_us": THROTTLE_FULL["runqueue_latency_p99_us"],
        "involuntary_switches": THROTTLE_FULL["involuntary_switches"],
    }
    assert {k: truth[k] for k in expected} == expected


def test_the_container_it_names_reaches_kernel_truth() -> None:
    named = {"cgroup_path": "/kubepods/pod1/abc", "container_id": "abc", "runtime": "containerd"}
    signal = parse_signal(json.dumps({**THROTTLE_FULL, **named}))
    assert isinstance(signal, CpuThrottlePayload)
    truth = kernel_truth(signal)
    assert (truth.cgroup_path, truth.container_id, truth.runtime) == tuple(named.values())


def test_the_optional_throttle_figures_are_the_observe_figures() -> None:
    """The agent sends what `observe` measured: each observe figure has a payload field."""
    observe_fields = set(ContainerCpuTruth.model_fields) - {
        "cgroup_path",
        "container_id",
        "runtime",
        "cpu_usage_cores",
        "throttled_percent",
    }
    assert observe_fields <= set(CpuThrottlePayload.model_fields)
    assert set(KernelTruth.model_fields) >= observe_fields


def test_birth_payload_maps_every_figure() -> None:
    signal = parse_signal(json.dumps(BIRTH))
    assert isinstance(signal, PodCreationPayload)
    spec = birth_certificate_spec(signal)
    start = datetime(2025, 8, 25, 10, 30, tzinfo=UTC)
    assert spec.node is None
    noded = parse_signal(json.dumps({**BIRTH, "node": "worker-1"}))
    assert isinstance(noded, PodCreationPayload)
    assert birth_certificate_spec(noded).node == "worker-1"
    assert spec.pod_name == BIRTH["pod_name"]
    assert spec.pod_namespace == BIRTH["namespace"]
    assert spec.pod_uid == BIRTH["pod_uid"]
    assert spec.started_at == start
    assert spec.total_syscalls == BIRTH["total_syscalls"]
    assert spec.syscalls == BIRTH["syscalls"]
    assert spec.namespace_operations == BIRTH["namespace_ops"]
    assert spec.namespaces_created == BIRTH["namespaces_created"]
    assert (spec.mounts, spec.cgroup_writes, spec.execs) == (23, 42, 3)
    assert spec.duration_ms == BIRTH["duration_ms"]
    assert spec.duration == "2.5s"
    assert [(e.name, e.timestamp, e.count) for e in spec.syscall_timeline] == [
        (step["phase"], start + timedelta(milliseconds=step["offset_ms"]), step["count"])
        for step in BIRTH["timeline"]
    ]


@pytest.mark.parametrize(
    ("milliseconds", "text"),
    [
        (0, "0ms"),
        (849.6, "850ms"),
        (999.4, "999ms"),
        (1000, "1s"),
        (2512.4, "2.5s"),
        (61_000, "61s"),
    ],
)
def test_human_duration(milliseconds: float, text: str) -> None:
    assert human_duration(milliseconds) == text


def _refused(body: bytes) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        parse_signal(body)
    return caught.value


@settings(max_examples=1500, suppress_health_check=[HealthCheck.too_slow])
@given(bad_bodies)
def test_every_bad_body_is_refused(bad: BadRequest) -> None:
    assert _refused(bad.body).errors()


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("throttle_percentage", "78.5"),
        ("throttle_percentage", True),
        ("nr_periods", 150.5),
        ("timestamp", 1756119600),
        ("pod_name", "Live-Demo"),
        ("namespace", "a" * 64),
        ("throttle_percentage", 100.0001),
        ("actual_cpu_usage", -0.001),
        ("cpu_limit_cores", 2.2e-313),
        ("cpu_limit_cores", 0.0),
        ("period_seconds", 0),
        ("nr_throttled", 151),
        ("runqueue_latency_p50_us", 6000.0),
        ("throttle_percentage", 41.0),
    ],
)
def test_throttle_fields_are_checked(field: str, value: Any) -> None:
    _refused(json.dumps({**THROTTLE_FULL, field: value}).encode())


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("syscalls", {"openat": 2000}),
        ("syscalls", {"Open At": 1}),
        ("namespaces_created", ["mnt", "mnt"]),
        ("namespaces_created", ["docker"]),
        ("timeline", [{"phase": "x", "offset_ms": -1, "count": 1}]),
        ("timeline", [{"phase": "x", "offset_ms": 1}]),
        ("pod_uid", "../etc"),
    ],
)
def test_birth_fields_are_checked(field: str, value: Any) -> None:
    _refused(json.dumps({**BIRTH, field: value}).encode())


def test_nan_and_infinity_are_refused() -> None:
    for token in ("NaN", "Infinity", "-Infinity", "1e999"):
        body = TALK_CURL_BODY.replace("78.5", token)
        assert _refused(body.encode()).errors()[0]["type"] in {"finite_number", "json_invalid"}


finite = st.floats(min_value=0, max_value=1000, allow_nan=False)


@given(
    percent=st.floats(min_value=0, max_value=100),
    usage=finite,
    reported=finite,
    window=st.floats(min_value=0.001, max_value=86_400),
    when=st.datetimes(
        min_value=datetime(1971, 1, 1), max_value=datetime(8999, 1, 1), timezones=st.just(UTC)
    ),
)
def test_any_in_range_throttle_signal_is_accepted(
    percent: float, usage: float, reported: float, window: float, when: datetime
) -> None:
    body = {
        **json.loads(TALK_CURL_BODY),
        "throttle_percentage": percent,
        "actual_cpu_usage": usage,
        "reported_cpu_usage": reported,
        "period_seconds": window,
        "timestamp": when.isoformat(),
    }
    signal = parse_signal(json.dumps(body))
    assert isinstance(signal, CpuThrottlePayload)
    assert kernel_truth(signal).throttled_percent == percent


@given(
    offsets=st.lists(st.floats(min_value=0, max_value=86_400_000), max_size=20),
    when=st.datetimes(
        min_value=datetime(1971, 1, 1), max_value=datetime(8999, 1, 1), timezones=st.just(UTC)
    ),
)
def test_timeline_timestamps_are_start_plus_offset(offsets: list[float], when: datetime) -> None:
    timeline = [{"phase": f"p{i}", "offset_ms": o, "count": i} for i, o in enumerate(offsets)]
    body = {**BIRTH, "timeline": timeline, "timestamp": when.isoformat()}
    signal = parse_signal(json.dumps(body))
    assert isinstance(signal, PodCreationPayload)
    spec = birth_certificate_spec(signal)
    for entry, offset in zip(spec.syscall_timeline, offsets, strict=True):
        assert entry.timestamp - spec.started_at == timedelta(milliseconds=offset)


@given(throttle_signals())
def test_generated_valid_signals_validate_and_map(document: dict[str, Any]) -> None:
    signal = parse_signal(json.dumps(document))
    assert isinstance(signal, CpuThrottlePayload)
    truth = kernel_truth(signal)
    assert truth.throttled_percent == document["throttle_percentage"]
    assert truth.nr_periods == document.get("nr_periods")


def _is_false(keyword: ast.keyword, name: str) -> bool:
    return (
        keyword.arg == name and isinstance(keyword.value, ast.Constant) and not keyword.value.value
    )


def test_every_json_write_refuses_non_finite_numbers() -> None:
    """json.dumps writes NaN and Infinity, which no JSON parser (nor the API server) takes:
    every call in kernel_gossip passes allow_nan=False, so such a figure raises instead."""
    package = Path(__file__).resolve().parents[2] / "kernel_gossip"
    careless = []
    for source in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(source.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "dumps"
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id == "json"
                and not any(
                    k.arg == "allow_nan"
                    and isinstance(k.value, ast.Constant)
                    and k.value.value is False
                    for k in node.keywords
                )
            ):
                careless.append(f"{source.relative_to(package)}:{node.lineno}")
    assert careless == []
