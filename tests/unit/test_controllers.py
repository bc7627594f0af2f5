"""What the lab's controller-manager reads from API objects (kernel_gossip.lab.controllers)."""

from datetime import UTC, datetime, timedelta

import pytest

from kernel_gossip.core.autoscaling import PodMetric, PodSample
from kernel_gossip.lab import controllers


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("15s", 15.0),
        ("1m30s", 90.0),
        ("15.012s", 15.012),
        ("500ms", 0.5),
        ("1h", 3600.0),
        ("2us", 2e-6),
        ("0s", 0.0),
    ],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert controllers.parse_go_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "15", "s", "15 s", "1x", "-1s"])
def test_bad_go_durations(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        controllers.parse_go_duration(text)


def test_pod_sample_reads_phase_readiness_start_and_summed_requests() -> None:
    pod = {
        "metadata": {"name": "web-1"},
        "spec": {
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},
                {"name": "b", "resources": {"requests": {"cpu": "0.25"}}},
            ]
        },
        "status": {
            "phase": "Running",
            "startTime": "2026-12-02T07:00:00Z",
            "conditions": [
                {"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-02T07:00:05Z"}
            ],
        },
    }
    assert controllers.pod_sample(pod) == PodSample(
        name="web-1",
        phase="Running",
        deleting=False,
        ready=True,
        ready_since=datetime(2026, 12, 2, 7, 0, 5, tzinfo=UTC),
        started=datetime(2026, 12, 2, 7, 0, 0, tzinfo=UTC),
        requests={"cpu": 350},  # b has no memory request: the pod's memory is unknown
    )
    pending = controllers.pod_sample({"metadata": {"name": "p", "deletionTimestamp": "x"}})
    assert (pending.phase, pending.deleting, pending.ready, pending.requests) == (
        "Pending",
        True,
        None,
        {},
    )


def test_pod_metrics_sum_containers_and_skip_incomplete_pods() -> None:
    items = [
        {
            "metadata": {"name": "a"},
            "timestamp": "2026-12-02T07:00:00Z",
            "window": "15.004s",
            "containers": [
                {"usage": {"cpu": "50m", "memory": "10Mi"}},
                {"usage": {"cpu": "25000000n", "memory": "1Mi"}},
            ],
        },
        {
            "metadata": {"name": "b"},
            "timestamp": "2026-12-02T07:00:01Z",
            "window": "15s",
            "containers": [{"usage": {"cpu": "10m"}}],
        },
    ]
    found = controllers.pod_metrics(items)
    when = datetime(2026, 12, 2, 7, 0, 0, tzinfo=UTC)
    assert found["cpu"]["a"] == PodMetric(75, when, timedelta(seconds=15.004))
    assert found["cpu"]["b"].millis == 10
    assert found["memory"] == {
        "a": PodMetric(11 * 1024 * 1024 * 1000, when, timedelta(seconds=15.004))
    }


def test_event_names_the_workload_and_the_controller() -> None:
    deployment = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "demo", "uid": "u", "resourceVersion": "7"},
    }
    now = datetime(2026, 12, 2, 7, 0, 0, tzinfo=UTC)
    made = controllers.event(
        deployment,
        "deployment-controller",
        "Normal",
        "ScalingReplicaSet",
        "Scaled up replica set web-x from 0 to 2",
        now,
    )
    assert made["involvedObject"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "web",
        "namespace": "demo",
        "uid": "u",
        "resourceVersion": "7",
    }
    assert (made["type"], made["reason"], made["source"]) == (
        "Normal",
        "ScalingReplicaSet",
        {"component": "deployment-controller"},
    )
    assert made["metadata"] == {"generateName": "web.", "namespace": "demo"}
    assert made["firstTimestamp"] == made["lastTimestamp"] == "2026-12-02T07:00:00Z"


def test_paths() -> None:
    assert controllers.object_path("Deployment", "demo", "web", "scale") == (
        "/apis/apps/v1/namespaces/demo/deployments/web/scale"
    )
    assert controllers.object_path("Pod", "demo") == "/api/v1/namespaces/demo/pods"
