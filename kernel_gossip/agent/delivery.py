"""Sends the spool to the operator's webhook, oldest first, with jittered backoff.

Batches: each round takes up to `batch_size` spooled signals and posts them in order over
one keep-alive connection (the webhook takes one signal per request). What a reply does
to a signal (settle()):

- 2xx: accepted, it leaves the spool.
- a 4xx carrying the webhook's own verdict (`Kernel-Gossip-Verdict: final`: bad JSON, an
  invalid or contradicting payload): refused for good, it leaves the spool, counted. A 4xx
  without it (a 404 from a wrong --operator-url, a proxy's 403) is not about the signal.
- 500: this signal broke something: it waits its own backoff while the others go on, and
  after MAX_ATTEMPTS_PER_SIGNAL such replies it is given up (counted).
- anything else (unreachable, 401 while a token is rotated, 408, 429, 502-504): the
  operator cannot take signals now: the round stops, the whole spool waits a jittered
  backoff (0.5 s, 1 s, 2 s, ... up to 30 s, times a random 0.5-1, so nodes do not retry
  in lockstep), at least the reply's Retry-After. A 401 re-reads the token file first.

The timeout (30 s) exceeds the webhook's budget per signal (20 s): the agent never resends
what the operator is still working on.
"""

import http.client
import logging
import random
import ssl
import threading
import time
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Counter, Gauge

from kernel_gossip.agent.spool import Spool, Spooled
from kernel_gossip.host.tokens import TokenFile

log = logging.getLogger("kernel_gossip.agent")

WEBHOOK_PATH = "/webhook/ebpf"
VERDICT_HEADER = "Kernel-Gossip-Verdict"
TIMEOUT_SECONDS = 30.0
MAX_ATTEMPTS_PER_SIGNAL = 5
MAX_RETRY_AFTER_SECONDS = 300.0


class Outcome(Enum):
    ACCEPTED = "accepted"
    REFUSED = "refused"  # the webhook's own final verdict: drop
    RETRY_SIGNAL = "retry_signal"  # this signal failed: it waits, the others go on
    RETRY_ALL = "retry_all"  # the operator cannot take signals now: everything waits


def settle(status: int, verdict: str | None) -> Outcome:
    if 200 <= status < 300:
        return Outcome.ACCEPTED
    if 400 <= status < 500 and verdict == "final":
        return Outcome.REFUSED
    if status == 500:
        return Outcome.RETRY_SIGNAL
    return Outcome.RETRY_ALL


def next_backoff(current: float, initial: float, maximum: float) -> float:
    return min(maximum, initial if current <= 0 else current * 2)


def jittered(delay: float, rng: random.Random) -> float:
    """Between half the delay and the delay: spread, never longer than the cap."""
    return delay * rng.uniform(0.5, 1.0)


def retry_after(header: str | None) -> float:
    """Retry-After in seconds (the delta form the webhook sends); 0 when absent or odd."""
    try:
        seconds = float(header or 0)
    except ValueError:
        return 0.0
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS) if seconds == seconds else 0.0


class AgentMetrics:
    """The agent's own Prometheus metrics, in a registry of its own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.windows = Counter(
            "kernel_gossip_agent_windows", "Observation windows measured", registry=self.registry
        )
        self.signals = Counter(
            "kernel_gossip_agent_signals",
            "Signals produced, by type",
            ["type"],
            registry=self.registry,
        )
        self.unmapped = Counter(
            "kernel_gossip_agent_unmapped",
            "Measurements not reported: no pod found for the container",
            ["type"],
            registry=self.registry,
        )
        self.delivered = Counter(
            "kernel_gossip_agent_delivered",
            "Signals the operator accepted",
            registry=self.registry,
        )
        self.refused = Counter(
            "kernel_gossip_agent_refused",
            "Signals the operator refused for good (4xx), by status",
            ["status"],
            registry=self.registry,
        )
        self.failures = Counter(
            "kernel_gossip_agent_delivery_failures",
            "Failed delivery attempts (retried)",
            registry=self.registry,
        )
        self.given_up = Counter(
            "kernel_gossip_agent_given_up",
            f"Signals dropped after {MAX_ATTEMPTS_PER_SIGNAL} server errors (500) of their own",
            registry=self.registry,
        )
        self.invalid = Counter(
            "kernel_gossip_agent_invalid_signals",
            "Measurements not reported: the signal would not validate (logged), by type",
            ["type"],
            registry=self.registry,
        )
        self.spool_write_failed = Counter(
            "kernel_gossip_agent_spool_write_failed",
            "Signals dropped because the spool could not be written (disk full), by error",
            ["error"],
            registry=self.registry,
        )
        self.dropped = Gauge(
            "kernel_gossip_agent_spool_dropped",
            "Signals dropped because the spool was full, since start",
            registry=self.registry,
        )
        self.spool_depth = Gauge(
            "kernel_gossip_agent_spool_depth",
            "Signals waiting in the spool",
            registry=self.registry,
        )


@dataclass(frozen=True)
class Endpoint:
    scheme: str
    host: str
    port: int
    path: str

    @classmethod
    def parse(cls, operator_url: str) -> "Endpoint":
        parts = urlsplit(operator_url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {operator_url!r}")
        default_port = 443 if parts.scheme == "https" else 80
        base = parts.path.rstrip("/")
        return cls(parts.scheme, parts.hostname, parts.port or default_port, base + WEBHOOK_PATH)


@dataclass
class Waiting:
    """A signal that failed on its own (500): how often, and when it may go again."""

    attempts: int
    not_before: float


class Delivery:
    def __init__(
        self,
        spool: Spool,
        operator_url: str,
        token: str | TokenFile | None,
        metrics: AgentMetrics,
        batch_size: int = 50,
        timeout: float = TIMEOUT_SECONDS,
        initial_backoff: float = 0.5,
        max_backoff: float = 30.0,
        rng: random.Random | None = None,
        ca_file: Path | None = None,
    ) -> None:
        self.spool = spool
        self.endpoint = Endpoint.parse(operator_url)
        self.token = token
        self.metrics = metrics
        self.batch_size = batch_size
        self.timeout = timeout
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.rng = rng or random.Random()
        self.tls = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        self.wake = threading.Event()  # set by producers: something was spooled
        self.waiting: dict[int, Waiting] = {}  # sequence -> its own backoff
        self.retry_after = 0.0  # the last RETRY_ALL reply's Retry-After

    def _bearer(self) -> str | None:
        return self.token.current() if isinstance(self.token, TokenFile) else self.token

    def _connect(self) -> http.client.HTTPConnection:
        if self.endpoint.scheme == "https":
            return http.client.HTTPSConnection(
                self.endpoint.host, self.endpoint.port, timeout=self.timeout, context=self.tls
            )
        return http.client.HTTPConnection(
            self.endpoint.host, self.endpoint.port, timeout=self.timeout
        )

    def _post(self, connection: http.client.HTTPConnection, body: bytes) -> tuple[int, Outcome]:
        headers = {"Content-Type": "application/json"}
        if bearer := self._bearer():
            headers["Authorization"] = f"Bearer {bearer}"
        connection.request("POST", self.endpoint.path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        outcome = settle(response.status, response.getheader(VERDICT_HEADER))
        if outcome is Outcome.RETRY_ALL:
            self.retry_after = retry_after(response.getheader("Retry-After"))
        return response.status, outcome

    def _due(self) -> list[Spooled]:
        """The oldest signals not waiting out a backoff of their own."""
        now = time.monotonic()
        waiting = {s for s, w in self.waiting.items() if w.not_before > now}
        items = self.spool.peek(self.batch_size + len(waiting))
        oldest = items[0].sequence if items else None
        for sequence in [s for s in self.waiting if oldest is None or s < oldest]:
            del self.waiting[sequence]  # left the spool meanwhile (dropped when full)
        return [i for i in items if i.sequence not in waiting][: self.batch_size]

    def deliver_batch(self) -> bool:
        """One round: True unless the operator could not take signals (back off)."""
        batch = self._due()
        if not batch:
            return True
        connection = self._connect()
        try:
            for item in batch:
                try:
                    status, outcome = self._post(connection, item.body)
                except (OSError, http.client.HTTPException) as error:
                    log.warning("operator unreachable at %s: %s", self.endpoint.host, error)
                    self.metrics.failures.inc()
                    self.retry_after = 0.0
                    return False
                if outcome is Outcome.RETRY_ALL:
                    log.warning("operator answered %s; will retry", status)
                    self.metrics.failures.inc()
                    if status == 401 and isinstance(self.token, TokenFile):
                        self.token.reload()
                    return False
                if outcome is Outcome.RETRY_SIGNAL:
                    self._signal_failed(item)
                    continue
                if outcome is Outcome.ACCEPTED:
                    self.metrics.delivered.inc()
                else:
                    log.error("operator refused a signal for good (%s); dropping it", status)
                    self.metrics.refused.labels(status=str(status)).inc()
                self.waiting.pop(item.sequence, None)
                self.spool.ack(item.sequence)
            return True
        finally:
            connection.close()
            self.metrics.spool_depth.set(len(self.spool))
            self.metrics.dropped.set(self.spool.dropped)

    def _signal_failed(self, item: Spooled) -> None:
        self.metrics.failures.inc()
        previous = self.waiting.get(item.sequence)
        attempts = (previous.attempts if previous else 0) + 1
        if attempts >= MAX_ATTEMPTS_PER_SIGNAL:
            log.error("a signal failed %d times on the operator (500); giving it up", attempts)
            self.metrics.given_up.inc()
            self.waiting.pop(item.sequence, None)
            self.spool.ack(item.sequence)
            return
        delay = self.initial_backoff * 2 ** (attempts - 1)
        delay = jittered(min(delay, self.max_backoff), self.rng)
        self.waiting[item.sequence] = Waiting(attempts, time.monotonic() + delay)
        log.warning(
            "the operator failed on a signal (500, attempt %d); retrying it later", attempts
        )

    def pause(self) -> float:
        """How long to wait when nothing is due: until the first waiting signal, or 1 s."""
        if not self.waiting:
            return 1.0
        first = min(w.not_before for w in self.waiting.values())
        return min(max(first - time.monotonic(), 0.05), 1.0)

    def run(self, stop: threading.Event) -> None:
        backoff = 0.0
        while not stop.is_set():
            if self.deliver_batch():
                backoff = 0.0
                if not self._due():
                    self.wake.wait(self.pause())
                    self.wake.clear()
            else:
                backoff = next_backoff(backoff, self.initial_backoff, self.max_backoff)
                stop.wait(max(jittered(backoff, self.rng), self.retry_after))
