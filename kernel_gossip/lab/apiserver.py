"""The lab's Kubernetes API server, running: the binary lab/apibuild.py builds, on
Debian's etcd on 127.0.0.1, and the CRDs installed in it.

A lab server: every request is an admin, it listens on 127.0.0.1 only, never expose it.
"""

import base64
import functools
import http.client
import json
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from kernel_gossip import Say, quiet
from kernel_gossip.errors import UserError
from kernel_gossip.kube.client import ApiError, KubeClient
from kernel_gossip.lab import apibuild, processes
from kernel_gossip.paths import lab_dir

JsonObject = dict[str, Any]
READY_TIMEOUT_SECONDS = 90.0
STOP_TIMEOUT_SECONDS = 15.0
NOT_A_SECRET = "lab-admin"  # kubeconfig token: the server takes every request as admin
POD_LOG_ROOT_FILE = "pod-log-root"  # in the lab api dir: where the running server reads pods/log


def default_dir() -> Path:
    return lab_dir() / "api"


def default_pod_log_root(directory: Path) -> Path:
    """Where the lab kubelet's CRI log files are unless `--pod-log-root` says otherwise:
    beside the lab api dir."""
    return directory.resolve().parent / "pod-logs"


# --- the running server -----------------------------------------------------------------


@dataclass(frozen=True)
class ApiResponse:
    status: int
    text: str

    def json(self) -> JsonObject:
        value = json.loads(self.text)
        if not isinstance(value, dict):
            raise ApiError(self.status, f"expected a JSON object, got {self.text[:200]!r}")
        return value


@dataclass(frozen=True)
class LabApi:
    """A running lab API server, as clients reach it."""

    dir: Path
    server: str
    kubeconfig: Path
    ca_file: Path
    kubectl: Path  # Debian sid's, linked into dir/bin

    @classmethod
    def at(cls, directory: Path, server: str) -> "LabApi":
        """The server started from `directory` (as `lab api start` lays it out), at `server`."""
        layout = _Layout(directory)
        return cls(layout.dir, server, layout.kubeconfig, layout.ca_file, layout.kubectl)

    @property
    def pod_log_root(self) -> Path:
        """The directory the server reads pods/log from, laid out as the kubelet lays out
        /var/log/pods: <namespace>_<pod>_<uid>/<container>/<restartCount>.log."""
        try:
            return Path((self.dir / POD_LOG_ROOT_FILE).read_text().strip())
        except FileNotFoundError:
            return default_pod_log_root(self.dir)

    @functools.cached_property
    def client(self) -> KubeClient:
        return KubeClient.trusting(self.server, self.ca_file)

    def request(
        self,
        method: str,
        path: str,
        body: JsonObject | None = None,
        *,
        query: dict[str, str] | None = None,
        content_type: str = "application/json",
        accept: str = "application/json",
        timeout: float = 30.0,
    ) -> ApiResponse:
        status, text = self.client.send(
            method,
            path,
            body,
            query=query,
            content_type=content_type,
            accept=accept,
            timeout=timeout,
        )
        return ApiResponse(status, text)

    def expect(
        self, status: int, method: str, path: str, body: JsonObject | None = None, **options: Any
    ) -> JsonObject:
        """request() that raises ApiError unless the answer has this status."""
        response = self.request(method, path, body, **options)
        if response.status != status:
            raise ApiError(
                response.status, f"{method} {path}: {response.status} {response.text[:500]}"
            )
        return response.json()

    def watch(
        self, path: str, resource_version: str, timeout_seconds: int = 30
    ) -> Iterator[JsonObject]:
        """The watch events of a collection after resource_version, as they come."""
        return self.client.watch(path, resource_version, timeout_seconds, bookmarks=False)


def kubeconfig_yaml(server: str, ca_pem: bytes) -> str:
    """A kubeconfig for the lab: our CA, and a token the server does not check."""
    cluster = {"server": server, "certificate-authority-data": base64.b64encode(ca_pem).decode()}
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kernel-gossip-lab", "cluster": cluster}],
        "users": [{"name": "lab-admin", "user": {"token": NOT_A_SECRET}}],
        "contexts": [
            {
                "name": "kernel-gossip-lab",
                "context": {"cluster": "kernel-gossip-lab", "user": "lab-admin"},
            }
        ],
        "current-context": "kernel-gossip-lab",
    }
    return yaml.safe_dump(config, sort_keys=False)


@dataclass(frozen=True)
class Ports:
    api: int
    etcd: int
    etcd_peer: int


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _port_is_free(port: int) -> bool:
    """Whether a server could listen on it now. SO_REUSEADDR as etcd's and the API
    server's listeners (Go) set it: a port whose old connections linger in TIME_WAIT after
    a restart is free for them, and kubeconfigs naming it stay valid."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def choose_ports(previous: Ports | None, api: int | None, etcd: int | None) -> Ports:
    """The ports asked for, else the previous run's (kubeconfigs stay valid) when free, else
    free ones."""

    def pick(asked: int | None, before: int | None, what: str) -> int:
        if asked is not None:
            if not _port_is_free(asked):
                raise UserError(f"port {asked} for {what} is in use: choose another one")
            return asked
        if before is not None and _port_is_free(before):
            return before
        return _free_port()

    return Ports(
        api=pick(api, previous.api if previous else None, "the API server"),
        etcd=pick(etcd, previous.etcd if previous else None, "etcd"),
        etcd_peer=pick(None, previous.etcd_peer if previous else None, "etcd's peers"),
    )


class _Layout:
    """Where a lab server keeps its state under its directory."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory.resolve()
        self.etcd_data = self.dir / "etcd"
        self.pki = self.dir / "pki"
        self.ca_file = self.pki / "ca.crt"
        self.kubeconfig = self.dir / "kubeconfig"
        self.state = self.dir / "state.json"
        self.kubectl = self.dir / "bin" / "kubectl"

    def pid_file(self, name: str) -> Path:
        return self.dir / f"{name}.pid"

    def log(self, name: str) -> Path:
        return self.dir / f"{name}.log"

    def server(self, ports: Ports) -> str:
        return f"https://127.0.0.1:{ports.api}"

    def api(self, ports: Ports) -> LabApi:
        return LabApi.at(self.dir, self.server(ports))

    def read_ports(self) -> Ports | None:
        try:
            return Ports(**json.loads(self.state.read_text()))
        except (OSError, ValueError, TypeError):
            return None


PROCESSES = ("apiserver", "etcd")  # stop order: the server first, then its storage


def _running_pid(layout: _Layout, name: str) -> int | None:
    """The pid in name.pid if that process is alive and is ours (its command line names
    our directory: a recycled pid is not)."""
    return processes.running_pid(layout.pid_file(name), str(layout.dir))


def _spawn(layout: _Layout, name: str, command: list[str]) -> subprocess.Popen[bytes]:
    """Start a process in the background, in a session of its own, output to name.log."""
    return processes.spawn_detached(command, layout.log(name), layout.pid_file(name))


def _log_tail(path: Path, lines: int = 12) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait_until(ready: Callable[[], bool], alive: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready():
            return True
        if not alive():
            return False
        time.sleep(0.2)
    return False


def _await_ready(
    layout: _Layout, name: str, process: subprocess.Popen[bytes], ready: Callable[[], bool]
) -> None:
    """Wait until ready(); else stop everything and say why, with the end of the log."""
    if _wait_until(ready, lambda: process.poll() is None, READY_TIMEOUT_SECONDS):
        return
    code = process.poll()
    why = (
        f"exited with {code}" if code is not None else f"not ready in {READY_TIMEOUT_SECONDS:.0f} s"
    )
    stop(layout.dir)
    raise UserError(f"{name} {why}, log {layout.log(name)}:\n{_log_tail(layout.log(name))}")


def _etcd_healthy(port: int) -> bool:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        connection.request("GET", "/health")
        response = connection.getresponse()
        return response.status == 200 and b'"true"' in response.read()
    except OSError:
        return False
    finally:
        connection.close()


def _api_ready(api: LabApi) -> bool:
    if not api.ca_file.is_file():
        return False
    try:
        response = api.request("GET", "/readyz", timeout=5)
    except (OSError, ssl.SSLError, http.client.HTTPException):
        return False
    return response.status == 200


def start(
    directory: Path,
    port: int | None = None,
    etcd_port: int | None = None,
    progress: Say = quiet,
    pod_log_root: Path | None = None,
) -> LabApi:
    """Build if needed, start etcd and the server in the background, wait for /readyz,
    install our CRDs and write the kubeconfig. Already running: the running one."""
    if directory.exists() and not directory.is_dir():
        raise UserError(f"--dir {directory} exists and is not a directory")
    if pod_log_root is not None and pod_log_root.exists() and not pod_log_root.is_dir():
        raise UserError(f"--pod-log-root {pod_log_root} exists and is not a directory")
    layout = _Layout(directory)
    previous = layout.read_ports()
    if previous is not None and all(_running_pid(layout, name) for name in PROCESSES):
        api = layout.api(previous)
        if port not in (None, previous.api) or etcd_port not in (None, previous.etcd):
            raise UserError(f"already running at {api.server}: stop it first to change ports")
        if pod_log_root is not None and pod_log_root.resolve() != api.pod_log_root:
            raise UserError(
                f"already running with pod logs in {api.pod_log_root}: "
                "stop it first to change --pod-log-root"
            )
        if _api_ready(api):
            _finish(layout, api, progress)  # idempotent: current after an upgrade
            return api
    stop(directory)
    etcd = shutil.which("etcd")
    if etcd is None:
        raise UserError("etcd is not installed: run scripts/setup.sh (Debian's etcd-server)")
    binary = apibuild.ensure_binary(progress).path
    layout.dir.mkdir(parents=True, exist_ok=True)
    ports = choose_ports(previous, port, etcd_port)
    layout.state.write_text(json.dumps(ports.__dict__, allow_nan=False) + "\n")
    logs = (pod_log_root or default_pod_log_root(layout.dir)).resolve()
    logs.mkdir(parents=True, exist_ok=True)
    (layout.dir / POD_LOG_ROOT_FILE).write_text(f"{logs}\n")

    progress(f"starting etcd on 127.0.0.1:{ports.etcd} (data in {layout.etcd_data})")
    client = f"http://127.0.0.1:{ports.etcd}"
    peer = f"http://127.0.0.1:{ports.etcd_peer}"
    etcd_process = _spawn(
        layout,
        "etcd",
        [
            etcd,
            "--name=lab",
            f"--data-dir={layout.etcd_data}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=lab={peer}",
        ],
    )
    _await_ready(layout, "etcd", etcd_process, lambda: _etcd_healthy(ports.etcd))

    api = layout.api(ports)
    progress(f"starting the API server on {api.server}")
    api_process = _spawn(
        layout,
        "apiserver",
        [
            str(binary),
            f"--etcd-servers={client}",
            "--bind-address=127.0.0.1",
            f"--secure-port={ports.api}",
            f"--cert-dir={layout.pki}",
            "--external-hostname=127.0.0.1",
            f"--pod-log-root={logs}",
        ],
    )
    _await_ready(layout, "apiserver", api_process, lambda: _api_ready(api))
    try:
        _finish(layout, api, progress)
    except UserError:
        stop(directory)
        raise
    return api


def _finish(layout: _Layout, api: LabApi, progress: Say) -> None:
    """What a client needs of a ready server: the kubeconfig, kubectl and our CRDs."""
    layout.kubeconfig.write_text(kubeconfig_yaml(api.server, api.ca_file.read_bytes()))
    layout.kubectl.parent.mkdir(exist_ok=True)
    layout.kubectl.unlink(missing_ok=True)
    layout.kubectl.symlink_to(apibuild.kubectl_path(progress))
    install_crds(api, progress)


def running_server(directory: Path) -> str | None:
    """The URL of a lab directory's server when it and its etcd run and it is ready."""
    layout = _Layout(directory)
    ports = layout.read_ports()
    if ports is None or not all(_running_pid(layout, name) for name in PROCESSES):
        return None
    api = layout.api(ports)
    return api.server if _api_ready(api) else None


def stop(directory: Path) -> list[str]:
    """Stop the server and etcd of a lab directory by their pids; idempotent. Returns the
    names of the processes it stopped."""
    layout = _Layout(directory)
    stopped = []
    for name in PROCESSES:
        pid = _running_pid(layout, name)
        if pid is not None:
            _terminate(pid)
            stopped.append(name)
        layout.pid_file(name).unlink(missing_ok=True)
    return stopped


def _terminate(pid: int) -> None:
    """SIGTERM, then SIGKILL after STOP_TIMEOUT_SECONDS; reaps it when it is our child."""
    if not processes.terminate(pid, STOP_TIMEOUT_SECONDS):
        raise UserError(f"process {pid} survived SIGKILL")


# --- our CRDs -----------------------------------------------------------------------------


def install_crds(api: LabApi, progress: Say = quiet) -> None:
    """Server-side apply the kernel-gossip CRDs, then wait until they are Established and
    their resources answer (right after that a list may still say 429 for a moment)."""
    from kernel_gossip.schema import crds
    from kernel_gossip.schema.resources import API_VERSION

    progress("installing the KernelWhisper and PodBirthCertificate CRDs")
    base = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    for resource in crds.RESOURCES:
        definition = crds.crd(resource)
        name = definition["metadata"]["name"]
        applied = api.request(
            "PATCH",
            f"{base}/{name}",
            definition,
            query={"fieldManager": "kernel-gossip-lab", "force": "true"},
            content_type="application/apply-patch+yaml",
        )
        if applied.status not in (200, 201):  # updated, created
            raise ApiError(
                applied.status, f"applying CRD {name}: {applied.status} {applied.text[:500]}"
            )

        def established(name: str = name, plural: str = resource.plural) -> bool:
            status = api.expect(200, "GET", f"{base}/{name}").get("status", {})
            ok = any(
                c.get("type") == "Established" and c.get("status") == "True"
                for c in status.get("conditions") or []  # null until the first condition
            )
            return ok and api.request("GET", f"/apis/{API_VERSION}/{plural}").status == 200

        if not _wait_until(established, lambda: True, READY_TIMEOUT_SECONDS):
            raise UserError(f"CRD {name} did not become Established")
    _warm_up(api)


def _warm_up(api: LabApi) -> None:
    """A fresh server holds the first write of a custom resource for about 2 s (measured);
    a server-side dry run takes that wait here, not in the first signal's reply."""
    from kernel_gossip.schema.crds import KERNEL_WHISPER, POD_BIRTH_CERTIFICATE
    from kernel_gossip.schema.resources import (
        API_VERSION,
        KernelTruth,
        KernelWhisperSpec,
        PodBirthCertificateSpec,
    )

    now = datetime.now(UTC)
    examples = {
        KERNEL_WHISPER: KernelWhisperSpec(
            signal_type="cpu_throttle",
            pod_name="warm-up",
            pod_namespace="default",
            observed_at=now,
            kernel_truth=KernelTruth(throttled_percent=0),
            insights=[],
        ),
        POD_BIRTH_CERTIFICATE: PodBirthCertificateSpec(
            pod_name="warm-up",
            pod_namespace="default",
            started_at=now,
            syscall_timeline=[],
            total_syscalls=0,
            syscalls={},
            namespace_operations=0,
            namespaces_created=[],
            mounts=0,
            cgroup_writes=0,
            execs=0,
            duration="0ms",
            duration_ms=0,
        ),
    }
    for resource, spec in examples.items():
        body = {
            "apiVersion": API_VERSION,
            "kind": resource.kind,
            "metadata": {"name": "warm-up"},
            "spec": spec.model_dump(by_alias=True, mode="json", exclude_none=True),
        }
        path = f"/apis/{API_VERSION}/namespaces/default/{resource.plural}"
        api.expect(201, "POST", path, body, query={"dryRun": "All"})
