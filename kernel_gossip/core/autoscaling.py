"""The HorizontalPodAutoscaler's decisions, as kube-controller-manager makes them. Pure: no I/O.

Follows pkg/controller/podautoscaler: replica_calculator.go (which pods count, the 0.1
tolerance, missing and unready pods on a scale-up or down), metrics/utilization.go
(utilization as an integer percent of the summed requests) and horizontal.go (the
stabilization window of recommendations, the min/max and rate limits, with and without
`spec.behavior`, the AbleToScale/ScalingActive/ScalingLimited conditions and the status).
Resource metrics (cpu, memory) are what the lab computes; other metric sources are
reported as the controller reports an unusable metric.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from kernel_gossip.core.podspec import parse_quantity

Json = dict[str, Any]

TOLERANCE = 0.1
SYNC_PERIOD_SECONDS = 15.0
DOWNSCALE_STABILIZATION_SECONDS = 300
CPU_INITIALIZATION_PERIOD = timedelta(minutes=5)
INITIAL_READINESS_DELAY = timedelta(seconds=30)
# Without spec.behavior a scale-up is capped at max(2 x current, 4) (horizontal.go).
SCALE_UP_LIMIT_FACTOR = 2.0
SCALE_UP_LIMIT_MINIMUM = 4.0
# autoscaling/v2 defaults of a behavior's missing rules (pkg/apis/autoscaling/v2/defaults.go).
DEFAULT_SCALE_UP = {
    "stabilizationWindowSeconds": 0,
    "selectPolicy": "Max",
    "policies": [
        {"type": "Pods", "value": 4, "periodSeconds": 15},
        {"type": "Percent", "value": 100, "periodSeconds": 15},
    ],
}
DEFAULT_SCALE_DOWN = {
    "selectPolicy": "Max",
    "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
}


class MetricError(Exception):
    """A metric could not be computed; the message is the controller's own wording."""


def milli_value(quantity: Any) -> int:
    """resource.Quantity.MilliValue(): thousandths, rounded up."""
    return math.ceil(parse_quantity(quantity) * 1000)


def milli_quantity(millis: int) -> str:
    """resource.NewMilliQuantity(v, DecimalSI).String(): "250m", "1", "1500m"."""
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"


@dataclass(frozen=True)
class PodSample:
    """What replica_calculator.go reads of one pod matching the target's selector."""

    name: str
    phase: str
    deleting: bool
    ready: bool | None  # the Ready condition's status; None: no such condition
    ready_since: datetime | None  # its lastTransitionTime
    started: datetime | None  # status.startTime
    requests: dict[str, int]  # resource -> millis summed over containers, where all set it


@dataclass(frozen=True)
class PodMetric:
    """One PodMetrics item: usage summed over the pod's containers."""

    millis: int
    timestamp: datetime
    window: timedelta


@dataclass(frozen=True)
class ResourceRecommendation:
    replicas: int
    utilization: int  # percent of requests, truncated
    average_millis: int  # the raw average usage per pod


def _group_pods(
    resource: str, pods: Sequence[PodSample], metrics: dict[str, PodMetric], now: datetime
) -> tuple[int, set[str], set[str], set[str]]:
    """(ready count, unready pods, pods missing metrics, ignored pods), as groupPods:
    deleting and failed pods are ignored, pending ones unready; readiness only matters
    for CPU, whose usage is unrepresentative while a pod starts. No metrics or no pods is
    the HPA's error, as both calculations report it."""
    if not metrics:
        raise MetricError(
            f"unable to get metrics for resource {resource}: no metrics returned from "
            "resource metrics API"
        )
    if not pods:
        raise MetricError("no pods returned by selector while calculating replica count")
    ready, unready, missing, ignored = 0, set[str](), set[str](), set[str]()
    for pod in pods:
        if pod.deleting or pod.phase == "Failed":
            ignored.add(pod.name)
            continue
        if pod.phase == "Pending":
            unready.add(pod.name)
            continue
        metric = metrics.get(pod.name)
        if metric is None:
            missing.add(pod.name)
            continue
        if resource != "cpu":
            ready += 1
            continue
        if pod.ready is None or pod.ready_since is None or pod.started is None:
            skip = True
        elif pod.started + CPU_INITIALIZATION_PERIOD > now:
            # Young pod: unready, or no full metric window since it became ready.
            skip = not pod.ready or metric.timestamp < pod.ready_since + metric.window
        else:
            # Unready and never ready since its start.
            skip = not pod.ready and pod.started + INITIAL_READINESS_DELAY > pod.ready_since
        if skip:
            unready.add(pod.name)
        else:
            ready += 1
    return ready, unready, missing, ignored


def _utilization(
    usage: dict[str, int], requests: dict[str, int], target: int
) -> tuple[float, int, int]:
    """(usage ratio, utilization %, average usage), as GetResourceUtilizationRatio."""
    counted = [name for name in usage if name in requests]
    requested = sum(requests[name] for name in counted)
    if requested == 0:
        raise MetricError("no metrics returned matched known pods")
    used = sum(usage[name] for name in counted)
    utilization = used * 100 // requested
    return utilization / target, utilization, used // len(counted)


def utilization_replicas(
    resource: str,
    current_replicas: int,
    target_utilization: int,
    pods: Sequence[PodSample],
    metrics: dict[str, PodMetric],
    now: datetime,
    tolerance: float = TOLERANCE,
) -> ResourceRecommendation:
    """GetResourceReplicas: desired = ceil(ready pods x utilization / target), with pods
    missing metrics counted at 100% of request on a scale-down and 0% on a scale-up,
    unready pods at 0% on a scale-up, deleting and failed pods left out, and no change
    within the tolerance or when those assumptions would reverse the direction."""
    ready, unready, missing, ignored = _group_pods(resource, pods, metrics, now)
    requests: dict[str, int] = {}
    for pod in pods:
        if resource not in pod.requests:
            raise MetricError(f"missing request for {resource}")
        requests[pod.name] = pod.requests[resource]
    usage = {n: m.millis for n, m in metrics.items() if n not in unready | ignored}
    if not usage:
        raise MetricError("did not receive metrics for any ready pods")
    ratio, utilization, average = _utilization(usage, requests, target_utilization)

    def keep() -> ResourceRecommendation:
        return ResourceRecommendation(current_replicas, utilization, average)

    rebalance_unready = bool(unready) and ratio > 1.0
    if not rebalance_unready and not missing:
        if abs(1.0 - ratio) <= tolerance:
            return keep()
        return ResourceRecommendation(math.ceil(ratio * ready), utilization, average)
    for name in missing:
        if ratio < 1.0:
            usage[name] = requests[name]
        elif ratio > 1.0:
            usage[name] = 0
    if rebalance_unready:
        for name in unready:
            usage[name] = 0
    new_ratio, _, _ = _utilization(usage, requests, target_utilization)
    if abs(1.0 - new_ratio) <= tolerance or (ratio < 1.0 < new_ratio) or (ratio > 1.0 > new_ratio):
        return keep()
    replicas = math.ceil(new_ratio * len(usage))
    if (new_ratio < 1.0 and replicas > current_replicas) or (
        new_ratio > 1.0 and replicas < current_replicas
    ):
        return keep()
    return ResourceRecommendation(replicas, utilization, average)


def average_value_replicas(
    resource: str,
    current_replicas: int,
    target_millis: int,
    pods: Sequence[PodSample],
    metrics: dict[str, PodMetric],
    now: datetime,
    tolerance: float = TOLERANCE,
) -> ResourceRecommendation:
    """GetRawResourceReplicas (target type AverageValue): the plain-metric calculation."""
    ready, unready, missing, ignored = _group_pods(resource, pods, metrics, now)
    usage = {n: m.millis for n, m in metrics.items() if n not in unready | ignored}
    if not usage:
        raise MetricError("did not receive metrics for any ready pods")
    average = sum(usage.values()) // len(usage)
    ratio = (sum(usage.values()) / len(usage)) / target_millis
    keep = ResourceRecommendation(current_replicas, 0, average)
    rebalance_unready = bool(unready) and ratio > 1.0
    if not rebalance_unready and not missing:
        if abs(1.0 - ratio) <= tolerance:
            return keep
        return ResourceRecommendation(math.ceil(ratio * ready), 0, average)
    for name in missing:
        usage[name] = target_millis if ratio < 1.0 else 0
    if rebalance_unready:
        for name in unready:
            usage[name] = 0
    new_ratio = (sum(usage.values()) / len(usage)) / target_millis
    if abs(1.0 - new_ratio) <= tolerance or (ratio < 1.0 < new_ratio) or (ratio > 1.0 > new_ratio):
        return keep
    return ResourceRecommendation(math.ceil(new_ratio * len(usage)), 0, average)


@dataclass(frozen=True)
class Recommendation:
    replicas: int
    at: datetime


@dataclass(frozen=True)
class ScaleEvent:
    change: int  # replicas added (scale-up events) or removed (scale-down events)
    at: datetime


@dataclass
class History:
    """What the controller remembers per HPA between syncs (it keeps it in memory too)."""

    recommendations: list[Recommendation] = field(default_factory=list)
    scale_ups: list[ScaleEvent] = field(default_factory=list)
    scale_downs: list[ScaleEvent] = field(default_factory=list)


@dataclass(frozen=True)
class Limited:
    replicas: int
    able_reason: str
    able_message: str
    limited: bool
    limit_reason: str
    limit_message: str


STABILIZED_DOWN = (
    "ScaleDownStabilized",
    "recent recommendations were higher than current one, applying the highest recent "
    "recommendation",
)
STABILIZED_UP = (
    "ScaleUpStabilized",
    "recent recommendations were lower than current one, applying the lowest recent recommendation",
)
READY = ("ReadyForNewScale", "recommended size matches current size")
WITHIN_RANGE = ("DesiredWithinRange", "the desired count is within the acceptable range")
TOO_FEW = ("TooFewReplicas", "the desired replica count is less than the minimum replica count")
TOO_MANY = ("TooManyReplicas", "the desired replica count is more than the maximum replica count")
UP_LIMIT = (
    "ScaleUpLimit",
    "the desired replica count is increasing faster than the maximum scale rate",
)
DOWN_LIMIT = (
    "ScaleDownLimit",
    "the desired replica count is decreasing faster than the maximum scale rate",
)


def _record(history: History, desired: int, now: datetime, is_old: Any) -> None:
    """Replace the last sample past every window, else append (as the controller does)."""
    old = [i for i, r in enumerate(history.recommendations) if is_old(r)]
    if old:
        history.recommendations[old[-1]] = Recommendation(desired, now)
    else:
        history.recommendations.append(Recommendation(desired, now))


def normalize_without_behavior(
    history: History,
    current: int,
    desired: int,
    min_replicas: int,
    max_replicas: int,
    now: datetime,
    window: timedelta = timedelta(seconds=DOWNSCALE_STABILIZATION_SECONDS),
) -> Limited:
    """normalizeDesiredReplicas: the highest recommendation of the window, then the bounds
    with the scale-up cap max(2 x current, 4)."""
    cutoff = now - window
    stabilized = max([desired] + [r.replicas for r in history.recommendations if r.at >= cutoff])
    _record(history, desired, now, lambda r: r.at < cutoff)
    able = STABILIZED_DOWN if stabilized != desired else READY
    up_limit = int(max(SCALE_UP_LIMIT_FACTOR * current, SCALE_UP_LIMIT_MINIMUM))
    ceiling, over = (up_limit, UP_LIMIT) if max_replicas > up_limit else (max_replicas, TOO_MANY)
    if stabilized < min_replicas:
        replicas, why = min_replicas, TOO_FEW
    elif stabilized > ceiling:
        replicas, why = ceiling, over
    else:
        replicas, why = stabilized, WITHIN_RANGE
    return Limited(replicas, *able, replicas != stabilized, *why)


def rules(behavior: Json | None, direction: str) -> Json:
    """A behavior's scaleUp/scaleDown rules with the API's defaults filled in; the
    scale-down window defaults to the controller's 300 s."""
    given = (behavior or {}).get(direction) or {}
    default = DEFAULT_SCALE_UP if direction == "scaleUp" else DEFAULT_SCALE_DOWN
    merged = {**default, **{k: v for k, v in given.items() if v is not None}}
    if merged.get("stabilizationWindowSeconds") is None:
        merged["stabilizationWindowSeconds"] = DOWNSCALE_STABILIZATION_SECONDS
    return merged


def _changed_within(events: list[ScaleEvent], period_seconds: int, now: datetime) -> int:
    cutoff = now - timedelta(seconds=period_seconds)
    return sum(e.change for e in events if e.at > cutoff)


def _rate_limit(current: int, history: History, scaling: Json, now: datetime, up: bool) -> int:
    """calculateScaleUpLimitWithScalingRules / calculateScaleDownLimitWithBehaviors."""
    select = scaling.get("selectPolicy") or "Max"
    if select == "Disabled":
        return current
    proposals = []
    for policy in scaling.get("policies") or []:
        period = int(policy.get("periodSeconds") or 0)
        start = (
            current
            - _changed_within(history.scale_ups, period, now)
            + _changed_within(history.scale_downs, period, now)
        )
        value = int(policy.get("value") or 0)
        if policy.get("type") == "Pods":
            proposals.append(start + value if up else start - value)
        elif up:
            proposals.append(math.ceil(start * (1 + value / 100)))
        else:
            proposals.append(int(start * (1 - value / 100)))
    if not proposals:
        return current
    # Max picks the biggest change: the highest limit up, the lowest limit down.
    biggest_change = select != "Min"
    return (max if biggest_change == up else min)(proposals)


def normalize_with_behavior(
    history: History,
    behavior: Json,
    current: int,
    desired: int,
    min_replicas: int,
    max_replicas: int,
    now: datetime,
) -> Limited:
    """normalizeDesiredReplicasWithBehaviors: stabilize within the up and down windows,
    then the bounds and the policies' rate limits."""
    up_rules, down_rules = rules(behavior, "scaleUp"), rules(behavior, "scaleDown")
    up_cutoff = now - timedelta(seconds=int(up_rules["stabilizationWindowSeconds"]))
    down_cutoff = now - timedelta(seconds=int(down_rules["stabilizationWindowSeconds"]))
    up_floor, down_ceiling = desired, desired
    for r in history.recommendations:
        if r.at > up_cutoff:
            up_floor = min(r.replicas, up_floor)
        if r.at > down_cutoff:
            down_ceiling = max(r.replicas, down_ceiling)
    stabilized = min(max(current, up_floor), down_ceiling)
    _record(history, desired, now, lambda r: r.at < up_cutoff and r.at < down_cutoff)
    stabilized_why = STABILIZED_UP if desired >= current else STABILIZED_DOWN
    able = stabilized_why if stabilized != desired else READY
    replicas, why = stabilized, WITHIN_RANGE
    if stabilized > current:
        limit = max(_rate_limit(current, history, up_rules, now, up=True), current)
        ceiling, over = (limit, UP_LIMIT) if max_replicas > limit else (max_replicas, TOO_MANY)
        if stabilized > ceiling:
            replicas, why = ceiling, over
    elif stabilized < current:
        limit = min(_rate_limit(current, history, down_rules, now, up=False), current)
        floor, under = (limit, DOWN_LIMIT) if min_replicas < limit else (min_replicas, TOO_FEW)
        if stabilized < floor:
            replicas, why = floor, under
    return Limited(replicas, *able, replicas != stabilized, *why)


def record_scale(
    history: History, behavior: Json | None, current: int, desired: int, now: datetime
) -> None:
    """storeScaleEvent: with a behavior, remember the change for the rate policies,
    forgetting events older than the longest policy period."""
    if behavior is None:
        return
    for direction, events in (("scaleUp", history.scale_ups), ("scaleDown", history.scale_downs)):
        longest = max(
            (int(p.get("periodSeconds") or 0) for p in rules(behavior, direction)["policies"]),
            default=0,
        )
        events[:] = [e for e in events if e.at > now - timedelta(seconds=longest)]
    if desired > current:
        history.scale_ups.append(ScaleEvent(desired - current, now))
    elif desired < current:
        history.scale_downs.append(ScaleEvent(current - desired, now))


def set_condition(
    conditions: list[Json], kind: str, status: bool, reason: str, message: str, now: str
) -> None:
    """setCondition: replace in place; lastTransitionTime kept while the status holds."""
    value = "True" if status else "False"
    for condition in conditions:
        if condition.get("type") == kind:
            if condition.get("status") != value:
                condition["lastTransitionTime"] = now
            condition.update(status=value, reason=reason, message=message)
            return
    conditions.append(
        {
            "type": kind,
            "status": value,
            "lastTransitionTime": now,
            "reason": reason,
            "message": message,
        }
    )


def resource_metric_status(
    resource: str, recommendation: ResourceRecommendation, utilization: bool
) -> Json:
    """The currentMetrics entry of a Resource metric."""
    current: Json = {"averageValue": milli_quantity(recommendation.average_millis)}
    if utilization:
        current["averageUtilization"] = recommendation.utilization
    return {"type": "Resource", "resource": {"name": resource, "current": current}}


DEFAULT_METRICS = [
    {
        "type": "Resource",
        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}},
    }
]


@dataclass(frozen=True)
class MetricOutcome:
    replicas: int | None  # None: the metric could not be computed
    name: str
    status: Json
    reason: str = ""
    message: str = ""


def _metric_outcome(
    spec: Json,
    current: int,
    pods: Sequence[PodSample],
    metrics: dict[str, dict[str, PodMetric]] | str,
    now: datetime,
) -> MetricOutcome:
    """computeStatusForResourceMetric; other sources are not computed by the lab."""
    kind = spec.get("type")
    if kind != "Resource":
        return MetricOutcome(
            None,
            "",
            {"type": ""},
            "InvalidMetricSourceType",
            "the HPA was unable to compute the replica count: the lab's controller computes "
            f"Resource metrics only, not {kind!r}",
        )
    source = spec.get("resource") or {}
    resource = str(source.get("name") or "cpu")
    target = source.get("target") or {}
    try:
        if isinstance(metrics, str):
            raise MetricError(
                f"unable to get metrics for resource {resource}: unable to fetch metrics "
                f"from resource metrics API: {metrics}"
            )
        samples = metrics.get(resource, {})
        if target.get("averageValue") is not None:
            found = average_value_replicas(
                resource, current, milli_value(target["averageValue"]), pods, samples, now
            )
            name = f"{resource} resource"
            status = resource_metric_status(resource, found, utilization=False)
        elif target.get("averageUtilization") is not None:
            found = utilization_replicas(
                resource, current, int(target["averageUtilization"]), pods, samples, now
            )
            name = f"{resource} resource utilization (percentage of request)"
            status = resource_metric_status(resource, found, utilization=True)
        else:
            raise MetricError(
                "invalid resource metric source: neither a utilization target nor a value "
                "target was set"
            )
    except MetricError as error:
        return MetricOutcome(
            None,
            "",
            {"type": ""},
            "FailedGetResourceMetric",
            f"the HPA was unable to compute the replica count: failed to get {resource} "
            f"utilization: {error}",
        )
    return MetricOutcome(found.replicas, name, status)


@dataclass(frozen=True)
class Reconciled:
    """What one sync decides: the new scale (None: unchanged), the status, and the events
    (type, reason, message) the controller records on the HPA."""

    scale_to: int | None
    status: Json
    events: list[tuple[str, str, str]]


def reconcile(
    hpa: Json,
    scale_replicas: int,
    selector: str | None,
    pods: Sequence[PodSample],
    metrics: dict[str, dict[str, PodMetric]] | str,
    history: History,
    now: datetime,
) -> Reconciled:
    """reconcileAutoscaler after the scale was read: the metrics' proposal, normalized,
    and the status the controller writes (the scale update is the caller's). `metrics`
    maps resource -> pod -> usage, or is the Metrics API's error."""
    spec = hpa.get("spec") or {}
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    status = dict(hpa.get("status") or {})
    conditions: list[Json] = [dict(c) for c in status.get("conditions") or []]
    events: list[tuple[str, str, str]] = []
    set_condition(
        conditions,
        "AbleToScale",
        True,
        "SucceededGetScale",
        "the HPA controller was able to get the target's current scale",
        stamp,
    )
    if not history.recommendations:
        history.recommendations.append(Recommendation(scale_replicas, now))
    min_replicas = int(spec.get("minReplicas") or 1)
    max_replicas = int(spec.get("maxReplicas") or 0)
    behavior = spec.get("behavior")
    current = scale_replicas
    desired = 0
    rescale = True
    reason = ""
    metric_statuses: list[Json] | None = None
    if scale_replicas == 0 and min_replicas != 0:
        rescale = False
        set_condition(
            conditions,
            "ScalingActive",
            False,
            "ScalingDisabled",
            "scaling is disabled since the replica count of the target is zero",
            stamp,
        )
    elif current > max_replicas:
        reason, desired = "Current number of replicas above Spec.MaxReplicas", max_replicas
    elif current < min_replicas:
        reason, desired = "Current number of replicas below Spec.MinReplicas", min_replicas
    else:
        specs = spec.get("metrics") or DEFAULT_METRICS
        if not selector:
            outcomes = [
                MetricOutcome(
                    None,
                    "",
                    {"type": ""},
                    "InvalidSelector",
                    "the HPA target's scale is missing a selector",
                )
            ]
        else:
            outcomes = [_metric_outcome(m, current, pods, metrics, now) for m in specs]
        metric_statuses = [o.status for o in outcomes]
        valid = [o for o in outcomes if o.replicas is not None]
        if not valid:
            failed = outcomes[0]
            set_condition(conditions, "ScalingActive", False, failed.reason, failed.message, stamp)
            events.append(("Warning", failed.reason, failed.message))
            status.update(currentReplicas=current, currentMetrics=metric_statuses)
            status["conditions"] = conditions
            status.setdefault("desiredReplicas", current)
            return Reconciled(None, status, events)
        best = max(valid, key=lambda o: o.replicas or 0)
        set_condition(
            conditions,
            "ScalingActive",
            True,
            "ValidMetricFound",
            f"the HPA was able to successfully calculate a replica count from {best.name}",
            stamp,
        )
        desired = best.replicas or 0
        if desired > current:
            reason = f"{best.name} above target"
        elif desired < current:
            reason = "All metrics below target"
        if behavior is None:
            limited = normalize_without_behavior(
                history, current, desired, min_replicas, max_replicas, now
            )
        else:
            limited = normalize_with_behavior(
                history, behavior, current, desired, min_replicas, max_replicas, now
            )
        set_condition(
            conditions, "AbleToScale", True, limited.able_reason, limited.able_message, stamp
        )
        set_condition(
            conditions,
            "ScalingLimited",
            limited.limited,
            limited.limit_reason,
            limited.limit_message,
            stamp,
        )
        desired = limited.replicas
        rescale = desired != current
    if rescale:
        set_condition(
            conditions,
            "AbleToScale",
            True,
            "SucceededRescale",
            f"the HPA controller was able to update the target scale to {desired}",
            stamp,
        )
        events.append(("Normal", "SuccessfulRescale", f"New size: {desired}; reason: {reason}"))
        record_scale(history, behavior, current, desired, now)
        status["lastScaleTime"] = stamp
    else:
        desired = current
    status.update(currentReplicas=current, desiredReplicas=desired, conditions=conditions)
    status.pop("currentMetrics", None)
    if metric_statuses is not None:
        status["currentMetrics"] = metric_statuses
    return Reconciled(desired if rescale else None, status, events)


def failed_get_scale(hpa: Json, error: str, now: datetime) -> Reconciled:
    """The scale of the target could not be read: AbleToScale False, FailedGetScale."""
    status = dict(hpa.get("status") or {})
    conditions: list[Json] = [dict(c) for c in status.get("conditions") or []]
    message = f"the HPA controller was unable to get the target's current scale: {error}"
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    set_condition(conditions, "AbleToScale", False, "FailedGetScale", message, stamp)
    status["conditions"] = conditions
    status.setdefault("currentReplicas", 0)
    status.setdefault("desiredReplicas", 0)
    return Reconciled(None, status, [("Warning", "FailedGetScale", error)])
