"""Runs `kernel-gossip operator` as a real subprocess against the lab API server and
talks to its webhook over real HTTP."""

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kernel_gossip.lab.apiserver import LabApi
from kernel_gossip.schema.resources import API_VERSION

KERNEL_GOSSIP = str(Path(sys.executable).with_name("kernel-gossip"))
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 30.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass(frozen=True)
class Reply:
    status: int
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Operator:
    """One `kernel-gossip operator` process; start() waits for /healthz."""

    api: LabApi
    namespace: str
    workdir: Path
    token: str | None = "test-token-7f3a"
    extra: list[str] = field(default_factory=list)
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> Path:
        return self.workdir / f"operator-{self.namespace}-{self.port}.log"

    def command(self) -> list[str]:
        auth = ["--insecure-webhook"]
        if self.token is not None:
            token_file = self.workdir / "token"
            token_file.write_text(self.token + "\n")
            auth = ["--token-file", str(token_file)]
        return [
            KERNEL_GOSSIP,
            "operator",
            "--kubeconfig",
            str(self.api.kubeconfig),
            "--namespace",
            self.namespace,
            "--webhook-host",
            "127.0.0.1",
            "--webhook-port",
            str(self.port),
            *auth,
            *self.extra,
        ]

    def start(self) -> "Operator":
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                self.command(), stdout=out, stderr=subprocess.STDOUT, env=os.environ.copy()
            )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"operator exited {self.process.returncode}:\n{self.output()}")
            try:
                if self.get("/healthz").status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"operator not healthy in {START_TIMEOUT_SECONDS} s:\n{self.output()}")

    def stop(self) -> int:
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        code = self.process.returncode
        self.process = None
        return code

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def _request(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> Reply:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return Reply(response.status, response.read())
        finally:
            connection.close()

    def get(self, path: str) -> Reply:
        return self._request("GET", path, None, {})

    def post(
        self,
        body: bytes | str,
        *,
        token: str | None = None,
        authorize: bool = True,
        content_type: str = "application/json",
        path: str = "/webhook/pixie",
    ) -> Reply:
        headers = {"Content-Type": content_type} if content_type else {}
        bearer = token if token is not None else self.token
        if authorize and bearer is not None:
            headers["Authorization"] = f"Bearer {bearer}"
        data = body.encode() if isinstance(body, str) else body
        return self._request("POST", path, data, headers)


def resource_path(namespace: str, plural: str, name: str | None = None) -> str:
    path = f"/apis/{API_VERSION}/namespaces/{namespace}/{plural}"
    return path if name is None else f"{path}/{name}"


def get_resource(api: LabApi, namespace: str, plural: str, name: str) -> dict[str, Any] | None:
    response = api.request("GET", resource_path(namespace, plural, name))
    if response.status == 404:
        return None
    assert response.status == 200, response.text
    return response.json()


def list_resources(api: LabApi, namespace: str, plural: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = api.expect(200, "GET", resource_path(namespace, plural))["items"]
    return items


def delete_resource(api: LabApi, namespace: str, plural: str, name: str) -> None:
    response = api.request("DELETE", resource_path(namespace, plural, name))
    assert response.status in (200, 202, 404), response.text
