"""Deployments, ReplicaSets and the garbage collector, decided as kube-controller-manager
decides them. Pure: objects in (as the API serves them), decisions out.

Follows pkg/controller/deployment (rolling.go, recreate.go, sync.go, progress.go and
util/deployment_util.go: fenceposts, the new ReplicaSet's size, which old ones shrink,
status and the Available/Progressing conditions with their reasons), pkg/controller/
replicaset (pods to create or delete, ranked as ActivePodsWithRanks, status) and
pkg/controller/garbagecollector (dependents of a vanished owner; foreground and orphan
finalizers). The pod-template-hash is an FNV-32a of the template, encoded as the
controller encodes it; its input is the template's JSON, not Go's memory layout, so the
value differs from a real cluster's for the same template while keeping its form.
"""

import copy
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

Json = dict[str, Any]

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"
_SAFE_ALPHANUMS = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io/apimachinery/pkg/util/rand
_FNV32_OFFSET, _FNV32_PRIME = 0x811C9DC5, 0x01000193


def timestamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def _meta(obj: Json) -> Json:
    meta: Json = obj.setdefault("metadata", {})
    return meta


def uid(obj: Json) -> str:
    return str(_meta(obj).get("uid", ""))


def name(obj: Json) -> str:
    return str(_meta(obj).get("name", ""))


def spec_replicas(obj: Json) -> int:
    replicas = (obj.get("spec") or {}).get("replicas")
    return 1 if replicas is None else int(replicas)


def status_of(obj: Json, key: str) -> int:
    return int((obj.get("status") or {}).get(key) or 0)


def deleting(obj: Json) -> bool:
    return bool(_meta(obj).get("deletionTimestamp"))


def controller_uid(obj: Json) -> str | None:
    for ref in _meta(obj).get("ownerReferences") or []:
        if ref.get("controller"):
            return str(ref.get("uid"))
    return None


def owned_by(owner: Json, objects: Sequence[Json]) -> list[Json]:
    """The objects whose controller reference names the owner's uid."""
    return [o for o in objects if controller_uid(o) == uid(owner)]


def selector_matches(selector: Json | None, labels: dict[str, str]) -> bool:
    """A LabelSelector (matchLabels and matchExpressions); an empty one matches all."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression.get("key"), expression.get("operator")
        values = expression.get("values") or []
        present = key in labels
        if operator == "In" and not (present and labels[key] in values):
            return False
        if operator == "NotIn" and present and labels[key] in values:
            return False
        if operator == "Exists" and not present:
            return False
        if operator == "DoesNotExist" and present:
            return False
    return True


def selector_string(selector: Json | None) -> str:
    """metav1.FormatLabelSelector, as the scale subresource's status.selector carries it."""
    selector = selector or {}
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression.get("key"), expression.get("operator")
        values = ",".join(sorted(expression.get("values") or []))
        parts.append(
            {"In": f"{key} in ({values})", "NotIn": f"{key} notin ({values})"}.get(
                operator, key if operator == "Exists" else f"!{key}"
            )
        )
    return ",".join(parts)


def template_hash(template: Json, collision_count: int = 0) -> str:
    """controller.ComputeHash: FNV-32a of the template then the collision count, the
    decimal digits mapped onto the safe alphabet (rand.SafeEncodeString)."""
    value = _FNV32_OFFSET
    data = json.dumps(template, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
    for byte in data + (str(collision_count).encode() if collision_count else b""):
        value = ((value ^ byte) * _FNV32_PRIME) & 0xFFFFFFFF
    return "".join(_SAFE_ALPHANUMS[b % len(_SAFE_ALPHANUMS)] for b in str(value).encode())


def _without_hash(template: Json) -> Json:
    stripped = copy.deepcopy(template)
    (stripped.get("metadata") or {}).get("labels", {}).pop(HASH_LABEL, None)
    return stripped


def same_template(a: Json, b: Json) -> bool:
    """EqualIgnoreHash: the templates equal once the hash label is set aside."""
    return _without_hash(a) == _without_hash(b)


def _scaled(value: Any, total: int, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent."""
    if isinstance(value, int):
        return value
    text = str(value)
    if not text.endswith("%"):
        return int(text)
    exact = int(text[:-1]) * total / 100
    return math.ceil(exact) if round_up else math.floor(exact)


def fenceposts(deployment: Json) -> tuple[int, int]:
    """ResolveFenceposts: (maxSurge rounded up, maxUnavailable rounded down), never both 0."""
    strategy = (deployment.get("spec") or {}).get("strategy") or {}
    rolling = strategy.get("rollingUpdate") or {}
    replicas = spec_replicas(deployment)
    surge = _scaled(rolling.get("maxSurge", "25%"), replicas, round_up=True)
    unavailable = _scaled(rolling.get("maxUnavailable", "25%"), replicas, round_up=False)
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def is_recreate(deployment: Json) -> bool:
    strategy = (deployment.get("spec") or {}).get("strategy") or {}
    return strategy.get("type") == "Recreate"


def max_unavailable(deployment: Json) -> int:
    replicas = spec_replicas(deployment)
    if is_recreate(deployment) or replicas == 0:
        return 0
    return min(fenceposts(deployment)[1], replicas)


def _total_spec(replica_sets: Sequence[Json]) -> int:
    return sum(spec_replicas(rs) for rs in replica_sets)


def _total_status(replica_sets: Sequence[Json], key: str) -> int:
    return sum(status_of(rs, key) for rs in replica_sets)


def new_rs_replicas(deployment: Json, all_sets: Sequence[Json], new_set: Json | None) -> int:
    """NewRSNewReplicas: the new ReplicaSet grows into the surge room left."""
    wanted = spec_replicas(deployment)
    if is_recreate(deployment):
        return wanted
    current_new = spec_replicas(new_set) if new_set is not None else 0
    surge, _ = fenceposts(deployment)
    room = wanted + surge - _total_spec(all_sets)
    if room <= 0:
        return current_new
    return current_new + min(room, wanted - current_new)


def revision(obj: Json) -> int:
    try:
        return int((_meta(obj).get("annotations") or {}).get(REVISION, 0))
    except ValueError:
        return 0


def new_replica_set(deployment: Json, old_sets: Sequence[Json], collision_count: int) -> Json:
    """The ReplicaSet a changed template gets: named <deployment>-<hash>, the hash in its
    labels, selector and template, owned by the Deployment, the next revision."""
    spec = deployment.get("spec") or {}
    template = copy.deepcopy(spec.get("template") or {})
    pod_hash = template_hash(template, collision_count)
    template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = pod_hash
    selector = copy.deepcopy(spec.get("selector") or {})
    selector.setdefault("matchLabels", {})[HASH_LABEL] = pod_hash
    meta = _meta(deployment)
    surge, _ = fenceposts(deployment)
    wanted = spec_replicas(deployment)
    replica_set: Json = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": f"{meta['name']}-{pod_hash}",
            "namespace": meta.get("namespace"),
            "labels": dict(template["metadata"]["labels"]),
            "annotations": {
                DESIRED_REPLICAS: str(wanted),
                MAX_REPLICAS: str(wanted + (0 if is_recreate(deployment) else surge)),
                REVISION: str(max([revision(rs) for rs in old_sets], default=0) + 1),
            },
            "ownerReferences": [owner_reference(deployment, "Deployment")],
        },
        "spec": {
            "replicas": 0,
            "minReadySeconds": int(spec.get("minReadySeconds") or 0),
            "selector": selector,
            "template": template,
        },
    }
    replica_set["spec"]["replicas"] = new_rs_replicas(deployment, old_sets, replica_set)
    return replica_set


def owner_reference(owner: Json, kind: str) -> Json:
    return {
        "apiVersion": "apps/v1",
        "kind": kind,
        "name": name(owner),
        "uid": uid(owner),
        "controller": True,
        "blockOwnerDeletion": True,
    }


@dataclass
class DeploymentPlan:
    """One sync of a Deployment: a ReplicaSet to create, sizes to set, old ones to delete,
    the annotations to carry and the status to write."""

    create: Json | None = None
    annotate: dict[str, dict[str, str]] = field(default_factory=dict)
    scale: dict[str, int] = field(default_factory=dict)
    delete: list[str] = field(default_factory=list)
    status: Json = field(default_factory=dict)


def _condition(kind: str, status: bool, reason: str, message: str, now: str) -> Json:
    return {
        "type": kind,
        "status": "True" if status else "False",
        "lastUpdateTime": now,
        "lastTransitionTime": now,
        "reason": reason,
        "message": message,
    }


def set_deployment_condition(conditions: list[Json], new: Json) -> None:
    """SetDeploymentCondition: same status and reason is no change; same status keeps
    its lastTransitionTime."""
    for index, old in enumerate(conditions):
        if old.get("type") != new["type"]:
            continue
        if old.get("status") == new["status"] and old.get("reason") == new["reason"]:
            return
        if old.get("status") == new["status"]:
            new = {**new, "lastTransitionTime": old.get("lastTransitionTime")}
        conditions[index] = new
        return
    conditions.append(new)


def _find(conditions: list[Json], kind: str) -> Json | None:
    return next((c for c in conditions if c.get("type") == kind), None)


def _scale_down_old(
    deployment: Json, new_set: Json, old_sets: list[Json], plan: DeploymentPlan
) -> bool:
    """reconcileOldReplicaSets: first the unhealthy old pods, then old ones beyond
    the availability floor, oldest ReplicaSets first."""
    all_sets = [*old_sets, new_set]
    if _total_spec(old_sets) == 0:
        return False
    min_available = spec_replicas(deployment) - max_unavailable(deployment)
    new_unavailable = spec_replicas(new_set) - status_of(new_set, "availableReplicas")
    room = _total_spec(all_sets) - min_available - new_unavailable
    if room <= 0:
        return False
    ordered = sorted(old_sets, key=lambda rs: (_meta(rs).get("creationTimestamp") or "", name(rs)))
    cleaned = 0
    for rs in ordered:
        unhealthy = spec_replicas(rs) - status_of(rs, "availableReplicas")
        if cleaned >= room:
            break
        if spec_replicas(rs) == 0 or unhealthy <= 0:
            continue
        step = min(room - cleaned, unhealthy)
        _resize(rs, spec_replicas(rs) - step, plan)
        cleaned += step
    available = _total_status(all_sets, "availableReplicas")
    excess = available - min_available
    scaled = 0
    for rs in ordered:
        if scaled >= excess:
            break
        if spec_replicas(rs) == 0:
            continue
        step = min(spec_replicas(rs), excess - scaled)
        _resize(rs, spec_replicas(rs) - step, plan)
        scaled += step
    return cleaned + max(scaled, 0) > 0


def _resize(rs: Json, replicas: int, plan: DeploymentPlan) -> None:
    rs.setdefault("spec", {})["replicas"] = replicas
    plan.scale[name(rs)] = replicas


def _cleanup(deployment: Json, old_sets: list[Json], plan: DeploymentPlan) -> None:
    """cleanupDeployment: old ReplicaSets beyond revisionHistoryLimit, emptied ones only."""
    limit = (deployment.get("spec") or {}).get("revisionHistoryLimit")
    limit = 10 if limit is None else int(limit)
    cleanable = [rs for rs in old_sets if not deleting(rs)]
    excess = len(cleanable) - limit
    for rs in sorted(cleanable, key=lambda rs: (revision(rs), name(rs)))[: max(excess, 0)]:
        if (
            status_of(rs, "replicas")
            or spec_replicas(rs)
            or (int(_meta(rs).get("generation") or 0) > status_of(rs, "observedGeneration"))
        ):
            continue
        plan.delete.append(name(rs))


def split_replica_sets(deployment: Json, owned: Sequence[Json]) -> tuple[Json | None, list[Json]]:
    """FindNewReplicaSet (the oldest whose template equals the Deployment's) and the rest."""
    template = (deployment.get("spec") or {}).get("template") or {}
    ordered = sorted(owned, key=lambda rs: (_meta(rs).get("creationTimestamp") or "", name(rs)))
    new_set = next((rs for rs in ordered if same_template(rs["spec"]["template"], template)), None)
    return new_set, [rs for rs in ordered if rs is not new_set]


def plan_deployment(
    deployment: Json, owned: Sequence[Json], pods_running_old: int, now: datetime
) -> DeploymentPlan:
    """syncDeployment for one pass: the rollout step of its strategy, then the status.
    `pods_running_old` counts the old ReplicaSets' pods still there (Recreate waits)."""
    sets = [copy.deepcopy(rs) for rs in owned]
    new_set, old_sets = split_replica_sets(deployment, sets)
    plan = DeploymentPlan()
    stamp = timestamp(now)
    status = copy.deepcopy(deployment.get("status") or {})
    conditions: list[Json] = status.get("conditions") or []
    has_deadline = (deployment.get("spec") or {}).get("progressDeadlineSeconds") is not None
    collision = int(status.get("collisionCount") or 0)
    spec = deployment.get("spec") or {}
    wanted = spec_replicas(deployment)

    def create_new() -> Json:
        created = new_replica_set(deployment, old_sets, collision)
        plan.create = created
        if has_deadline:
            message = f'Created new replica set "{name(created)}"'
            set_deployment_condition(
                conditions, _condition("Progressing", True, "NewReplicaSetCreated", message, stamp)
            )
        return created

    if new_set is not None:
        _promote(new_set, old_sets, plan)
    if new_set is not None and has_deadline and _find(conditions, "Progressing") is None:
        message = f'Found new replica set "{name(new_set)}"'
        set_deployment_condition(
            conditions, _condition("Progressing", True, "FoundNewReplicaSet", message, stamp)
        )
    if deleting(deployment) or spec.get("paused"):
        pass  # syncStatusOnly / a paused rollout: sizes stay, the status follows
    elif is_recreate(deployment):
        active_old = [rs for rs in old_sets if spec_replicas(rs) > 0]
        if active_old:
            for rs in active_old:
                _resize(rs, 0, plan)
        elif pods_running_old == 0 and _total_status(old_sets, "replicas") == 0:
            if new_set is None:
                new_set = create_new()
            elif spec_replicas(new_set) != wanted:
                _resize(new_set, wanted, plan)
    else:
        if new_set is None:
            new_set = create_new()
        elif spec_replicas(new_set) > wanted:
            _resize(new_set, wanted, plan)
        elif spec_replicas(new_set) < wanted:
            grown = new_rs_replicas(deployment, [*old_sets, new_set], new_set)
            if grown != spec_replicas(new_set):
                _resize(new_set, grown, plan)
        if not plan.scale:
            _scale_down_old(deployment, new_set, old_sets, plan)
    all_sets = [*old_sets, *([new_set] if new_set is not None else [])]
    previous = deployment.get("status") or {}
    status = deployment_status(deployment, all_sets, new_set, conditions, previous, now)
    if collision:
        status["collisionCount"] = collision
    if (
        not deleting(deployment)
        and not plan.scale
        and plan.create is None
        and _complete(deployment, status)
    ):
        _cleanup(deployment, old_sets, plan)
    plan.status = status
    return plan


def _promote(new_set: Json, old_sets: list[Json], plan: DeploymentPlan) -> None:
    """SetNewReplicaSetAnnotations: a template coming back (a rollback) takes the next
    revision, its former ones kept in revision-history."""
    latest = max([revision(rs) for rs in old_sets], default=0) + 1
    current = revision(new_set)
    if current >= latest:
        return
    annotations = dict(_meta(new_set).get("annotations") or {})
    if current:
        history = [h for h in annotations.get(REVISION_HISTORY, "").split(",") if h]
        annotations[REVISION_HISTORY] = ",".join([*history, str(current)])
    annotations[REVISION] = str(latest)
    _meta(new_set)["annotations"] = annotations
    plan.annotate[name(new_set)] = annotations


def _complete(deployment: Json, status: Json) -> bool:
    """DeploymentComplete."""
    wanted = spec_replicas(deployment)
    return (
        int(status.get("updatedReplicas") or 0) == wanted
        and int(status.get("replicas") or 0) == wanted
        and int(status.get("availableReplicas") or 0) == wanted
        and int(status.get("observedGeneration") or 0)
        >= int(_meta(deployment).get("generation") or 0)
    )


def deployment_status(
    deployment: Json,
    all_sets: Sequence[Json],
    new_set: Json | None,
    conditions: list[Json],
    previous: Json,
    now: datetime,
) -> Json:
    """calculateStatus then syncRolloutStatus' Progressing condition. Zero counts are
    left out, as the API's omitempty leaves them out."""
    stamp = timestamp(now)
    available = _total_status(all_sets, "availableReplicas")
    wanted = spec_replicas(deployment)
    counts = {
        "observedGeneration": int(_meta(deployment).get("generation") or 0),
        "replicas": _total_status(all_sets, "replicas"),
        "updatedReplicas": status_of(new_set, "replicas") if new_set is not None else 0,
        "readyReplicas": _total_status(all_sets, "readyReplicas"),
        "availableReplicas": available,
        "unavailableReplicas": max(_total_spec(all_sets) - available, 0),
    }
    status: Json = {key: value for key, value in counts.items() if value}
    conditions = [dict(c) for c in conditions]
    if available >= wanted - max_unavailable(deployment):
        available_condition = _condition(
            "Available",
            True,
            "MinimumReplicasAvailable",
            "Deployment has minimum availability.",
            stamp,
        )
    else:
        available_condition = _condition(
            "Available",
            False,
            "MinimumReplicasUnavailable",
            "Deployment does not have minimum availability.",
            stamp,
        )
    set_deployment_condition(conditions, available_condition)
    spec = deployment.get("spec") or {}
    if spec.get("progressDeadlineSeconds") is None:
        conditions = [c for c in conditions if c.get("type") != "Progressing"]
    current = _find(conditions, "Progressing")
    finished = (
        counts["replicas"] == counts["updatedReplicas"]
        and current is not None
        and current.get("reason") == "NewReplicaSetAvailable"
    )
    subject = (
        f'ReplicaSet "{name(new_set)}"'
        if new_set is not None
        else f'Deployment "{name(deployment)}"'
    )
    if spec.get("progressDeadlineSeconds") is not None and not finished:
        if _complete(deployment, counts):
            set_deployment_condition(
                conditions,
                _condition(
                    "Progressing",
                    True,
                    "NewReplicaSetAvailable",
                    f"{subject} has successfully progressed.",
                    stamp,
                ),
            )
        elif _progressing(counts, previous):
            progressing = _condition(
                "Progressing", True, "ReplicaSetUpdated", f"{subject} is progressing.", stamp
            )
            if current is not None:
                if current.get("status") == "True":
                    progressing["lastTransitionTime"] = current.get("lastTransitionTime")
                conditions = [c for c in conditions if c.get("type") != "Progressing"]
            conditions.append(progressing)
        elif _timed_out(current, int(spec["progressDeadlineSeconds"]), now):
            set_deployment_condition(
                conditions,
                _condition(
                    "Progressing",
                    False,
                    "ProgressDeadlineExceeded",
                    f"{subject} has timed out progressing.",
                    stamp,
                ),
            )
    if conditions:
        status["conditions"] = conditions
    return status


def _progressing(counts: dict[str, int], previous: Json) -> bool:
    """DeploymentProgressing: any count moved toward the new template."""

    def old(status: Any) -> int:
        return int(status.get("replicas") or 0) - int(status.get("updatedReplicas") or 0)

    return (
        counts["updatedReplicas"] > int(previous.get("updatedReplicas") or 0)
        or old(counts) < old(previous)
        or counts["readyReplicas"] > int(previous.get("readyReplicas") or 0)
        or counts["availableReplicas"] > int(previous.get("availableReplicas") or 0)
    )


def _timed_out(condition: Json | None, deadline_seconds: int, now: datetime) -> bool:
    """DeploymentTimedOut: no progress noted for progressDeadlineSeconds."""
    if condition is None or condition.get("reason") == "NewReplicaSetAvailable":
        return False
    if condition.get("reason") == "ProgressDeadlineExceeded":
        return True
    since = parse_time(condition.get("lastUpdateTime"))
    return since is not None and since + timedelta(seconds=deadline_seconds) < now


# ReplicaSets


def pod_ready_since(pod: Json) -> datetime | None:
    """When the Ready condition turned True; None while the pod is not ready."""
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready" and condition.get("status") == "True":
            return parse_time(condition.get("lastTransitionTime")) or datetime.min
    return None


def active(pod: Json) -> bool:
    """FilterActivePods: neither finished nor being deleted."""
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not deleting(pod)


def _available(pod: Json, min_ready_seconds: int, now: datetime) -> bool:
    since = pod_ready_since(pod)
    if since is None:
        return False
    return min_ready_seconds == 0 or (
        since != datetime.min and since + timedelta(seconds=min_ready_seconds) < now
    )


def _deletion_rank(pod: Json) -> tuple[Any, ...]:
    """ActivePodsWithRanks' order, first deleted first: unscheduled, pending before
    running, not ready, ready for less time, more restarts, newer."""
    status = pod.get("status") or {}
    phase_order = {"Pending": 0, "Unknown": 1, "Running": 2}.get(
        status.get("phase") or "Pending", 0
    )
    since = pod_ready_since(pod)
    restarts = sum(int(c.get("restartCount") or 0) for c in status.get("containerStatuses") or [])
    created = parse_time(_meta(pod).get("creationTimestamp"))
    return (
        bool((pod.get("spec") or {}).get("nodeName")),
        phase_order,
        since is not None,
        -(since.timestamp()) if since is not None and since != datetime.min else 0.0,
        -restarts,
        -(created.timestamp()) if created is not None else float("-inf"),
    )


@dataclass(frozen=True)
class ReplicaSetPlan:
    create: int
    delete: list[str]
    status: Json


def plan_replica_set(
    replica_set: Json, owned_pods: Sequence[Json], now: datetime
) -> ReplicaSetPlan:
    """manageReplicas and calculateStatus: the pods to add or remove, the status now."""
    pods = [p for p in owned_pods if active(p)]
    diff = len(pods) - spec_replicas(replica_set)
    doomed = [name(p) for p in sorted(pods, key=_deletion_rank)[: max(diff, 0)]] if diff > 0 else []
    spec = replica_set.get("spec") or {}
    template_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    min_ready = int(spec.get("minReadySeconds") or 0)
    labelled = sum(
        1
        for p in pods
        if selector_matches({"matchLabels": template_labels}, _meta(p).get("labels") or {})
    )
    ready = sum(1 for p in pods if pod_ready_since(p) is not None)
    available = sum(1 for p in pods if _available(p, min_ready, now))
    status: Json = {"replicas": len(pods)}
    for key, value in (
        ("fullyLabeledReplicas", labelled),
        ("readyReplicas", ready),
        ("availableReplicas", available),
        ("observedGeneration", int(_meta(replica_set).get("generation") or 0)),
    ):
        if value:
            status[key] = value
    conditions = [
        c
        for c in (replica_set.get("status") or {}).get("conditions") or []
        if c.get("type") != "ReplicaFailure"
    ]
    if conditions:
        status["conditions"] = conditions
    return ReplicaSetPlan(max(-diff, 0), doomed, status)


def pod_from_template(replica_set: Json) -> Json:
    """GetPodFromTemplate: the template's labels, annotations and spec, named after the
    ReplicaSet by generateName, owned by it."""
    template = (replica_set.get("spec") or {}).get("template") or {}
    template_meta = template.get("metadata") or {}
    metadata: Json = {
        "generateName": f"{name(replica_set)}-",
        "namespace": _meta(replica_set).get("namespace"),
        "labels": dict(template_meta.get("labels") or {}),
        "ownerReferences": [owner_reference(replica_set, "ReplicaSet")],
    }
    for key in ("annotations", "finalizers"):
        if template_meta.get(key):
            metadata[key] = copy.deepcopy(template_meta[key])
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": copy.deepcopy(template.get("spec") or {}),
    }


# Garbage collection


@dataclass
class Collection:
    """What the garbage collector does in one pass over the lab's objects, each named by
    (kind, namespace, name): deletions with their propagation policy, owner references
    to drop from orphaned dependents, finalizers to remove from owners."""

    delete: list[tuple[str, str, str, str]] = field(default_factory=list)
    orphan: list[tuple[str, str, str, str]] = field(default_factory=list)  # + owner uid
    finalize: list[tuple[str, str, str, str]] = field(default_factory=list)  # + finalizer


def _key(obj: Json) -> tuple[str, str, str]:
    return str(obj.get("kind")), str(_meta(obj).get("namespace")), name(obj)


def _refs(obj: Json) -> list[Json]:
    return list(_meta(obj).get("ownerReferences") or [])


def _finalizers(obj: Json) -> list[str]:
    return list(_meta(obj).get("finalizers") or [])


def collect(
    owners: Sequence[Json], dependents: Sequence[Json], owner_kinds: frozenset[str]
) -> Collection:
    """attemptToDeleteItem, processDeletingDependentsItem and orphanDependents in one pass
    over dependents whose owners are all of `owner_kinds` (kinds the caller listed whole):
    a dependent whose owners are gone or deleting in the foreground is deleted (in the
    foreground itself when it has dependents); an owner deleting as orphan lets its
    dependents go; an owner's finalizer is removed once nothing it waits for is left."""
    present = {uid(o): o for o in owners}
    referenced = {str(r.get("uid")) for d in dependents for r in _refs(d)}
    result = Collection()
    for dependent in dependents:
        refs = _refs(dependent)
        if not refs or any(r.get("kind") not in owner_kinds for r in refs):
            continue
        found = [present.get(str(r.get("uid"))) for r in refs]
        for owner in found:
            if owner is not None and deleting(owner) and ORPHAN in _finalizers(owner):
                result.orphan.append((*_key(dependent), uid(owner)))
        solid = [o for o in found if o is not None and not deleting(o)]
        waiting = [o for o in found if o is not None and FOREGROUND in _finalizers(o)]
        orphaning = [o for o in found if o is not None and ORPHAN in _finalizers(o)]
        if solid or orphaning or deleting(dependent):
            continue
        if all(o is None for o in found) or waiting:
            has_dependents = uid(dependent) in referenced
            policy = "Foreground" if waiting and has_dependents else "Background"
            result.delete.append((*_key(dependent), policy))
    for owner in owners:
        if not deleting(owner):
            continue
        mine = [d for d in dependents if any(r.get("uid") == uid(owner) for r in _refs(d))]
        finalizers = _finalizers(owner)
        if ORPHAN in finalizers and not mine:
            result.finalize.append((*_key(owner), ORPHAN))
        elif FOREGROUND in finalizers and ORPHAN not in finalizers:
            blocking = [
                d
                for d in mine
                if any(r.get("uid") == uid(owner) and r.get("blockOwnerDeletion") for r in _refs(d))
            ]
            if not blocking:
                result.finalize.append((*_key(owner), FOREGROUND))
    return result
