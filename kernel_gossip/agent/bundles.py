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
from pathlib import Path

from kernel_gossip.agent.directory import SANDBOX_CONTAINER_NAME, CachedDirectory, Unreadable
from kernel_gossip.agent.signals import PodRef

log = logging.getLogger("kernel_gossip.agent")

CONTAINER_TYPE = "io.kubernetes.cri.container-type"
SANDBOX_NAME = "io.kubernetes.cri.sandbox-name"
SANDBOX_NAMESPACE = "io.kubernetes.cri.sandbox-namespace"
SANDBOX_UID = "io.kubernetes.cri.sandbox-uid"
CONTAINER_NAME = "io.kubernetes.cri.container-name"


def pod_ref(annotations: dict[str, str]) -> PodRef | None:
    """The pod of one bundle's annotations; None when containerd's CRI did not make it."""
    name, namespace = annotations.get(SANDBOX_NAME), annotations.get(SANDBOX_NAMESPACE)
    if not name or not namespace:
        return None
    sandbox = annotations.get(CONTAINER_TYPE) == "sandbox"
    container = SANDBOX_CONTAINER_NAME if sandbox else annotations.get(CONTAINER_NAME)
    return PodRef(name, namespace, annotations.get(SANDBOX_UID) or None, container or "")


class BundleDirectory(CachedDirectory):
    def __init__(self, bundles: Path) -> None:
        super().__init__()
        self.bundles = bundles

    def read_all(self) -> tuple[dict[str, PodRef], dict[str, PodRef]]:
        """A bundle read once is not read again while it exists."""
        try:
            entries = os.listdir(self.bundles)
        except OSError as error:
            raise Unreadable(f"bundles at {self.bundles}: {error.strerror}") from None
        containers, pods = {}, {}
        for container_id in entries:
            known = self._containers.get(container_id)
            ref = known or self._read(container_id)
            if ref is None:
                continue
            containers[container_id] = ref
            if ref.container_name == SANDBOX_CONTAINER_NAME and ref.pod_uid:
                pods[ref.pod_uid] = ref
        return containers, pods

    def _read(self, container_id: str) -> PodRef | None:
        try:
            spec = json.loads((self.bundles / container_id / "config.json").read_bytes())
        except (OSError, ValueError):
            return None  # being created or removed: read again next time
        annotations = spec.get("annotations") if isinstance(spec, dict) else None
        if not isinstance(annotations, dict):
            return None
        return pod_ref({str(k): str(v) for k, v in annotations.items()})
