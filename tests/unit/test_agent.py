"""The agent's pure decisions, its spool, and its delivery to a real HTTP peer on loopback."""

import json
import socket
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from kernel_gossip.agent.daemon import BIRTH_MAPPING_ATTEMPTS, PendingPods
from kernel_gossip.agent.delivery import (
    AgentMetrics,
    Delivery,
    Endpoint,
    Outcome,
    next_backoff,
    settle,
)
from kernel_gossip.agent.signals import (
    PodRef,
    ThrottleTracker,
    pod_creation_payload,
    throttle_payload,
)
from kernel_gossip.agent.spool import Spool
from kernel_gossip.core.births import PodBirth
from kernel_gossip.schema.report import ContainerBirth, ContainerCpuTruth
from kernel_gossip.schema.signal import parse_signal

UID = "5b0c3a8e-1d2f-4e6a-9b7c-0a1b2c3d4e5f"
POD = PodRef("nginx-monitored", "default", UID, "nginx")
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


# --- spool -------------------------------------------------------------------------------


def test_spool_keeps_order_until_acked(tmp_path: Path) -> None:
    spool = Spool(tmp_path, capacity=10)
    for index in range(5):
        spool.put(f"signal {index}".encode())
    taken = spool.peek(3)
    assert [item.body for item in taken] == [b"signal 0", b"signal 1", b"signal 2"]
    spool.ack(taken[0].sequence)
    assert spool.peek(1)[0].body == b"signal 1"
    assert len(spool) == 4


def test_full_spool_drops_the_oldest_and_counts(tmp_path: Path) -> None:
    spool = Spool(tmp_path, capacity=3)
    for index in range(7):
        spool.put(str(index).encode())
    assert [item.body for item in spool.peek(10)] == [b"4", b"5", b"6"]
    assert spool.dropped == 4


def test_spool_survives_a_restart_in_order(tmp_path: Path) -> None:
    first = Spool(tmp_path, capacity=100)
    for index in range(3):
        first.put(str(index).encode())
    (tmp_path / "00000000000000000099.tmp").write_bytes(b"half a sig")  # crash mid-write
    second = Spool(tmp_path, capacity=100)
    second.put(b"3")
    assert [item.body for item in second.peek(10)] == [b"0", b"1", b"2", b"3"]
    assert not list(tmp_path.glob("*.tmp"))


def test_spool_capacity_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least one"):
        Spool(tmp_path, capacity=0)


# --- decisions ---------------------------------------------------------------------------


def test_tracker_reports_while_over_and_once_when_it_clears() -> None:
    tracker = ThrottleTracker(25.0)
    decisions = [tracker.should_report("c1", pct) for pct in (10, 30, 80, 20, 5, 25)]
    assert decisions == [False, True, True, True, False, True]


def test_tracker_forgets_containers_that_are_gone() -> None:
    tracker = ThrottleTracker(25.0)
    assert tracker.should_report("gone", 90)
    tracker.forget_all_but(["other"])
    assert not tracker.should_report("gone", 0)


@pytest.mark.parametrize("threshold", [0, -1, 101])
def test_tracker_threshold_is_a_percentage(threshold: float) -> None:
    with pytest.raises(ValueError, match="percentage"):
        ThrottleTracker(threshold)


def test_pending_pods_settle_then_report() -> None:
    pending = PendingPods(settle_seconds=0.0)
    pending.born("a")
    assert pending.ready() == ["a"]
    pending.reported("a")
    assert pending.ready() == []


def test_a_late_container_makes_the_pod_due_again() -> None:
    pending = PendingPods(settle_seconds=0.0)
    pending.born("a")
    pending.reported("a")
    pending.born("a")  # its app container started after the report: re-send, complete
    assert pending.ready() == ["a"]


def test_a_pod_closes_after_the_retention() -> None:
    pending = PendingPods(settle_seconds=0.0, retention_seconds=0.0)
    pending.born("a")
    pending.reported("a")
    assert pending.close_expired() == {"a"}
    pending.born("a")  # a restart much later is no birth of the pod
    assert pending.ready() == []
    assert pending.close_expired() == set()


def test_pending_pods_wait_out_the_settle_time() -> None:
    pending = PendingPods(settle_seconds=60.0)
    pending.born("a")
    assert pending.ready() == []


def test_pending_pods_give_up_after_the_attempts() -> None:
    pending = PendingPods(settle_seconds=0.0)
    pending.born("b")
    results = [pending.retry_later("b") for _ in range(BIRTH_MAPPING_ATTEMPTS)]
    assert all(results[:-1])
    assert results[-1] is False
    assert pending.ready() == []


def truth(**overrides: object) -> ContainerCpuTruth:
    figures: dict[str, object] = {
        "cgroup_path": f"/kubepods/burstable/pod{UID}/{'c' * 64}",
        "pod_uid": UID,
        "container_id": "c" * 64,
        "runtime": None,
        "cpu_limit_cores": 0.2,
        "cpu_usage_cores": 0.199,
        "nr_periods": 100,
        "nr_throttled": 97,
        "throttled_percent": 97.0,
        "throttled_seconds": 14.2,
        "runqueue_latency_p50_us": 12.5,
        "runqueue_latency_p99_us": 95_000.0,
        "involuntary_switches": 412,
    }
    figures.update(overrides)
    return ContainerCpuTruth.model_validate(figures)


def test_throttle_payload_carries_every_figure_and_validates() -> None:
    payload = throttle_payload(truth(), POD, "node-1", T0, 10.0)
    parsed = parse_signal(payload.model_dump_json())  # what the operator will accept
    assert parsed == payload
    body = json.loads(payload.model_dump_json())
    assert body["type"] == "cpu_throttle"
    assert body["pod_name"] == "nginx-monitored"
    assert body["throttle_percentage"] == 97.0
    assert body["nr_periods"] == 100
    assert body["nr_throttled"] == 97
    assert body["cpu_limit_cores"] == 0.2
    assert body["runqueue_latency_p99_us"] == 95_000.0
    assert body["period_seconds"] == 10.0
    assert body["cgroup_path"] == truth().cgroup_path
    assert body["container_id"] == "c" * 64


def test_throttle_payload_of_an_unlimited_container_without_samples() -> None:
    payload = throttle_payload(
        truth(
            cpu_limit_cores=None,
            nr_periods=0,
            nr_throttled=0,
            throttled_percent=0.0,
            runqueue_latency_p50_us=None,
            runqueue_latency_p99_us=None,
        ),
        POD,
        None,
        T0,
        5.0,
    )
    assert parse_signal(payload.model_dump_json()) == payload


def birth(offset_ms: float, total: int, namespaces: list[str], cid: str) -> ContainerBirth:
    return ContainerBirth.model_validate(
        {
            "containerId": cid,
            "podUid": UID,
            "cgroupPath": f"/kubepods/burstable/pod{UID}/{cid}",
            "runtime": "runc",
            "startedAt": (T0 + timedelta(milliseconds=offset_ms)).isoformat(),
            "durationMs": 100.0,
            "totalSyscalls": total,
            "syscalls": {"read": total // 2, "mount": total // 4},
            "namespaceOperations": len(namespaces),
            "namespacesCreated": namespaces,
            "mounts": total // 4,
            "cgroupWrites": 3,
            "execs": 2,
            "timeline": [
                {"phase": "runtime-start", "offsetMs": 0.0, "count": total - 1},
                {"phase": "entrypoint-exec", "offsetMs": 90.0, "count": 1},
            ],
        }
    )


def test_pod_creation_adds_up_the_containers() -> None:
    sandbox = birth(0, 400, ["mnt", "uts", "ipc", "pid", "net"], "a" * 64)
    app = birth(500, 600, ["mnt", "pid"], "b" * 64)
    pod = PodBirth(
        UID, [sandbox, app], T0 - timedelta(milliseconds=5), T0, T0 + timedelta(milliseconds=600)
    )
    payload = pod_creation_payload(pod, "nginx-monitored", "default", "node-1")
    assert parse_signal(payload.model_dump_json()) == payload
    assert payload.total_syscalls == 1000
    assert payload.syscalls == {"read": 500, "mount": 250}
    assert payload.namespace_ops == 7
    assert payload.namespaces_created == ["mnt", "uts", "ipc", "pid", "net"]
    assert (payload.mounts, payload.cgroup_writes, payload.execs) == (250, 6, 4)
    assert payload.duration_ms == pytest.approx(600.0)
    assert [(s.phase, s.offset_ms) for s in payload.timeline] == [
        ("c0-runtime-start", 0.0),
        ("c0-entrypoint-exec", 90.0),
        ("c1-runtime-start", 500.0),
        ("c1-entrypoint-exec", 590.0),
    ]
    assert sum(step.count for step in payload.timeline) == payload.total_syscalls


def test_single_container_pod_keeps_the_phase_names() -> None:
    only = birth(0, 300, ["mnt"], "a" * 64)
    pod = PodBirth(UID, [only], None, T0, T0 + timedelta(milliseconds=100))
    payload = pod_creation_payload(pod, "p", "default", None)
    assert [s.phase for s in payload.timeline] == ["runtime-start", "entrypoint-exec"]
    assert (payload.timeline[0].offset_ms, payload.timeline[0].count) == (0.0, 299)


# --- delivery ----------------------------------------------------------------------------


def test_backoff_doubles_up_to_the_cap() -> None:
    delays = [0.0]
    for _ in range(8):
        delays.append(next_backoff(delays[-1], 0.5, 30.0))
    assert delays[1:] == [0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


@pytest.mark.parametrize(
    ("status", "verdict", "outcome"),
    [
        (202, None, Outcome.ACCEPTED),
        (200, None, Outcome.ACCEPTED),
        *[(status, "final", Outcome.REFUSED) for status in (400, 409, 413, 415, 422)],
        # a 4xx that is no verdict of the webhook's (a wrong URL's 404, a proxy's 403)
        *[(status, None, Outcome.RETRY_ALL) for status in (400, 403, 404, 405, 422)],
        *[(status, None, Outcome.RETRY_ALL) for status in (401, 408, 429, 502, 503, 504)],
        (503, "final", Outcome.RETRY_ALL),
        (500, None, Outcome.RETRY_SIGNAL),
    ],
)
def test_only_the_webhooks_verdict_drops_a_signal(
    status: int, verdict: str | None, outcome: Outcome
) -> None:
    assert settle(status, verdict) is outcome


def test_endpoint_parsing() -> None:
    assert Endpoint.parse("http://op.kernel-gossip.svc:8080") == Endpoint(
        "http", "op.kernel-gossip.svc", 8080, "/webhook/ebpf"
    )
    assert Endpoint.parse("https://example.test/base/").path == "/base/webhook/ebpf"
    with pytest.raises(ValueError, match="http"):
        Endpoint.parse("ftp://x")


class Recorder:
    """A real webhook peer on loopback: records what it is sent, answers as told."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.headers: list[dict[str, str]] = []
        self.answers: list[int | tuple[int, dict[str, str]]] = []  # consumed first; then 202
        self.fail_bodies: dict[bytes, int] = {}  # these bodies always get this status
        self.attempts: list[bytes] = []
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                recorder.attempts.append(body)
                answer = recorder.answers.pop(0) if recorder.answers else 202
                status, headers = answer if isinstance(answer, tuple) else (answer, {})
                status = recorder.fail_bodies.get(body, status)
                if status == 202:
                    recorder.bodies.append(body)
                    recorder.headers.append(dict(self.headers))
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    peer = Recorder()
    yield peer
    peer.server.shutdown()


def test_delivery_sends_in_order_with_the_token(tmp_path: Path, recorder: Recorder) -> None:
    spool = Spool(tmp_path, 100)
    for index in range(5):
        spool.put(json.dumps({"n": index}).encode())
    delivery = Delivery(spool, recorder.url, "s3cret", AgentMetrics())
    assert delivery.deliver_batch()
    assert [json.loads(body)["n"] for body in recorder.bodies] == [0, 1, 2, 3, 4]
    assert recorder.headers[0]["Authorization"] == "Bearer s3cret"
    assert recorder.headers[0]["Content-Type"] == "application/json"
    assert len(spool) == 0


def test_delivery_keeps_what_failed_at_the_head(tmp_path: Path, recorder: Recorder) -> None:
    spool = Spool(tmp_path, 100)
    for index in range(3):
        spool.put(str(index).encode())
    recorder.answers = [202, 503]
    metrics = AgentMetrics()
    delivery = Delivery(spool, recorder.url, None, metrics)
    assert not delivery.deliver_batch()  # "1" got a 503: stop, back off
    assert [item.body for item in spool.peek(10)] == [b"1", b"2"]
    assert delivery.deliver_batch()
    assert recorder.bodies == [b"0", b"1", b"2"]
    assert metrics.failures._value.get() == 1


def test_refused_signal_does_not_block_the_rest(tmp_path: Path, recorder: Recorder) -> None:
    spool = Spool(tmp_path, 100)
    for index in range(3):
        spool.put(str(index).encode())
    recorder.answers = [(422, {"Kernel-Gossip-Verdict": "final"})]
    assert Delivery(spool, recorder.url, None, AgentMetrics()).deliver_batch()
    assert recorder.bodies == [b"1", b"2"]
    assert len(spool) == 0


def test_unreachable_operator_keeps_everything(tmp_path: Path) -> None:
    spool = Spool(tmp_path, 100)
    spool.put(b"x")
    # Bound but never listening: connections are refused, and while the socket is held
    # no other process can take the port (a closed server's port could be reused).
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
        delivery = Delivery(spool, f"http://127.0.0.1:{port}", None, AgentMetrics(), timeout=2)
        assert not delivery.deliver_batch()
    assert len(spool) == 1
