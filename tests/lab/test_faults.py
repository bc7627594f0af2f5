"""Fault and fuzz tests on the real lab (issue 13): the operator as a subprocess against
the lab API server, the agent's delivery and spool as they run in the agent.

- 10,000 generated bad inputs (and the named ones): every one a 4xx, none a 5xx, no
  resource written, no traceback in the operator's log.
- The operator SIGKILLed in the middle of a 500-signal storm and restarted: every signal in
  the resources' history exactly once.
- The agent's delivery SIGKILLed while delivering and restarted on its spool: every reading
  once, none twice.
- The API server stopped 30 s under load, then started again: nothing lost.
- A spool on a tiny tmpfs that fills: the drops are counted in /metrics, signals go on.
- The sender's node and pod UID are checked against the pod; Events are aggregated.
"""

import asyncio
import contextlib
import http.client
import json
import os
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import kopf
import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from operator_harness import KERNEL_GOSSIP, Operator, get_resource, list_resources
from signal_strategies import THROTTLE_FULL, BadRequest, bad_requests
from timestamps import parse_time

from kernel_gossip.agent.daemon import HANDLER_TIMEOUT_SECONDS, Agent, AgentConfig
from kernel_gossip.agent.delivery import TIMEOUT_SECONDS, AgentMetrics, Delivery
from kernel_gossip.agent.directory import CriDirectory
from kernel_gossip.agent.spool import Spool
from kernel_gossip.lab import apiserver
from kernel_gossip.lab.apiserver import LabApi
from kernel_gossip.operator.analysis import Thresholds
from kernel_gossip.operator.events import EventRecorder
from kernel_gossip.operator.kube import KubeClient
from kernel_gossip.operator.naming import whisper_name
from kernel_gossip.operator.webhook import Webhook
from kernel_gossip.operator.writer import Writer
from kernel_gossip.schema.signal import parse_signal

pytestmark = pytest.mark.slow

KW, CERTS = "kernelwhispers", "podbirthcertificates"
T1 = datetime(2025, 8, 25, 11, 0, tzinfo=UTC)
BATCH = 100
BATCHES = 100  # 10,000 bad inputs


def stamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("faults")


def raw_post(port: int, body: bytes, headers: dict[str, Any]) -> tuple[int, dict[str, str], bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        connection.request("POST", "/webhook/ebpf", body=body, headers=headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def named_bad_inputs(token: str) -> list[tuple[str, bytes, dict[str, Any]]]:
    """The issue's own examples, each with the headers it is sent with."""
    good = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}

    def signal(**changes: Any) -> bytes:
        return json.dumps(THROTTLE_FULL | changes).encode()

    return [
        ("non-ASCII token", signal(), good | {"Authorization": "Bearer tökén€".encode()}),
        ("latin-1 token", signal(), good | {"Authorization": b"Bearer \xff\xfe"}),
        ("window 1e-300", signal(period_seconds=1e-300, throttled_seconds=1e9), good),
        ("window 5e-324", signal(period_seconds=5e-324, throttled_seconds=1e9), good),
        ("throttled > window x cores", signal(period_seconds=1.0, throttled_seconds=2e5), good),
        ("pod name of 254", signal(pod_name="p" * 254), good),
        ("node Web01", signal(node="Web01"), good),
        ("node my_host", signal(node="my_host"), good),
        ("pod name with a newline", signal(pod_name="web\n"), good),
        ("namespace with a newline", signal(namespace="shop\n"), good),
        ("container POD", signal(container_name="POD"), good),
    ]


def test_10000_bad_inputs_are_4xx_write_nothing_and_log_no_traceback(
    lab_api: LabApi, workdir: Path
) -> None:
    namespace = "kg-fuzz"
    hook = Operator(lab_api, namespace, workdir).start()
    statuses: dict[int, int] = {}
    sent = [0]
    assert hook.token is not None
    headers = {"Authorization": f"Bearer {hook.token}"}

    def post(bad: BadRequest) -> tuple[str, int]:
        reply = hook.post(bad.body, content_type=bad.content_type, path="/webhook/ebpf")
        return bad.why, reply.status

    # A batch of BATCH requests is large and slow by design; filtering stays checked.
    @settings(
        max_examples=BATCHES,
        database=None,
        deadline=None,
        suppress_health_check=[
            HealthCheck.data_too_large,
            HealthCheck.too_slow,
            HealthCheck.large_base_example,
        ],
    )
    @given(st.lists(bad_requests, min_size=BATCH, max_size=BATCH))
    def storm(batch: list[BadRequest]) -> None:
        with ThreadPoolExecutor(max_workers=8) as pool:
            for why, status in pool.map(post, batch):
                assert 400 <= status < 500, (why, status)
                statuses[status] = statuses.get(status, 0) + 1
        sent[0] += len(batch)

    started = time.monotonic()
    try:
        storm()
        for why, body, extra in named_bad_inputs(hook.token):
            status, reply_headers, answer = raw_post(hook.port, body, headers | extra)
            assert 400 <= status < 500, (why, status, answer)
            assert list(json.loads(answer)) == ["error"], why
            if status != 401:
                assert reply_headers.get("Kernel-Gossip-Verdict") == "final", why
        assert sent[0] >= BATCH * BATCHES
        assert list_resources(lab_api, namespace, KW) == []
        assert list_resources(lab_api, namespace, CERTS) == []
        output = hook.output()
        assert "Traceback" not in output, output[-3000:]
        assert "webhook bug" not in output
        elapsed = time.monotonic() - started
        print(f"{sent[0]} bad inputs in {elapsed:.0f} s, statuses {sorted(statuses.items())}")
    finally:
        assert hook.stop() == 0, hook.output()[-3000:]


def test_the_sender_must_name_the_pods_node_and_uid(lab_api: LabApi, workdir: Path) -> None:
    namespace = "kg-identity"
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "id-shop"}}
    assert lab_api.request("POST", "/api/v1/namespaces", body).status in (201, 409)
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "checkout", "namespace": "id-shop"},
        "spec": {
            "nodeName": "worker-1",
            "containers": [{"name": "nginx", "image": "nginx"}],
        },
    }
    created = lab_api.request("POST", "/api/v1/namespaces/id-shop/pods", pod)
    assert created.status in (201, 409), created.text
    uid = lab_api.expect(200, "GET", "/api/v1/namespaces/id-shop/pods/checkout")["metadata"]["uid"]
    hook = Operator(lab_api, namespace, workdir).start()

    def send(**changes: Any) -> tuple[int, dict[str, str], bytes]:
        document = THROTTLE_FULL | {"pod_name": "checkout", "namespace": "id-shop"} | changes
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {hook.token}"}
        return raw_post(hook.port, json.dumps(document).encode(), headers)

    try:
        for changes in ({"node": "worker-2", "pod_uid": uid}, {"node": "worker-1"}):
            status, headers, answer = send(**changes)
            assert status == 409, answer
            assert headers.get("Kernel-Gossip-Verdict") == "final"
        assert list_resources(lab_api, namespace, KW) == []
        for moment in range(3):
            timestamp = stamp(T1 + timedelta(minutes=moment))
            status, _, answer = send(node="worker-1", pod_uid=uid, timestamp=timestamp)
            assert status == 202, answer
        events = lab_api.expect(200, "GET", "/api/v1/namespaces/id-shop/events")["items"]
        throttling = [
            e
            for e in events
            if e["reason"] == "KernelThrottling" and e["involvedObject"]["uid"] == uid
        ]
        assert len(throttling) == 1, throttling  # one Event, counted, like the kubelet's
        assert throttling[0]["count"] == 3
        assert parse_time(throttling[0]["lastTimestamp"]) >= parse_time(
            throttling[0]["firstTimestamp"]
        )
    finally:
        assert hook.stop() == 0, hook.output()[-3000:]


# --- kills ---------------------------------------------------------------------------------

PODS = 50
READINGS = 10  # per pod: 500 signals, and --history 10 keeps them all


def storm_bodies() -> list[bytes]:
    """500 signals: READINGS per pod, interleaved, each reading its own timestamp."""
    return [
        json.dumps(
            THROTTLE_FULL
            | {
                "pod_name": f"storm-{pod}",
                "timestamp": stamp(T1 + timedelta(seconds=reading)),
                "throttle_percentage": 40.0,
            }
        ).encode()
        for reading in range(READINGS)
        for pod in range(PODS)
    ]


def assert_every_reading_once(api: LabApi, namespace: str) -> None:
    expected = [stamp(T1 + timedelta(seconds=reading)) for reading in range(READINGS)]
    for pod in range(PODS):
        name = whisper_name(namespace, THROTTLE_FULL["namespace"], f"storm-{pod}")
        whisper = get_resource(api, namespace, KW, name)
        assert whisper is not None, name
        history = [r["observedAt"] for r in whisper["status"]["history"]]
        assert history == expected, (name, history)


def accepted(hook: Operator) -> float:
    try:
        metrics = hook.get("/metrics").body.decode()
    except OSError:
        return 0.0
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("kernel_gossip_webhook_events_accepted_total{")
    )


def wait_until(what: str, check: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def sigkill(hook: Operator) -> None:
    assert hook.process is not None
    hook.process.send_signal(signal.SIGKILL)
    hook.process.wait()
    hook.process = None


@dataclass
class Storm:
    hook: Operator
    spool: Spool
    metrics: AgentMetrics


@contextlib.contextmanager
def storm_delivered(
    lab_api: LabApi, namespace: str, workdir: Path, spool_name: str, max_backoff: float
) -> Iterator[Storm]:
    """An operator for `namespace`, a spool holding the storm, and the agent's delivery
    sending it in a thread; stopped (and the operator with it) at the end."""
    hook = Operator(lab_api, namespace, workdir).start()
    spool = Spool(workdir / spool_name, capacity=10_000)
    for body in storm_bodies():
        spool.put(body)
    metrics = AgentMetrics()
    delivery = Delivery(
        spool, f"http://127.0.0.1:{hook.port}", hook.token, metrics, max_backoff=max_backoff
    )
    stop = threading.Event()
    sender = threading.Thread(target=delivery.run, args=(stop,), daemon=True)
    sender.start()
    try:
        yield Storm(hook, spool, metrics)
    finally:
        stop.set()
        sender.join(timeout=60)
        assert hook.stop() == 0, hook.output()[-3000:]


def test_operator_sigkilled_mid_storm_keeps_every_signal_once(
    lab_api: LabApi, workdir: Path
) -> None:
    namespace = "kg-storm"
    with storm_delivered(lab_api, namespace, workdir, "storm-spool", 1.0) as storm:
        hook, spool = storm.hook, storm.spool
        wait_until("150 signals accepted", lambda: accepted(hook) >= 150, timeout=120)
        sigkill(hook)
        hook.start()
        wait_until("the spool drained", lambda: len(spool) == 0, timeout=300)
        assert_every_reading_once(lab_api, namespace)
        print(f"storm: {storm.metrics.delivered._value.get():.0f} accepted across a SIGKILL")


def test_agent_sigkilled_while_delivering_replays_its_spool_without_duplicates(
    lab_api: LabApi, workdir: Path, kernel_prereqs: None
) -> None:
    """`kernel-gossip agent` itself (BPF loaded, as on a node), killed while it delivers a
    spool left by an operator outage, then started again on the same spool."""
    namespace = "kg-agent-kill"
    hook = Operator(lab_api, namespace, workdir).start()
    spool_dir = workdir / "agent-spool"
    spool = Spool(spool_dir, capacity=10_000)
    for body in storm_bodies():
        spool.put(body)
    assert hook.token is not None
    token_file = workdir / "agent-token"
    token_file.write_text(hook.token + "\n")
    command = [
        KERNEL_GOSSIP,
        "agent",
        f"--operator-url=http://127.0.0.1:{hook.port}",
        f"--token-file={token_file}",
        f"--spool-dir={spool_dir}",
        f"--cri-socket={workdir / 'no-cri.sock'}",  # maps nothing: only the spool is sent
        "--metrics-address=127.0.0.1:0",
        "--node=kill-test",
    ]
    log = (workdir / "agent-kill.log").open("ab")
    agent = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until("150 signals accepted", lambda: accepted(hook) >= 150, timeout=180)
        agent.send_signal(signal.SIGKILL)
        agent.wait()
        left = len(spool)
        assert 0 < left < len(storm_bodies())
        agent = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        wait_until("the spool drained", lambda: len(spool) == 0, timeout=300)
        assert_every_reading_once(lab_api, namespace)
        print(f"agent killed with {left} signals spooled; all replayed once")
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            agent.wait(30)
        except subprocess.TimeoutExpired:
            agent.kill()
            agent.wait()
        log.close()
        assert hook.stop() == 0, hook.output()[-3000:]


def test_an_api_server_stopped_30_s_under_load_loses_nothing(
    lab_api: LabApi, workdir: Path
) -> None:
    """The API server (and its etcd) stopped for 30 s in the middle of a storm, then started
    again on the same data and port: the operator rides it out (503s while it cannot write,
    no signal given up) and, once the server is back, every reading lands once."""
    namespace = "kg-api-down"
    with (
        storm_delivered(lab_api, namespace, workdir, "api-down-spool", 2.0) as storm,
        contextlib.ExitStack() as restart,
    ):
        hook, spool, metrics = storm.hook, storm.spool, storm.metrics
        # The session's server again at the end, for the tests after this one.
        restart.callback(apiserver.start, lab_api.dir)
        wait_until("100 signals accepted", lambda: accepted(hook) >= 100, timeout=120)
        assert apiserver.stop(lab_api.dir) == ["apiserver", "etcd"]
        during = accepted(hook)
        time.sleep(30)
        left = len(spool)
        assert left > 0, "the whole storm was accepted with no API server"
        restarted = apiserver.start(lab_api.dir)
        assert restarted.server == lab_api.server  # same port: kubeconfigs stay valid
        wait_until("the spool drained", lambda: len(spool) == 0, timeout=300)
        assert_every_reading_once(lab_api, namespace)
        assert metrics.given_up._value.get() == 0
        assert hook.process is not None
        assert hook.process.poll() is None, "the operator died"
        print(
            f"API server down 30 s: {during:.0f} accepted before, {left} spooled during, "
            f"{metrics.failures._value.get():.0f} failed attempts retried, none lost"
        )


# --- a full disk -----------------------------------------------------------------------------


@pytest.fixture
def tiny_tmpfs(tmp_path: Path, require: Any) -> Iterator[Path]:
    require(os.geteuid() == 0, "mounting a tmpfs needs root")
    mountpoint = tmp_path / "tiny"
    mountpoint.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mountpoint)], check=True)
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", str(mountpoint)], check=True)


def test_a_spool_on_a_full_disk_counts_drops_and_measuring_goes_on(tiny_tmpfs: Path) -> None:
    config = AgentConfig(
        operator_url="http://127.0.0.1:9",
        token=None,
        interval=1.0,
        node="node-1",
        spool_dir=tiny_tmpfs / "spool",
        metrics_port=0,
    )
    agent = Agent(config, CriDirectory(tiny_tmpfs / "no-cri.sock"))
    server = threading.Thread(target=agent.server.serve_forever, daemon=True)
    server.start()
    try:
        signal_body = json.dumps(THROTTLE_FULL | {"pod_uid": "u" * 128})
        results = [
            agent.send("cpu_throttle", lambda: parse_signal(signal_body)) for _ in range(200)
        ]
        assert results[0] is True
        assert results[-1] is False  # the disk filled
        assert not list((tiny_tmpfs / "spool").glob("*.tmp"))  # no half-written signal left
        with urllib.request.urlopen(agent.metrics_url + "/metrics", timeout=10) as response:
            metrics = response.read().decode()
        failed = results.count(False)
        assert f'kernel_gossip_agent_spool_write_failed_total{{error="ENOSPC"}} {failed}.0' in (
            metrics
        )
        for item in agent.spool.peek(10):  # the operator took some: room again
            agent.spool.ack(item.sequence)
        assert agent.send("cpu_throttle", lambda: parse_signal(signal_body)) is True
    finally:
        agent.server.shutdown()
        agent.server.server_close()
        server.join()


# --- backpressure, rotated tokens, TLS -----------------------------------------------------


@pytest.fixture
def black_hole() -> Iterator[int]:
    """An API server that takes connections and never answers (overloaded, or hung)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(128)  # the kernel completes the handshakes; nobody reads
        yield listener.getsockname()[1]


def test_the_webhook_caps_work_in_flight_and_its_budget_per_signal(black_hole: int) -> None:
    """Past max_in_flight: 429 with Retry-After at once; past the budget: 503 with
    Retry-After, before the agent's own timeout."""

    async def scenario() -> list[tuple[int, str | None]]:
        info = kopf.ConnectionInfo(server=f"http://127.0.0.1:{black_hole}")
        async with KubeClient(info) as client:
            writer = Writer(client, "kg-limits", Thresholds(), EventRecorder(client))
            hook = Webhook(writer, None, max_in_flight=2, budget_seconds=1.0)
            runner = web.AppRunner(hook.application())
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = runner.addresses[0][1]
            try:
                async with aiohttp.ClientSession() as session:

                    async def post(delay: float) -> tuple[int, str | None]:
                        await asyncio.sleep(delay)
                        async with session.post(
                            f"http://127.0.0.1:{port}/webhook/ebpf", json=THROTTLE_FULL
                        ) as reply:
                            return reply.status, reply.headers.get("Retry-After")

                    return await asyncio.gather(post(0), post(0), post(0.3))
            finally:
                await runner.cleanup()

    started = time.monotonic()
    replies = asyncio.run(scenario())
    assert sorted(replies) == [(429, "1"), (503, "5"), (503, "5")]
    assert time.monotonic() - started < TIMEOUT_SECONDS


def test_a_rotated_token_file_is_honoured_without_a_restart(lab_api: LabApi, workdir: Path) -> None:
    folder = workdir / "rotate"
    folder.mkdir(exist_ok=True)
    hook = Operator(lab_api, "kg-rotate", folder).start()
    body = json.dumps(THROTTLE_FULL | {"pod_name": "rotated"})
    try:
        assert hook.post(body).status == 202
        replacement = folder / "token.new"
        replacement.write_text("the-rotated-token\n")
        os.replace(replacement, folder / "token")  # as a Secret volume swaps its files
        assert hook.post(body, token="the-rotated-token").status == 202
        assert hook.post(body).status == 401  # the old one is gone
    finally:
        assert hook.stop() == 0, hook.output()[-3000:]


@pytest.fixture(scope="module")
def certificate(workdir: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1 (its own CA)."""
    cert, key = workdir / "webhook.crt", workdir / "webhook.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
            "-nodes", "-days", "1", "-subj", "/CN=kernel-gossip-webhook",
            "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


def test_the_webhook_over_tls_takes_the_agents_signals(
    lab_api: LabApi, workdir: Path, certificate: tuple[Path, Path]
) -> None:
    cert, key = certificate
    folder = workdir / "tls"
    folder.mkdir(exist_ok=True)
    extra = ["--tls-cert-file", str(cert), "--tls-key-file", str(key)]
    hook = Operator(lab_api, "kg-tls", folder, extra=extra)
    with hook.log.open("ab") as out:  # start() polls plain HTTP: started by hand
        hook.process = subprocess.Popen(hook.command(), stdout=out, stderr=subprocess.STDOUT)
    try:
        spool = Spool(folder / "spool", 10)
        spool.put(json.dumps(THROTTLE_FULL | {"pod_name": "over-tls"}).encode())
        delivery = Delivery(
            spool, f"https://127.0.0.1:{hook.port}", hook.token, AgentMetrics(), ca_file=cert
        )
        wait_until("the TLS webhook took the signal", delivery.deliver_batch, timeout=60)
        assert len(spool) == 0
        name = whisper_name("kg-tls", THROTTLE_FULL["namespace"], "over-tls")
        assert get_resource(lab_api, "kg-tls", KW, name) is not None
        plain = Delivery(spool, f"http://127.0.0.1:{hook.port}", hook.token, AgentMetrics())
        spool.put(b"{}")
        assert not plain.deliver_batch()  # plain HTTP is not served
    finally:
        assert hook.stop() == 0, hook.output()[-3000:]


def test_a_401_from_the_api_server_logs_in_again_and_retries() -> None:
    """An expired service-account token: the client re-reads its credentials (kopf's
    login) on a 401 instead of failing every write until restarted."""
    logins: list[str] = []

    async def api(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != "Bearer fresh":
            return web.json_response({"reason": "Unauthorized", "message": "no"}, status=401)
        return web.json_response({"kind": "Pod", "metadata": {"name": "p"}})

    async def scenario() -> Any:
        app = web.Application()
        app.router.add_get("/api/v1/namespaces/ns/pods/p", api)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        server = f"http://127.0.0.1:{runner.addresses[0][1]}"

        def relogin() -> kopf.ConnectionInfo:
            logins.append("again")
            return kopf.ConnectionInfo(server=server, token="fresh")

        try:
            expired = kopf.ConnectionInfo(server=server, token="expired")
            async with KubeClient(expired, relogin=relogin) as client:
                return await client.get("/api/v1/namespaces/ns/pods/p")
        finally:
            await runner.cleanup()

    assert asyncio.run(scenario())["metadata"]["name"] == "p"
    assert logins == ["again"]


def test_an_idle_client_does_not_hold_an_agent_metrics_thread(tmp_path: Path) -> None:
    config = AgentConfig(
        operator_url="http://127.0.0.1:9",
        token=None,
        interval=1.0,
        node="node-1",
        spool_dir=tmp_path / "spool",
        metrics_port=0,
    )
    agent = Agent(config, CriDirectory(tmp_path / "no-cri.sock"))
    server = threading.Thread(target=agent.server.serve_forever, daemon=True)
    server.start()
    try:
        host, port = agent.server.server_address[:2]
        with socket.create_connection((str(host), int(port)), timeout=60) as idle:
            idle.sendall(b"GET /metrics HTTP/1.1\r\n")  # and never finishes the request
            started = time.monotonic()
            assert idle.recv(1024) == b""  # the server hung up
            assert time.monotonic() - started < HANDLER_TIMEOUT_SECONDS + 20
    finally:
        agent.server.shutdown()
        agent.server.server_close()
        server.join()
