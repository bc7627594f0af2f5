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
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import kopf
from aiohttp import web
from pydantic import ValidationError

from kernel_gossip.analysis import Thresholds, birth_summary, whisper_status
from kernel_gossip.errors import UserError
from kernel_gossip.operator import podfacts
from kernel_gossip.operator.kube import ApiError, KubeClient, connection_info, core_path
from kernel_gossip.operator.webhook import SIGNAL_PATHS, Webhook
from kernel_gossip.operator.writer import (
    CERTIFICATES,
    WHISPERS,
    WRITTEN_BY,
    Writer,
    announce_whisper,
    previous_history,
)
from kernel_gossip.resources import (
    GROUP,
    VERSION,
    KernelWhisperSpec,
    PodBirthCertificateSpec,
    PodBirthCertificateStatus,
)

log = logging.getLogger("kernel_gossip.operator")

TOKEN_SECRET = "kernel-gossip-webhook"
TOKEN_KEY = "token"


@dataclass(frozen=True)
class OperatorConfig:
    kubeconfig: str | None
    namespace: str
    host: str
    port: int
    token_file: Path | None
    insecure_webhook: bool
    thresholds: Thresholds


async def serve(config: OperatorConfig) -> None:
    """Run until SIGINT/SIGTERM (kopf's own signal handling stops it gracefully)."""
    try:
        info = connection_info(config.kubeconfig)
    except (LookupError, OSError, KeyError, kopf.LoginError) as error:
        raise UserError(f"cannot read the cluster credentials: {error}") from None
    async with KubeClient(info) as client:
        try:
            await ensure_namespace(client, config.namespace)
            token = await webhook_token(client, config)
        except (aiohttp.ClientError, TimeoutError, OSError) as error:
            raise UserError(f"cannot reach the API server at {info.server}: {error}") from None
        writer = Writer(client, config.namespace, config.thresholds)
        hook = Webhook(writer, token)
        runner = web.AppRunner(hook.application(), access_log=None)
        await runner.setup()
        try:
            try:
                await web.TCPSite(runner, config.host, config.port).start()
            except OSError as error:
                raise UserError(
                    f"cannot listen on {config.host}:{config.port}: {error.strerror}"
                ) from None
            log.info(
                "webhook listening on http://%s:%d (%s), resources go to namespace %s",
                config.host,
                config.port,
                ", ".join(SIGNAL_PATHS),
                config.namespace,
            )
            await kopf.operator(
                registry=build_registry(info, client, config),
                standalone=True,
                namespaces=[config.namespace],
                ready_flag=hook.ready,
            )
        finally:
            await runner.cleanup()


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


async def webhook_token(client: KubeClient, config: OperatorConfig) -> str | None:
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
        try:
            token = config.token_file.read_text().strip()
        except OSError as error:
            raise UserError(
                f"cannot read --token-file {config.token_file}: {error.strerror}"
            ) from None
        if not token:
            raise UserError(f"--token-file {config.token_file} is empty")
        return token
    return await _secret_token(client, config.namespace)


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
    info: kopf.ConnectionInfo, client: KubeClient, config: OperatorConfig
) -> kopf.OperatorRegistry:
    """kopf's handlers: login with our credentials, status for hand-written resources."""
    registry = kopf.OperatorRegistry()
    by_hand = {WRITTEN_BY: kopf.ABSENT}

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return info

    @kopf.on.create(
        GROUP, VERSION, WHISPERS.plural, id="status", annotations=by_hand, registry=registry
    )
    @kopf.on.update(
        GROUP,
        VERSION,
        WHISPERS.plural,
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
        await announce_whisper(client, str(body.metadata.name), spec, status, pod)

    @kopf.on.create(
        GROUP, VERSION, CERTIFICATES.plural, id="status", annotations=by_hand, registry=registry
    )
    @kopf.on.update(
        GROUP,
        VERSION,
        CERTIFICATES.plural,
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
