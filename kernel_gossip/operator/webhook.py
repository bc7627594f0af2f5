"""The webhook: signals in over HTTP, custom resources out.

POST /webhook/ebpf and /webhook/pixie (one handler; the talk posts to the latter) take a
signal, check the bearer token, the content type, the size and the payload model, write
the resource and answer 202 once it is written. Every refusal is a 4xx with a one-line
JSON error; only trouble on the API server's side is a 5xx. GET /healthz and /metrics
(Prometheus) need no token.

A refusal of the signal itself (bad JSON, wrong type, invalid or contradicting fields) is
final: it carries `Kernel-Gossip-Verdict: final`, and only such a reply makes the agent
drop a signal. Backpressure: at most `max_in_flight` signals are worked on at once (more
get 429 with Retry-After), and each has `budget_seconds` (503 with Retry-After past it),
less than the agent's timeout, so a sender never gives up on work still running here.
"""

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import aiohttp
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.exposition import generate_latest
from pydantic import ValidationError

from kernel_gossip.kube.client import ApiError
from kernel_gossip.operator.writer import ConflictsExhausted, PodMismatch, Writer, Written
from kernel_gossip.schema.signal import CpuThrottlePayload, parse_signal

log = logging.getLogger("kernel_gossip.operator")

MAX_BODY_BYTES = 1024 * 1024
SIGNAL_PATHS = ("/webhook/ebpf", "/webhook/pixie")
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0)
ERROR_DETAIL_CHARS = 400
TAG_ERRORS = {"union_tag_invalid", "union_tag_not_found"}
FINAL_STATUSES = {400, 409, 413, 415, 422}
"""Refusals of the signal's content: resending the same body cannot succeed."""
VERDICT_HEADER = "Kernel-Gossip-Verdict"
MAX_IN_FLIGHT = 32
SIGNAL_BUDGET_SECONDS = 20.0
"""The longest a signal is worked on; the agent's timeout (30 s) is longer."""
RETRY_AFTER_BUSY_SECONDS = 1
RETRY_AFTER_TROUBLE_SECONDS = 5

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Metrics:
    """The webhook's Prometheus series, in a registry of their own."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.received = Counter(
            "kernel_gossip_webhook_events_received",
            "Signals posted to the webhook, before any check.",
            registry=self.registry,
        )
        self.accepted = Counter(
            "kernel_gossip_webhook_events_accepted",
            "Signals written as custom resources, by signal type.",
            ["type"],
            registry=self.registry,
        )
        self.rejected = Counter(
            "kernel_gossip_webhook_events_rejected",
            "Signals refused, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self.writes = Counter(
            "kernel_gossip_cr_writes",
            "Custom resources written, by kind and operation.",
            ["kind", "operation"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "kernel_gossip_signal_to_cr_seconds",
            "From receipt of a signal to its custom resource written (spec and status).",
            ["type"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )


class Refusal(Exception):
    """A signal the webhook will not write: an HTTP status, a metric reason, one line."""

    def __init__(
        self, status: int, reason: str, message: str, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.retry_after = retry_after

    def response(self) -> web.Response:
        headers = {}
        if self.status in FINAL_STATUSES:
            headers[VERDICT_HEADER] = "final"
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        return error_response(self.status, self.message, headers)


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> web.Response:
    return web.json_response({"error": " ".join(message.split())}, status=status, headers=headers)


def describe(error: ValidationError) -> Refusal:
    """A payload model's complaint as one line, classified for the metrics."""
    problems = error.errors(include_url=False)
    first = problems[0]["type"]
    if first == "json_invalid":
        return Refusal(400, "bad_json", f"body is not valid JSON: {problems[0]['msg']}")
    if first in TAG_ERRORS:
        return Refusal(
            422, "unknown_type", "field 'type' must be one of: cpu_throttle, pod_creation"
        )
    parts = []
    for problem in problems:
        location = [_field(part) for part in problem["loc"][1:]] or ["body"]
        parts.append(f"{'.'.join(location)}: {problem['msg']}")
    return Refusal(422, "invalid", "; ".join(parts)[:ERROR_DETAIL_CHARS])


def _field(part: str | int) -> str:
    """A field name as sent, quoted and escaped when it is not a plain name."""
    text = str(part)
    return text if text.isidentifier() or text.isdigit() else repr(text[:40])


def bearer_matches(header: str | None, token: str) -> bool:
    """Constant-time; any header bytes (non-ASCII included) are compared, never decoded."""
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode("utf-8", "surrogateescape"), token.encode()
    )


class Tokens(Protocol):
    """Where the expected token comes from; refresh=True re-reads it (rate-limited)."""

    async def expected(self, refresh: bool) -> str: ...


@dataclass
class Webhook:
    writer: Writer
    tokens: Tokens | None
    metrics: Metrics = field(default_factory=Metrics)
    ready: asyncio.Event = field(default_factory=asyncio.Event)
    max_in_flight: int = MAX_IN_FLIGHT
    budget_seconds: float = SIGNAL_BUDGET_SECONDS
    _in_flight: int = field(default=0, init=False)

    def application(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[json_errors])
        for path in SIGNAL_PATHS:
            app.router.add_post(path, self.receive)
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/metrics", self.prometheus)
        return app

    async def healthz(self, _: web.Request) -> web.Response:
        if not self.ready.is_set():
            return web.json_response({"status": "starting"}, status=503)
        return web.json_response({"status": "ok"})

    async def prometheus(self, _: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self.metrics.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )

    async def receive(self, request: web.Request) -> web.Response:
        received = time.perf_counter()
        self.metrics.received.inc()
        try:
            written = await self._within_limits(request)
        except Refusal as refusal:
            self.metrics.rejected.labels(refusal.reason).inc()
            log.info("refused a signal (%s): %s", refusal.status, refusal.message)
            return refusal.response()
        self.metrics.writes.labels(written.kind.kind, written.operation).inc()
        self.metrics.accepted.labels(written.signal_type).inc()
        self.metrics.latency.labels(written.signal_type).observe(time.perf_counter() - received)
        return web.json_response({"status": "accepted", "name": written.name}, status=202)

    async def _within_limits(self, request: web.Request) -> Written:
        if self._in_flight >= self.max_in_flight:
            raise Refusal(
                429, "busy", "too many signals in flight", retry_after=RETRY_AFTER_BUSY_SECONDS
            )
        self._in_flight += 1
        try:
            async with asyncio.timeout(self.budget_seconds):
                return await self._write(request)
        except TimeoutError:
            raise Refusal(
                503,
                "over_budget",
                f"not written within {self.budget_seconds:g} s",
                retry_after=RETRY_AFTER_TROUBLE_SECONDS,
            ) from None
        finally:
            self._in_flight -= 1

    async def _authorized(self, header: str | None) -> bool:
        if self.tokens is None:
            return True
        token = await self.tokens.expected(refresh=False)
        if bearer_matches(header, token):
            return True
        renewed = await self.tokens.expected(refresh=True)  # rotated under us?
        return renewed != token and bearer_matches(header, renewed)

    async def _write(self, request: web.Request) -> Written:
        if not await self._authorized(request.headers.get("Authorization")):
            raise Refusal(401, "unauthorized", "missing or wrong 'Authorization: Bearer' token")
        if request.content_type != "application/json":
            raise Refusal(
                415,
                "unsupported_media_type",
                f"Content-Type must be application/json, not {request.content_type!r}",
            )
        body = await read_body(request)
        try:
            signal = parse_signal(body)
        except ValidationError as error:
            raise describe(error) from None
        try:
            if isinstance(signal, CpuThrottlePayload):
                return await self.writer.whisper(signal)
            return await self.writer.certificate(signal)
        except PodMismatch as error:
            raise Refusal(409, "pod_mismatch", str(error)) from None
        except ApiError as error:
            raise api_refusal(error) from None
        except ConflictsExhausted as error:
            raise Refusal(
                503, "conflicts", str(error), retry_after=RETRY_AFTER_TROUBLE_SECONDS
            ) from None
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            log.error("API server unreachable writing a resource: %s", error)
            raise Refusal(
                503,
                "api_unreachable",
                "the API server is unreachable",
                retry_after=RETRY_AFTER_TROUBLE_SECONDS,
            ) from None


async def read_body(request: web.Request) -> bytes:
    too_large = Refusal(413, "too_large", f"body over {MAX_BODY_BYTES} bytes")
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise too_large
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise too_large from None


def api_refusal(error: ApiError) -> Refusal:
    """The API server refused the resource: its content (400, 422) is the sender's problem,
    anything else (missing CRDs or namespace, credentials, overload) is ours. The reply
    names the refusal, never the API server's message (it may name other objects): that
    goes to the operator's log."""
    if error.status in (400, 422):
        log.warning("the API server refused a resource: %s", error)
        return Refusal(422, "api_rejected", f"the API server refused the resource ({error.reason})")
    log.error("API server error writing a resource: %s", error)
    return Refusal(
        503,
        "api_error",
        f"the API server answered {error.status}",
        retry_after=RETRY_AFTER_TROUBLE_SECONDS,
    )


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Unknown paths and methods, and bugs, answer in the same one-line JSON."""
    try:
        return await handler(request)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        return error_response(error.status, f"{error.reason}: {request.method} {request.path}")
    except Exception:
        log.exception("webhook bug on %s %s", request.method, request.path)
        return error_response(500, "internal error (logged by the operator)")
