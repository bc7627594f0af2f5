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


class Unreadable(Exception):
    """The runtime's answers cannot be read now; the message is the health problem."""


class CachedDirectory:
    """What both directories share: the answers by container ID and pod UID, re-read at
    most once a refresh period (on a miss, or by check()), and the problem when they
    cannot be. A subclass says how to read them all (read_all)."""

    def __init__(self) -> None:
        self._containers: dict[str, PodRef] = {}
        self._pods: dict[str, PodRef] = {}
        self._read_at = 0.0
        self._problem: str | None = "not read yet"

    def read_all(self) -> tuple[dict[str, PodRef], dict[str, PodRef]]:
        """(pod of each container ID, pod of each pod UID); raises Unreadable."""
        raise NotImplementedError

    def problem(self) -> str | None:
        return self._problem

    def check(self) -> None:
        self._refresh()

    def _refresh(self) -> None:
        if time.monotonic() - self._read_at < REFRESH_SECONDS:
            return
        self._read_at = time.monotonic()
        try:
            self._containers, self._pods = self.read_all()
        except Unreadable as error:
            if self._problem is None:
                log.warning("pods cannot be looked up: %s", error)
            self._problem = str(error)
            return
        if self._problem is not None:
            log.info("pods can be looked up (%s)", self._problem)
        self._problem = None

    def container(self, container_id: str, cgroup_path: str) -> PodRef | None:
        """The pod of a container; the cgroup path's pod UID fills a missing UID."""
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


class CriDirectory(CachedDirectory):
    def __init__(self, socket: Path) -> None:
        super().__init__()
        self.socket = socket

    def read_all(self) -> tuple[dict[str, PodRef], dict[str, PodRef]]:
        """A container once seen stays known (its labels do not change)."""
        try:
            with CriClient(self.socket, timeout=5.0) as cri:
                sandboxes = cri.list_pod_sandboxes()
                listed = cri.list_containers()
        except (CriError, OSError) as error:
            raise Unreadable(f"CRI at {self.socket}: {error}") from None
        containers, pods = dict(self._containers), {}
        for sandbox in sandboxes:
            ref = PodRef(sandbox.name, sandbox.namespace, sandbox.uid, SANDBOX_CONTAINER_NAME)
            pods[sandbox.uid] = ref
            containers[sandbox.id] = ref
        for container in listed:
            labels = container.labels
            if POD_NAME in labels and POD_NAMESPACE in labels:
                containers[container.id] = PodRef(
                    pod_name=labels[POD_NAME],
                    namespace=labels[POD_NAMESPACE],
                    pod_uid=labels.get(POD_UID),
                    container_name=labels.get(CONTAINER_NAME, container.name),
                )
        return containers, pods
