"""A small client of a Kubernetes API server from a kubeconfig (its current context, token
auth as the lab's kubeconfig has): what the lab's kubelet and `lab pods` talk through.
One HTTPS connection per call, so threads may share a client; watches stream JSON lines.
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


class ApiStatusError(UserError):
    """The API server answered with an error status; `reason` is its Status reason."""

    def __init__(self, status: int, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason


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
        self.kubeconfig = kubeconfig
        self.server, self._context, self._token = read_kubeconfig(kubeconfig)

    def _connection(self, timeout: float) -> http.client.HTTPSConnection:
        url = urllib.parse.urlsplit(self.server)
        return http.client.HTTPSConnection(
            url.hostname or "", url.port or 443, context=self._context, timeout=timeout
        )

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return headers

    def request(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        query: dict[str, str] | None = None,
    ) -> Any:
        """One API call; the decoded JSON answer, or ApiStatusError with the API's message
        (UserError when the server does not answer)."""
        url = f"{path}?{urllib.parse.urlencode(query)}" if query else path
        connection = self._connection(30.0)
        try:
            data = None if body is None else json.dumps(body, allow_nan=False).encode()
            connection.request(method, url, body=data, headers=self._headers())
            response = connection.getresponse()
            text = response.read().decode()
        except (OSError, http.client.HTTPException) as error:
            raise UserError(f"the API server at {self.server} did not answer: {error}") from None
        finally:
            connection.close()
        if response.status >= 300:
            message, reason = text[:300], ""
            with contextlib.suppress(ValueError, AttributeError):
                answer = json.loads(text)
                message, reason = answer.get("message", message), answer.get("reason", "")
            raise ApiStatusError(
                response.status, f"{method} {path}: {response.status} {message}", reason
            )
        return json.loads(text) if text else {}

    def ready(self) -> bool:
        try:
            self.request("GET", "/api/v1/namespaces/default/pods", query={"limit": "1"})
        except UserError:
            return False
        return True

    def watch(
        self, path: str, resource_version: str, timeout_seconds: int = 300
    ) -> Iterator[dict[str, Any]]:
        """The watch events of a collection after resource_version, as they come; ends
        when the server closes the watch (its timeout) or the connection breaks."""
        query = {
            "watch": "true",
            "resourceVersion": resource_version,
            "timeoutSeconds": str(timeout_seconds),
            "allowWatchBookmarks": "true",
        }
        connection = self._connection(timeout_seconds + 30.0)
        try:
            connection.request(
                "GET", f"{path}?{urllib.parse.urlencode(query)}", headers=self._headers()
            )
            response = connection.getresponse()
            if response.status != 200:
                text = response.read().decode(errors="replace")
                raise ApiStatusError(response.status, f"watch {path}: {text[:300]}")
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
