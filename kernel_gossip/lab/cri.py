"""A client of the CRI (k8s.io/cri-api runtime.v1) over gRPC: what a kubelet calls.

The protocol comes from Debian's golang-k8s-cri-api-dev package (fetched from sid with the
lab's private apt configuration, never copied into the repo) and is compiled with
grpcio-tools on first use into paths.cache_dir()/cri-api/ (keyed by the package's and
grpcio-tools' versions). Messages are built from the generated module
(`client.api.PodSandboxConfig(...)`); the client's methods return plain Python values.
"""

import importlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version as installed_version
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, Self

import grpc

from kernel_gossip import paths
from kernel_gossip.errors import UserError
from kernel_gossip.lab import apiserver

Say = Callable[[str], None]

# The same Kubernetes release as the lab API server's API machinery (k8s.io/* 0.36.4).
CRI_API_PIN = apiserver.Pin("golang-k8s-cri-api-dev", "0.36.4-1")
PROTO_IN_PACKAGE = Path("usr/share/gocode/src/k8s.io/cri-api/pkg/apis/runtime/v1/api.proto")
# The generated modules' package: unique, so it cannot clash with anything on sys.path.
GENERATED_PACKAGE = "kernel_gossip_cri_runtime_v1"


def _quiet(_: str) -> None:
    """The default progress sink: say nothing."""


class CriError(Exception):
    """The runtime refused a call or did not answer."""


def compile_proto(proto: Path, target: Path) -> None:
    """api.proto -> <target>/kernel_gossip_cri_runtime_v1/api_pb2{,_grpc}.py, atomically."""
    protoc = importlib.import_module("grpc_tools.protoc")  # untyped: imported by name
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cri-", dir=target.parent) as work:
        source, output = Path(work) / "src", Path(work) / "py"
        (source / GENERATED_PACKAGE).mkdir(parents=True)
        output.mkdir()
        shutil.copy(proto, source / GENERATED_PACKAGE / "api.proto")
        well_known = Path(str(protoc.__file__)).parent / "_proto"
        status = protoc.main(
            [
                "grpc_tools.protoc",
                f"-I{source}",
                f"-I{well_known}",
                f"--python_out={output}",
                f"--grpc_python_out={output}",
                f"{GENERATED_PACKAGE}/api.proto",
            ]
        )
        if status != 0:
            raise CriError(f"protoc failed ({status}) on {proto}")
        shutil.rmtree(target, ignore_errors=True)
        try:
            os.replace(output, target)
        except OSError:
            if not (target / GENERATED_PACKAGE / "api_pb2_grpc.py").is_file():
                raise  # else another process compiled the same proto at the same time


def generated_dir(package_version: str) -> Path:
    tools = installed_version("grpcio-tools")
    return paths.cache_dir() / "cri-api" / f"{package_version}-grpcio-tools-{tools}" / "python"


def fetch_proto(say: Say = _quiet) -> Path:
    """api.proto from the pinned golang-k8s-cri-api-dev .deb: `apt-get download` with the
    lab's private sid apt configuration (apiserver.apt_config), then `dpkg -x`; cached."""
    base = paths.cache_dir() / "cri-api" / CRI_API_PIN.version
    proto = base / "root" / PROTO_IN_PACKAGE
    if proto.is_file():
        return proto
    say(f"fetching {CRI_API_PIN} from Debian sid for the CRI protocol")
    apt = base / "apt"
    for folder in ("sources.list.d", "preferences.d", "state", "lists/partial", "cache"):
        (apt / folder).mkdir(parents=True, exist_ok=True)
    (apt / "archives" / "partial").mkdir(parents=True, exist_ok=True)
    (apt / "sources.list").write_text(apiserver.SID_SOURCE + "\n")
    (apt / "status").touch()
    (apt / "apt.conf").write_text(apiserver.apt_config(apt))
    env = os.environ | {"APT_CONFIG": str(apt / "apt.conf"), "DEBIAN_FRONTEND": "noninteractive"}
    debs = base / "debs"
    debs.mkdir(exist_ok=True)
    for command in (["apt-get", "update", "-q"], ["apt-get", "download", "-q", str(CRI_API_PIN)]):
        result = subprocess.run(
            command, cwd=debs, env=env, capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            tail = " | ".join(result.stderr.strip().splitlines()[-3:])
            raise UserError(f"{' '.join(command)} (sid) failed: {tail}")
    deb = next(debs.glob(f"{CRI_API_PIN.package}_*.deb"))
    with tempfile.TemporaryDirectory(prefix="root.", dir=base) as unpacking:
        subprocess.run(["dpkg", "-x", str(deb), unpacking], check=True)
        shutil.rmtree(base / "root", ignore_errors=True)
        os.replace(unpacking, base / "root")
    return proto


def runtime_api(say: Say = _quiet) -> tuple[ModuleType, ModuleType]:
    """The compiled runtime.v1 messages and stubs, fetched and compiled on first use."""
    if GENERATED_PACKAGE not in sys.modules:
        target = generated_dir(CRI_API_PIN.version)
        if not (target / GENERATED_PACKAGE / "api_pb2_grpc.py").is_file():
            proto = fetch_proto(say)
            say("compiling the CRI protocol (grpcio-tools)")
            compile_proto(proto, target)
        sys.path.insert(0, str(target))
    return (
        importlib.import_module(f"{GENERATED_PACKAGE}.api_pb2"),
        importlib.import_module(f"{GENERATED_PACKAGE}.api_pb2_grpc"),
    )


@dataclass(frozen=True)
class Sandbox:
    id: str
    name: str
    namespace: str
    uid: str
    ready: bool
    labels: dict[str, str]
    created_ns: int


@dataclass(frozen=True)
class SandboxDetail:
    """PodSandboxStatus with the runtime's verbose info: where the pod lives on the host."""

    sandbox: Sandbox
    ip: str
    netns_path: str | None
    cgroup_parent: str
    pid: int | None


@dataclass(frozen=True)
class Container:
    id: str
    sandbox_id: str
    name: str
    image: str
    state: str  # CONTAINER_CREATED, CONTAINER_RUNNING, CONTAINER_EXITED, CONTAINER_UNKNOWN
    labels: dict[str, str]
    annotations: dict[str, str]


@dataclass(frozen=True)
class ContainerStatus:
    state: str
    exit_code: int
    pid: int | None
    image: str  # the runtime's name for it: a tag when it has one
    image_ref: str  # the image ID or a repo digest


class CriClient:
    """One channel to a CRI socket; use as a context manager so it is closed."""

    def __init__(self, socket: Path, timeout: float = 60.0) -> None:
        self.api, stubs = runtime_api()
        self._timeout = timeout
        self._channel = grpc.insecure_channel(f"unix://{socket}")
        self._runtime = stubs.RuntimeServiceStub(self._channel)
        self._images = stubs.ImageServiceStub(self._channel)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._channel.close()

    def _call(self, method: Any, request: Any, timeout: float | None = None) -> Any:
        try:
            return method(request, timeout=timeout or self._timeout)
        except grpc.RpcError as error:
            code = error.code().name if isinstance(error, grpc.Call) else "ERROR"
            details = error.details() if isinstance(error, grpc.Call) else str(error)
            raise CriError(f"{code}: {details}") from None

    def version(self) -> str:
        answer = self._call(self._runtime.Version, self.api.VersionRequest())
        return f"{answer.runtime_name} {answer.runtime_version} (CRI {answer.runtime_api_version})"

    def not_ready_conditions(self) -> list[str]:
        """The runtime's conditions that are not true (RuntimeReady, NetworkReady), why."""
        answer = self._call(self._runtime.Status, self.api.StatusRequest())
        return [
            f"{condition.type}: {condition.reason} {condition.message}".strip()
            for condition in answer.status.conditions
            if not condition.status
        ]

    def image_id(self, ref: str) -> str | None:
        request = self.api.ImageStatusRequest(image=self.api.ImageSpec(image=ref))
        answer = self._call(self._images.ImageStatus, request)
        return str(answer.image.id) if answer.HasField("image") else None

    def run_pod_sandbox(self, config: Any) -> str:
        answer = self._call(
            self._runtime.RunPodSandbox, self.api.RunPodSandboxRequest(config=config)
        )
        return str(answer.pod_sandbox_id)

    def stop_pod_sandbox(self, sandbox_id: str) -> None:
        request = self.api.StopPodSandboxRequest(pod_sandbox_id=sandbox_id)
        self._call(self._runtime.StopPodSandbox, request)

    def remove_pod_sandbox(self, sandbox_id: str) -> None:
        request = self.api.RemovePodSandboxRequest(pod_sandbox_id=sandbox_id)
        self._call(self._runtime.RemovePodSandbox, request)

    def list_pod_sandboxes(self, labels: dict[str, str] | None = None) -> list[Sandbox]:
        selector = self.api.PodSandboxFilter(label_selector=labels or {})
        answer = self._call(
            self._runtime.ListPodSandbox, self.api.ListPodSandboxRequest(filter=selector)
        )
        return [self._sandbox(item, item.state) for item in answer.items]

    def pod_sandbox_status(self, sandbox_id: str) -> SandboxDetail:
        request = self.api.PodSandboxStatusRequest(pod_sandbox_id=sandbox_id, verbose=True)
        answer = self._call(self._runtime.PodSandboxStatus, request)
        status = answer.status
        info = json.loads(answer.info.get("info", "{}"))
        namespaces = info.get("runtimeSpec", {}).get("linux", {}).get("namespaces", [])
        netns = next((ns.get("path") for ns in namespaces if ns.get("type") == "network"), None)
        return SandboxDetail(
            sandbox=self._sandbox(status, status.state),
            ip=str(status.network.ip),
            netns_path=netns or None,
            cgroup_parent=str(info.get("config", {}).get("linux", {}).get("cgroup_parent", "")),
            pid=info.get("pid") or None,
        )

    def _sandbox(self, item: Any, state: int) -> Sandbox:
        return Sandbox(
            id=str(item.id),
            name=str(item.metadata.name),
            namespace=str(item.metadata.namespace),
            uid=str(item.metadata.uid),
            ready=state == self.api.SANDBOX_READY,
            labels=dict(item.labels),
            created_ns=int(item.created_at),
        )

    def create_container(self, sandbox_id: str, config: Any, sandbox_config: Any) -> str:
        request = self.api.CreateContainerRequest(
            pod_sandbox_id=sandbox_id, config=config, sandbox_config=sandbox_config
        )
        return str(self._call(self._runtime.CreateContainer, request).container_id)

    def start_container(self, container_id: str) -> None:
        request = self.api.StartContainerRequest(container_id=container_id)
        self._call(self._runtime.StartContainer, request)

    def stop_container(self, container_id: str, grace_seconds: int) -> None:
        """SIGTERM (the image's stop signal), SIGKILL after the grace period."""
        request = self.api.StopContainerRequest(container_id=container_id, timeout=grace_seconds)
        self._call(self._runtime.StopContainer, request, timeout=grace_seconds + self._timeout)

    def list_containers(self, sandbox_id: str | None = None) -> list[Container]:
        selector = self.api.ContainerFilter(pod_sandbox_id=sandbox_id or "")
        answer = self._call(
            self._runtime.ListContainers, self.api.ListContainersRequest(filter=selector)
        )
        return [
            Container(
                id=str(item.id),
                sandbox_id=str(item.pod_sandbox_id),
                name=str(item.metadata.name),
                image=str(item.image.image),
                state=str(self.api.ContainerState.Name(item.state)),
                labels=dict(item.labels),
                annotations=dict(item.annotations),
            )
            for item in answer.containers
        ]

    def container_status(self, container_id: str) -> ContainerStatus:
        """State, exit code and the init process's host PID (from the verbose info)."""
        request = self.api.ContainerStatusRequest(container_id=container_id, verbose=True)
        answer = self._call(self._runtime.ContainerStatus, request)
        pid = json.loads(answer.info.get("info", "{}")).get("pid")
        return ContainerStatus(
            state=str(self.api.ContainerState.Name(answer.status.state)),
            exit_code=int(answer.status.exit_code),
            pid=int(pid) if pid else None,
            image=str(answer.status.image.image),
            image_ref=str(answer.status.image_ref),
        )
