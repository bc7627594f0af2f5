"""The JSON shapes kernel-gossip prints and sends, defined once.

`kernel-gossip observe --json` prints an ObserveReport; the same ContainerCpuTruth is the
`kernelTruth` of a KernelWhisper, so the CLI, the webhook and the CRD schema agree.
"""

from datetime import datetime
from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

MIN_CPU_LIMIT_CORES = 0.001
"""The smallest CFS limit the kernel takes: a 1 ms quota over the longest (1 s) period."""
MAX_CORES = 100_000.0
"""No machine has more cores: a larger figure is a unit error (millicores sent as cores)."""


class CamelModel(BaseModel):
    """Python names in snake_case, JSON and Kubernetes fields in camelCase; every figure
    finite (an infinite or NaN one is refused, never written as `Infinity`)."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        frozen=True,
        allow_inf_nan=False,
    )


class ContainerCpuTruth(CamelModel):
    """What the kernel knows about one container's CPU over a window."""

    cgroup_path: str = Field(description="Relative to the cgroup root.")
    pod_uid: str | None = Field(description="Kubernetes pod UID, null outside a pod.")
    container_id: str | None = Field(description="Container ID, null for a plain cgroup.")
    runtime: str | None = Field(description="Container runtime, null when unknown.")
    cpu_limit_cores: float | None = Field(
        ge=MIN_CPU_LIMIT_CORES, description="CFS quota / period; null: none."
    )
    cpu_usage_cores: float = Field(ge=0, description="Average CPU usage over the window.")
    nr_periods: int = Field(ge=0, description="CFS periods elapsed in the window.")
    nr_throttled: int = Field(ge=0, description="Periods in which the cgroup was throttled.")
    throttled_percent: float = Field(ge=0, le=100, description="100 * nrThrottled / nrPeriods.")
    throttled_seconds: float = Field(ge=0, description="Time spent throttled in the window.")
    runqueue_latency_p50_us: float | None = Field(
        ge=0, description="Median run-queue wait (runnable to running); null: no samples."
    )
    runqueue_latency_p99_us: float | None = Field(
        ge=0, description="99th percentile run-queue wait; null: no samples."
    )
    involuntary_switches: int = Field(ge=0, description="Switched out while still runnable.")


class ObserveReport(CamelModel):
    window_seconds: float = Field(gt=0)
    containers: list[ContainerCpuTruth]


NamespaceKind = Literal["mnt", "uts", "ipc", "pid", "net", "cgroup", "user", "time"]
NAMESPACE_KINDS: tuple[NamespaceKind, ...] = get_args(NamespaceKind)
"""In the order certificates list them."""


class TimelineStep(CamelModel):
    """One step of a birth: when it started (ms after the runtime started) and its syscalls."""

    phase: str
    offset_ms: float = Field(ge=0)
    count: int = Field(ge=0)


class BirthFigures(CamelModel):
    """The figures of a syscall cascade: a container's birth, or a pod's certificate."""

    total_syscalls: int = Field(ge=0)
    syscalls: dict[str, int]
    namespace_operations: int = Field(ge=0)
    namespaces_created: list[NamespaceKind]
    mounts: int = Field(ge=0)
    cgroup_writes: int = Field(ge=0)
    execs: int = Field(ge=0)


class ContainerBirth(BirthFigures):
    """The measured syscall cascade of one container start (`kernel-gossip births --json`)."""

    container_id: str
    pod_uid: str | None
    cgroup_path: str
    runtime: str
    started_at: datetime
    duration_ms: float = Field(ge=0)
    timeline: list[TimelineStep]


class BirthsReport(CamelModel):
    births: list[ContainerBirth]
