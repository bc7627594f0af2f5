"""The custom resources' spec and status, defined once: the CRD schemas are generated from
these models (crds.py) and the operator writes the resources through them.

Spec carries the evidence the agent reported; status carries what the operator concluded.
"""

from datetime import datetime
from typing import Literal

from pydantic import Field

from kernel_gossip.schema.report import MIN_CPU_LIMIT_CORES, BirthFigures, CamelModel

GROUP = "kernel-gossip.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"


class KernelTruth(CamelModel):
    """The observe figures of ContainerCpuTruth (a test keeps the two in step), optional
    because a webhook sender may know only some of them, plus the window they cover."""

    window_seconds: float | None = Field(default=None, gt=0)
    cgroup_path: str | None = None
    pod_uid: str | None = None
    container_id: str | None = None
    runtime: str | None = None
    cpu_limit_cores: float | None = Field(default=None, ge=MIN_CPU_LIMIT_CORES)
    cpu_usage_cores: float | None = Field(default=None, ge=0)
    nr_periods: int | None = Field(default=None, ge=0)
    nr_throttled: int | None = Field(default=None, ge=0)
    throttled_percent: float = Field(ge=0, le=100)
    throttled_seconds: float | None = Field(default=None, ge=0)
    runqueue_latency_p50_us: float | None = Field(default=None, ge=0)
    runqueue_latency_p99_us: float | None = Field(default=None, ge=0)
    involuntary_switches: int | None = Field(default=None, ge=0)


class KernelWhisperSpec(CamelModel):
    signal_type: Literal["cpu_throttle"]
    pod_name: str
    pod_namespace: str
    container_name: str | None = None
    node: str | None = None
    observed_at: datetime
    kernel_truth: KernelTruth
    reported_cpu_usage_cores: float | None = Field(
        default=None, ge=0, description="The usage figure the sender saw reported."
    )
    insights: list[str]


class Recommendation(CamelModel):
    action: str
    reason: str
    suggested_value: str | None = Field(
        default=None, description="A Kubernetes quantity (e.g. 750m), when the action has one."
    )


class ReportedUsage(CamelModel):
    """What users are told the pod uses, and where that figure came from."""

    cores: float | None = Field(ge=0)
    source: Literal["metrics-api", "payload", "none"]
    percent_of_limit: float | None = Field(default=None, ge=0)
    metrics_api_cores: float | None = Field(default=None, ge=0)
    payload_cores: float | None = Field(default=None, ge=0)


class ThrottleReading(CamelModel):
    observed_at: datetime
    throttled_percent: float = Field(ge=0, le=100)
    pod_uid: str | None = Field(
        default=None, description="The pod measured: a new pod of the same name starts afresh."
    )


class KernelWhisperStatus(CamelModel):
    severity: Literal["info", "warning", "critical"]
    reported_usage: ReportedUsage
    recommendations: list[Recommendation]
    recommendation: str = Field(description="The first recommendation, as one line.")
    history: list[ThrottleReading] = Field(description="The latest readings, oldest first.")
    updated_at: datetime


class CertificateTimelineStep(CamelModel):
    # A timeline step as a certificate lists it: its phase (name) at a wall-clock time.
    name: str
    timestamp: datetime
    count: int = Field(ge=0)


class PodBirthCertificateSpec(BirthFigures):
    """A pod's births added up (BirthFigures), where and when, and its timeline."""

    pod_name: str
    pod_namespace: str
    pod_uid: str | None = None
    node: str | None = None
    started_at: datetime
    syscall_timeline: list[CertificateTimelineStep]
    duration: str = Field(description="Human form of durationMs, e.g. 2.5s.")
    duration_ms: float = Field(ge=0)


class PodBirthCertificateStatus(CamelModel):
    summary: str
    recorded_at: datetime


def kernel_whisper_name(pod_name: str) -> str:
    return f"{pod_name}-kw"


def birth_certificate_name(pod_name: str) -> str:
    return f"{pod_name}-cert"
