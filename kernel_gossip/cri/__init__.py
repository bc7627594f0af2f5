"""A client of the CRI (k8s.io/cri-api runtime.v1) over gRPC: what a kubelet calls, and
what the node agent asks which pod a container belongs to.

The runtime.v1 messages and stubs are generated at build time (`scripts/setup.sh`, or
`python -m kernel_gossip.lab.cri`, before `docker build`) from the api.proto of Debian's
golang-k8s-cri-api-dev into kernel_gossip/cri/runtime_v1/ and shipped in the package and
the image: nothing is fetched or compiled at run time. This package imports nothing from
kernel_gossip.lab, so the agent does not load the lab. The client's methods return plain
Python values; messages are built from the generated module (`client.api.PodSandboxConfig`).
"""

import importlib
import json
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, Self

import grpc

GENERATED_PACKAGE = "kernel_gossip.cri.runtime_v1"
GENERATED_DIR = Path(__file__).with_name("runtime_v1")


class CriError(Exception):
    """The runtime refused a call or did not answer, or the protocol was not generated."""


def runtime_api() -> tuple[ModuleType, ModuleType]:
    """The generated runtime.v1 messages and stubs (import only: never compiled here)."""
    try:
        return (
            importlib.import_module(f"{GENERATED_PACKAGE}.api_pb2"),
            importlib.import_module(f"{GENERATED_PACKAGE}.api_pb2_grpc"),
        )
    except ImportError as error:
        raise CriError(
            f"the CRI protocol modules are not built ({error}): run scripts/setup.sh "
            "(or python -m kernel_gossip.lab.cri) before installing or building the image"
        ) from None


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
    reason: str = ""  # Completed, Error, OOMKilled once exited
    message: str = ""
    started_ns: int = 0
    finished_ns: int = 0


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
            reason=str(answer.status.reason),
            message=str(answer.status.message),
            started_ns=int(answer.status.started_at),
            finished_ns=int(answer.status.finished_at),
        )

    def remove_container(self, container_id: str) -> None:
        request = self.api.RemoveContainerRequest(container_id=container_id)
        self._call(self._runtime.RemoveContainer, request)
