"""The operator's pure parts: reading pods, PodMetrics and HPAs, and the webhook's refusals."""

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError
from signal_strategies import BadRequest, bad_bodies

from kernel_gossip.kube.client import ApiError
from kernel_gossip.operator.analysis import ScaledWorkload
from kernel_gossip.operator.kube import core_path, group_path
from kernel_gossip.operator.podfacts import (
    autoscaler_for,
    container_cpu,
    controller_of,
    pod_event,
    pod_metrics_cores,
)
from kernel_gossip.operator.webhook import api_refusal, bearer_matches, describe
from kernel_gossip.schema.signal import parse_signal

POD = {
    "metadata": {
        "name": "web-7d4b9c-x2x",
        "namespace": "shop",
        "uid": "1f0c6a2e",
        "ownerReferences": [
            {"kind": "Node", "name": "n", "controller": False},
            {
                "apiVersion": "apps/v1",
                "kind": "ReplicaSet",
                "name": "web-7d4b9c",
                "controller": True,
            },
        ],
    },
    "spec": {
        "containers": [
            {
                "name": "nginx",
                "resources": {"limits": {"cpu": "500m"}, "requests": {"cpu": "250m"}},
            },
            {"name": "sidecar", "resources": {"limits": {"cpu": "1"}}},
        ]
    },
}
POD_METRICS = {
    "kind": "PodMetrics",
    "apiVersion": "metrics.k8s.io/v1beta1",
    "metadata": {"name": "web-7d4b9c-x2x", "namespace": "shop"},
    "containers": [
        {"name": "nginx", "usage": {"cpu": "348795234n", "memory": "2Mi"}},
        {"name": "sidecar", "usage": {"cpu": "1200u", "memory": "1Mi"}},
    ],
}


def test_container_limit_and_request_from_the_pod_spec() -> None:
    assert container_cpu(POD, "nginx") == (0.5, 0.25)
    limit, request = container_cpu(POD, None)
    assert limit == pytest.approx(1.5)
    assert request is None  # the sidecar has no request: the pod's total is unknown
    assert container_cpu(POD, "absent") == (None, None)
    assert container_cpu({}, "nginx") == (None, None)


def test_pod_metrics_usage_of_the_container_or_the_pod() -> None:
    assert pod_metrics_cores(POD_METRICS, "nginx") == pytest.approx(0.348795234)
    assert pod_metrics_cores(POD_METRICS, None) == pytest.approx(0.349995234)
    assert pod_metrics_cores(POD_METRICS, "absent") is None
    assert pod_metrics_cores({"containers": [{"usage": {"cpu": "bogus"}}]}, None) is None


def test_controller_is_the_owner_marked_controller() -> None:
    assert controller_of(POD) == ("ReplicaSet", "web-7d4b9c")
    assert controller_of({"metadata": {}}) is None


def test_autoscaler_matches_the_scale_target() -> None:
    hpa = {
        "metadata": {"name": "web"},
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "maxReplicas": 8},
        "status": {"currentReplicas": 3},
    }
    other = {
        "metadata": {"name": "api"},
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "api"}},
    }
    found = autoscaler_for([other, hpa], [("ReplicaSet", "web-7d4b9c"), ("Deployment", "web")])
    assert found == ScaledWorkload("Deployment", "web", "web", current_replicas=3, max_replicas=8)
    assert autoscaler_for([other], [("Deployment", "web")]) is None


def test_autoscaler_reads_the_hpas_own_cpu_figures() -> None:
    """autoscaling/v2 as the API serves it: the target in spec.metrics, the reading in
    status.currentMetrics."""
    cpu = {"type": "Resource", "resource": {"name": "cpu"}}
    memory = {"type": "Resource", "resource": {"name": "memory"}}
    hpa = {
        "metadata": {"name": "web"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 1,
            "maxReplicas": 10,
            "metrics": [
                {
                    **memory,
                    "resource": {
                        "name": "memory",
                        "target": {"type": "Utilization", "averageUtilization": 70},
                    },
                },
                {
                    **cpu,
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": 80},
                    },
                },
            ],
        },
        "status": {
            "currentReplicas": 2,
            "desiredReplicas": 2,
            "currentMetrics": [
                {
                    **cpu,
                    "resource": {
                        "name": "cpu",
                        "current": {"averageUtilization": 41, "averageValue": "41m"},
                    },
                },
            ],
        },
    }
    found = autoscaler_for([hpa], [("Deployment", "web")])
    assert found == ScaledWorkload(
        "Deployment", "web", "web", 2, 10, cpu_utilization_percent=41, cpu_target_percent=80
    )
    unknown = {**hpa, "status": {"currentReplicas": 2, "currentMetrics": [{"type": ""}]}}
    found = autoscaler_for([unknown], [("Deployment", "web")])
    assert found is not None
    assert (found.cpu_utilization_percent, found.cpu_target_percent) == (None, 80)


def test_event_is_about_the_pod() -> None:
    event = pod_event(POD, "KernelThrottling", "x" * 5000, warning=True)
    assert event["involvedObject"] == {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": "web-7d4b9c-x2x",
        "namespace": "shop",
        "uid": "1f0c6a2e",
    }
    assert (event["reason"], event["type"], len(event["message"])) == (
        "KernelThrottling",
        "Warning",
        1024,
    )
    assert event["metadata"] == {"generateName": "web-7d4b9c-x2x.", "namespace": "shop"}


def test_paths() -> None:
    assert core_path("shop", "pods", "a") == "/api/v1/namespaces/shop/pods/a"
    assert (
        group_path("kernel-gossip.dev/v1alpha1", "kg", "kernelwhispers", "a-kw", status=True)
        == "/apis/kernel-gossip.dev/v1alpha1/namespaces/kg/kernelwhispers/a-kw/status"
    )


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        ("Bearer s3cret", True),
        ("bearer s3cret", True),
        ("Bearer  s3cret ", True),
        ("Bearer s3cre", False),
        ("Basic s3cret", False),
        ("s3cret", False),
        ("", False),
        (None, False),
        ("Bearer ", False),
    ],
)
def test_bearer_token(header: str | None, ok: bool) -> None:
    assert bearer_matches(header, "s3cret") is ok


def _validation_error(body: bytes) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        parse_signal(body)
    return caught.value


@given(bad_bodies)
def test_every_refusal_is_a_one_line_4xx(bad: BadRequest) -> None:
    refusal = describe(_validation_error(bad.body))
    assert 400 <= refusal.status < 500
    assert "\n" not in refusal.message
    assert len(refusal.message) <= 400


def test_refusals_are_classified() -> None:
    assert describe(_validation_error(b"{")).reason == "bad_json"
    unknown = describe(_validation_error(b'{"type": "oom_kill"}'))
    assert (unknown.status, unknown.reason) == (422, "unknown_type")
    missing = describe(_validation_error(json.dumps({"type": "cpu_throttle"}).encode()))
    assert missing.reason == "invalid"
    assert missing.message.startswith("pod_name: Field required")


def test_api_refusals_blame_the_right_side() -> None:
    assert api_refusal(ApiError(422, "spec.x: bad", reason="Invalid")).status == 422
    for status in (401, 403, 404, 429, 500, 503):
        assert api_refusal(ApiError(status, "")).status == 503


@given(st.text(max_size=50))
def test_bearer_never_raises(header: str) -> None:
    """Any header gets an answer, and a yes only where the token itself was sent."""
    matched = bearer_matches(header, "token")
    assert isinstance(matched, bool)
    assert not matched or "token" in header


@given(
    st.sampled_from(["Bearer", "bearer", "BEARER", "Basic", "Token", ""])
    | st.text(st.characters(blacklist_characters=" "), max_size=10),
    st.just("token") | st.text(max_size=20),
    st.sampled_from(["", " ", "\t "]),
)
def test_bearer_is_the_scheme_in_any_case_and_the_exact_token(
    scheme: str, token: str, padding: str
) -> None:
    header = f"{scheme} {padding}{token}{padding}"
    expected = scheme.lower() == "bearer" and token.strip() == "token"
    assert bearer_matches(header, "token") is expected
