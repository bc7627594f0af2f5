"""A small typed Kubernetes REST client on aiohttp, logged in the way kopf logs in.

The operator needs a dozen calls (get/create/replace a custom resource and its status,
read a pod, its owners, HPAs and PodMetrics, post an Event): plain REST with the
credentials kopf resolved from the kubeconfig or the service account, rather than a
second, untyped client library.
"""

import json
import logging
import os
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import aiohttp
import kopf

from kernel_gossip.kube.client import ApiError, status_error

JsonObject = dict[str, Any]

log = logging.getLogger("kernel_gossip.operator.kube")

REQUEST_TIMEOUT_SECONDS = 10.0


def connection_info(kubeconfig: str | None) -> kopf.ConnectionInfo:
    """Credentials from --kubeconfig, else $KUBECONFIG or ~/.kube/config, else the pod's
    service account; raises LookupError when there are none."""
    settings = kopf.OperatorSettings()
    if kubeconfig is not None:
        os.environ["KUBECONFIG"] = kubeconfig
        info = kopf.login_with_kubeconfig(settings=settings)
    else:
        info = kopf.login_with_service_account(settings=settings) or kopf.login_with_kubeconfig(
            settings=settings
        )
    if info is None:
        raise LookupError("no kubeconfig and no service account: pass --kubeconfig PATH")
    return info


class KubeClient:
    """JSON in, JSON out; errors as ApiError with the server's own message. A 401 logs in
    again through `relogin` (kopf's own login: the service account's token file, or the
    kubeconfig, read afresh) and retries once, so a rotated token is picked up."""

    def __init__(
        self,
        info: kopf.ConnectionInfo,
        relogin: Callable[[], kopf.ConnectionInfo] | None = None,
    ) -> None:
        self.server = info.server.rstrip("/")
        self._relogin = relogin
        self._auth = info.as_http_headers()
        ssl = info.as_ssl_context() if self.server.startswith("https:") else False
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=ssl),
            timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS),
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        await self._session.close()

    async def request(
        self,
        method: str,
        path: str,
        body: Mapping[str, Any] | None = None,
        content_type: str = "application/json",
    ) -> JsonObject:
        try:
            return await self._request_once(method, path, body, content_type)
        except ApiError as error:
            if error.status != 401 or self._relogin is None:
                raise
            log.warning("the API server refused our credentials (401): logging in again")
            try:
                self._auth = self._relogin().as_http_headers()
            except (LookupError, OSError, KeyError, kopf.LoginError) as failure:
                log.error("cannot log in again: %s", failure)
                raise error from None
            return await self._request_once(method, path, body, content_type)

    async def _request_once(
        self, method: str, path: str, body: Mapping[str, Any] | None, content_type: str
    ) -> JsonObject:
        data = None if body is None else json.dumps(body, allow_nan=False)
        headers = {**self._auth, "Content-Type": content_type, "Accept": "application/json"}
        started = time.perf_counter()
        async with self._session.request(
            method, self.server + path, data=data, headers=headers
        ) as response:
            text = await response.text()
            elapsed_ms = (time.perf_counter() - started) * 1000
            log.debug("%s %s: %d in %.1f ms", method, path, response.status, elapsed_ms)
            if response.status >= 400:
                raise status_error(response.status, text, f"{method} {path}")
            answer = json.loads(text) if text else {}
            if not isinstance(answer, dict):
                raise ApiError(
                    response.status,
                    f"{method} {path}: not a JSON object: {text[:200]}",
                    reason="BadResponse",
                )
            return answer

    async def get(self, path: str, *, cached: bool = False) -> JsonObject | None:
        """The object, or None when the server says 404 (absent, or a type it does not serve).
        cached=True asks for resourceVersion=0: the API server answers from its watch cache,
        without a read from etcd, as the kubelet reads its pods (it may lag by moments)."""
        try:
            return await self.request("GET", f"{path}?resourceVersion=0" if cached else path)
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    async def create(self, path: str, body: Mapping[str, Any]) -> JsonObject:
        return await self.request("POST", path, body)

    async def replace(self, path: str, body: Mapping[str, Any]) -> JsonObject:
        return await self.request("PUT", path, body)


def core_path(namespace: str, plural: str, name: str | None = None) -> str:
    """/api/v1/namespaces/NS/PLURAL[/NAME]"""
    return _path("/api/v1", namespace, plural, name)


def group_path(
    group_version: str, namespace: str, plural: str, name: str | None = None, status: bool = False
) -> str:
    """/apis/GROUP/VERSION/namespaces/NS/PLURAL[/NAME][/status]"""
    return _path(f"/apis/{group_version}", namespace, plural, name) + ("/status" if status else "")


def _path(prefix: str, namespace: str, plural: str, name: str | None) -> str:
    path = f"{prefix}/namespaces/{quote(namespace, safe='')}/{plural}"
    return path if name is None else f"{path}/{quote(name, safe='')}"
