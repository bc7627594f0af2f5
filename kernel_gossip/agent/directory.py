"""Which pod a container belongs to: asked of the container runtime over the CRI.

The kubelet labels every sandbox and container it creates (io.kubernetes.pod.name,
.namespace, .uid, io.kubernetes.container.name); containerd and CRI-O return them from
ListPodSandbox / ListContainers. A sandbox ID is a container ID too (its pause
container). The answers are cached and re-read at most once a second on a miss, and at
least once a window (check()), so the agent's /healthz says when the CRI cannot be read.
"""

import logging
import time
from pathlib import Path
from typing import Protocol

from kernel_gossip.agent.signals import PodRef
from kernel_gossip.core.cgroups import identify
from kernel_gossip.cri import CriClient, CriError

log = logging.getLogger("kernel_gossip.agent")

POD_NAME = "io.kubernetes.pod.name"
POD_NAMESPACE = "io.kubernetes.pod.namespace"
POD_UID = "io.kubernetes.pod.uid"
CONTAINER_NAME = "io.kubernetes.container.name"
SANDBOX_CONTAINER_NAME = "POD"  # what the kubelet calls the pause container
REFRESH_SECONDS = 1.0


class PodDirectory(Protocol):
    def container(self, container_id: str, cgroup_path: str) -> PodRef | None: ...

    def pod(self, pod_uid: str) -> PodRef | None: ...

    def problem(self) -> str | None:
        """Why pods cannot be looked up right now; None when they can."""
        ...

    def check(self) -> None:
        """Read the runtime's answers again if they are older than a refresh period."""
        ...


class CriDirectory:
    def __init__(self, socket: Path) -> None:
        self.socket = socket
        self._containers: dict[str, PodRef] = {}
        self._pods: dict[str, PodRef] = {}
        self._read_at = 0.0
        self._problem: str | None = "not read yet"

    def problem(self) -> str | None:
        return self._problem

    def check(self) -> None:
        self._refresh()

    def _refresh(self) -> None:
        if time.monotonic() - self._read_at < REFRESH_SECONDS:
            return
        self._read_at = time.monotonic()
        try:
            with CriClient(self.socket, timeout=5.0) as cri:
                sandboxes = cri.list_pod_sandboxes()
                containers = cri.list_containers()
        except (CriError, OSError) as error:
            if self._problem is None:
                log.warning("CRI at %s unavailable: %s", self.socket, error)
            self._problem = f"CRI at {self.socket}: {error}"
            return
        if self._problem is not None:
            log.info("CRI at %s readable", self.socket)
        self._problem = None
        pods = {}
        for sandbox in sandboxes:
            ref = PodRef(sandbox.name, sandbox.namespace, sandbox.uid, SANDBOX_CONTAINER_NAME)
            pods[sandbox.uid] = ref
            self._containers[sandbox.id] = ref
        self._pods = pods
        for container in containers:
            labels = container.labels
            if POD_NAME in labels and POD_NAMESPACE in labels:
                self._containers[container.id] = PodRef(
                    pod_name=labels[POD_NAME],
                    namespace=labels[POD_NAMESPACE],
                    pod_uid=labels.get(POD_UID),
                    container_name=labels.get(CONTAINER_NAME, container.name),
                )

    def container(self, container_id: str, cgroup_path: str) -> PodRef | None:
        """The pod of a container; the cgroup path's pod UID fills a missing UID label."""
        if container_id not in self._containers:
            self._refresh()
        ref = self._containers.get(container_id)
        if ref is not None and ref.pod_uid is None:
            uid = identify(cgroup_path).pod_uid
            ref = PodRef(ref.pod_name, ref.namespace, uid, ref.container_name)
        return ref

    def pod(self, pod_uid: str) -> PodRef | None:
        if pod_uid not in self._pods:
            self._refresh()
        return self._pods.get(pod_uid)
