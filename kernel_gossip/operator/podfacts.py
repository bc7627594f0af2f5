"""What the cluster says about a pod: its Metrics API figure, limit, request and the HPA
scaling its workload. Parsing is pure; the lookups treat "not there" as unknown."""

import asyncio
import logging
import socket
from datetime import UTC, datetime
from typing import Any

from kernel_gossip.kube.client import ApiError
from kernel_gossip.operator.analysis import PodFacts, ScaledWorkload, parse_cpu_quantity
from kernel_gossip.operator.kube import JsonObject, KubeClient, core_path, group_path

log = logging.getLogger("kernel_gossip.operator")

METRICS_API = "metrics.k8s.io/v1beta1"
AUTOSCALING_API = "autoscaling/v2"
EVENT_COMPONENT = "kernel-gossip-operator"
EVENT_MESSAGE_LIMIT = 1024


def _cores(value: Any) -> float | None:
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        return None
    try:
        return parse_cpu_quantity(str(value))
    except ValueError:
        return None


def _containers(holder: Any) -> list[JsonObject]:
    items = holder.get("containers") if isinstance(holder, dict) else None
    return [c for c in items if isinstance(c, dict)] if isinstance(items, list) else []


def _pick(containers: list[JsonObject], name: str | None) -> list[JsonObject]:
    """The named container, or every container when no name is given."""
    if name is None:
        return containers
    return [c for c in containers if c.get("name") == name]


def container_cpu(pod: JsonObject, container: str | None) -> tuple[float | None, float | None]:
    """(limit, request) in cores from the pod spec; None where not set for every container."""
    chosen = _pick(_containers(pod.get("spec")), container)

    def total(kind: str) -> float | None:
        values = [_cores(c.get("resources", {}).get(kind, {}).get("cpu")) for c in chosen]
        known = [v for v in values if v is not None]
        return sum(known) if chosen and len(known) == len(values) else None

    return total("limits"), total("requests")


def pod_metrics_cores(metrics: JsonObject, container: str | None) -> float | None:
    """CPU usage from a PodMetrics object: the named container's, else the pod's sum."""
    chosen = _pick(_containers(metrics), container)
    values = [_cores(c.get("usage", {}).get("cpu")) for c in chosen]
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def controller_of(document: JsonObject) -> tuple[str, str] | None:
    """(kind, name) of the controlling owner reference."""
    for owner in document.get("metadata", {}).get("ownerReferences") or []:
        if isinstance(owner, dict) and owner.get("controller"):
            return str(owner.get("kind")), str(owner.get("name"))
    return None


def autoscaler_for(hpas: list[JsonObject], targets: list[tuple[str, str]]) -> ScaledWorkload | None:
    """The HPA whose scaleTargetRef is one of the (kind, name) targets."""
    for hpa in hpas:
        spec = hpa.get("spec", {})
        ref = spec.get("scaleTargetRef", {})
        target = (ref.get("kind"), ref.get("name"))
        if target not in targets:
            continue
        status = hpa.get("status") or {}
        current = status.get("currentReplicas") or spec.get("minReplicas") or 1
        maximum = spec.get("maxReplicas") or current
        target_percent = _cpu_utilization(spec.get("metrics"), "target")
        return ScaledWorkload(
            kind=str(target[0]),
            name=str(target[1]),
            autoscaler=str(hpa.get("metadata", {}).get("name")),
            current_replicas=int(current),
            max_replicas=int(maximum),
            cpu_utilization_percent=_cpu_utilization(status.get("currentMetrics"), "current"),
            cpu_target_percent=target_percent,
        )
    return None


def _cpu_utilization(metrics: Any, field: str) -> int | None:
    """averageUtilization of the cpu Resource metric in spec.metrics (field "target") or
    status.currentMetrics ("current"), as autoscaling/v2 shapes them."""
    for metric in metrics if isinstance(metrics, list) else []:
        source = metric.get("resource") if isinstance(metric, dict) else None
        if metric.get("type") != "Resource" or not isinstance(source, dict):
            continue
        value = (source.get(field) or {}).get("averageUtilization")
        if source.get("name") == "cpu" and isinstance(value, int):
            return value
    return None


async def _optional(
    client: KubeClient, path: str, what: str, *, cached: bool = True
) -> JsonObject | None:
    """GET that reads refusals (403, 503 of an absent metrics-server) as unknown. Pods, their
    owners and HPAs come from the API server's watch cache (no etcd read per signal); the
    Metrics API, which has none, is asked each time."""
    try:
        return await client.get(path, cached=cached)
    except ApiError as error:
        log.warning("cannot read %s (%s): treating it as unknown", what, error)
        return None


async def _workload(client: KubeClient, namespace: str, pod: JsonObject) -> ScaledWorkload | None:
    owner = controller_of(pod)
    if owner is None:
        return None
    targets = [owner]
    if owner[0] == "ReplicaSet":
        replica_set = await _optional(
            client, group_path("apps/v1", namespace, "replicasets", owner[1]), "the ReplicaSet"
        )
        if replica_set is not None and (parent := controller_of(replica_set)) is not None:
            targets.append(parent)
    hpas = await _optional(
        client, group_path(AUTOSCALING_API, namespace, "horizontalpodautoscalers"), "the HPAs"
    )
    items = (hpas or {}).get("items") or []
    return autoscaler_for([h for h in items if isinstance(h, dict)], targets)


async def find_pod(client: KubeClient, namespace: str, name: str) -> JsonObject | None:
    return await _optional(client, core_path(namespace, "pods", name), "the pod")


async def gather(
    client: KubeClient, namespace: str, pod_name: str, container: str | None
) -> tuple[PodFacts, JsonObject | None]:
    """The pod's facts, and the pod itself when the API has it."""
    pod, metrics = await asyncio.gather(
        find_pod(client, namespace, pod_name),
        _optional(
            client,
            group_path(METRICS_API, namespace, "pods", pod_name),
            "the Metrics API",
            cached=False,
        ),
    )
    metrics_cores = pod_metrics_cores(metrics, container) if metrics else None
    if pod is None:
        return PodFacts(metrics_api_cores=metrics_cores), None
    limit, request = container_cpu(pod, container)
    workload = await _workload(client, namespace, pod)
    return PodFacts(metrics_cores, limit, request, workload), pod


def pod_event(pod: JsonObject, reason: str, message: str, warning: bool) -> JsonObject:
    """A core/v1 Event about the pod, as `kubectl describe pod` lists it."""
    meta = pod.get("metadata", {})
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta.get('name')}.", "namespace": meta.get("namespace")},
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
        },
        "reason": reason,
        "message": message[:EVENT_MESSAGE_LIMIT],
        "type": "Warning" if warning else "Normal",
        "source": {"component": EVENT_COMPONENT},
        "reportingComponent": EVENT_COMPONENT,
        "reportingInstance": socket.gethostname(),
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }
