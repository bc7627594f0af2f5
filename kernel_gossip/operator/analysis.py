"""What the operator concludes from the kernel's evidence: severity, insights, advice.

Pure functions, no I/O: the operator fetches the Metrics API figure, the pod's limit and
its HPA, and passes them in.

Severity follows kubernetes-mixin's CPUThrottlingHigh alert (warning when more than 25% of
CFS periods were throttled); critical starts at 50%, when the container is stopped in at
least every other period. Both are configurable.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from kernel_gossip.schema.report import MAX_CORES, MIN_CPU_LIMIT_CORES
from kernel_gossip.schema.resources import (
    KernelTruth,
    KernelWhisperSpec,
    KernelWhisperStatus,
    PodBirthCertificateSpec,
    Recommendation,
    ReportedUsage,
    ThrottleReading,
)

Severity = Literal["info", "warning", "critical"]

MILLICORES_PER_CORE = 1000
UNDERSTATED_RATIO = 0.9
"""A reported figure below 90% of the kernel's is called out as understating the use."""
MAX_REPLICAS = 2**31 - 1
"""Deployment.spec.replicas is an int32."""
MAX_SUGGESTED_CORES = 100_000.0
"""No machine has more cores: a limit sized beyond it says the demand cannot be met."""
HPA_TOLERANCE = 0.1
"""kube-controller-manager's --horizontal-pod-autoscaler-tolerance: within 10% of its target
an HPA changes nothing."""


@dataclass(frozen=True)
class Thresholds:
    """Percent of CFS periods throttled: when to warn, when it is critical, and the target a
    suggested limit aims to keep throttling under."""

    warning_percent: float = 25.0
    critical_percent: float = 50.0
    target_percent: float = 10.0
    history_length: int = 10

    def __post_init__(self) -> None:
        if not 0 < self.target_percent <= self.warning_percent <= self.critical_percent <= 100:
            raise ValueError(
                "thresholds must satisfy 0 < target <= warning <= critical <= 100 "
                f"(got {self.target_percent}, {self.warning_percent}, {self.critical_percent})"
            )
        if self.history_length < 1:
            raise ValueError("history_length must be at least 1")


@dataclass(frozen=True)
class ScaledWorkload:
    """The workload owning the pod, when a HorizontalPodAutoscaler scales it."""

    kind: str
    name: str
    autoscaler: str
    current_replicas: int
    max_replicas: int
    cpu_utilization_percent: int | None = None  # the HPA's status.currentMetrics
    cpu_target_percent: int | None = None  # its spec.metrics target


@dataclass(frozen=True)
class PodFacts:
    """What the cluster says about the pod: all None when the pod is not in the API."""

    metrics_api_cores: float | None = None
    limit_cores: float | None = None
    request_cores: float | None = None
    workload: ScaledWorkload | None = None


def severity(throttled_percent: float, thresholds: Thresholds) -> Severity:
    if throttled_percent >= thresholds.critical_percent:
        return "critical"
    if throttled_percent >= thresholds.warning_percent:
        return "warning"
    return "info"


def cpu_quantity(cores: float) -> str:
    """Cores as a Kubernetes CPU quantity, rounded up to a millicore: 1.5 -> 1500m, 2 -> 2."""
    scaled = cores * MILLICORES_PER_CORE
    if not math.isfinite(scaled):  # beyond 1.8e305 cores: whole cores already
        return str(math.ceil(cores))
    millicores = max(math.ceil(round(scaled, 6)), 0)
    if millicores % MILLICORES_PER_CORE == 0:
        return str(millicores // MILLICORES_PER_CORE)
    return f"{millicores}m"


_QUANTITY_SUFFIX = {"n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1.0, "k": 1e3, "M": 1e6, "G": 1e9}


def parse_cpu_quantity(quantity: str) -> float:
    """A CPU quantity as the API prints it (250m, 1, 1.5, 348795234n) in cores; more cores
    than any machine has is refused, so every figure derived from it stays finite."""
    text = quantity.strip()
    suffix = text[-1] if text and text[-1] in "numkMG" else ""
    number = text[: len(text) - len(suffix)]
    try:
        value = float(number) * _QUANTITY_SUFFIX[suffix]
    except ValueError:
        raise ValueError(f"not a CPU quantity: {quantity!r}") from None
    if not 0 <= value <= MAX_CORES:  # NaN fails too
        raise ValueError(f"not a CPU quantity: {quantity!r}")
    return value


def reported_usage(
    metrics_api_cores: float | None, payload_cores: float | None, limit_cores: float | None
) -> ReportedUsage:
    """What users are told: the Metrics API (what `kubectl top` shows) when it answered for
    the pod, else the figure the sender saw reported; both kept, with the source."""
    if metrics_api_cores is not None:
        cores, source = metrics_api_cores, "metrics-api"
    elif payload_cores is not None:
        cores, source = payload_cores, "payload"
    else:
        return ReportedUsage(cores=None, source="none", payload_cores=None)
    percent = 100 * cores / limit_cores if limit_cores else None
    if percent is not None and not math.isfinite(percent):
        percent = None  # a limit too small to divide by says nothing of the use
    return ReportedUsage(
        cores=cores,
        source=source,
        percent_of_limit=percent,
        metrics_api_cores=metrics_api_cores,
        payload_cores=payload_cores,
    )


_SOURCE_LABEL = {"metrics-api": "Metrics API", "payload": "Reported by the sender"}


def insights(truth: KernelTruth, reported: ReportedUsage, thresholds: Thresholds) -> list[str]:
    """One line per finding, each with its numbers."""
    level = severity(truth.throttled_percent, thresholds)
    window = f" over {truth.window_seconds:g} s" if truth.window_seconds else ""
    lines = [
        f"CPU throttling ({level}): {truth.throttled_percent:.1f}% of CFS periods throttled"
        f"{window} (warning at {thresholds.warning_percent:g}%, "
        f"critical at {thresholds.critical_percent:g}%)"
    ]
    if reported.cores is not None and reported.source in _SOURCE_LABEL:
        of_limit = (
            f" ({reported.percent_of_limit:.0f}% of limit)"
            if reported.percent_of_limit is not None
            else ""
        )
        lines.append(
            f"{_SOURCE_LABEL[reported.source]}: {reported.cores:.2f} cores{of_limit}; "
            f"kernel: {truth.throttled_percent:.1f}% of periods throttled"
        )
        used = truth.cpu_usage_cores
        if used is not None and reported.cores < UNDERSTATED_RATIO * used:
            lines.append(
                f"Metrics lie: kernel measured {used:.2f} cores used, the reported "
                f"{reported.cores:.2f} cores understate it by {used - reported.cores:.2f} cores"
            )
    if truth.throttled_seconds is not None and truth.window_seconds:
        lines.append(
            f"Throttled for {truth.throttled_seconds:.2f} s of run-queue time "
            f"in a {truth.window_seconds:g} s window"
        )
    p50, p99 = truth.runqueue_latency_p50_us, truth.runqueue_latency_p99_us
    if p50 is not None and p99 is not None:
        lines.append(f"Run-queue wait: p50 {_micros(p50)}, p99 {_micros(p99)}")
    return lines


def _micros(value: float) -> str:
    return f"{value / 1000:.1f} ms" if value >= 1000 else f"{value:.0f} us"


def unmet_demand_limit(
    limit_cores: float,
    throttled_percent: float,
    throttled_seconds: float,
    window_seconds: float,
    target_percent: float,
) -> float:
    """The CPU limit (cores) that would have kept throttling under the target.

    In a window of W seconds the container was throttled in a fraction p of its CFS
    periods and spent T seconds throttled (cpu.stat's throttled time: run-queue time the
    container wanted the CPU and was refused, i.e. unmet demand in core-seconds). Those
    periods number p * W / P for a period length P, so a throttled period lacked on average
        m = T / (p * W)  cores  (P cancels out).
    Only this mean is known, so the excess demand above the limit is taken as exponential
    (the maximum-entropy law for a positive quantity of known mean):
        P(demand > limit + x) = p * exp(-x / m).
    Throttling stays under the target t when that probability is t:
        x = m * ln(p / t),  limit' = limit + x.
    No throttled time, or throttling already at or under the target: the limit stays.
    Total: extreme inputs give inf (never an exception), which callers treat as unsizable.
    """
    p = throttled_percent / 100
    t = target_percent / 100
    if p <= t or throttled_seconds <= 0 or window_seconds <= 0:
        return limit_cores
    exposure = p * window_seconds
    if exposure <= 0:  # underflow: an unmeasurably short throttled span
        return math.inf
    mean_unmet = throttled_seconds / exposure
    return limit_cores + mean_unmet * math.log(p / t)


def recommendations(
    truth: KernelTruth, reported: ReportedUsage, facts: PodFacts, thresholds: Thresholds
) -> list[Recommendation]:
    """Advice with its basis stated: a limit sized from unmet demand, a review of requests
    against measured use, and replicas for an autoscaled workload. Never a fixed factor."""
    percent = truth.throttled_percent
    if percent < thresholds.warning_percent:
        return [
            Recommendation(
                action="no_change",
                reason=f"{percent:.1f}% of periods throttled, under the "
                f"{thresholds.warning_percent:g}% warning threshold",
            )
        ]
    candidates = (
        _limit_advice(truth, facts, thresholds),
        _requests_advice(truth, reported, facts),
        _replicas_advice(truth, facts, thresholds),
    )
    advice = [r for r in candidates if r is not None]
    return sorted(advice, key=lambda r: r.suggested_value is None)  # actionable ones first


def cpu_limit(truth: KernelTruth, facts: PodFacts) -> float | None:
    """The limit as the sender measured it (CFS quota), else as the pod's spec states it,
    raised to the smallest quota the kernel enforces (a limit of 0 is no limit)."""
    if truth.cpu_limit_cores:
        return truth.cpu_limit_cores
    if facts.limit_cores:
        return max(facts.limit_cores, MIN_CPU_LIMIT_CORES)
    return None


def usage_report(truth: KernelTruth, payload_cores: float | None, facts: PodFacts) -> ReportedUsage:
    return reported_usage(facts.metrics_api_cores, payload_cores, cpu_limit(truth, facts))


def _sizing_base(truth: KernelTruth, facts: PodFacts) -> tuple[float, str] | None:
    """The limit to grow from, and how it is known; the usage bounds an unknown limit."""
    if (limit := cpu_limit(truth, facts)) is not None:
        return limit, "a limit of"
    if truth.cpu_usage_cores:
        return truth.cpu_usage_cores, "the limit unknown but at least the measured"
    return None


def _suggested_limit(truth: KernelTruth, facts: PodFacts, thresholds: Thresholds) -> float | None:
    """The sized limit; None when it cannot be sized or would exceed any machine."""
    base = _sizing_base(truth, facts)
    throttled, window = truth.throttled_seconds, truth.window_seconds
    if base is None or throttled is None or throttled <= 0 or not window:
        return None
    suggested = unmet_demand_limit(
        base[0], truth.throttled_percent, throttled, window, thresholds.target_percent
    )
    return suggested if math.isfinite(suggested) and suggested <= MAX_SUGGESTED_CORES else None


def _limit_advice(truth: KernelTruth, facts: PodFacts, thresholds: Thresholds) -> Recommendation:
    percent, target = truth.throttled_percent, thresholds.target_percent
    base = _sizing_base(truth, facts)
    suggested = _suggested_limit(truth, facts, thresholds)
    if base is None or suggested is None:
        return Recommendation(
            action="increase_cpu_limits",
            reason=f"{percent:.1f}% of periods throttled, but {_unsized_because(truth, base)}",
        )
    limit, basis = base
    return Recommendation(
        action="increase_cpu_limits",
        reason=f"{percent:.1f}% of periods throttled, {truth.throttled_seconds:.2f} s "
        f"throttled in {truth.window_seconds:g} s: from {basis} {limit:.3f} cores, "
        f"{suggested:.3f} cores keeps throttling at or under {target:g}% of periods "
        "(excess demand taken as exponential with the measured mean)",
        suggested_value=cpu_quantity(suggested),
    )


def _unsized_because(truth: KernelTruth, base: tuple[float, str] | None) -> str:
    if base is None:
        return "neither the limit nor the usage is known, so no limit can be suggested"
    if truth.throttled_seconds is None or not truth.window_seconds:
        return (
            "the signal carries no throttled time, so the unmet demand cannot be sized: "
            "send throttled_seconds (kernel-gossip observe measures it)"
        )
    if truth.throttled_seconds > 0:
        return (
            f"the unmet demand measured needs more than {MAX_SUGGESTED_CORES:g} cores, "
            "beyond any machine: the limit cannot be sized from it"
        )
    return "no throttled time was recorded, so there is no unmet demand to size a limit from"


def _requests_advice(
    truth: KernelTruth, reported: ReportedUsage, facts: PodFacts
) -> Recommendation | None:
    used = truth.cpu_usage_cores
    if used is None:
        return None
    if facts.request_cores is not None and facts.request_cores >= used:
        return None
    if facts.request_cores is not None:
        basis = f"requests.cpu {cpu_quantity(facts.request_cores)} is below"
    elif reported.cores is not None:
        basis = f"requests sized from the reported {reported.cores:.2f} cores fall short of"
    else:
        basis = "requests should cover"
    return Recommendation(
        action="review_resource_requests",
        reason=f"{basis} the {used:.2f} cores the kernel measured in use: the scheduler "
        "places the pod as if it needed less than it does",
        suggested_value=cpu_quantity(used),
    )


def _replicas_advice(
    truth: KernelTruth, facts: PodFacts, thresholds: Thresholds
) -> Recommendation | None:
    """Spread the same demand over more pods at the current limit: replicas grow by the
    ratio of the limit that would meet it to the limit each pod has."""
    workload = facts.workload
    limit = cpu_limit(truth, facts)
    suggested = _suggested_limit(truth, facts, thresholds)
    if workload is None or limit is None or suggested is None or suggested <= limit:
        return None
    ratio = workload.current_replicas * suggested / limit
    if not math.isfinite(ratio) or ratio > MAX_REPLICAS:
        return None  # a limit too small to spread the demand over pods
    replicas = math.ceil(round(ratio, 6))
    capped = (
        f"; above maxReplicas {workload.max_replicas}: raise it"
        if replicas > workload.max_replicas
        else ""
    )
    return Recommendation(
        action="scale_out_replicas",
        reason=f"{workload.kind} {workload.name} runs {workload.current_replicas} replicas at "
        f"{limit:.3f} cores each; {_hpa_reading(workload)}; the kernel's throttled time says "
        f"the demand needs {suggested:.3f} cores per pod, which fits {replicas} "
        f"replicas{capped}",
        suggested_value=str(replicas),
    )


def _hpa_reading(workload: ScaledWorkload) -> str:
    """The HPA's own figure, and whether it makes the HPA act."""
    used, target = workload.cpu_utilization_percent, workload.cpu_target_percent
    if used is None or target is None:
        return f"HPA {workload.autoscaler} reports no CPU utilization against a target"
    verdict = (
        "so it adds no replicas"
        if used <= target * (1 + HPA_TOLERANCE)
        else "so it scales out by that figure alone"
    )
    return (
        f"HPA {workload.autoscaler} reads {used}% average CPU utilization of requests "
        f"against its {target}% target, {verdict}"
    )


def one_line(recommendation: Recommendation) -> str:
    value = (
        f" (suggested {recommendation.suggested_value})" if recommendation.suggested_value else ""
    )
    return f"{recommendation.action}: {recommendation.reason}{value}"


def next_history(
    previous: Sequence[ThrottleReading], reading: ThrottleReading, keep: int
) -> list[ThrottleReading]:
    """The last `keep` readings, oldest first; a replayed reading replaces itself, and the
    readings of another pod (an earlier pod of the same name) are dropped."""
    kept = [
        r
        for r in previous
        if r.observed_at != reading.observed_at and not _other_pod(r.pod_uid, reading.pod_uid)
    ] + [reading]
    kept.sort(key=lambda r: r.observed_at)
    return kept[-keep:]


def _other_pod(earlier: str | None, now: str | None) -> bool:
    return earlier is not None and now is not None and earlier != now


def whisper_status(
    spec: KernelWhisperSpec,
    facts: PodFacts,
    history: Sequence[ThrottleReading],
    thresholds: Thresholds,
    now: datetime,
) -> KernelWhisperStatus:
    """The operator's conclusion about one KernelWhisper's evidence."""
    truth = spec.kernel_truth
    reported = usage_report(truth, spec.reported_cpu_usage_cores, facts)
    advice = recommendations(truth, reported, facts, thresholds)
    reading = ThrottleReading(
        observed_at=spec.observed_at,
        throttled_percent=truth.throttled_percent,
        pod_uid=truth.pod_uid,
    )
    return KernelWhisperStatus(
        severity=severity(truth.throttled_percent, thresholds),
        reported_usage=reported,
        recommendations=advice,
        recommendation=one_line(advice[0]),
        history=next_history(history, reading, thresholds.history_length),
        updated_at=now,
    )


def birth_summary(spec: PodBirthCertificateSpec) -> str:
    """The certificate in one line, numbers first."""
    kinds = ", ".join(spec.namespaces_created) or "none"
    return (
        f"{spec.total_syscalls} syscalls in {spec.duration}: {spec.namespace_operations} "
        f"namespace operations (created: {kinds}), {spec.mounts} mounts, "
        f"{spec.cgroup_writes} cgroup writes, {spec.execs} execs"
    )
