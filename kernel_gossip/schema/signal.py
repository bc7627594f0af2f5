"""What a sender (the node agent, or the talk's curl) posts to the operator's webhook.

The one definition both ends validate with: snake_case JSON, a `type` discriminator
(`cpu_throttle`, `pod_creation`), strict types (a number sent as a string is refused),
finite numbers, Kubernetes names the API server would accept, so a payload that passes
here can always be written as a custom resource. Also maps a payload to the evidence part
of a resource's spec.
"""

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    TypeAdapter,
    model_validator,
)

from kernel_gossip.schema.names import DnsLabel, DnsSubdomain
from kernel_gossip.schema.report import (
    MAX_CORES,
    MIN_CPU_LIMIT_CORES,
    ContainerCpuTruth,
    NamespaceKind,
)
from kernel_gossip.schema.resources import (
    CertificateTimelineStep,
    KernelTruth,
    PodBirthCertificateSpec,
)

MAX_INT64 = 2**63 - 1
MAX_WINDOW_SECONDS = 86_400.0
"""A day: the longest window a signal covers, and the longest duration any command takes."""
MIN_WINDOW_SECONDS = 0.001
"""CFS's shortest period (cpu.cfs_period_us >= 1000): no shorter window counts anything."""
MAX_SECONDS = 1e9
MAX_MICROSECONDS = 1e12

PodName = DnsSubdomain
"""Any name Kubernetes accepts for a pod (operator/naming.py keeps its resource name valid)."""
NamespaceName = DnsLabel
ContainerName = DnsLabel
NodeName = DnsSubdomain
PodUid = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][-_A-Za-z0-9]*$")
]
SyscallName = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[a-z_][a-z0-9_]*$")
]
PhaseName = Annotated[
    str, StringConstraints(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9][-_.A-Za-z0-9]*$")
]
CgroupPath = Annotated[
    str, StringConstraints(min_length=1, max_length=4096, pattern=r"^/[^\x00]*$")
]
ContainerId = Annotated[
    str, StringConstraints(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][-_.A-Za-z0-9]*$")
]
RuntimeName = DnsLabel
Count = Annotated[int, Field(ge=0, le=MAX_INT64)]
Cores = Annotated[float, Field(ge=0, le=MAX_CORES)]
LimitCores = Annotated[float, Field(ge=MIN_CPU_LIMIT_CORES, le=MAX_CORES)]
"""A CFS limit the kernel could enforce: never 0 or a subnormal sliver of a core."""
Seconds = Annotated[float, Field(ge=0, le=MAX_SECONDS)]
Microseconds = Annotated[float, Field(ge=0, le=MAX_MICROSECONDS)]
Milliseconds = Annotated[float, Field(ge=0, le=MAX_WINDOW_SECONDS * 1000)]
Percent = Annotated[float, Field(ge=0, le=100)]
Timestamp = Annotated[
    AwareDatetime,
    Field(gt=datetime(1970, 1, 1, tzinfo=UTC), lt=datetime(9000, 1, 1, tzinfo=UTC)),
]
"""Within the Unix era and far from datetime's limits, so start + offset cannot overflow."""

PERCENT_TOLERANCE = 0.5
"""How far throttle_percentage may stray from 100 * nr_throttled / nr_periods (rounding)."""


class Payload(BaseModel):
    """snake_case, strict (no string-to-number coercion), finite, no unknown fields."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False)


class CpuThrottlePayload(Payload):
    """A container's CFS throttling over a window, as the kernel counted it."""

    type: Literal["cpu_throttle"]
    pod_name: PodName
    namespace: NamespaceName
    container_name: ContainerName
    throttle_percentage: Percent
    actual_cpu_usage: Cores
    reported_cpu_usage: Cores
    period_seconds: Annotated[float, Field(ge=MIN_WINDOW_SECONDS, le=MAX_WINDOW_SECONDS)]
    timestamp: Timestamp
    pod_uid: PodUid | None = None
    node: NodeName | None = None
    nr_periods: Count | None = None
    nr_throttled: Count | None = None
    throttled_seconds: Seconds | None = None
    cpu_limit_cores: LimitCores | None = None
    runqueue_latency_p50_us: Microseconds | None = None
    runqueue_latency_p99_us: Microseconds | None = None
    involuntary_switches: Count | None = None
    cgroup_path: CgroupPath | None = None
    container_id: ContainerId | None = None
    runtime: RuntimeName | None = None

    @model_validator(mode="after")
    def counters_agree(self) -> Self:
        """The optional counters, when sent, must agree with each other, the percentage and
        the window (throttled time is summed over CPUs: at most window x MAX_CORES)."""
        throttled = self.throttled_seconds
        if throttled is not None and throttled > self.period_seconds * MAX_CORES:
            raise ValueError(
                f"throttled_seconds {throttled} exceeds period_seconds x {MAX_CORES:g} cores"
            )
        if self.nr_periods is not None and self.nr_throttled is not None:
            if self.nr_throttled > self.nr_periods:
                raise ValueError("nr_throttled cannot exceed nr_periods")
            if self.nr_periods > 0:
                counted = 100 * self.nr_throttled / self.nr_periods
                if abs(counted - self.throttle_percentage) > PERCENT_TOLERANCE:
                    raise ValueError(
                        f"throttle_percentage {self.throttle_percentage} disagrees with "
                        f"nr_throttled/nr_periods ({counted:.2f}%)"
                    )
        p50, p99 = self.runqueue_latency_p50_us, self.runqueue_latency_p99_us
        if p50 is not None and p99 is not None and p50 > p99:
            raise ValueError("runqueue_latency_p50_us cannot exceed runqueue_latency_p99_us")
        return self


class TimelineStepPayload(Payload):
    """One phase of a birth: start (ms after the runtime started) and its syscalls."""

    phase: PhaseName
    offset_ms: Milliseconds
    count: Count


class PodCreationPayload(Payload):
    """The syscall cascade of one pod's container start (the `births` figures)."""

    type: Literal["pod_creation"]
    pod_name: PodName
    namespace: NamespaceName
    pod_uid: PodUid | None
    node: NodeName | None = None
    total_syscalls: Count
    syscalls: Annotated[dict[SyscallName, Count], Field(max_length=1024)]
    namespace_ops: Count
    namespaces_created: Annotated[list[NamespaceKind], Field(max_length=8)]
    mounts: Count
    cgroup_writes: Count
    execs: Count
    duration_ms: Milliseconds
    timeline: Annotated[list[TimelineStepPayload], Field(max_length=1024)]
    timestamp: Timestamp

    @model_validator(mode="after")
    def figures_agree(self) -> Self:
        if sum(self.syscalls.values()) > self.total_syscalls:
            raise ValueError("the syscalls by name add up to more than total_syscalls")
        if len(set(self.namespaces_created)) != len(self.namespaces_created):
            raise ValueError("namespaces_created lists a namespace kind twice")
        return self


Signal = Annotated[CpuThrottlePayload | PodCreationPayload, Field(discriminator="type")]
SIGNAL = TypeAdapter[CpuThrottlePayload | PodCreationPayload](Signal)


def parse_signal(body: bytes | str) -> CpuThrottlePayload | PodCreationPayload:
    """Validate a JSON body; raises pydantic.ValidationError (bad JSON included)."""
    return SIGNAL.validate_json(body)


WIRE_NAMES = {
    "window_seconds": "period_seconds",
    "cpu_usage_cores": "actual_cpu_usage",
    "throttled_percent": "throttle_percentage",
}
"""A cpu_throttle payload's names for the figures whose KernelTruth / ContainerCpuTruth name
differs (the talk's curl body); every other figure has one name throughout."""


def wire_name(figure: str) -> str:
    return WIRE_NAMES.get(figure, figure)


def kernel_truth(signal: CpuThrottlePayload) -> KernelTruth:
    """The kernel's figures of a throttle signal, as a KernelWhisper's spec.kernelTruth."""
    return KernelTruth(
        **{figure: getattr(signal, wire_name(figure)) for figure in KernelTruth.model_fields}
    )


def throttle_figures(truth: ContainerCpuTruth) -> dict[str, Any]:
    """Every figure `observe` measured for a container, by its cpu_throttle payload name."""
    return {wire_name(figure): getattr(truth, figure) for figure in ContainerCpuTruth.model_fields}


def human_duration(milliseconds: float) -> str:
    """850ms, 2.5s, 3s: the talk's `duration` form."""
    if milliseconds < 1000:
        return f"{milliseconds:.0f}ms"
    return f"{milliseconds / 1000:.1f}".removesuffix(".0") + "s"


def birth_certificate_spec(signal: PodCreationPayload) -> PodBirthCertificateSpec:
    """Every births figure of the payload; timeline timestamps are start + offset."""
    started: datetime = signal.timestamp
    return PodBirthCertificateSpec(
        pod_name=signal.pod_name,
        pod_namespace=signal.namespace,
        pod_uid=signal.pod_uid,
        node=signal.node,
        started_at=started,
        syscall_timeline=[
            CertificateTimelineStep(
                name=step.phase,
                timestamp=started + timedelta(milliseconds=step.offset_ms),
                count=step.count,
            )
            for step in signal.timeline
        ],
        total_syscalls=signal.total_syscalls,
        syscalls=dict(signal.syscalls),
        namespace_operations=signal.namespace_ops,
        namespaces_created=list(signal.namespaces_created),
        mounts=signal.mounts,
        cgroup_writes=signal.cgroup_writes,
        execs=signal.execs,
        duration=human_duration(signal.duration_ms),
        duration_ms=signal.duration_ms,
    )
