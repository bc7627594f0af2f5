"""What the agent tells the operator, decided from what it measured (pure, no I/O).

A container is reported while its throttling is at or over the threshold, once per
window, and once more when it falls back under it (the "clear" signal that lets the
operator lower the severity). A pod's birth is reported once, when no container of the
pod has been born for a settle time.
"""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from kernel_gossip.core.births import PodBirth
from kernel_gossip.schema.report import NAMESPACE_KINDS, ContainerCpuTruth
from kernel_gossip.schema.signal import (
    CpuThrottlePayload,
    PodCreationPayload,
    TimelineStepPayload,
    throttle_figures,
)


@dataclass(frozen=True)
class PodRef:
    """Who a container belongs to, as the container runtime's CRI labels say."""

    pod_name: str
    namespace: str
    pod_uid: str | None
    container_name: str


class ThrottleTracker:
    """Remembers which containers are over the threshold, to send their clear signal."""

    def __init__(self, threshold_percent: float) -> None:
        if not 0 < threshold_percent <= 100:
            raise ValueError("the throttling threshold is a percentage within (0, 100]")
        self.threshold_percent = threshold_percent
        self._over: set[str] = set()

    def should_report(self, container_id: str, throttled_percent: float) -> bool:
        if throttled_percent >= self.threshold_percent:
            self._over.add(container_id)
            return True
        if container_id in self._over:
            self._over.discard(container_id)
            return True
        return False

    def forget_all_but(self, container_ids: Iterable[str]) -> None:
        """Containers that are gone need no clear signal."""
        self._over &= set(container_ids)


def throttle_payload(
    truth: ContainerCpuTruth,
    pod: PodRef,
    node: str | None,
    observed_at: datetime,
    window_seconds: float,
) -> CpuThrottlePayload:
    """A cpu_throttle signal carrying every figure observe measured.

    actual_cpu_usage and reported_cpu_usage are both the window's average usage from the
    kernel's cpuacct counter: the figure metrics-server derives from the same counter. The
    operator replaces the reported one by the Metrics API's when the cluster has one.
    """
    return CpuThrottlePayload(
        **{
            **throttle_figures(truth),
            "type": "cpu_throttle",
            "pod_name": pod.pod_name,
            "namespace": pod.namespace,
            "container_name": pod.container_name,
            "pod_uid": pod.pod_uid,
            "node": node,
            "timestamp": observed_at,
            "period_seconds": window_seconds,
            "throttle_percentage": round(truth.throttled_percent, 3),
            "actual_cpu_usage": round(truth.cpu_usage_cores, 3),  # millicores, as Kubernetes shows
            "reported_cpu_usage": round(truth.cpu_usage_cores, 3),
        }
    )


def pod_creation_payload(
    birth: PodBirth, pod_name: str, namespace: str, node: str | None
) -> PodCreationPayload:
    """A pod_creation signal: the pod's container births added up, timeline merged.

    The timeline lists each container's phases, offset from the pod's first event and
    prefixed with the container's position when the pod has several (sandbox first).
    """
    containers = birth.containers
    syscalls: dict[str, int] = {}
    for container in containers:
        for name, count in container.syscalls.items():
            syscalls[name] = syscalls.get(name, 0) + count
    namespaces = [
        kind
        for kind in NAMESPACE_KINDS
        if any(kind in container.namespaces_created for container in containers)
    ]
    timeline = []
    for position, container in enumerate(containers):
        shift_ms = (container.started_at - birth.started_at).total_seconds() * 1000
        prefix = f"c{position}-" if len(containers) > 1 else ""
        for step in container.timeline:
            timeline.append(
                TimelineStepPayload(
                    phase=f"{prefix}{step.phase}",
                    offset_ms=max(shift_ms + step.offset_ms, 0.0),
                    count=step.count,
                )
            )
    timeline.sort(key=lambda step: step.offset_ms)
    return PodCreationPayload(
        type="pod_creation",
        pod_name=pod_name,
        namespace=namespace,
        pod_uid=birth.pod_uid,
        node=node,
        total_syscalls=sum(c.total_syscalls for c in containers),
        syscalls=syscalls,
        namespace_ops=sum(c.namespace_operations for c in containers),
        namespaces_created=namespaces,
        mounts=sum(c.mounts for c in containers),
        cgroup_writes=sum(c.cgroup_writes for c in containers),
        execs=sum(c.execs for c in containers),
        duration_ms=birth.duration_ms,
        timeline=timeline,
        timestamp=birth.started_at,
    )
