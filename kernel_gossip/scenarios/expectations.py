"""Evaluating a scenario's expectations against what the run collected: pure, so every
rule is unit-tested. Each outcome says what was checked, the measured figure and the bound.

The kernel's figure for a KernelWhisper reading is taken over that reading's own window
([observedAt - windowSeconds, observedAt]) from the cpu.stat samples, interpolated
linearly between the two samples around each edge.
"""

import bisect
from collections.abc import Sequence
from dataclasses import dataclass, field

from kernel_gossip.scenarios.spec import (
    CertificatesExpectation,
    HpaExpectation,
    LoadExpectation,
    RecommendationExpectation,
    Scenario,
    WebhookExpectation,
    WhisperExpectation,
)

PodKey = tuple[str, str]
"""(namespace, pod name)."""


@dataclass(frozen=True)
class CpuSample:
    """One read of a container's cgroup: cumulative counters at a wall-clock time."""

    time: float
    nr_periods: int
    nr_throttled: int
    throttled_seconds: float
    usage_seconds: float


@dataclass(frozen=True)
class MetricsSample:
    """A PodMetrics as read at `time`: usage over [timestamp - window, timestamp]."""

    time: float
    timestamp: float
    window_seconds: float
    usage_cores: float
    limit_cores: float | None

    @property
    def percent_of_limit(self) -> float | None:
        return 100 * self.usage_cores / self.limit_cores if self.limit_cores else None


@dataclass(frozen=True)
class WhisperReading:
    """One state of a KernelWhisper: its spec's reading and the status written with it."""

    observed_at: float
    window_seconds: float
    throttled_percent: float
    severity: str | None
    source: str | None
    percent_of_limit: float | None
    actions: tuple[str, ...]


@dataclass(frozen=True)
class Certificate:
    name: str
    pod_name: str
    pod_namespace: str
    pod_uid: str | None
    total_syscalls: int


@dataclass(frozen=True)
class LoadStats:
    """locust's aggregated figures; the p99 is None when no request completed."""

    requests: int
    failures: int
    p99_ms: float | None

    @property
    def fail_ratio(self) -> float:
        return self.failures / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class WebhookCall:
    valid: bool
    pod: str
    status: int


@dataclass
class Evidence:
    """Everything a run collected; times are Unix seconds."""

    load_started: float
    load_ended: float
    cpu: dict[PodKey, list[CpuSample]] = field(default_factory=dict)
    metrics: dict[PodKey, list[MetricsSample]] = field(default_factory=dict)
    readings: dict[PodKey, list[WhisperReading]] = field(default_factory=dict)
    certificates: list[Certificate] = field(default_factory=list)
    created_pods: dict[str, str] = field(default_factory=dict)  # uid -> name
    hpa_replicas: dict[PodKey, list[tuple[float, int]]] = field(default_factory=dict)
    load: LoadStats | None = None
    webhook_calls: list[WebhookCall] = field(default_factory=list)
    recorded_pods: set[str] = field(default_factory=set)  # webhook pods with a resource


@dataclass(frozen=True)
class Outcome:
    what: str
    measured: str
    bound: str
    holds: bool

    def line(self) -> str:
        verdict = "ok  " if self.holds else "FAIL"
        return f"{verdict} {self.what}: measured {self.measured}, bound {self.bound}"


def _interpolate(samples: Sequence[CpuSample], moment: float) -> tuple[float, float] | None:
    """(nr_periods, nr_throttled) at `moment`, or None outside the sampled span."""
    around = _around(samples, moment)
    if around is None:
        return None
    before, after = around
    if before is after:
        return float(after.nr_periods), float(after.nr_throttled)
    share = (moment - before.time) / (after.time - before.time)
    return (
        before.nr_periods + share * (after.nr_periods - before.nr_periods),
        before.nr_throttled + share * (after.nr_throttled - before.nr_throttled),
    )


def kernel_throttled_percent(
    samples: Sequence[CpuSample], start: float, end: float
) -> float | None:
    """100 * throttled periods / periods over [start, end]; None when not sampled; 0 when
    the cgroup ran in no period."""
    first, last = _interpolate(samples, start), _interpolate(samples, end)
    if first is None or last is None:
        return None
    periods = last[0] - first[0]
    return 100 * (last[1] - first[1]) / periods if periods >= 0.5 else 0.0


def _around(samples: Sequence[CpuSample], moment: float) -> tuple[CpuSample, CpuSample] | None:
    """The samples just before and just after `moment` (one, twice, when read at it)."""
    times = [sample.time for sample in samples]
    if not times or moment < times[0] or moment > times[-1]:
        return None
    index = bisect.bisect_left(times, moment)
    if samples[index].time == moment or index == 0:
        return samples[index], samples[index]
    return samples[index - 1], samples[index]


def kernel_throttled_range(
    samples: Sequence[CpuSample], start: float, end: float
) -> tuple[float, float] | None:
    """The least and most throttled % the kernel's counters allow over [start, end]: each
    edge is known only between the samples around it (a loaded host leaves gaps between
    reads, and a burst's periods may fall in one)."""
    starts, ends = _around(samples, start), _around(samples, end)
    if starts is None or ends is None:
        return None
    percents = []
    for first in starts:
        for last in ends:
            periods = last.nr_periods - first.nr_periods
            throttled = last.nr_throttled - first.nr_throttled
            percents.append(100 * throttled / periods if periods > 0 else 0.0)
    return min(percents), max(percents)


def distance(value: float, bounds: tuple[float, float]) -> float:
    """How far `value` lies outside [low, high]; 0 inside."""
    low, high = bounds
    return max(low - value, value - high, 0.0)


def throttled_series(samples: Sequence[CpuSample], step: float = 1.0) -> list[tuple[float, float]]:
    """The kernel's throttled % per `step` seconds, for the report's plot."""
    if len(samples) < 2:
        return []
    series = []
    moment = samples[0].time
    while moment + step <= samples[-1].time:
        percent = kernel_throttled_percent(samples, moment, moment + step)
        if percent is not None:
            series.append((moment + step, percent))
        moment += step
    return series


def _during_load(reading: WhisperReading, evidence: Evidence) -> bool:
    """Its window lies within the load (an agent window may end up to one interval late)."""
    start = reading.observed_at - reading.window_seconds
    return start >= evidence.load_started - 0.5 and start < evidence.load_ended


def _peak(readings: list[WhisperReading], evidence: Evidence) -> WhisperReading | None:
    """The load's peak reading: of those taken during the load, the most throttled."""
    during = [reading for reading in readings if _during_load(reading, evidence)]
    return max(during, key=lambda reading: reading.throttled_percent) if during else None


def _span(bounds: tuple[float, float]) -> str:
    low, high = bounds
    return f"{low:.2f}%" if high - low < 0.005 else f"{low:.2f}-{high:.2f}%"


def _clock(moment: float, evidence: Evidence) -> str:
    return f"t={moment - evidence.load_started:+.1f}s"


def evaluate_whisper(expectation: WhisperExpectation, evidence: Evidence) -> list[Outcome]:
    ref = expectation.kernel_whisper
    key = ref.key
    subject = f"KernelWhisper of {ref.label}"
    readings = evidence.readings.get(key, [])
    samples = evidence.cpu.get(key, [])
    outcomes: list[Outcome] = []
    peak = _peak(readings, evidence)
    no_peak = "no reading during the load"

    if expectation.throttled_percent_within is not None:
        bound = expectation.throttled_percent_within
        compared = [
            (reading, truth)
            for reading in readings
            if (
                truth := kernel_throttled_range(
                    samples, reading.observed_at - reading.window_seconds, reading.observed_at
                )
            )
            is not None
        ]
        if compared:
            worst, truth = max(
                compared, key=lambda pair: distance(pair[0].throttled_percent, pair[1])
            )
            gap = distance(worst.throttled_percent, truth)
            measured = (
                f"{gap:.2f} points at worst over {len(compared)} reading(s) (CR "
                f"{worst.throttled_percent:.2f}% vs cpu.stat {_span(truth)} at "
                f"{_clock(worst.observed_at, evidence)})"
            )
            outcomes.append(
                Outcome(
                    f"{subject} throttled % vs cpu.stat",
                    measured,
                    f"<= {bound:g} points",
                    gap <= bound,
                )
            )
        else:
            outcomes.append(
                Outcome(
                    f"{subject} throttled % vs cpu.stat",
                    "no reading over a sampled window",
                    f"<= {bound:g} points",
                    False,
                )
            )

    if expectation.reported_source is not None:
        source = peak.source if peak else None
        outcomes.append(
            Outcome(
                f"{subject} reported usage source",
                str(source or no_peak),
                f"== {expectation.reported_source}",
                source == expectation.reported_source,
            )
        )

    if expectation.severity_in is not None:
        severity = peak.severity if peak else None
        outcomes.append(
            Outcome(
                f"{subject} severity at the load's peak",
                str(severity or no_peak),
                f"in {expectation.severity_in}",
                severity in expectation.severity_in,
            )
        )

    if expectation.lies_by is not None:
        outcomes.append(_lies(subject, peak, samples, expectation.lies_by, evidence))

    if expectation.recovered_below is not None:
        outcomes.append(_recovery(subject, readings, expectation.recovered_below, evidence))
    return outcomes


def _lies(
    subject: str,
    peak: WhisperReading | None,
    samples: Sequence[CpuSample],
    bound: float,
    evidence: Evidence,
) -> Outcome:
    what = f"{subject} kernel throttled % minus reported % of limit"
    if peak is None:
        return Outcome(what, "no reading during the load", f">= {bound:g} points", False)
    truth = kernel_throttled_percent(
        samples, peak.observed_at - peak.window_seconds, peak.observed_at
    )
    if truth is None or peak.percent_of_limit is None:
        missing = "cpu.stat over its window" if truth is None else "a reported % of limit"
        return Outcome(what, f"the peak reading has no {missing}", f">= {bound:g} points", False)
    lie = truth - peak.percent_of_limit
    measured = (
        f"{lie:.1f} points (kernel {truth:.1f}% throttled, {peak.source} "
        f"{peak.percent_of_limit:.1f}% of limit, at {_clock(peak.observed_at, evidence)})"
    )
    return Outcome(what, measured, f">= {bound:g} points", lie >= bound)


def _recovery(
    subject: str, readings: list[WhisperReading], bound: float, evidence: Evidence
) -> Outcome:
    """After the load stops the last reading is under the bound and says so (info)."""
    what = f"{subject} last reading after the load stopped"
    after = [r for r in readings if r.observed_at > evidence.load_ended]
    if not after:
        return Outcome(what, "no reading after the load stopped", f"< {bound:g}% and info", False)
    last = after[-1]
    measured = (
        f"{last.throttled_percent:.1f}% {last.severity} at {_clock(last.observed_at, evidence)}"
    )
    holds = last.throttled_percent < bound and last.severity == "info"
    return Outcome(what, measured, f"< {bound:g}% and info", holds)


def evaluate_certificates(
    expectation: CertificatesExpectation, evidence: Evidence
) -> list[Outcome]:
    ref = expectation.birth_certificates
    mine = [
        cert
        for cert in evidence.certificates
        if cert.pod_namespace == ref.namespace
        and cert.pod_name.startswith(ref.name_prefix)
        and cert.pod_uid in evidence.created_pods
    ]
    subject = f"birth certificates of {ref.namespace}/{ref.name_prefix}*"
    outcomes = []
    if expectation.count is not None:
        uids = [cert.pod_uid for cert in mine]
        doubled = len(uids) - len(set(uids))
        measured = f"{len(set(uids))} of {len(evidence.created_pods)} pods created" + (
            f", {doubled} doubled" if doubled else ""
        )
        holds = len(set(uids)) == expectation.count and not doubled
        outcomes.append(Outcome(f"{subject} count", measured, f"== {expectation.count}", holds))
    if expectation.total_syscalls_min is not None:
        lowest = min((cert.total_syscalls for cert in mine), default=None)
        outcomes.append(
            _bounded(
                f"{subject} totalSyscalls (lowest)",
                lowest,
                ">=",
                expectation.total_syscalls_min,
                "no certificate",
            )
        )
    return outcomes


def evaluate_hpa(expectation: HpaExpectation, evidence: Evidence) -> list[Outcome]:
    ref = expectation.hpa
    replicas = [count for _, count in evidence.hpa_replicas.get((ref.namespace, ref.name), [])]
    subject = f"hpa {ref.namespace}/{ref.name} replicas"
    outcomes = []
    most = max(replicas, default=None)
    if expectation.replicas_at_most is not None:
        bound = expectation.replicas_at_most
        outcomes.append(_bounded(f"{subject} (most)", most, "<=", bound, "never read"))
    if expectation.replicas_at_least is not None:
        bound = expectation.replicas_at_least
        outcomes.append(_bounded(f"{subject} (most)", most, ">=", bound, "never read"))
    return outcomes


def _bounded(subject: str, value: int | None, relation: str, bound: int, absent: str) -> Outcome:
    """A figure against a bound (`>=` or `<=`); `absent` is what is said when none was read."""
    holds = value is not None and (value >= bound if relation == ">=" else value <= bound)
    return Outcome(subject, absent if value is None else str(value), f"{relation} {bound}", holds)


def evaluate_recommendation(
    expectation: RecommendationExpectation, evidence: Evidence
) -> list[Outcome]:
    ref = expectation.recommendation
    seen = sorted({a for r in evidence.readings.get(ref.key, []) for a in r.actions})
    return [
        Outcome(
            f"KernelWhisper of {ref.label} recommendations",
            ", ".join(seen) or "none",
            f"includes {ref.action}",
            ref.action in seen,
        )
    ]


def evaluate_load(expectation: LoadExpectation, evidence: Evidence) -> list[Outcome]:
    stats = evidence.load
    bounds = expectation.load
    outcomes = []
    if bounds.max_fail_ratio is not None:
        if stats is None or not stats.requests:
            outcomes.append(
                Outcome(
                    "load fail ratio", "no request made", f"<= {bounds.max_fail_ratio:g}", False
                )
            )
        else:
            outcomes.append(
                Outcome(
                    "load fail ratio",
                    f"{stats.fail_ratio:.4f} ({stats.failures} of {stats.requests})",
                    f"<= {bounds.max_fail_ratio:g}",
                    stats.fail_ratio <= bounds.max_fail_ratio,
                )
            )
    if bounds.max_p99_ms is not None:
        p99 = stats.p99_ms if stats else None
        outcomes.append(
            Outcome(
                "load p99 response time",
                "no request completed" if p99 is None else f"{p99:g} ms",
                f"<= {bounds.max_p99_ms:g} ms",
                p99 is not None and p99 <= bounds.max_p99_ms,
            )
        )
    return outcomes


def evaluate_webhook(expectation: WebhookExpectation, evidence: Evidence) -> list[Outcome]:
    calls = evidence.webhook_calls
    outcomes = []
    if expectation.webhook.no5xx:
        errors = [call for call in calls if call.status >= 500 or call.status == 0]
        outcomes.append(
            Outcome(
                "webhook answers 5xx or none",
                f"{len(errors)} of {len(calls)}",
                "== 0",
                bool(calls) and not errors,
            )
        )
    if expectation.webhook.all_valid_recorded:
        accepted = {call.pod for call in calls if call.valid and call.status == 202}
        refused = [call for call in calls if call.valid and call.status != 202]
        lost = accepted - evidence.recorded_pods
        bad_written = {call.pod for call in calls if not call.valid} & evidence.recorded_pods
        measured = (
            f"{len(accepted & evidence.recorded_pods)} of {len(accepted)} accepted valid "
            f"signals recorded, {len(refused)} valid refused, {len(bad_written)} bad written"
        )
        holds = bool(accepted) and not lost and not refused and not bad_written
        outcomes.append(
            Outcome("webhook valid signals recorded", measured, "all, and no bad one", holds)
        )
    return outcomes


def evaluate(scenario: Scenario, evidence: Evidence) -> list[Outcome]:
    """Every expectation's outcomes, in the spec's order."""
    outcomes: list[Outcome] = []
    for expectation in scenario.expect:
        if isinstance(expectation, WhisperExpectation):
            outcomes += evaluate_whisper(expectation, evidence)
        elif isinstance(expectation, CertificatesExpectation):
            outcomes += evaluate_certificates(expectation, evidence)
        elif isinstance(expectation, HpaExpectation):
            outcomes += evaluate_hpa(expectation, evidence)
        elif isinstance(expectation, RecommendationExpectation):
            outcomes += evaluate_recommendation(expectation, evidence)
        elif isinstance(expectation, LoadExpectation):
            outcomes += evaluate_load(expectation, evidence)
        else:
            outcomes += evaluate_webhook(expectation, evidence)
    return outcomes
