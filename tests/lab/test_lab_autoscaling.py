"""The HPA controller's arithmetic (kernel_gossip.core.autoscaling), figures pinned by hand
from replica_calculator.go and horizontal.go."""

from datetime import UTC, datetime, timedelta

import pytest

from kernel_gossip.core import autoscaling as hpa
from kernel_gossip.core.autoscaling import History, PodMetric, PodSample, Recommendation, ScaleEvent

NOW = datetime(2026, 12, 2, 7, 0, 0, tzinfo=UTC)
LONG_AGO = NOW - timedelta(hours=1)


def pod(
    name: str,
    *,
    ready: bool | None = True,
    phase: str = "Running",
    request: int | None = 100,
    started: datetime = LONG_AGO,
    ready_since: datetime = LONG_AGO,
    deleting: bool = False,
) -> PodSample:
    return PodSample(
        name,
        phase,
        deleting,
        ready,
        ready_since,
        started,
        {} if request is None else {"cpu": request},
    )


def usage(**millis: int) -> dict[str, PodMetric]:
    return {
        name: PodMetric(value, NOW - timedelta(seconds=5), timedelta(seconds=15))
        for name, value in millis.items()
    }


def replicas(
    current: int, pods: list[PodSample], metrics: dict[str, PodMetric], target: int = 80
) -> int:
    return hpa.utilization_replicas("cpu", current, target, pods, metrics, NOW).replicas


def test_utilization_is_the_truncated_percent_of_summed_requests() -> None:
    found = hpa.utilization_replicas("cpu", 2, 80, [pod("a"), pod("b")], usage(a=51, b=70), NOW)
    assert (found.utilization, found.average_millis, found.replicas) == (60, 60, 2)  # 121*100//200
    found = hpa.utilization_replicas("cpu", 2, 80, [pod("a"), pod("b")], usage(a=150, b=170), NOW)
    assert (found.utilization, found.replicas) == (160, 4)  # ceil(2 x 160/80)


@pytest.mark.parametrize(
    ("each", "expected"),
    [(86, 2), (72, 2), (88, 3), (89, 3), (71, 2), (70, 2), (30, 1), (0, 0)],
)
def test_tolerance_of_a_tenth_around_the_target(each: int, expected: int) -> None:
    # 86/80 = 1.075 and 72/80 = 0.9 are within 0.1; 88/80 = 1.1 is just outside in
    # float64 (|1 - 1.1| = 0.10000000000000009), as in Go; 71/80 -> ceil(1.775) = 2.
    assert replicas(2, [pod("a"), pod("b")], usage(a=each, b=each)) == expected


def test_pods_missing_metrics_count_as_zero_on_scale_up_and_full_request_on_scale_down() -> None:
    three = [pod("a"), pod("b"), pod("c")]
    # up: (160+160+0)*100//300 = 106 -> 106/80 = 1.325 -> ceil(3.975) = 4
    assert replicas(3, three, usage(a=160, b=160)) == 4
    # down: (20+20+100)*100//300 = 46 -> 0.575 -> ceil(1.725) = 2
    assert replicas(3, three, usage(a=20, b=20)) == 2
    # the assumption reverses the direction: keep the current count
    assert replicas(3, three, usage(a=90, b=90)) == 3  # 1.125 -> (180+0)/300=60% -> 0.75


def test_unready_and_young_pods_are_ignored_and_count_as_zero_on_scale_up() -> None:
    pods = [pod("a"), pod("b", ready=False)]
    # b ignored; a alone at 200% -> ratio 2.5 > 1 rebalances b at 0: (200+0)/200 = 100% -> 1.25 -> 3
    assert replicas(2, pods, usage(a=200, b=500)) == 3
    # a young pod whose only metric predates ready + window is ignored too
    young = pod("b", started=NOW - timedelta(seconds=40), ready_since=NOW - timedelta(seconds=12))
    assert replicas(2, [pod("a"), young], usage(a=200, b=500)) == 3
    settled = pod("b", started=NOW - timedelta(seconds=40), ready_since=NOW - timedelta(seconds=30))
    assert replicas(2, [pod("a"), settled], usage(a=200, b=500)) == 9  # 350% -> ceil(8.75)
    # on a scale-down, unready pods are left out and not rebalanced
    assert replicas(2, pods, usage(a=40, b=900)) == 1  # 40% -> 0.5 -> ceil(0.5) = 1


def test_pending_failed_and_deleting_pods() -> None:
    pods = [pod("a"), pod("p", phase="Pending"), pod("f", phase="Failed"), pod("d", deleting=True)]
    # p unready (0 on scale-up), f and d left out: (160+0)/200 = 80% -> within tolerance
    assert replicas(4, pods, usage(a=160, f=900, d=900)) == 4
    assert replicas(4, pods, usage(a=400, f=900, d=900)) == 5  # 400/200=200% -> ceil(2.5 x 2)


def test_metric_errors_use_the_controllers_words() -> None:
    with pytest.raises(hpa.MetricError, match="missing request for cpu"):
        replicas(2, [pod("a"), pod("b", request=None)], usage(a=1, b=1))
    with pytest.raises(
        hpa.MetricError,
        match="resource cpu: no metrics returned from resource metrics API",
    ):
        replicas(2, [pod("a")], {})
    with pytest.raises(hpa.MetricError, match="did not receive metrics for any ready pods"):
        replicas(2, [pod("a", phase="Pending")], usage(a=5))


def test_average_value_target() -> None:
    found = hpa.average_value_replicas(
        "cpu", 2, 100, [pod("a"), pod("b")], usage(a=150, b=250), NOW
    )
    assert (found.replicas, found.average_millis) == (4, 200)


def test_stabilization_without_behavior_keeps_the_highest_recommendation_of_300_s() -> None:
    history = History([Recommendation(5, NOW - timedelta(seconds=100))])
    limited = hpa.normalize_without_behavior(history, 5, 2, 1, 10, NOW)
    assert (limited.replicas, limited.able_reason) == (5, "ScaleDownStabilized")
    assert history.recommendations[-1] == Recommendation(2, NOW)
    old = History([Recommendation(5, NOW - timedelta(seconds=301))])
    limited = hpa.normalize_without_behavior(old, 5, 2, 1, 10, NOW)
    assert (limited.replicas, limited.able_reason, limited.limited) == (
        2,
        "ReadyForNewScale",
        False,
    )
    assert old.recommendations == [Recommendation(2, NOW)]  # the stale sample is replaced


def test_bounds_and_the_scale_up_cap_without_behavior() -> None:
    def limit(current: int, desired: int, low: int, high: int) -> tuple[int, str, bool]:
        got = hpa.normalize_without_behavior(History(), current, desired, low, high, NOW)
        return got.replicas, got.limit_reason, got.limited

    assert limit(3, 1, 2, 10) == (2, "TooFewReplicas", True)
    assert limit(2, 10, 1, 20) == (4, "ScaleUpLimit", True)  # max(2 x 2, 4)
    assert limit(3, 10, 1, 20) == (6, "ScaleUpLimit", True)
    assert limit(2, 10, 1, 3) == (3, "TooManyReplicas", True)
    assert limit(2, 3, 1, 10) == (3, "DesiredWithinRange", False)


def test_behavior_windows_and_rate_policies() -> None:
    short = {"scaleDown": {"stabilizationWindowSeconds": 30}}
    history = History([Recommendation(5, NOW - timedelta(seconds=40))])
    got = hpa.normalize_with_behavior(history, short, 5, 2, 1, 10, NOW)
    assert (got.replicas, got.able_reason) == (2, "ReadyForNewScale")
    history = History([Recommendation(5, NOW - timedelta(seconds=20))])
    got = hpa.normalize_with_behavior(history, short, 5, 2, 1, 10, NOW)
    assert (got.replicas, got.able_reason) == (5, "ScaleDownStabilized")
    # default scale-up rules: max(2 + 4 pods, 2 x 200%) = 6
    got = hpa.normalize_with_behavior(History(), short, 2, 10, 1, 20, NOW)
    assert (got.replicas, got.limit_reason) == (6, "ScaleUpLimit")
    minimal = {
        "scaleUp": {
            "selectPolicy": "Min",
            "policies": [
                {"type": "Pods", "value": 4, "periodSeconds": 15},
                {"type": "Percent", "value": 100, "periodSeconds": 15},
            ],
        }
    }
    assert hpa.normalize_with_behavior(History(), minimal, 2, 10, 1, 20, NOW).replicas == 4
    # 2 replicas added 5 s ago count against the period: start 2 -> max(6, 4) = 6, not 8
    recent = History(scale_ups=[ScaleEvent(2, NOW - timedelta(seconds=5))])
    assert hpa.normalize_with_behavior(recent, short, 4, 10, 1, 20, NOW).replicas == 6
    halving = {
        "scaleDown": {
            "stabilizationWindowSeconds": 0,
            "policies": [{"type": "Percent", "value": 50, "periodSeconds": 60}],
        }
    }
    got = hpa.normalize_with_behavior(History(), halving, 5, 1, 1, 10, NOW)
    assert (got.replicas, got.limit_reason) == (2, "ScaleDownLimit")  # int(5 x 0.5)
    disabled = {"scaleUp": {"selectPolicy": "Disabled"}}
    assert hpa.normalize_with_behavior(History(), disabled, 2, 10, 1, 20, NOW).replicas == 2


def hpa_object(**spec: object) -> dict[str, object]:
    return {
        "metadata": {"name": "web", "namespace": "demo"},
        "spec": {
            "scaleTargetRef": {"kind": "Deployment", "name": "web"},
            "minReplicas": 1,
            "maxReplicas": 10,
            **spec,
        },
    }


def test_reconcile_writes_the_status_a_cluster_shows() -> None:
    history = History()
    done = hpa.reconcile(
        hpa_object(), 2, "app=web", [pod("a"), pod("b")], {"cpu": usage(a=150, b=170)}, history, NOW
    )
    assert done.scale_to == 4
    status = done.status
    assert (status["currentReplicas"], status["desiredReplicas"]) == (2, 4)
    assert status["currentMetrics"] == [
        {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "current": {"averageValue": "160m", "averageUtilization": 160},
            },
        }
    ]
    assert status["lastScaleTime"] == "2026-12-02T07:00:00Z"
    conditions = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert conditions == {
        "AbleToScale": ("True", "SucceededRescale"),
        "ScalingActive": ("True", "ValidMetricFound"),
        "ScalingLimited": ("False", "DesiredWithinRange"),
    }
    assert done.events == [
        (
            "Normal",
            "SuccessfulRescale",
            "New size: 4; reason: cpu resource utilization (percentage of request) above target",
        )
    ]
    # The next sync under target within 300 s: the recommendation of 4 holds.
    later = NOW + timedelta(seconds=15)
    again = hpa.reconcile(
        {**hpa_object(), "status": status},
        4,
        "app=web",
        [pod(n) for n in "abcd"],
        {"cpu": usage(a=10, b=10, c=10, d=10)},
        history,
        later,
    )
    assert (again.scale_to, again.status["desiredReplicas"]) == (None, 4)
    reasons = {c["type"]: c["reason"] for c in again.status["conditions"]}
    assert reasons["AbleToScale"] == "ScaleDownStabilized"
    assert again.status["lastScaleTime"] == "2026-12-02T07:00:00Z"


def test_reconcile_failures_and_disabled_scaling() -> None:
    failed = hpa.reconcile(hpa_object(), 2, "app=web", [pod("a")], {"cpu": {}}, History(), NOW)
    assert failed.scale_to is None
    active = next(c for c in failed.status["conditions"] if c["type"] == "ScalingActive")
    assert (active["status"], active["reason"]) == ("False", "FailedGetResourceMetric")
    assert "no metrics returned from resource metrics API" in active["message"]
    assert failed.events[0][:2] == ("Warning", "FailedGetResourceMetric")
    zero = hpa.reconcile(hpa_object(), 0, "app=web", [], {}, History(), NOW)
    active = next(c for c in zero.status["conditions"] if c["type"] == "ScalingActive")
    assert (zero.scale_to, active["reason"], zero.status["desiredReplicas"]) == (
        None,
        "ScalingDisabled",
        0,
    )
    above = hpa.reconcile(hpa_object(maxReplicas=3), 5, "app=web", [], {}, History(), NOW)
    assert above.scale_to == 3
    assert above.events == [
        (
            "Normal",
            "SuccessfulRescale",
            "New size: 3; reason: Current number of replicas above Spec.MaxReplicas",
        )
    ]


def test_condition_transition_time_is_kept_while_the_status_holds() -> None:
    conditions: list[dict[str, object]] = []
    hpa.set_condition(conditions, "AbleToScale", True, "A", "a", "t1")
    hpa.set_condition(conditions, "AbleToScale", True, "B", "b", "t2")
    assert conditions == [
        {
            "type": "AbleToScale",
            "status": "True",
            "lastTransitionTime": "t1",
            "reason": "B",
            "message": "b",
        }
    ]
    hpa.set_condition(conditions, "AbleToScale", False, "C", "c", "t3")
    assert conditions[0]["lastTransitionTime"] == "t3"


def test_quantities() -> None:
    assert [hpa.milli_value(q) for q in ("100m", "0.1", "1", "1.5", "250000001n")] == [
        100,
        100,
        1000,
        1500,
        251,
    ]
    assert [hpa.milli_quantity(m) for m in (0, 250, 1000, 1500)] == ["0", "250m", "1", "1500m"]
