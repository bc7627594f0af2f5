"""Pods the lab tests apply beside the repository's own manifests."""

from typing import Any

from kernel_gossip.host.workload import HALF_THROTTLED

BURSTY_CONTAINER = "bursts"


def bursty_pod(name: str, namespace: str) -> dict[str, Any]:
    """HALF_THROTTLED's bursts under their limit, beside an idle sidecar with a limit of its
    own: the pod's cgroup then gets the sum of both quotas (as the kubelet sets it), so the
    bursts are throttled by the container's quota alone, as on a host, and not in part by
    the pod's (which would leave some throttled periods out of the container's cpu.stat)."""
    limit = {"cpu": f"{round(HALF_THROTTLED.limit_cores * 1000)}m"}
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": name}},
        "spec": {
            "terminationGracePeriodSeconds": 2,
            "containers": [
                {
                    "name": BURSTY_CONTAINER,
                    "image": "localhost/kernel-gossip/busybox:1",
                    "imagePullPolicy": "Never",
                    "command": HALF_THROTTLED.argv(),
                    "resources": {"requests": limit, "limits": limit},
                },
                {
                    "name": "idle",
                    "image": "localhost/kernel-gossip/busybox:1",
                    "imagePullPolicy": "Never",
                    "command": ["sh", "-c", "trap 'exit 0' TERM; while :; do sleep 1; done"],
                    "resources": {"requests": limit, "limits": limit},
                },
            ],
        },
    }
