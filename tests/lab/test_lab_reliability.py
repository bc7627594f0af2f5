"""Issue 13's defects, each pinned by a test that fails without its fix: the agent's CRI
protocol built in, one bad signal never stopping the agent, unique resource names, bounded
payloads and a total analysis, delivery that drops only the webhook's verdicts, retries
each signal on its own budget and backs off with jitter, rotated tokens, and a spool that
counts a full disk instead of dying."""

import json
import math
import os
import random
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError
from signal_strategies import THROTTLE_FULL, throttle_signals

from kernel_gossip.agent.daemon import Agent, AgentConfig
from kernel_gossip.agent.delivery import (
    MAX_ATTEMPTS_PER_SIGNAL,
    TIMEOUT_SECONDS,
    AgentMetrics,
    Delivery,
    jittered,
    retry_after,
)
from kernel_gossip.agent.directory import CriDirectory
from kernel_gossip.agent.signals import PodRef, throttle_payload
from kernel_gossip.agent.spool import Spool
from kernel_gossip.cli.agent import node_name
from kernel_gossip.errors import UserError
from kernel_gossip.host.tokens import TokenFile
from kernel_gossip.kube.client import ApiError
from kernel_gossip.operator.analysis import (
    PodFacts,
    ScaledWorkload,
    Thresholds,
    insights,
    unmet_demand_limit,
    usage_report,
    whisper_status,
)
from kernel_gossip.operator.naming import certificate_name, whisper_name
from kernel_gossip.operator.webhook import SIGNAL_BUDGET_SECONDS, api_refusal
from kernel_gossip.schema.names import DNS_SUBDOMAIN
from kernel_gossip.schema.report import MIN_CPU_LIMIT_CORES, ContainerCpuTruth
from kernel_gossip.schema.resources import KernelTruth, KernelWhisperSpec, KernelWhisperStatus
from kernel_gossip.schema.signal import (
    CpuThrottlePayload,
    kernel_truth,
    parse_signal,
)

OWN = "kernel-gossip"
T0 = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
UID = "5b0c3a8e-1d2f-4e6a-9b7c-0a1b2c3d4e5f"

# --- 1. the CRI protocol ships with the package; the agent never loads the lab ------------


def test_the_agent_reaches_the_cri_without_the_lab_network_or_a_compiler(tmp_path: Path) -> None:
    """In a read-only pod: no writable cache, no apt-get, no grpc_tools on the path."""
    script = (
        "import sys, pathlib\n"
        "sys.modules['grpc_tools'] = None  # importing it would fail\n"
        "import kernel_gossip.cli.agent\n"
        "from kernel_gossip.cri import CriClient, CriError\n"
        "with CriClient(pathlib.Path(sys.argv[1]), timeout=2) as cri:\n"
        "    try:\n"
        "        cri.version()\n"
        "    except CriError as error:\n"
        "        print('unreachable:', error.args[0].split(':')[0])\n"
        "lab = sorted(m for m in sys.modules if m.startswith('kernel_gossip.lab'))\n"
        "print('lab modules:', lab)\n"
    )
    env = {
        "PATH": str(tmp_path),  # no apt-get, no dpkg
        "HOME": "/nonexistent",
        "KERNEL_GOSSIP_CACHE": "/proc/kernel-gossip-cache",  # cannot be created
    }
    result = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path / "no.sock")],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "unreachable: UNAVAILABLE" in result.stdout
    assert "lab modules: []" in result.stdout


def test_the_wheel_ships_the_generated_protocol_git_does_not_track_it(tmp_path: Path) -> None:
    """What `pip install` (the Dockerfile's) puts in the image."""
    root = Path(__file__).resolve().parents[2]
    built = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp_path), str(root)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert built.returncode == 0, built.stderr[-2000:]
    (wheel,) = tmp_path.glob("kernel_gossip-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
    assert {
        "kernel_gossip/cri/runtime_v1/__init__.py",
        "kernel_gossip/cri/runtime_v1/api_pb2.py",
        "kernel_gossip/cri/runtime_v1/api_pb2_grpc.py",
    } <= names
    ignored = subprocess.run(
        ["git", "check-ignore", "-q", "kernel_gossip/cri/runtime_v1/api_pb2.py"],
        cwd=root,
        check=False,
    )
    assert ignored.returncode == 0


def test_an_unreadable_cri_is_reported_by_the_directory(tmp_path: Path) -> None:
    directory = CriDirectory(tmp_path / "missing.sock")
    directory.check()
    problem = directory.problem()
    assert problem is not None
    assert "missing.sock" in problem


def test_a_readable_cri_clears_the_problem(lab_containerd: Any) -> None:
    directory = CriDirectory(lab_containerd.socket)
    directory.check()
    assert directory.problem() is None


@pytest.fixture
def agent(tmp_path: Path) -> Iterator[Agent]:
    """An agent's parts (spool, delivery, directory, metrics server) without its BPF loops;
    the CRI socket does not exist, the operator URL is closed."""
    config = AgentConfig(
        operator_url="http://127.0.0.1:9",
        token=None,
        interval=1.0,
        node="node-1",
        spool_dir=tmp_path / "spool",
        metrics_port=0,
    )
    running = Agent(config, CriDirectory(tmp_path / "no-cri.sock"))
    thread = threading.Thread(target=running.server.serve_forever, daemon=True)
    thread.start()
    yield running
    running.server.shutdown()
    running.server.server_close()
    thread.join()


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_healthz_is_503_while_the_cri_cannot_be_read(agent: Agent) -> None:
    agent.health.beat("observe")
    agent.health.beat("births")
    agent.directory.check()
    status, body = get(agent.metrics_url + "/healthz")
    assert status == 503
    answer = json.loads(body)
    assert answer["stale"] == []
    assert "no-cri.sock" in answer["cri"]


# --- 2. one signal never stops the agent; --node is checked at start ----------------------


def cpu_truth() -> ContainerCpuTruth:
    return ContainerCpuTruth.model_validate(
        {
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
    )


def test_a_253_character_pod_name_is_a_valid_signal() -> None:
    pod = PodRef("p" * 253, "default", UID, "app")
    payload = throttle_payload(cpu_truth(), pod, "node-1", T0, 10.0)
    assert parse_signal(payload.model_dump_json()).pod_name == "p" * 253


def test_a_signal_that_does_not_validate_is_counted_and_measuring_goes_on(agent: Agent) -> None:
    """The pause container's CRI name `POD` is no DNS label: that signal is counted, the
    next one goes out."""
    pause = PodRef("web", "default", UID, "POD")
    app = PodRef("web", "default", UID, "app")
    sent = [
        agent.send("cpu_throttle", partial(throttle_payload, cpu_truth(), ref, "n", T0, 10.0))
        for ref in (pause, app)
    ]
    assert sent == [False, True]
    assert agent.metrics.invalid.labels(type="cpu_throttle")._value.get() == 1
    assert len(agent.spool) == 1
    _, metrics = get(agent.metrics_url + "/metrics")
    assert 'kernel_gossip_agent_invalid_signals_total{type="cpu_throttle"} 1.0' in metrics.decode()


@pytest.mark.parametrize(("given", "name"), [("Web01", "web01"), (" node-1\n", "node-1")])
def test_node_names_are_normalized_as_the_kubelet_does(given: str, name: str) -> None:
    assert node_name(given) == name


@pytest.mark.parametrize("given", ["my_host", "node-1\nevil", "-a", "a" * 254])
def test_a_node_name_kubernetes_would_refuse_is_a_start_error(given: str) -> None:
    with pytest.raises(UserError, match="--node"):
        node_name(given)


def test_the_agent_cli_refuses_a_bad_node_in_one_line() -> None:
    cli = str(Path(sys.executable).with_name("kernel-gossip"))
    result = subprocess.run(
        [cli, "agent", "--node", "my_host"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "--node 'my_host'" in result.stderr


# --- 3. resource names ---------------------------------------------------------------------


def test_the_talks_names_stay_and_other_namespaces_are_qualified() -> None:
    assert whisper_name(OWN, OWN, "live-demo") == "live-demo-kw"
    assert certificate_name(OWN, OWN, "nginx-demo") == "nginx-demo-cert"
    assert whisper_name(OWN, "shop", "web-1") == "shop.web-1-kw"
    assert whisper_name(OWN, OWN, "a.b") == "kernel-gossip.a.b-kw"  # a dot: qualified


alnum = st.sampled_from("ab0")
labels = st.builds(lambda a, middle, b: a + middle + b, alnum, st.text("ab0-", max_size=6), alnum)
namespaces = labels | alnum | st.just(OWN) | st.just("a")
pods = st.lists(labels | alnum, min_size=1, max_size=4).map(".".join)
long_pods = st.builds(lambda n, tail: "a" * (n - len(tail)) + tail, st.integers(240, 253), labels)


@given(st.sampled_from([OWN, "a"]), namespaces, pods | long_pods, namespaces, pods | long_pods)
@settings(max_examples=1000)
def test_names_are_valid_and_unique_per_namespace_and_pod(
    own: str, ns1: str, pod1: str, ns2: str, pod2: str
) -> None:
    for name in (whisper_name(own, ns1, pod1), certificate_name(own, ns1, pod1)):
        assert len(name) <= 253
        assert re.fullmatch(DNS_SUBDOMAIN.strip("^$"), name), name
    if (ns1, pod1) != (ns2, pod2):
        assert whisper_name(own, ns1, pod1) != whisper_name(own, ns2, pod2)


# --- 4. bounds, a total analysis, delivery decisions ---------------------------------------


@pytest.mark.parametrize(
    "changes",
    [
        {"period_seconds": 1e-300, "throttled_seconds": 1e9},
        {"period_seconds": 5e-324, "throttled_seconds": 1e9},
        {"period_seconds": 1.0, "throttled_seconds": 100_000.5},  # > 1 s x 100,000 cores
    ],
)
def test_physically_impossible_figures_are_refused(changes: dict[str, float]) -> None:
    with pytest.raises(ValidationError):
        parse_signal(json.dumps(THROTTLE_FULL | changes))


finite = st.floats(min_value=0, allow_nan=False, allow_infinity=False)
truths = st.fixed_dictionaries(
    {
        "windowSeconds": st.none() | st.floats(min_value=5e-324, allow_infinity=False),
        "cpuLimitCores": st.none()
        | st.floats(min_value=MIN_CPU_LIMIT_CORES, allow_nan=False, allow_infinity=False),
        "cpuUsageCores": st.none() | finite,
        "throttledPercent": st.floats(0, 100),
        "throttledSeconds": st.none() | finite,
        "runqueueLatencyP50Us": st.none() | finite,
        "runqueueLatencyP99Us": st.none() | finite,
    }
).map(KernelTruth.model_validate)
facts = st.builds(
    PodFacts,
    metrics_api_cores=st.none() | finite,
    limit_cores=st.none() | finite,
    request_cores=st.none() | finite,
    workload=st.none()
    | st.builds(
        ScaledWorkload,
        kind=st.just("Deployment"),
        name=st.just("web"),
        autoscaler=st.just("web"),
        current_replicas=st.integers(1, 2**31 - 1),
        max_replicas=st.integers(1, 2**31 - 1),
    ),
)
thresholds = st.builds(
    lambda t, w, c: Thresholds(warning_percent=w, critical_percent=c, target_percent=t),
    st.floats(min_value=1e-300, max_value=10),
    st.floats(10, 50),
    st.floats(50, 100),
)


def conclude(
    truth: KernelTruth, pod: PodFacts, limits: Thresholds, reported: float | None = None
) -> KernelWhisperStatus:
    """What the operator computes for a resource: insights, then the status."""
    spec = KernelWhisperSpec(
        signal_type="cpu_throttle",
        pod_name="web",
        pod_namespace="shop",
        observed_at=T0,
        kernel_truth=truth,
        reported_cpu_usage_cores=reported,
        insights=insights(truth, usage_report(truth, reported, pod), limits),
    )
    return whisper_status(spec, pod, [], limits, T0)


def finite_numbers(document: Any) -> bool:
    if isinstance(document, float):
        return math.isfinite(document)
    if isinstance(document, dict):
        return all(finite_numbers(value) for value in document.values())
    if isinstance(document, list):
        return all(finite_numbers(value) for value in document)
    return True


@given(truths, facts, thresholds)
@settings(max_examples=1500)
def test_the_analysis_is_total_and_finite(
    truth: KernelTruth, pod: PodFacts, limits: Thresholds
) -> None:
    """Any evidence a resource may hold (a hand-written one included) gets a conclusion:
    no exception, no inf or NaN in it."""
    status = conclude(truth, pod, limits)
    assert finite_numbers(status.model_dump(mode="json"))


@given(throttle_signals())
@settings(max_examples=300)
def test_every_valid_signal_is_concluded(document: dict[str, Any]) -> None:
    signal = parse_signal(json.dumps(document))
    assert isinstance(signal, CpuThrottlePayload)
    conclude(kernel_truth(signal), PodFacts(), Thresholds(), signal.reported_cpu_usage)


@pytest.mark.parametrize("window", [1e-300, 5e-324])
def test_the_sizing_of_a_vanishing_window_is_no_exception(window: float) -> None:
    assert unmet_demand_limit(0.5, 60.0, 1e9, window, 10.0) == math.inf


def test_jitter_spreads_retries_within_the_backoff() -> None:
    delays = [jittered(8.0, random.Random(seed)) for seed in range(50)]
    assert all(4.0 <= d <= 8.0 for d in delays)
    assert len({round(d, 6) for d in delays}) > 40  # nodes do not retry in lockstep


@pytest.mark.parametrize(
    ("header", "seconds"), [(None, 0.0), ("5", 5.0), ("x", 0.0), ("-3", 0.0), ("1e9", 300.0)]
)
def test_retry_after_is_read_and_capped(header: str | None, seconds: float) -> None:
    assert retry_after(header) == seconds


def test_the_agent_waits_longer_than_the_webhook_works_on_a_signal() -> None:
    assert TIMEOUT_SECONDS > SIGNAL_BUDGET_SECONDS


class Peer:
    """A real HTTP peer on loopback: answers by body, records bodies and tokens."""

    def __init__(self) -> None:
        self.status_of: dict[bytes, int] = {}
        self.default = 202
        self.headers: dict[str, str] = {}
        self.accepted: list[bytes] = []
        self.tokens: list[str | None] = []
        peer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                peer.tokens.append(self.headers.get("Authorization"))
                status = peer.status_of.get(body, peer.default)
                if status == 202:
                    peer.accepted.append(body)
                self.send_response(status)
                for name, value in peer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def peer() -> Iterator[Peer]:
    running = Peer()
    yield running
    running.server.shutdown()
    running.server.server_close()


def test_a_404_without_the_webhooks_verdict_keeps_the_whole_spool(
    tmp_path: Path, peer: Peer
) -> None:
    """A wrong --operator-url (someone else's 404) must not drain the spool."""
    spool = Spool(tmp_path, 100)
    for index in range(3):
        spool.put(str(index).encode())
    peer.default = 404
    delivery = Delivery(spool, peer.url, None, AgentMetrics())
    for _ in range(3):
        assert not delivery.deliver_batch()
    assert len(spool) == 3


def test_a_signal_that_breaks_the_operator_waits_alone_and_is_given_up(
    tmp_path: Path, peer: Peer
) -> None:
    spool = Spool(tmp_path, 100)
    for body in (b"0", b"poison", b"2"):
        spool.put(body)
    peer.status_of[b"poison"] = 500
    metrics = AgentMetrics()
    delivery = Delivery(spool, peer.url, None, metrics, initial_backoff=0.01, max_backoff=0.02)
    assert delivery.deliver_batch()
    assert peer.accepted == [b"0", b"2"]  # the one behind it was not blocked
    deadline = time.monotonic() + 10
    while len(spool) and time.monotonic() < deadline:
        delivery.deliver_batch()
        time.sleep(0.01)
    assert len(spool) == 0
    assert metrics.given_up._value.get() == 1
    assert metrics.failures._value.get() == MAX_ATTEMPTS_PER_SIGNAL


def test_a_401_rereads_a_rotated_token_file(tmp_path: Path, peer: Peer) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("old-token\n")
    tokens = TokenFile(token_file)
    spool = Spool(tmp_path / "spool", 100)
    spool.put(b"x")
    delivery = Delivery(spool, peer.url, tokens, AgentMetrics())
    replacement = tmp_path / "token.new"
    replacement.write_text("new-token\n")
    os.replace(replacement, token_file)  # as a Secret volume swaps its files
    assert delivery.deliver_batch()
    assert peer.tokens == ["Bearer new-token"]


def test_a_token_file_being_rotated_keeps_the_previous_token(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("first\n")
    tokens = TokenFile(token_file)
    token_file.write_text("")
    assert tokens.current() == "first"
    token_file.write_text("second-and-longer\n")
    assert tokens.current() == "second-and-longer"
    token_file.unlink()
    assert tokens.reload() == "second-and-longer"


# --- low: error replies say what went wrong, not where the API server is -------------------


@pytest.mark.parametrize("status", [400, 403, 422, 500, 503])
def test_api_refusals_do_not_repeat_the_api_servers_message(status: int) -> None:
    error = ApiError(
        status, "etcd at https://10.0.0.5:2379 failed; namespace secret-ns", reason="Reason"
    )
    refusal = api_refusal(error)
    assert "10.0.0.5" not in refusal.message
    assert "secret-ns" not in refusal.message
    assert 400 <= refusal.status < 600
