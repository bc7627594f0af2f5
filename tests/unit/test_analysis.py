"""The operator's conclusions: severity, "metrics lie", limits sized from unmet demand."""

import json
import math
import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from pydantic import ValidationError

from kernel_gossip.operator.analysis import (
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
from kernel_gossip.schema.report import MAX_CORES, MIN_CPU_LIMIT_CORES
from kernel_gossip.schema.resources import (
    KernelTruth,
    KernelWhisperSpec,
    PodBirthCertificateSpec,
    Recommendation,
    ReportedUsage,
    ThrottleReading,
)

DEFAULTS = Thresholds()
T0 = datetime(2025, 8, 25, 11, 0, tzinfo=UTC)


def truth(**figures: float | int | str | None) -> KernelTruth:
    base: dict[str, float | int | str | None] = {
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


@pytest.mark.parametrize("quantity", ["", "m", "abc", "-1", "1x", "nan", "inf", "1e308", "100001"])
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


def test_a_limit_below_the_kernels_smallest_is_raised_to_it() -> None:
    """A pod spec's 1n limit is enforced as the kernel's 1 ms/s: the percent stays finite."""
    usage = usage_report(truth(cpu_limit_cores=None), 0.6, PodFacts(limit_cores=1e-9))
    assert usage.percent_of_limit == pytest.approx(60_000)
    no_limit = usage_report(truth(cpu_limit_cores=None), 0.6, PodFacts(limit_cores=0.0))
    assert no_limit.percent_of_limit is None


def test_the_largest_percent_of_limit_is_finite_and_serialisable() -> None:
    evidence = truth(cpu_limit_cores=MIN_CPU_LIMIT_CORES, cpu_usage_cores=MAX_CORES)
    spec = KernelWhisperSpec(
        signal_type="cpu_throttle",
        pod_name="p",
        pod_namespace="n",
        observed_at=T0,
        kernel_truth=evidence,
        reported_cpu_usage_cores=MAX_CORES,
        insights=[],
    )
    status = whisper_status(spec, PodFacts(metrics_api_cores=MAX_CORES), [], DEFAULTS, T0)
    assert status.reported_usage.percent_of_limit == pytest.approx(1e10)
    json.dumps(status.model_dump(mode="json", by_alias=True), allow_nan=False)


@pytest.mark.parametrize("figure", [math.inf, -math.inf, math.nan])
def test_no_resource_figure_can_be_non_finite(figure: float) -> None:
    with pytest.raises(ValidationError, match="finite"):
        ReportedUsage(cores=1.0, source="payload", percent_of_limit=figure)
    with pytest.raises(ValidationError, match="finite"):
        truth(throttled_seconds=figure)


@pytest.mark.parametrize("limit", [2.2e-313, 0.0, 0.000999])
def test_kernel_truth_refuses_a_limit_no_kernel_enforces(limit: float) -> None:
    with pytest.raises(ValidationError, match=r"greater than or equal to 0\.001"):
        truth(cpu_limit_cores=limit)


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
    # 1.5 + 30 / (0.785 * 60) * ln(0.785 / 0.1) = 2.8124 cores, rounded up to a millicore
    assert limit.suggested_value == "2813m"
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
    assert advice[0].suggested_value == "2813m"  # as from a 1.5-core limit


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


def test_replicas_for_a_throttled_deployment_its_hpa_sees_under_target() -> None:
    """The lab's scenario: 2 replicas limited to 200m (requests 100m), throttled in 60% of
    periods for 3 s of 15 s, while the HPA reads 60% of requests against its 80% target.
    m = 3 / (0.6 x 15) = 0.333 cores lacked per throttled period; x = m ln(0.6 / 0.1) =
    0.597; 0.797 cores per pod; 2 x 0.797 / 0.2 = 7.97 -> 8 replicas."""
    evidence = truth(
        cpu_limit_cores=0.2,
        cpu_usage_cores=0.19,
        throttled_percent=60.0,
        throttled_seconds=3.0,
        window_seconds=15.0,
    )
    workload = ScaledWorkload(
        "Deployment",
        "web",
        "web",
        current_replicas=2,
        max_replicas=10,
        cpu_utilization_percent=60,
        cpu_target_percent=80,
    )
    facts = PodFacts(limit_cores=0.2, request_cores=0.1, workload=workload)
    advice = recommendations(evidence, usage_report(evidence, 0.06, facts), facts, DEFAULTS)
    replicas = next(r for r in advice if r.action == "scale_out_replicas")
    assert replicas.suggested_value == "8"
    assert replicas.reason == (
        "Deployment web runs 2 replicas at 0.200 cores each; HPA web reads 60% average CPU "
        "utilization of requests against its 80% target, so it adds no replicas; the kernel's "
        "throttled time says the demand needs 0.797 cores per pod, which fits 8 replicas"
    )
    over = ScaledWorkload(
        "Deployment", "web", "web", 2, 4, cpu_utilization_percent=89, cpu_target_percent=80
    )
    facts = PodFacts(limit_cores=0.2, workload=over)
    reason = next(
        r.reason
        for r in recommendations(evidence, usage_report(evidence, 0.06, facts), facts, DEFAULTS)
        if r.action == "scale_out_replicas"
    )
    assert (
        "89% average CPU utilization of requests against its 80% target, so it scales out" in reason
    )
    assert reason.endswith("fits 8 replicas; above maxReplicas 4: raise it")
    unread = PodFacts(limit_cores=0.2, workload=ScaledWorkload("Deployment", "web", "web", 2, 10))
    reason = next(
        r.reason
        for r in recommendations(evidence, usage_report(evidence, 0.06, unread), unread, DEFAULTS)
        if r.action == "scale_out_replicas"
    )
    assert "HPA web reports no CPU utilization against a target" in reason


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


# Edges that mutation testing (scripts/mutation.sh) showed were unpinned ---------------


def test_thresholds_may_meet_and_reach_100() -> None:
    assert Thresholds(target_percent=25, warning_percent=25, critical_percent=25)
    assert Thresholds(warning_percent=100, critical_percent=100, history_length=1)
    with pytest.raises(
        ValueError,
        match=r"^thresholds must satisfy 0 < target <= warning <= critical <= 100 "
        r"\(got 0, 25.0, 50.0\)$",
    ):
        Thresholds(target_percent=0)
    with pytest.raises(ValueError, match=r"^history_length must be at least 1$"):
        Thresholds(history_length=0)


def test_quantity_rounding_ignores_float_noise_below_a_millionth_of_a_millicore() -> None:
    assert cpu_quantity(0.2500000004) == "250m"


def test_quantity_suffixes_are_case_sensitive_and_bounded() -> None:
    assert parse_cpu_quantity("0.05M") == pytest.approx(50_000)
    assert parse_cpu_quantity("100000") == 100_000
    with pytest.raises(ValueError, match="not a CPU quantity"):
        parse_cpu_quantity("1X")


def test_insights_name_the_window() -> None:
    lines = insights(truth(), reported_usage(None, None, None), DEFAULTS)
    assert lines[0] == (
        "CPU throttling (critical): 78.5% of CFS periods throttled over 60 s "
        "(warning at 25%, critical at 50%)"
    )


def test_insights_without_window_latency_pair_or_understatement() -> None:
    evidence = truth(
        window_seconds=None, cpu_usage_cores=1.0, runqueue_latency_p50_us=40.0
    )  # p99 unknown
    lines = insights(evidence, reported_usage(None, 0.9, None), DEFAULTS)
    assert lines == [
        "CPU throttling (critical): 78.5% of CFS periods throttled "
        "(warning at 25%, critical at 50%)",
        "Reported by the sender: 0.90 cores; kernel: 78.5% of periods throttled",
    ]  # 0.9 of 1.0 cores is not under 90%: no "Metrics lie"


@pytest.mark.parametrize(
    ("p99_us", "shown"), [(999.0, "999 us"), (1000.0, "1.0 ms"), (1_000_000.0, "1000.0 ms")]
)
def test_run_queue_wait_switches_to_ms_at_1000_us(p99_us: float, shown: str) -> None:
    evidence = truth(runqueue_latency_p50_us=10.0, runqueue_latency_p99_us=p99_us)
    lines = insights(evidence, reported_usage(None, None, None), DEFAULTS)
    assert lines[-1] == f"Run-queue wait: p50 10 us, p99 {shown}"


def test_unmet_demand_without_a_window_keeps_the_limit() -> None:
    assert unmet_demand_limit(1.0, 50.0, 1.0, 0.0, 10.0) == 1.0


def test_throttling_exactly_at_the_warning_threshold_gets_advice() -> None:
    evidence = truth(throttled_percent=25.0, cpu_limit_cores=1.0, throttled_seconds=3.0)
    advice = recommendations(evidence, reported_usage(None, None, 1.0), PodFacts(), DEFAULTS)
    assert advice[0].action == "increase_cpu_limits"


@pytest.mark.parametrize(
    ("figures", "reason"),
    [
        (
            {"cpu_limit_cores": 1.5, "throttled_seconds": 0.0},
            "no throttled time was recorded, so there is no unmet demand to size a limit from",
        ),
        (
            {"cpu_limit_cores": 1.5},
            "the signal carries no throttled time, so the unmet demand cannot be sized: "
            "send throttled_seconds (kernel-gossip observe measures it)",
        ),
        (
            {"cpu_limit_cores": 1.5, "throttled_seconds": 3.0, "window_seconds": None},
            "the signal carries no throttled time, so the unmet demand cannot be sized: "
            "send throttled_seconds (kernel-gossip observe measures it)",
        ),
        (
            {"cpu_usage_cores": None, "throttled_seconds": 3.0},
            "neither the limit nor the usage is known, so no limit can be suggested",
        ),
    ],
)
def test_why_a_limit_cannot_be_sized(figures: dict[str, float | None], reason: str) -> None:
    evidence = truth(**figures)
    advice = recommendations(evidence, reported_usage(None, None, None), PodFacts(), DEFAULTS)
    limit = next(r for r in advice if r.action == "increase_cpu_limits")
    assert (limit.reason, limit.suggested_value) == (
        f"78.5% of periods throttled, but {reason}",
        None,
    )


def test_a_throttled_time_under_a_second_is_sized() -> None:
    evidence = truth(cpu_limit_cores=1.5, throttled_seconds=0.5)
    advice = recommendations(evidence, reported_usage(None, None, 1.5), PodFacts(), DEFAULTS)
    limit = next(r for r in advice if r.action == "increase_cpu_limits")
    assert limit.suggested_value == "1522m"  # 1.5 + 0.5/(0.785*60) * ln(7.85) = 1.5219
    assert limit.reason.endswith("(excess demand taken as exponential with the measured mean)")


@pytest.mark.parametrize(
    ("reported", "basis"),
    [
        (0.6, "requests sized from the reported 0.60 cores fall short of"),
        (None, "requests should cover"),
    ],
)
def test_requests_advice_states_its_basis(reported: float | None, basis: str) -> None:
    evidence = truth(cpu_limit_cores=1.5, throttled_seconds=3.0)
    advice = recommendations(evidence, reported_usage(None, reported, 1.5), PodFacts(), DEFAULTS)
    requests = next(r for r in advice if r.action == "review_resource_requests")
    assert requests.reason == (
        f"{basis} the 1.50 cores the kernel measured in use: the scheduler places the pod "
        "as if it needed less than it does"
    )


def test_replicas_round_up_and_reaching_max_replicas_is_not_above_it() -> None:
    """2 replicas x 1.7187 / 1.5 = 2.29 pods of demand: 3 replicas, exactly maxReplicas."""
    evidence = truth(cpu_limit_cores=1.5, throttled_seconds=5.0)
    workload = ScaledWorkload("Deployment", "web", "web-hpa", current_replicas=2, max_replicas=3)
    facts = PodFacts(workload=workload)
    advice = recommendations(evidence, usage_report(evidence, None, facts), facts, DEFAULTS)
    replicas = next(r for r in advice if r.action == "scale_out_replicas")
    assert (replicas.suggested_value, replicas.reason) == (
        "3",
        "Deployment web runs 2 replicas at 1.500 cores each; HPA web-hpa reports no CPU "
        "utilization against a target; the kernel's throttled time says the demand needs "
        "1.719 cores per pod, which fits 3 replicas",
    )


@pytest.mark.parametrize(
    "figures", [{"cpu_limit_cores": 1.5}, {"cpu_limit_cores": None, "throttled_seconds": 5.0}]
)
def test_no_replicas_advice_without_a_limit_or_a_sized_demand(
    figures: dict[str, float | None],
) -> None:
    evidence = truth(**figures)
    workload = ScaledWorkload("Deployment", "web", "web-hpa", current_replicas=2, max_replicas=3)
    facts = PodFacts(workload=workload)
    advice = recommendations(evidence, usage_report(evidence, None, facts), facts, DEFAULTS)
    assert "scale_out_replicas" not in {r.action for r in advice}


def test_one_line_with_and_without_a_value() -> None:
    with_value = Recommendation(action="a", reason="b", suggested_value="750m")
    assert one_line(with_value) == "a: b (suggested 750m)"
    assert one_line(Recommendation(action="a", reason="b")) == "a: b"


def test_status_history_names_the_pod_measured() -> None:
    spec = KernelWhisperSpec(
        signal_type="cpu_throttle",
        pod_name="p",
        pod_namespace="n",
        observed_at=T0,
        kernel_truth=truth(pod_uid="uid-1"),
        insights=[],
    )
    status = whisper_status(spec, PodFacts(), [], DEFAULTS, T0)
    assert [(r.observed_at, r.pod_uid) for r in status.history] == [(T0, "uid-1")]


def test_birth_summary_without_namespaces_says_none() -> None:
    spec = PodBirthCertificateSpec(
        pod_name="nginx",
        pod_namespace="default",
        started_at=T0,
        syscall_timeline=[],
        total_syscalls=10,
        syscalls={},
        namespace_operations=0,
        namespaces_created=[],
        mounts=0,
        cgroup_writes=0,
        execs=1,
        duration="5ms",
        duration_ms=5.0,
    )
    assert birth_summary(spec) == (
        "10 syscalls in 5ms: 0 namespace operations (created: none), 0 mounts, "
        "0 cgroup writes, 1 execs"
    )
