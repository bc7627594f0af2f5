"""Deployment, ReplicaSet and garbage-collector decisions (kernel_gossip.core.rollout),
figures pinned by hand from pkg/controller/deployment, replicaset and garbagecollector."""

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kernel_gossip.core import rollout

NOW = datetime(2026, 12, 2, 7, 0, 0, tzinfo=UTC)
Json = dict[str, Any]


def deployment(replicas: int = 4, image: str = "nginx:1", **spec: Any) -> Json:
    return {
        "metadata": {"name": "web", "namespace": "demo", "uid": "d-1", "generation": 1},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": image}]},
            },
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"},
            },
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
            **spec,
        },
    }


def settle(replica_set: Json) -> None:
    """Every pod the ReplicaSet wants runs and is available at once."""
    n = rollout.spec_replicas(replica_set)
    replica_set["status"] = {"replicas": n, "readyReplicas": n, "availableReplicas": n}


def run(d: Json, sets: list[Json], passes: int = 12) -> list[tuple[int, ...]]:
    """Sync the Deployment until nothing changes; the ReplicaSets' sizes after each pass
    (in creation order), pods settling between passes."""
    sizes = []
    for step in range(passes):
        plan = rollout.plan_deployment(d, sets, 0, NOW + timedelta(seconds=step))
        if plan.create is not None:
            created = copy.deepcopy(plan.create)
            created["metadata"].update(
                uid=f"rs-{len(sets)}", creationTimestamp=f"2026-12-02T07:00:{len(sets):02d}Z"
            )
            sets.append(created)
        for rs in sets:
            if rollout.name(rs) in plan.scale:
                rs["spec"]["replicas"] = plan.scale[rollout.name(rs)]
            if rollout.name(rs) in plan.annotate:
                rs["metadata"]["annotations"] = plan.annotate[rollout.name(rs)]
        d["status"] = plan.status
        if plan.create is None and not plan.scale and not plan.annotate:
            break
        sizes.append(tuple(rollout.spec_replicas(rs) for rs in sets))
        for rs in sets:
            settle(rs)
    return sizes


def test_fenceposts_round_surge_up_and_unavailable_down() -> None:
    assert rollout.fenceposts(deployment(10)) == (3, 2)
    assert rollout.fenceposts(deployment(1)) == (1, 0)
    zero = deployment(
        3,
        strategy={
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 0, "maxUnavailable": "0%"},
        },
    )
    assert rollout.fenceposts(zero) == (0, 1)
    assert rollout.max_unavailable(deployment(4, strategy={"type": "Recreate"})) == 0


def test_first_sync_creates_the_replica_set_with_hash_owner_and_revision() -> None:
    d = deployment(2)
    plan = rollout.plan_deployment(d, [], 0, NOW)
    rs = plan.create
    assert rs is not None
    pod_hash = rs["metadata"]["labels"]["pod-template-hash"]
    assert rs["metadata"]["name"] == f"web-{pod_hash}"
    assert set(pod_hash) <= set("bcdfghjklmnpqrstvwxz2456789")
    assert 1 <= len(pod_hash) <= 10
    assert rs["spec"]["selector"] == {"matchLabels": {"app": "web", "pod-template-hash": pod_hash}}
    assert rs["spec"]["template"]["metadata"]["labels"] == {
        "app": "web",
        "pod-template-hash": pod_hash,
    }
    assert rs["spec"]["replicas"] == 2
    assert rs["metadata"]["ownerReferences"] == [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": "web",
            "uid": "d-1",
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]
    assert rs["metadata"]["annotations"] == {
        "deployment.kubernetes.io/desired-replicas": "2",
        "deployment.kubernetes.io/max-replicas": "3",
        "deployment.kubernetes.io/revision": "1",
    }
    progressing = next(c for c in plan.status["conditions"] if c["type"] == "Progressing")
    assert (progressing["reason"], progressing["message"]) == (
        "NewReplicaSetCreated",
        f'Created new replica set "web-{pod_hash}"',
    )
    assert plan.status["observedGeneration"] == 1
    assert "replicas" not in plan.status  # omitempty: nothing runs yet


def test_template_hash_is_stable_and_moves_with_template_and_collisions() -> None:
    template = deployment()["spec"]["template"]
    first = rollout.template_hash(template)
    assert first == rollout.template_hash(copy.deepcopy(template))
    assert first != rollout.template_hash(template, collision_count=1)
    assert first != rollout.template_hash(deployment(image="nginx:2")["spec"]["template"])


def test_rolling_update_steps_keep_within_surge_and_availability() -> None:
    d = deployment(4)
    sets: list[Json] = []
    assert run(d, sets) == [(4,)]
    d["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
    d["metadata"]["generation"] = 2
    # surge 1, unavailable 1: the new set grows by what the old ones give up, never more
    # than 5 pods in all nor fewer than 3 available.
    assert run(d, sets) == [(3, 1), (3, 2), (1, 2), (1, 4), (0, 4)]
    assert sets[1]["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "2"
    status = d["status"]
    assert {
        k: status.get(k)
        for k in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas")
    } == {"replicas": 4, "updatedReplicas": 4, "readyReplicas": 4, "availableReplicas": 4}
    reasons = {c["type"]: (c["status"], c["reason"], c["message"]) for c in status["conditions"]}
    assert reasons == {
        "Available": ("True", "MinimumReplicasAvailable", "Deployment has minimum availability."),
        "Progressing": (
            "True",
            "NewReplicaSetAvailable",
            f'ReplicaSet "{rollout.name(sets[1])}" has successfully progressed.',
        ),
    }


def test_rolling_back_reuses_the_old_replica_set() -> None:
    d = deployment(2)
    sets: list[Json] = []
    run(d, sets)
    d["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
    run(d, sets)
    d["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:1"
    run(d, sets)
    assert [rollout.spec_replicas(rs) for rs in sets] == [2, 0]
    assert len(sets) == 2
    # The template that comes back takes the next revision, its first one kept as history.
    annotations = sets[0]["metadata"]["annotations"]
    assert annotations["deployment.kubernetes.io/revision"] == "3"
    assert annotations["deployment.kubernetes.io/revision-history"] == "1"


def test_recreate_empties_the_old_set_and_waits_for_its_pods() -> None:
    d = deployment(3, strategy={"type": "Recreate"})
    sets: list[Json] = []
    run(d, sets)
    d["spec"]["template"]["spec"]["containers"][0]["image"] = "nginx:2"
    plan = rollout.plan_deployment(d, sets, 0, NOW)
    assert (plan.create, plan.scale) == (None, {rollout.name(sets[0]): 0})
    sets[0]["spec"]["replicas"] = 0
    waiting = rollout.plan_deployment(d, sets, 3, NOW)  # old status still counts 3 pods
    assert (waiting.create, waiting.scale) == (None, {})
    sets[0]["status"] = {"replicas": 0}
    assert rollout.plan_deployment(d, sets, 1, NOW).create is None  # a pod still terminating
    created = rollout.plan_deployment(d, sets, 0, NOW).create
    assert created is not None
    assert created["spec"]["replicas"] == 3


def test_scaling_a_settled_deployment() -> None:
    d = deployment(2)
    sets: list[Json] = []
    run(d, sets)
    d["spec"]["replicas"] = 5
    assert run(d, sets) == [(5,)]  # room 5 + surge 2 - 2 running, capped at 5 - 2
    d["spec"]["replicas"] = 1
    assert run(d, sets) == [(1,)]


def test_status_while_progressing_and_without_minimum_availability() -> None:
    d = deployment(4)
    sets: list[Json] = []
    run(d, sets, passes=1)
    sets[0]["status"] = {"replicas": 4, "readyReplicas": 2, "availableReplicas": 2}
    status = rollout.plan_deployment(d, sets, 0, NOW).status
    assert {
        k: status.get(k)
        for k in (
            "replicas",
            "updatedReplicas",
            "readyReplicas",
            "availableReplicas",
            "unavailableReplicas",
        )
    } == {
        "replicas": 4,
        "updatedReplicas": 4,
        "readyReplicas": 2,
        "availableReplicas": 2,
        "unavailableReplicas": 2,
    }
    reasons = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert reasons == {
        "Available": ("False", "MinimumReplicasUnavailable"),  # 2 < 4 - 1
        "Progressing": ("True", "ReplicaSetUpdated"),
    }


def test_progress_deadline_exceeded() -> None:
    d = deployment(2, progressDeadlineSeconds=60)
    sets: list[Json] = []
    run(d, sets, passes=1)
    sets[0]["status"] = {"replicas": 2}
    d["status"] = rollout.plan_deployment(d, sets, 0, NOW).status
    later = rollout.plan_deployment(d, sets, 0, NOW + timedelta(seconds=61)).status
    progressing = next(c for c in later["conditions"] if c["type"] == "Progressing")
    assert (progressing["status"], progressing["reason"]) == ("False", "ProgressDeadlineExceeded")


def test_old_replica_sets_beyond_the_history_limit_are_deleted_oldest_first() -> None:
    d = deployment(1, revisionHistoryLimit=1)
    sets: list[Json] = []
    for image in ("nginx:1", "nginx:2", "nginx:3", "nginx:4"):
        d["spec"]["template"]["spec"]["containers"][0]["image"] = image
        run(d, sets)
        for rs in sets:
            settle(rs)
    plan = rollout.plan_deployment(d, sets, 0, NOW)
    assert plan.delete == [rollout.name(sets[0]), rollout.name(sets[1])]


def pod(
    name: str,
    phase: str = "Running",
    ready: str | None = "2026-12-02T06:00:00Z",
    created: str = "2026-12-02T06:00:00Z",
    node: str = "lab",
    restarts: int = 0,
    deleting: bool = False,
) -> Json:
    conditions = [{"type": "Ready", "status": "True", "lastTransitionTime": ready}] if ready else []
    meta: Json = {
        "name": name,
        "creationTimestamp": created,
        "labels": {"app": "web", "pod-template-hash": "h"},
    }
    if deleting:
        meta["deletionTimestamp"] = "2026-12-02T06:59:00Z"
    return {
        "metadata": meta,
        "spec": {"nodeName": node},
        "status": {
            "phase": phase,
            "conditions": conditions,
            "containerStatuses": [{"restartCount": restarts}],
        },
    }


def replica_set(replicas: int) -> Json:
    return {
        "metadata": {"name": "web-h", "namespace": "demo", "uid": "rs-1", "generation": 3},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web", "pod-template-hash": "h"}},
            "template": {
                "metadata": {"labels": {"app": "web", "pod-template-hash": "h"}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]},
            },
        },
    }


def test_replica_set_creates_the_missing_pods_and_counts_status() -> None:
    pods = [
        pod("a"),
        pod("b", ready=None),
        pod("gone", deleting=True),
        pod("done", phase="Succeeded"),
    ]
    plan = rollout.plan_replica_set(replica_set(4), pods, NOW)
    assert (plan.create, plan.delete) == (2, [])
    assert plan.status == {
        "replicas": 2,
        "fullyLabeledReplicas": 2,
        "readyReplicas": 1,
        "availableReplicas": 1,
        "observedGeneration": 3,
    }
    assert rollout.plan_replica_set(replica_set(0), [], NOW).status == {
        "replicas": 0,
        "observedGeneration": 3,
    }


def test_replica_set_deletes_the_least_established_pods_first() -> None:
    pods = [
        pod("old-ready"),
        pod("new-ready", created="2026-12-02T06:30:00Z", ready="2026-12-02T06:31:00Z"),
        pod("restarted", restarts=3),
        pod("unready", ready=None),
        pod("pending", phase="Pending", ready=None),
        pod("unscheduled", phase="Pending", ready=None, node=""),
    ]
    plan = rollout.plan_replica_set(replica_set(1), pods, NOW)
    assert plan.delete == ["unscheduled", "pending", "unready", "new-ready", "restarted"]


def test_min_ready_seconds_delay_availability() -> None:
    rs = replica_set(1)
    rs["spec"]["minReadySeconds"] = 30
    fresh = pod("a", ready="2026-12-02T06:59:50Z")
    assert rollout.plan_replica_set(rs, [fresh], NOW).status.get("availableReplicas") is None
    assert (
        rollout.plan_replica_set(rs, [fresh], NOW + timedelta(seconds=41)).status[
            "availableReplicas"
        ]
        == 1
    )


def test_pod_from_template() -> None:
    made = rollout.pod_from_template(replica_set(1))
    assert made["metadata"] == {
        "generateName": "web-h-",
        "namespace": "demo",
        "labels": {"app": "web", "pod-template-hash": "h"},
        "ownerReferences": [
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "web-h",
                "uid": "rs-1",
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ],
    }
    assert made["spec"] == {"containers": [{"name": "c", "image": "nginx"}]}


def obj(
    kind: str,
    name: str,
    uid: str,
    owner: str | None = None,
    deleting: bool = False,
    finalizers: list[str] | None = None,
) -> Json:
    meta: Json = {"name": name, "namespace": "demo", "uid": uid}
    if owner:
        meta["ownerReferences"] = [
            {
                "kind": "Deployment" if kind == "ReplicaSet" else "ReplicaSet",
                "uid": owner,
                "controller": True,
                "blockOwnerDeletion": True,
            }
        ]
    if deleting:
        meta["deletionTimestamp"] = "2026-12-02T07:00:00Z"
    if finalizers:
        meta["finalizers"] = finalizers
    return {"kind": kind, "metadata": meta}


KINDS = frozenset({"Deployment", "ReplicaSet"})


def test_garbage_collection_in_the_background() -> None:
    rs = obj("ReplicaSet", "web-h", "rs-1", owner="d-gone")
    pods = [obj("Pod", "web-h-1", "p-1", owner="rs-1"), obj("Pod", "web-h-2", "p-2", owner="rs-1")]
    first = rollout.collect([rs], [rs, *pods], KINDS)
    assert first.delete == [("ReplicaSet", "demo", "web-h", "Background")]
    second = rollout.collect([], pods, KINDS)
    assert second.delete == [
        ("Pod", "demo", "web-h-1", "Background"),
        ("Pod", "demo", "web-h-2", "Background"),
    ]
    lone = obj("Pod", "mine", "p-3")
    unknown = obj("Pod", "cr-owned", "p-4")
    unknown["metadata"]["ownerReferences"] = [{"kind": "Job", "uid": "j-1"}]
    assert rollout.collect([], [lone, unknown], KINDS).delete == []


def test_garbage_collection_in_the_foreground() -> None:
    d = obj("Deployment", "web", "d-1", deleting=True, finalizers=["foregroundDeletion"])
    rs = obj("ReplicaSet", "web-h", "rs-1", owner="d-1")
    pod_ = obj("Pod", "web-h-1", "p-1", owner="rs-1")
    step = rollout.collect([d, rs], [rs, pod_], KINDS)
    assert step.delete == [("ReplicaSet", "demo", "web-h", "Foreground")]
    assert step.finalize == []
    rs_deleting = obj(
        "ReplicaSet", "web-h", "rs-1", owner="d-1", deleting=True, finalizers=["foregroundDeletion"]
    )
    step = rollout.collect([d, rs_deleting], [rs_deleting, pod_], KINDS)
    assert step.delete == [("Pod", "demo", "web-h-1", "Background")]
    assert step.finalize == []
    done = rollout.collect([d, rs_deleting], [rs_deleting], KINDS)
    assert done.finalize == [("ReplicaSet", "demo", "web-h", "foregroundDeletion")]
    assert rollout.collect([d], [], KINDS).finalize == [
        ("Deployment", "demo", "web", "foregroundDeletion")
    ]


def test_orphaning_lets_the_dependents_go() -> None:
    d = obj("Deployment", "web", "d-1", deleting=True, finalizers=["orphan"])
    rs = obj("ReplicaSet", "web-h", "rs-1", owner="d-1")
    step = rollout.collect([d, rs], [rs], KINDS)
    assert (step.delete, step.orphan) == ([], [("ReplicaSet", "demo", "web-h", "d-1")])
    assert rollout.collect([d, rs], [], KINDS).finalize == [("Deployment", "demo", "web", "orphan")]


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        ({"matchLabels": {"app": "web"}}, {"app": "web", "x": "1"}, True),
        ({"matchLabels": {"app": "web"}}, {"app": "db"}, False),
        (
            {"matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]},
            {"tier": "b"},
            True,
        ),
        (
            {"matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["a"]}]},
            {"tier": "a"},
            False,
        ),
        ({"matchExpressions": [{"key": "tier", "operator": "Exists"}]}, {}, False),
        ({"matchExpressions": [{"key": "tier", "operator": "DoesNotExist"}]}, {}, True),
        ({}, {"any": "thing"}, True),
    ],
)
def test_selectors(selector: Json, labels: dict[str, str], matches: bool) -> None:
    assert rollout.selector_matches(selector, labels) is matches


def test_selector_string_as_the_scale_subresource_writes_it() -> None:
    selector = {
        "matchLabels": {"b": "2", "a": "1"},
        "matchExpressions": [
            {"key": "t", "operator": "In", "values": ["y", "x"]},
            {"key": "e", "operator": "Exists"},
            {"key": "n", "operator": "DoesNotExist"},
        ],
    }
    assert rollout.selector_string(selector) == "a=1,b=2,t in (x,y),e,!n"
