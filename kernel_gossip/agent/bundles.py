"""Which pod a container belongs to, read from containerd's OCI bundles: no socket.

containerd's CRI plugin writes every container's OCI spec to
`<state>/io.containerd.runtime.v2.task/k8s.io/<container id>/config.json`, annotated with
the pod's name, namespace and UID and the container's name (io.kubernetes.cri.*; the
sandbox's own spec carries the pod's). Reading those files read-only tells the agent what
the CRI's List calls would, without a socket that could also create containers.
"""

import json
import logging
import os
import time
from pathlib import Path

from kernel_gossip.agent.signals import PodRef
from kernel_gossip.core.cgroups import identify

log = logging.getLogger("kernel_gossip.agent")

CONTAINER_TYPE = "io.kubernetes.cri.container-type"
SANDBOX_NAME = "io.kubernetes.cri.sandbox-name"
SANDBOX_NAMESPACE = "io.kubernetes.cri.sandbox-namespace"
SANDBOX_UID = "io.kubernetes.cri.sandbox-uid"
CONTAINER_NAME = "io.kubernetes.cri.container-name"
SANDBOX_CONTAINER_NAME = "POD"  # what the kubelet calls the pause container
REFRESH_SECONDS = 1.0


def pod_ref(annotations: dict[str, str]) -> PodRef | None:
    """The pod of one bundle's annotations; None when containerd's CRI did not make it."""
    name, namespace = annotations.get(SANDBOX_NAME), annotations.get(SANDBOX_NAMESPACE)
    if not name or not namespace:
        return None
    sandbox = annotations.get(CONTAINER_TYPE) == "sandbox"
    container = SANDBOX_CONTAINER_NAME if sandbox else annotations.get(CONTAINER_NAME)
    return PodRef(name, namespace, annotations.get(SANDBOX_UID) or None, container or "")


class BundleDirectory:
    def __init__(self, bundles: Path) -> None:
        self.bundles = bundles
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
            entries = os.listdir(self.bundles)
        except OSError as error:
            if self._problem is None:
                log.warning("containerd's bundles at %s unreadable: %s", self.bundles, error)
            self._problem = f"bundles at {self.bundles}: {error.strerror}"
            return
        self._problem = None
        containers, pods = {}, {}
        for container_id in entries:
            known = self._containers.get(container_id)
            ref = known or self._read(container_id)
            if ref is None:
                continue
            containers[container_id] = ref
            if ref.container_name == SANDBOX_CONTAINER_NAME and ref.pod_uid:
                pods[ref.pod_uid] = ref
        self._containers, self._pods = containers, pods

    def _read(self, container_id: str) -> PodRef | None:
        try:
            spec = json.loads((self.bundles / container_id / "config.json").read_bytes())
        except (OSError, ValueError):
            return None  # being created or removed: read again next time
        annotations = spec.get("annotations") if isinstance(spec, dict) else None
        if not isinstance(annotations, dict):
            return None
        return pod_ref({str(k): str(v) for k, v in annotations.items()})

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
