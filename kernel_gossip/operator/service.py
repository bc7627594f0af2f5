"""One process, one event loop: the webhook's aiohttp site and kopf's operator.

The site is bound before kopf starts (a busy port is a one-line error, not a retry loop);
/healthz turns ready when kopf's startup is done. kopf logs in with the same credentials
as our client, watches only the operator's namespace and concludes the status of
KernelWhispers and PodBirthCertificates written by hand (kubectl apply); the ones the
webhook writes carry an annotation and get their status from the webhook itself.
"""

import base64
import binascii
import logging
import ssl
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import kopf
from aiohttp import web
from pydantic import ValidationError

from kernel_gossip.errors import UserError
from kernel_gossip.host.tokens import TokenFile
from kernel_gossip.kube.client import ApiError
from kernel_gossip.operator import podfacts
from kernel_gossip.operator.analysis import Thresholds, birth_summary, whisper_status
from kernel_gossip.operator.events import EventRecorder
from kernel_gossip.operator.kube import KubeClient, connection_info, core_path
from kernel_gossip.operator.webhook import SIGNAL_PATHS, Webhook
from kernel_gossip.operator.writer import (
    WRITTEN_BY,
    Writer,
    announce_whisper,
    previous_history,
)
from kernel_gossip.schema.crds import KERNEL_WHISPER, POD_BIRTH_CERTIFICATE
from kernel_gossip.schema.resources import (
    GROUP,
    VERSION,
    KernelWhisperSpec,
    PodBirthCertificateSpec,
    PodBirthCertificateStatus,
)

log = logging.getLogger("kernel_gossip.operator")

TOKEN_SECRET = "kernel-gossip-webhook"
TOKEN_KEY = "token"
SECRET_REFRESH_SECONDS = 5.0
"""A wrong token makes the webhook re-read the Secret at most this often."""


@dataclass(frozen=True)
class OperatorConfig:
    kubeconfig: str | None
    namespace: str
    host: str
    port: int
    token_file: Path | None
    insecure_webhook: bool
    thresholds: Thresholds
    tls: tuple[Path, Path] | None = None  # (certificate, key): HTTPS instead of HTTP


async def serve(config: OperatorConfig) -> None:
    """Run until SIGINT/SIGTERM (kopf's own signal handling stops it gracefully)."""
    try:
        info = connection_info(config.kubeconfig)
    except (LookupError, OSError, KeyError, kopf.LoginError) as error:
        raise UserError(f"cannot read the cluster credentials: {error}") from None
    async with KubeClient(info, relogin=lambda: connection_info(config.kubeconfig)) as client:
        try:
            await ensure_namespace(client, config.namespace)
            tokens = await webhook_tokens(client, config)
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            raise UserError(f"cannot reach the API server at {info.server}: {error}") from None
        writer = Writer(client, config.namespace, config.thresholds, EventRecorder(client))
        hook = Webhook(writer, tokens)
        context = tls_context(config.tls)
        runner = web.AppRunner(hook.application(), access_log=None)
        await runner.setup()
        try:
            try:
                await web.TCPSite(runner, config.host, config.port, ssl_context=context).start()
            except OSError as error:
                raise UserError(
                    f"cannot listen on {config.host}:{config.port}: {error.strerror}"
                ) from None
            log.info(
                "webhook listening on %s://%s:%d (%s), resources go to namespace %s",
                "https" if context else "http",
                config.host,
                config.port,
                ", ".join(SIGNAL_PATHS),
                config.namespace,
            )
            await kopf.operator(
                registry=build_registry(client, writer.events, config),
                standalone=True,
                namespaces=[config.namespace],
                ready_flag=hook.ready,
            )
        finally:
            await runner.cleanup()


def tls_context(files: tuple[Path, Path] | None) -> ssl.SSLContext | None:
    """A server context (TLS 1.2 or later) from the certificate and key, or None: HTTP."""
    if files is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(*files)
    except (OSError, ssl.SSLError) as error:
        raise UserError(
            f"cannot load the TLS certificate {files[0]} / key {files[1]}: {error}"
        ) from None
    return context


async def ensure_namespace(client: KubeClient, namespace: str) -> None:
    """Create the resources' namespace when missing (the lab starts without it)."""
    try:
        if await client.get(f"/api/v1/namespaces/{namespace}") is None:
            await client.create(
                "/api/v1/namespaces",
                {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
            )
            log.info("created namespace %s", namespace)
    except ApiError as error:
        if error.status != 409:
            log.warning("cannot check or create namespace %s: %s", namespace, error)


@dataclass
class FileTokens:
    """--token-file, re-read when the file changes (a rotated Secret volume)."""

    file: TokenFile

    async def expected(self, refresh: bool) -> str:
        return self.file.reload() if refresh else self.file.current()


@dataclass
class SecretTokens:
    """Secret kernel-gossip-webhook, re-read (at most every few seconds) on a wrong token."""

    client: KubeClient
    namespace: str
    token: str
    read_at: float = field(default_factory=time.monotonic)

    async def expected(self, refresh: bool) -> str:
        if refresh and time.monotonic() - self.read_at >= SECRET_REFRESH_SECONDS:
            self.read_at = time.monotonic()
            try:
                self.token = await _secret_token(self.client, self.namespace)
            except (UserError, aiohttp.ClientError, TimeoutError, OSError) as error:
                log.warning("cannot re-read the webhook token: %s; keeping the previous", error)
        return self.token


async def webhook_tokens(
    client: KubeClient, config: OperatorConfig
) -> FileTokens | SecretTokens | None:
    """From --token-file, else from Secret kernel-gossip-webhook (key `token`); None only
    with --insecure-webhook."""
    if config.insecure_webhook:
        log.warning(
            "--insecure-webhook: anyone who reaches port %d can write resources; "
            "for a talk demo only",
            config.port,
        )
        return None
    if config.token_file is not None:
        return FileTokens(TokenFile(config.token_file))
    return SecretTokens(client, config.namespace, await _secret_token(client, config.namespace))


async def _secret_token(client: KubeClient, namespace: str) -> str:
    missing = UserError(
        f"no webhook token: pass --token-file FILE, create Secret {TOKEN_SECRET} with key "
        f"'{TOKEN_KEY}' in namespace {namespace}, or --insecure-webhook (demo only)"
    )
    try:
        secret = await client.get(core_path(namespace, "secrets", TOKEN_SECRET))
    except ApiError as error:
        raise UserError(f"cannot read Secret {namespace}/{TOKEN_SECRET}: {error}") from None
    encoded = ((secret or {}).get("data") or {}).get(TOKEN_KEY)
    if not isinstance(encoded, str):
        raise missing
    try:
        token = base64.b64decode(encoded, validate=True).decode().strip()
    except (binascii.Error, UnicodeDecodeError):
        raise UserError(f"Secret {TOKEN_SECRET} key '{TOKEN_KEY}' is not base64 text") from None
    if not token:
        raise missing
    return token


def build_registry(
    client: KubeClient, events: EventRecorder, config: OperatorConfig
) -> kopf.OperatorRegistry:
    """kopf's handlers: login with fresh credentials (kopf logs in again on a 401, so a
    rotated service-account token is picked up), status for hand-written resources."""
    registry = kopf.OperatorRegistry()
    by_hand = {WRITTEN_BY: kopf.ABSENT}

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return connection_info(config.kubeconfig)

    @kopf.on.create(
        GROUP, VERSION, KERNEL_WHISPER.plural, id="status", annotations=by_hand, registry=registry
    )
    @kopf.on.update(
        GROUP,
        VERSION,
        KERNEL_WHISPER.plural,
        id="status",
        field="spec",
        annotations=by_hand,
        registry=registry,
    )
    async def conclude_whisper(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        try:
            spec = KernelWhisperSpec.model_validate(dict(body.spec))
        except ValidationError as error:
            raise kopf.PermanentError(f"spec does not match the model: {error}") from None
        facts, pod = await podfacts.gather(
            client, spec.pod_namespace, spec.pod_name, spec.container_name
        )
        history = previous_history(dict(body.status))
        status = whisper_status(spec, facts, history, config.thresholds, datetime.now(UTC))
        patch.status.update(status.model_dump(by_alias=True, mode="json"))
        await announce_whisper(events, str(body.metadata.name), spec, status, pod)

    @kopf.on.create(
        GROUP,
        VERSION,
        POD_BIRTH_CERTIFICATE.plural,
        id="status",
        annotations=by_hand,
        registry=registry,
    )
    @kopf.on.update(
        GROUP,
        VERSION,
        POD_BIRTH_CERTIFICATE.plural,
        id="status",
        field="spec",
        annotations=by_hand,
        registry=registry,
    )
    def conclude_certificate(body: kopf.Body, patch: kopf.Patch, **_: Any) -> None:
        try:
            spec = PodBirthCertificateSpec.model_validate(dict(body.spec))
        except ValidationError as error:
            raise kopf.PermanentError(f"spec does not match the model: {error}") from None
        status = PodBirthCertificateStatus(
            summary=birth_summary(spec), recorded_at=datetime.now(UTC)
        )
        patch.status.update(status.model_dump(by_alias=True, mode="json"))
        log.info("BIRTH %s: %s", body.metadata.name, status.summary)

    return registry
