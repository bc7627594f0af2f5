"""The node agent: measures continuously, spools signals, delivers them, serves its health.

Threads, because BCC's polling blocks: one observes CPU truth window after window, one
watches container births, one delivers the spool, one serves /metrics and /healthz. Every
signal passes through the spool, so measuring never waits for the operator.
"""

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError

from kernel_gossip.agent.delivery import AgentMetrics, Delivery
from kernel_gossip.agent.directory import PodDirectory
from kernel_gossip.agent.signals import ThrottleTracker, pod_creation_payload, throttle_payload
from kernel_gossip.agent.spool import Spool, SpoolWriteError
from kernel_gossip.core.births import PodBirth
from kernel_gossip.core.cgroups import CgroupMode
from kernel_gossip.errors import UserError
from kernel_gossip.host.cgroupfs import CgroupFs
from kernel_gossip.host.tokens import TokenFile
from kernel_gossip.probes.births import DEFAULT_RUNTIMES, BirthWatch
from kernel_gossip.probes.observe import REFRESH_SECONDS, Observation, container_cgroups
from kernel_gossip.probes.runqlat import KeyMode, RunqueueProbe
from kernel_gossip.schema.signal import CpuThrottlePayload, PodCreationPayload

log = logging.getLogger("kernel_gossip.agent")

BIRTH_SETTLE_SECONDS = 3.0
"""A pod is reported once none of its containers has been born for this long."""
BIRTH_RETENTION_SECONDS = 600.0
"""How long after its report a pod's later container births still refine its certificate."""
BIRTH_MAPPING_ATTEMPTS = 20
"""Settle periods to wait for the runtime to list a pod before giving up on its birth."""
HANDLER_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class AgentConfig:
    operator_url: str
    token: TokenFile | None
    interval: float
    node: str
    spool_dir: Path
    threshold_percent: float = 25.0
    runtimes: tuple[str, ...] = DEFAULT_RUNTIMES
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9101
    spool_capacity: int = 10_000
    ca_file: Path | None = None


@dataclass
class Health:
    """When each loop last finished a round, to tell a stuck agent from a live one."""

    beats: dict[str, float] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def beat(self, loop: str) -> None:
        with self.lock:
            self.beats[loop] = time.monotonic()

    def stale(self, limits: dict[str, float]) -> list[str]:
        now = time.monotonic()
        with self.lock:
            return [loop for loop, limit in limits.items() if now - self.beats.get(loop, 0) > limit]


class Agent:
    def __init__(self, config: AgentConfig, directory: PodDirectory) -> None:
        self.config = config
        self.directory = directory
        self.metrics = AgentMetrics()
        self.spool = Spool(config.spool_dir, config.spool_capacity)
        self.delivery = Delivery(
            self.spool, config.operator_url, config.token, self.metrics, ca_file=config.ca_file
        )
        self.health = Health()
        self.stop = threading.Event()
        self.failed = False  # a loop died: the CLI exits non-zero
        self.fs = CgroupFs.detect()
        self.server = ThreadingHTTPServer(
            (config.metrics_host, config.metrics_port), self._handler_class()
        )

    @property
    def metrics_url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def send(self, kind: str, build: Callable[[], CpuThrottlePayload | PodCreationPayload]) -> bool:
        """Build, validate and spool one signal. A signal that will not validate (a name
        the webhook would refuse) or cannot be spooled (disk full) is counted and logged;
        it never stops measuring."""
        try:
            payload = build()
        except ValidationError as error:
            self.metrics.invalid.labels(type=kind).inc()
            problem = error.errors(include_url=False)[0]
            where = ".".join(str(part) for part in problem["loc"])
            log.warning(
                "a %s signal does not validate (%s: %s): not sent", kind, where, problem["msg"]
            )
            return False
        try:
            self.spool.put(payload.model_dump_json().encode())
        except SpoolWriteError as error:
            self.metrics.spool_write_failed.labels(error=error.errno_name).inc()
            log.warning("%s; the signal is dropped", error)
            return False
        self.metrics.signals.labels(type=kind).inc()
        self.delivery.wake.set()
        return True

    def observe_loop(self) -> None:
        """Window after window: every container's CPU truth, signals for the throttled."""
        mode = KeyMode.TGID if self.fs.mode is CgroupMode.V1 else KeyMode.CGROUP_ID
        tracker = ThrottleTracker(self.config.threshold_percent)
        probe = RunqueueProbe(mode)
        try:
            while not self.stop.is_set():
                self._one_window(probe, tracker)
                self.health.beat("observe")
        finally:
            probe.close()

    def _one_window(self, probe: RunqueueProbe, tracker: ThrottleTracker) -> None:
        self.directory.check()
        targets = container_cgroups(self.fs)
        if not targets:
            self.stop.wait(self.config.interval)
            return
        # A container may leave at any point of the window, even between its discovery
        # and the first read: that window is skipped and the next one measures again.
        try:
            with Observation(self.fs, targets, probe) as observation:
                observation.begin()
                deadline = time.monotonic() + self.config.interval
                while (left := deadline - time.monotonic()) > 0 and not self.stop.is_set():
                    self.stop.wait(min(REFRESH_SECONDS, left))
                    if mode_needs_refresh(probe.mode):
                        observation.refresh()
                report = observation.end()
        except UserError as error:
            log.info("window skipped: %s", error)
            return
        self.metrics.windows.inc()
        observed_at = observation.ended_at
        tracker.forget_all_but(c.container_id or "" for c in report.containers)
        for truth in report.containers:
            if truth.container_id is None:
                continue
            if not tracker.should_report(truth.container_id, truth.throttled_percent):
                continue
            pod = self.directory.container(truth.container_id, truth.cgroup_path)
            if pod is None:
                self.metrics.unmapped.labels(type="cpu_throttle").inc()
                continue
            self.send(
                "cpu_throttle",
                partial(
                    throttle_payload,
                    truth,
                    pod,
                    self.config.node,
                    observed_at,
                    report.window_seconds,
                ),
            )

    def births_loop(self) -> None:
        """Every pod born on the node, reported once its containers have all started."""
        pending = PendingPods()
        with BirthWatch(list(self.config.runtimes), self.fs) as watch:
            while not self.stop.is_set():
                for birth in watch.poll(0.5):
                    if birth.pod_uid:
                        pending.born(birth.pod_uid)
                ready = pending.ready()
                if ready:
                    births = {pod.pod_uid: pod for pod in watch.pod_births()}
                    for uid in ready:
                        if self._report_birth(births.get(uid)):
                            pending.reported(uid)
                        elif not pending.retry_later(uid):
                            self.metrics.unmapped.labels(type="pod_creation").inc()
                closed = pending.close_expired()
                if closed:
                    watch.births = [b for b in watch.births if b.pod_uid not in closed]
                self.health.beat("births")

    def _report_birth(self, birth: PodBirth | None) -> bool:
        if birth is None:
            return False
        pod = self.directory.pod(birth.pod_uid)
        if pod is None:
            return False
        self.send(
            "pod_creation",
            partial(pod_creation_payload, birth, pod.pod_name, pod.namespace, self.config.node),
        )
        return True

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        agent = self

        class Handler(BaseHTTPRequestHandler):
            timeout = HANDLER_TIMEOUT_SECONDS  # an idle or slow client frees its thread

            def do_GET(self) -> None:
                if self.path == "/metrics":
                    self._reply(200, CONTENT_TYPE_LATEST, generate_latest(agent.metrics.registry))
                elif self.path == "/healthz":
                    stale = agent.health.stale(agent.liveness_limits())
                    cri = agent.directory.problem()
                    ok = not stale and cri is None
                    body = json.dumps(
                        {"ok": ok, "stale": stale, "cri": cri, "spooled": len(agent.spool)},
                        allow_nan=False,
                    )
                    self._reply(200 if ok else 503, "application/json", body.encode())
                else:
                    self._reply(404, "application/json", b'{"error": "not found"}')

            def _reply(self, status: int, content_type: str, body: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                log.debug(format, *args)

        return Handler

    def liveness_limits(self) -> dict[str, float]:
        """A loop that has not come round in this long is stuck."""
        return {"observe": 3 * self.config.interval + 30, "births": 30.0}

    def run(self) -> None:
        """Run until stop is set (SIGTERM/SIGINT in the CLI); joins every loop."""
        loops: list[tuple[str, Callable[[], None]]] = [
            ("observe", self.observe_loop),
            ("births", self.births_loop),
            ("delivery", lambda: self.delivery.run(self.stop)),
            ("http", self.server.serve_forever),
        ]
        threads = [
            threading.Thread(target=self._guarded(name, loop), name=name, daemon=True)
            for name, loop in loops
        ]
        for thread in threads:
            thread.start()
        self.stop.wait()
        self.server.shutdown()
        for thread in threads:
            thread.join(timeout=15)
        self.server.server_close()

    def _guarded(self, name: str, loop: Callable[[], None]) -> Callable[[], None]:
        """A loop that dies stops the agent (and its supervisor restarts it) rather than
        leaving a half-working agent that reports healthy."""

        def run() -> None:
            try:
                loop()
            except Exception:
                log.exception("the %s loop failed; stopping the agent", name)
                self.failed = True
                self.stop.set()

        return run


class PendingPods:
    """Pods whose births wait to settle (or for the runtime to list them).

    A container born after its pod was reported (a slow image pull, a loaded node) makes
    the pod due again, so its certificate is re-sent with every container; RETENTION
    seconds after a report the pod is closed: a later container restart is no birth.
    """

    def __init__(
        self,
        settle_seconds: float = BIRTH_SETTLE_SECONDS,
        retention_seconds: float = BIRTH_RETENTION_SECONDS,
    ) -> None:
        self.settle_seconds = settle_seconds
        self.retention_seconds = retention_seconds
        self._due: dict[str, tuple[float, int]] = {}  # pod uid -> (report at, attempts)
        self._reported_at: dict[str, float] = {}
        self._closed: set[str] = set()

    def born(self, pod_uid: str) -> None:
        """A container of the pod was born: its report waits for the pod to settle."""
        if pod_uid not in self._closed:
            self._due[pod_uid] = (time.monotonic() + self.settle_seconds, 0)

    def ready(self) -> list[str]:
        now = time.monotonic()
        return [uid for uid, (at, _) in self._due.items() if at <= now]

    def reported(self, pod_uid: str) -> None:
        self._reported_at[pod_uid] = time.monotonic()
        self._due.pop(pod_uid, None)

    def retry_later(self, pod_uid: str) -> bool:
        """Try again after another settle time; False once the attempts are used up."""
        attempts = self._due[pod_uid][1] + 1
        if attempts >= BIRTH_MAPPING_ATTEMPTS:
            del self._due[pod_uid]
            self._closed.add(pod_uid)
            return False
        self._due[pod_uid] = (time.monotonic() + self.settle_seconds, attempts)
        return True

    def close_expired(self) -> set[str]:
        """Pods reported longer than the retention ago, now closed; their births can go."""
        horizon = time.monotonic() - self.retention_seconds
        expired = {uid for uid, at in self._reported_at.items() if at <= horizon}
        for uid in expired:
            del self._reported_at[uid]
        self._closed |= expired
        return expired


def mode_needs_refresh(mode: KeyMode) -> bool:
    """Pid-keyed windows must learn new processes; cgroup ids cover them already."""
    return mode is KeyMode.TGID
