"""Sends the spool to the operator's webhook, oldest first, with exponential backoff.

Batches: each round takes up to `batch_size` spooled signals and posts them in order over
one keep-alive connection (the webhook takes one signal per request). A signal leaves the
spool only when the operator accepted it (2xx), or refused it for good (a 4xx other than
401, 408 and 429: resending the same body cannot succeed, and it must not block the ones
behind it). Anything else (connection refused, 5xx, 401 while a token is rotated) keeps it
at the head of the spool and waits 0.5 s, 1 s, 2 s, ... up to 30 s before the next try.
"""

import http.client
import logging
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Counter, Gauge

from kernel_gossip.agent.spool import Spool

log = logging.getLogger("kernel_gossip.agent")

WEBHOOK_PATH = "/webhook/ebpf"
RETRYABLE_CLIENT_ERRORS = {401, 408, 429}


def next_backoff(current: float, initial: float, maximum: float) -> float:
    return min(maximum, initial if current <= 0 else current * 2)


def is_final(status: int) -> bool:
    """Whether a reply settles the signal: accepted, or refused for good."""
    return 200 <= status < 300 or (400 <= status < 500 and status not in RETRYABLE_CLIENT_ERRORS)


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


class Delivery:
    def __init__(
        self,
        spool: Spool,
        operator_url: str,
        token: str | None,
        metrics: AgentMetrics,
        batch_size: int = 50,
        timeout: float = 10.0,
        initial_backoff: float = 0.5,
        max_backoff: float = 30.0,
    ) -> None:
        self.spool = spool
        self.endpoint = Endpoint.parse(operator_url)
        self.token = token
        self.metrics = metrics
        self.batch_size = batch_size
        self.timeout = timeout
        self.initial_backoff = initial_backoff
        self.max_backoff = max_backoff
        self.wake = threading.Event()  # set by producers: something was spooled

    def _connect(self) -> http.client.HTTPConnection:
        if self.endpoint.scheme == "https":
            return http.client.HTTPSConnection(
                self.endpoint.host, self.endpoint.port, timeout=self.timeout
            )
        return http.client.HTTPConnection(
            self.endpoint.host, self.endpoint.port, timeout=self.timeout
        )

    def _post(self, connection: http.client.HTTPConnection, body: bytes) -> int:
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        connection.request("POST", self.endpoint.path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status

    def deliver_batch(self) -> bool:
        """One round: True when everything taken was settled, False to back off."""
        batch = self.spool.peek(self.batch_size)
        if not batch:
            return True
        connection = self._connect()
        try:
            for item in batch:
                try:
                    status = self._post(connection, item.body)
                except (OSError, http.client.HTTPException) as error:
                    log.warning("operator unreachable at %s: %s", self.endpoint.host, error)
                    self.metrics.failures.inc()
                    return False
                if not is_final(status):
                    log.warning("operator answered %s; will retry", status)
                    self.metrics.failures.inc()
                    return False
                if 200 <= status < 300:
                    self.metrics.delivered.inc()
                else:
                    log.error("operator refused a signal for good (%s); dropping it", status)
                    self.metrics.refused.labels(status=str(status)).inc()
                self.spool.ack(item.sequence)
            return True
        finally:
            connection.close()
            self.metrics.spool_depth.set(len(self.spool))
            self.metrics.dropped.set(self.spool.dropped)

    def run(self, stop: threading.Event) -> None:
        backoff = 0.0
        while not stop.is_set():
            if self.deliver_batch():
                backoff = 0.0
                if not self.spool.peek(1):
                    self.wake.wait(1.0)
                    self.wake.clear()
            else:
                backoff = next_backoff(backoff, self.initial_backoff, self.max_backoff)
                stop.wait(backoff)
