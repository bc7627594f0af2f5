"""The Kubernetes REST client: a kubeconfig's current context (token auth, as the lab's
kubeconfig has), or a server and its CA. What the lab, its stand-ins and the rehearsal
talk through; one HTTPS connection per call, so threads may share a client; watches
stream JSON lines. ApiError is the one error type of every client here (the operator's
async one and the scenarios' too).
"""

import base64
import contextlib
import http.client
import json
import ssl
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from kernel_gossip.errors import UserError


class ApiError(UserError):
    """The API server answered with an error status; `reason` is its Status reason."""

    def __init__(self, status: int, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


def status_error(status: int, text: str, call: str) -> ApiError:
    """The error for an answer: the Status object's message and reason when it is one."""
    message, reason = text[:500], ""
    with contextlib.suppress(ValueError, AttributeError):
        answer = json.loads(text)
        message, reason = str(answer.get("message", message))[:500], str(answer.get("reason", ""))
    return ApiError(status, f"{call}: {status} {message}", reason)


def read_kubeconfig(path: Path) -> tuple[str, ssl.SSLContext, str | None]:
    """(server, TLS context trusting its CA, bearer token) of the current context."""
    try:
        config = yaml.safe_load(path.read_text())
        context_name = config["current-context"]
        context = next(c["context"] for c in config["contexts"] if c["name"] == context_name)
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
        user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
        server = str(cluster["server"])
    except (OSError, yaml.YAMLError, KeyError, TypeError, StopIteration) as error:
        raise UserError(f"cannot use kubeconfig {path}: {error!r}") from None
    tls = ssl.create_default_context()
    if "certificate-authority-data" in cluster:
        tls.load_verify_locations(
            cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
        )
    elif "certificate-authority" in cluster:
        tls.load_verify_locations(cafile=cluster["certificate-authority"])
    token = user.get("token")
    if token is None and user:
        raise UserError(f"kubeconfig {path}: only token authentication is supported")
    return server, tls, token


class KubeClient:
    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig: Path | None = kubeconfig
        self.server, self._context, self._token = read_kubeconfig(kubeconfig)

    @classmethod
    def trusting(cls, server: str, ca_file: Path) -> "KubeClient":
        """A client of `server` trusting `ca_file`, sending no credentials: the lab API
        server's own handle, usable before its kubeconfig is written."""
        client = cls.__new__(cls)
        client.kubeconfig = None
        client.server, client._token = server, None
        client._context = ssl.create_default_context(cafile=str(ca_file))
        return client

    def _connection(self, timeout: float) -> http.client.HTTPSConnection:
        url = urllib.parse.urlsplit(self.server)
        return http.client.HTTPSConnection(
            url.hostname or "", url.port or 443, context=self._context, timeout=timeout
        )

    def _headers(self, accept: str = "application/json") -> dict[str, str]:
        headers = {"Accept": accept, "Content-Type": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    def send(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
        accept: str = "application/json",
        timeout: float = 30.0,
    ) -> tuple[int, str]:
        """One API call as it is answered: (status, body text), whatever the status;
        OSError and HTTPException when the server does not answer."""
        url = f"{path}?{urllib.parse.urlencode(query)}" if query else path
        connection = self._connection(timeout)
        try:
            data = None if body is None else json.dumps(body, allow_nan=False).encode()
            headers = {**self._headers(accept), "Content-Type": content_type}
            connection.request(method, url, body=data, headers=headers)
            response = connection.getresponse()
            return response.status, response.read().decode()
        finally:
            connection.close()

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        query: dict[str, str] | None = None,
    ) -> Any:
        """One API call; the decoded JSON answer, or ApiError with the API's message
        (UserError when the server does not answer)."""
        try:
            status, text = self.send(method, path, body, query=query)
        except (OSError, http.client.HTTPException) as error:
            raise UserError(f"the API server at {self.server} did not answer: {error}") from None
        if status >= 300:
            raise status_error(status, text, f"{method} {path}")
        return json.loads(text) if text else {}

    def ready(self) -> bool:
        try:
            self.request("GET", "/api/v1/namespaces/default/pods", query={"limit": "1"})
        except UserError:
            return False
        return True

    def watch(
        self, path: str, resource_version: str, timeout_seconds: int = 300, bookmarks: bool = True
    ) -> Iterator[dict[str, Any]]:
        """The watch events of a collection after resource_version, as they come; ends
        when the server closes the watch (its timeout) or the connection breaks."""
        query = {
            "watch": "true",
            "resourceVersion": resource_version,
            "timeoutSeconds": str(timeout_seconds),
        }
        if bookmarks:
            query["allowWatchBookmarks"] = "true"
        connection = self._connection(timeout_seconds + 30.0)
        try:
            connection.request(
                "GET", f"{path}?{urllib.parse.urlencode(query)}", headers=self._headers()
            )
            response = connection.getresponse()
            if response.status != 200:
                text = response.read().decode(errors="replace")
                raise ApiError(response.status, f"watch {path}: {response.status} {text[:500]}")
            while line := response.readline():
                yield json.loads(line)
        except (OSError, http.client.HTTPException) as error:
            raise UserError(f"the watch of {path} broke: {error}") from None
        finally:
            connection.close()


def pod_path(namespace: str, name: str = "", subresource: str = "") -> str:
    path = f"/api/v1/namespaces/{namespace}/pods"
    if name:
        path += f"/{name}"
    if subresource:
        path += f"/{subresource}"
    return path
