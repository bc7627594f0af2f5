"""The operator's conclusions: severity, "metrics lie", limits sized from unmet demand."""

import math
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from kernel_gossip.analysis import (
    PodFacts,
    ScaledWorkload,
    Thresholds,
    birth_summary,
    cpu_quantity,
    insights,
    next_history,
    one_line,
    parse_cpu_quantity,
    recommendations,
    reported_usage,
    severity,
    unmet_demand_limit,
    usage_report,
    whisper_status,
)
from kernel_gossip.resources import (
    KernelTruth,
    KernelWhisperSpec,
    PodBirthCertificateSpec,
    ThrottleReading,
)

DEFAULTS = Thresholds()
T0 = datetime(2025, 8, 25, 11, 0, tzinfo=UTC)


def truth(**figures: float | int | None) -> KernelTruth:
    base: dict[str, float | int | None] = {
        "window_seconds": 60.0,
        "cpu_usage_cores": 1.5,
        "throttled_percent": 78.5,
    }
    return KernelTruth.model_validate({**base, **figures})


# Severity -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("percent", "expected"),
    [
        (0, "info"),
        (24.99, "info"),
        (25, "warning"),
        (49.9, "warning"),
        (50, "critical"),
        (100, "critical"),
    ],
)
def test_default_severity_follows_cpu_throttling_high(percent: float, expected: str) -> None:
    assert severity(percent, DEFAULTS) == expected


def test_thresholds_are_configurable() -> None:
    strict = Thresholds(warning_percent=5, critical_percent=15, target_percent=1)
    assert severity(10, strict) == "warning"
    assert severity(15, strict) == "critical"


@pytest.mark.parametrize(
    "arguments",
    [
        {"warning_percent": 60, "critical_percent": 50},
        {"target_percent": 30},
        {"target_percent": 0},
        {"critical_percent": 101},
        {"history_length": 0},
    ],
)
def test_inconsistent_thresholds_are_refused(arguments: dict[str, float]) -> None:
    with pytest.raises(ValueError, match="must"):
        Thresholds(**arguments)  # type: ignore[arg-type]


@given(st.floats(0, 100), st.floats(0, 100))
def test_severity_never_falls_as_throttling_rises(a: float, b: float) -> None:
    order = ["info", "warning", "critical"]
    low, high = sorted((a, b))
    assert order.index(severity(low, DEFAULTS)) <= order.index(severity(high, DEFAULTS))


# Quantities -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cores", "quantity"),
    [(1.5, "1500m"), (2, "2"), (2.0000001, "2001m"), (0.0001, "1m"), (0, "0"), (0.35, "350m")],
)
def test_cpu_quantity_rounds_up_to_a_millicore(cores: float, quantity: str) -> None:
    assert cpu_quantity(cores) == quantity


@pytest.mark.parametrize(
    ("quantity", "cores"),
    [("350m", 0.35), ("1", 1.0), ("1.5", 1.5), ("348795234n", 0.348795234), ("1500u", 0.0015)],
)
def test_parse_cpu_quantity(quantity: str, cores: float) -> None:
    assert parse_cpu_quantity(quantity) == pytest.approx(cores)


@pytest.mark.parametrize("quantity", ["", "m", "abc", "-1", "1x", "nan", "inf"])
def test_parse_cpu_quantity_refuses_garbage(quantity: str) -> None:
    with pytest.raises(ValueError, match="CPU quantity"):
        parse_cpu_quantity(quantity)


@given(st.floats(min_value=0, max_value=10_000))
def test_quantity_never_rounds_below_and_is_within_a_millicore(cores: float) -> None:
    back = parse_cpu_quantity(cpu_quantity(cores))
    assert cores - 1e-9 <= back < cores + 0.001 + 1e-9


# "Metrics lie" --------------------------------------------------------------------------


def test_metrics_api_figure_wins_and_both_are_kept() -> None:
    usage = reported_usage(metrics_api_cores=0.35, payload_cores=0.6, limit_cores=0.5)
    assert (usage.cores, usage.source) == (0.35, "metrics-api")
    assert (usage.metrics_api_cores, usage.payload_cores) == (0.35, 0.6)
    assert usage.percent_of_limit == pytest.approx(70)


def test_payload_figure_is_the_fallback() -> None:
    usage = reported_usage(metrics_api_cores=None, payload_cores=0.6, limit_cores=None)
    assert (usage.cores, usage.source, usage.percent_of_limit) == (0.6, "payload", None)
    assert reported_usage(None, None, 1.0).source == "none"


def test_insight_states_the_contrast_with_numbers() -> None:
    evidence = truth(cpu_limit_cores=0.5, cpu_usage_cores=0.5)
    lines = insights(evidence, usage_report(evidence, 0.6, PodFacts(0.35)), DEFAULTS)
    assert "Metrics API: 0.35 cores (70% of limit); kernel: 78.5% of periods throttled" in lines
    assert lines[0].startswith("CPU throttling (critical): 78.5% of CFS periods throttled")


def test_understated_usage_is_called_out() -> None:
    evidence = truth()
    lines = insights(evidence, usage_report(evidence, 0.6, PodFacts()), DEFAULTS)
    assert "Reported by the sender: 0.60 cores; kernel: 78.5% of periods throttled" in lines
    assert any("understate it by 0.90 cores" in line for line in lines)
    honest = insights(evidence, usage_report(evidence, 1.45, PodFacts()), DEFAULTS)
    assert not any("understate" in line for line in honest)


def test_insights_carry_throttled_time_and_run_queue_wait() -> None:
    evidence = truth(
        throttled_seconds=12.3, runqueue_latency_p50_us=40, runqueue_latency_p99_us=4200
    )
    lines = insights(evidence, usage_report(evidence, None, PodFacts()), DEFAULTS)
    assert "Throttled for 12.30 s of run-queue time in a 60 s window" in lines
    assert "Run-queue wait: p50 40 us, p99 4.2 ms" in lines


# Sizing the limit from unmet demand -----------------------------------------------------

percents = st.floats(min_value=0.1, max_value=100)
seconds = st.floats(min_value=0, max_value=10_000)
windows = st.floats(min_value=1, max_value=86_400)
limits = st.floats(min_value=0.01, max_value=64)


@given(limits, percents, seconds, seconds, windows)
def test_more_throttled_time_never_lowers_the_limit(
    limit: float, percent: float, t1: float, t2: float, window: float
) -> None:
    low, high = sorted((t1, t2))
    assert unmet_demand_limit(limit, percent, low, window, 10) <= unmet_demand_limit(
        limit, percent, high, window, 10
    )


@given(limits, percents, windows)
def test_no_throttled_time_no_increase(limit: float, percent: float, window: float) -> None:
    assert unmet_demand_limit(limit, percent, 0, window, 10) == limit


@given(limits, st.floats(min_value=0, max_value=10), seconds, windows)
def test_throttling_under_the_target_keeps_the_limit(
    limit: float, percent: float, throttled: float, window: float
) -> None:
    assert unmet_demand_limit(limit, percent, throttled, window, 10) == limit


@given(limits, st.floats(min_value=10.5, max_value=100), st.floats(0.01, 10_000), windows)
def test_throttling_over_the_target_raises_the_limit(
    limit: float, percent: float, throttled: float, window: float
) -> None:
    assert unmet_demand_limit(limit, percent, throttled, window, 10) > limit


@given(limits, st.floats(min_value=11, max_value=100), st.floats(0.01, 1000), windows)
def test_the_suggested_limit_puts_the_modelled_tail_at_the_target(
    limit: float, percent: float, throttled: float, window: float
) -> None:
    suggested = unmet_demand_limit(limit, percent, throttled, window, 10)
    mean_unmet = throttled / (percent / 100 * window)
    tail = percent / 100 * math.exp(-(suggested - limit) / mean_unmet)
    assert tail == pytest.approx(0.10)


def test_the_formula_meets_the_target_on_simulated_demand() -> None:
    """Ground truth by simulation: per-period demand whose excess over the limit is
    exponential; measure p and T as cpu.stat would, size the limit, replay the same demand."""
    rng = random.Random(7)
    period, limit, periods = 0.1, 0.5, 200_000
    demand = [
        limit + rng.expovariate(1 / 0.3) if rng.random() < 0.6 else rng.uniform(0, limit)
        for _ in range(periods)
    ]
    throttled = [d for d in demand if d > limit]
    percent = 100 * len(throttled) / periods
    throttled_seconds = sum((d - limit) * period for d in throttled)
    suggested = unmet_demand_limit(limit, percent, throttled_seconds, periods * period, 10)
    still_throttled = sum(d > suggested for d in demand) / periods
    assert still_throttled == pytest.approx(0.10, abs=0.005)


# Recommendations ------------------------------------------------------------------------


def test_quiet_pod_gets_no_change() -> None:
    evidence = truth(throttled_percent=3.0, throttled_seconds=0.2)
    advice = recommendations(
        evidence, usage_report(evidence, 1.5, PodFacts()), PodFacts(), DEFAULTS
    )
    assert [r.action for r in advice] == ["no_change"]
    assert "3.0% of periods throttled" in advice[0].reason


def test_limit_is_sized_from_the_measured_figures_with_its_basis() -> None:
    evidence = truth(cpu_limit_cores=1.5, throttled_seconds=30.0)
    advice = recommendations(
        evidence, usage_report(evidence, 0.6, PodFacts()), PodFacts(), DEFAULTS
    )
    limit = advice[0]
    assert limit.action == "increase_cpu_limits"
    expected = unmet_demand_limit(1.5, 78.5, 30.0, 60.0, 10.0)
    assert limit.suggested_value == cpu_quantity(expected) == "2813m"
    assert "30.00 s throttled in 60 s" in limit.reason
    assert "a limit of 1.500 cores" in limit.reason
    assert limit.suggested_value != cpu_quantity(1.5 * 1.5)


def test_pod_spec_limit_is_used_when_the_signal_has_none() -> None:
    evidence = truth(throttled_seconds=30.0)
    facts = PodFacts(limit_cores=1.5)
    advice = recommendations(evidence, usage_report(evidence, 0.6, facts), facts, DEFAULTS)
    assert advice[0].suggested_value == "2813m"


def test_unknown_limit_grows_from_usage_as_a_lower_bound() -> None:
    evidence = truth(throttled_seconds=30.0)
    advice = recommendations(
        evidence, usage_report(evidence, 0.6, PodFacts()), PodFacts(), DEFAULTS
    )
    assert "at least the measured 1.500 cores" in advice[0].reason
    assert advice[0].suggested_value == cpu_quantity(unmet_demand_limit(1.5, 78.5, 30, 60, 10))


def test_without_throttled_time_the_limit_is_not_guessed() -> None:
    evidence = truth()
    advice = recommendations(
        evidence, usage_report(evidence, 0.6, PodFacts()), PodFacts(), DEFAULTS
    )
    by_action = {r.action: r for r in advice}
    assert by_action["increase_cpu_limits"].suggested_value is None
    assert "no throttled time" in by_action["increase_cpu_limits"].reason
    assert by_action["review_resource_requests"].suggested_value == "1500m"
    assert advice[0].action == "review_resource_requests"


def test_requests_review_names_the_request_and_is_skipped_when_it_covers_use() -> None:
    evidence = truth(cpu_limit_cores=2.0, throttled_seconds=5.0)
    short = PodFacts(request_cores=0.25, limit_cores=2.0)
    advice = recommendations(evidence, usage_report(evidence, 0.6, short), short, DEFAULTS)
    review = next(r for r in advice if r.action == "review_resource_requests")
    assert "requests.cpu 250m is below the 1.50 cores" in review.reason
    covered = PodFacts(request_cores=1.5, limit_cores=2.0)
    advice = recommendations(evidence, usage_report(evidence, 0.6, covered), covered, DEFAULTS)
    assert "review_resource_requests" not in [r.action for r in advice]


def test_autoscaled_workload_gets_replicas_from_the_same_demand() -> None:
    evidence = truth(cpu_limit_cores=1.5, throttled_seconds=30.0)
    workload = ScaledWorkload("Deployment", "web", "web-hpa", current_replicas=3, max_replicas=5)
    facts = PodFacts(workload=workload)
    advice = recommendations(evidence, usage_report(evidence, 0.6, facts), facts, DEFAULTS)
    replicas = next(r for r in advice if r.action == "scale_out_replicas")
    per_pod = unmet_demand_limit(1.5, 78.5, 30.0, 60.0, 10.0)
    assert replicas.suggested_value == str(math.ceil(3 * per_pod / 1.5)) == "6"
    assert "above maxReplicas 5" in replicas.reason
    alone = recommendations(evidence, usage_report(evidence, 0.6, PodFacts()), PodFacts(), DEFAULTS)
    assert "scale_out_replicas" not in [r.action for r in alone]


@given(
    percent=st.floats(25, 100),
    throttled=st.floats(0, 1000),
    limit=st.floats(0.01, 64) | st.none(),
    usage=st.floats(0, 64) | st.none(),
    reported=st.floats(0, 64) | st.none(),
)
def test_advice_is_never_empty_and_values_are_quantities(
    percent: float,
    throttled: float,
    limit: float | None,
    usage: float | None,
    reported: float | None,
) -> None:
    evidence = truth(
        throttled_percent=percent,
        throttled_seconds=throttled,
        cpu_limit_cores=limit,
        cpu_usage_cores=usage,
    )
    advice = recommendations(
        evidence, usage_report(evidence, reported, PodFacts()), PodFacts(), DEFAULTS
    )
    assert advice
    for item in advice:
        if item.suggested_value is not None and item.action != "scale_out_replicas":
            parse_cpu_quantity(item.suggested_value)
        assert one_line(item).startswith(f"{item.action}: ")


# History and status ---------------------------------------------------------------------


def reading(minutes: int, percent: float = 50.0) -> ThrottleReading:
    return ThrottleReading(observed_at=T0 + timedelta(minutes=minutes), throttled_percent=percent)


def test_history_keeps_the_last_n_oldest_first() -> None:
    history: list[ThrottleReading] = []
    for minute in range(15):
        history = next_history(history, reading(minute), keep=10)
    assert [r.observed_at.minute for r in history] == list(range(5, 15))


def test_replayed_reading_replaces_itself() -> None:
    history = next_history([reading(0), reading(1, 40)], reading(1, 60), keep=10)
    assert [(r.observed_at.minute, r.throttled_percent) for r in history] == [(0, 50), (1, 60)]


def test_a_new_pod_of_the_same_name_starts_a_fresh_history() -> None:
    old = [
        ThrottleReading(observed_at=T0, throttled_percent=90, pod_uid="uid-old"),
        ThrottleReading(observed_at=T0 + timedelta(minutes=1), throttled_percent=80),
    ]
    new = ThrottleReading(
        observed_at=T0 + timedelta(minutes=5), throttled_percent=30, pod_uid="uid-new"
    )
    history = next_history(old, new, keep=10)
    assert [(r.throttled_percent, r.pod_uid) for r in history] == [(80, None), (30, "uid-new")]
    same = next_history(
        history, new.model_copy(update={"observed_at": T0 + timedelta(minutes=6)}), 10
    )
    assert len(same) == 3


@given(st.lists(st.integers(0, 50), max_size=30), st.integers(1, 12))
def test_history_is_sorted_unique_and_bounded(minutes: list[int], keep: int) -> None:
    history: list[ThrottleReading] = []
    for minute in minutes:
        history = next_history(history, reading(minute), keep)
    stamps = [r.observed_at for r in history]
    assert stamps == sorted(set(stamps))
    assert len(history) == min(keep, len(set(minutes)))
    assume(minutes)
    assert stamps[-1] == T0 + timedelta(minutes=max(minutes))


def test_whisper_status_concludes_from_the_spec() -> None:
    evidence = truth(cpu_limit_cores=1.5, throttled_seconds=30.0)
    spec = KernelWhisperSpec(
        signal_type="cpu_throttle",
        pod_name="live-demo",
        pod_namespace="kernel-gossip",
        observed_at=T0,
        kernel_truth=evidence,
        reported_cpu_usage_cores=0.6,
        insights=[],
    )
    now = T0 + timedelta(seconds=1)
    status = whisper_status(spec, PodFacts(), [reading(-1)], DEFAULTS, now)
    assert status.severity == "critical"
    assert status.reported_usage.source == "payload"
    assert status.recommendation == one_line(status.recommendations[0])
    assert [r.observed_at for r in status.history] == [T0 - timedelta(minutes=1), T0]
    assert status.updated_at == now


def test_birth_summary_has_the_numbers() -> None:
    spec = PodBirthCertificateSpec(
        pod_name="nginx",
        pod_namespace="default",
        started_at=T0,
        syscall_timeline=[],
        total_syscalls=1812,
        syscalls={},
        namespace_operations=6,
        namespaces_created=["mnt", "pid"],
        mounts=23,
        cgroup_writes=42,
        execs=3,
        duration="2.5s",
        duration_ms=2512.4,
    )
    assert birth_summary(spec) == (
        "1812 syscalls in 2.5s: 6 namespace operations (created: mnt, pid), 23 mounts, "
        "42 cgroup writes, 3 execs"
    )
