"""The kubelet's derivations, pure: quantities, QoS, cgroup names, shares/quota, labels.

Expected values are the kubelet's own (its helpers_linux_test.go and qos tests) or worked
out by hand from its formulas, never from the code under test.
"""

import json
import re
from fractions import Fraction
from typing import Any

import pytest
from pydantic import ValidationError

from kernel_gossip.core.cgroups import QosClass, identify
from kernel_gossip.core.podspec import (
    Pod,
    PodCgroupConfig,
    container_annotations,
    container_hash,
    container_labels,
    container_log_path,
    container_resources,
    log_directory_name,
    milli_cpu_to_quota,
    milli_cpu_to_shares,
    oom_score_adj,
    parse_manifests,
    parse_quantity,
    pod_cgroup_config,
    pod_cgroup_parent,
    qos_class,
    sandbox_annotations,
    sandbox_labels,
)

UID = "0f6b2a34-5c1d-4e7f-9a8b-1c2d3e4f5a6b"
GIB = 1024**3


def pod(*resources: dict[str, Any], **extra: Any) -> Pod:
    """A pod with one container per resources dict (requests/limits as in YAML)."""
    containers = [
        {"name": f"c{index}", "image": "localhost/x:1", "resources": res}
        for index, res in enumerate(resources)
    ]
    return Pod.model_validate(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
            "spec": {"containers": containers, **extra},
        }
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("500m", Fraction(1, 2)),
        ("0.5", Fraction(1, 2)),
        (".5", Fraction(1, 2)),
        ("+2", Fraction(2)),
        (2, Fraction(2)),
        (0.25, Fraction(1, 4)),
        ("1", Fraction(1)),
        ("100n", Fraction(1, 10_000_000)),
        ("250u", Fraction(1, 4000)),
        ("128Mi", Fraction(128 * 1024**2)),
        ("1.5Gi", Fraction(3 * 1024**3, 2)),
        ("1Ki", Fraction(1024)),
        ("2Ti", Fraction(2 * 1024**4)),
        ("1k", Fraction(1000)),
        ("1G", Fraction(10**9)),
        ("1E", Fraction(10**18)),
        ("1e3", Fraction(1000)),
        ("5E-3", Fraction(5, 1000)),
        ("-1", Fraction(-1)),
    ],
)
def test_quantities_parse_exactly(text: str | int | float, expected: Fraction) -> None:
    assert parse_quantity(text) == expected


@pytest.mark.parametrize("text", ["", "abc", "1.2.3", "5MiB", "1 Gi", "m", "0x10", "Gi"])
def test_malformed_quantities_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="not a quantity"):
        parse_quantity(text)


def test_a_boolean_is_not_a_quantity() -> None:
    with pytest.raises(ValueError, match="not a quantity"):
        parse_quantity(True)


@pytest.mark.parametrize(
    ("milli_cpu", "shares"),
    [(0, 2), (1, 2), (2, 2), (3, 3), (100, 102), (500, 512), (1000, 1024), (300_000, 262_144)],
)
def test_shares_follow_milli_cpu_to_shares(milli_cpu: int, shares: int) -> None:
    assert milli_cpu_to_shares(milli_cpu) == shares


@pytest.mark.parametrize(
    ("milli_cpu", "period", "quota"),
    [
        (0, 100_000, 0),
        (5, 100_000, 1000),
        (9, 100_000, 1000),
        (10, 100_000, 1000),
        (11, 100_000, 1100),
        (200, 100_000, 20_000),
        (500, 100_000, 50_000),
        (1000, 100_000, 100_000),
        (1500, 100_000, 150_000),
        (1500, 50_000, 75_000),
        (5, 20_000, 1000),
    ],
)
def test_quota_follows_milli_cpu_to_quota(milli_cpu: int, period: int, quota: int) -> None:
    assert milli_cpu_to_quota(milli_cpu, period) == quota


def test_cpu_rounds_up_to_a_whole_milli_cpu_and_memory_to_a_byte() -> None:
    resources = pod({"limits": {"cpu": "0.0001", "memory": "1.5"}}).spec.containers[0].resources
    assert resources.limits.cpu == 1
    assert resources.limits.memory == 2


def test_requests_default_to_limits_like_the_api_server() -> None:
    resources = pod({"limits": {"cpu": "500m", "memory": "1Gi"}, "requests": {"cpu": "100m"}})
    container = resources.spec.containers[0].resources
    assert container.requests.cpu == 100
    assert container.requests.memory == GIB


@pytest.mark.parametrize(
    ("resources", "qos"),
    [
        ({}, QosClass.BEST_EFFORT),
        ({"limits": {"cpu": "500m"}}, QosClass.BURSTABLE),
        ({"requests": {"memory": "64Mi"}}, QosClass.BURSTABLE),
        ({"limits": {"cpu": "1", "memory": "1Gi"}}, QosClass.GUARANTEED),
        (
            {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1000m"}},
            QosClass.GUARANTEED,
        ),
        (
            {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "999m"}},
            QosClass.BURSTABLE,
        ),
        ({"limits": {"cpu": "0", "memory": "0"}}, QosClass.BEST_EFFORT),
    ],
)
def test_qos_class_of_one_container(resources: dict[str, Any], qos: QosClass) -> None:
    assert qos_class(pod(resources)) is qos


def test_one_unlimited_container_makes_the_pod_burstable() -> None:
    full = {"limits": {"cpu": "1", "memory": "1Gi"}}
    assert qos_class(pod(full, full)) is QosClass.GUARANTEED
    assert qos_class(pod(full, {})) is QosClass.BURSTABLE


@pytest.mark.parametrize(
    ("qos", "parent"),
    [
        (QosClass.GUARANTEED, f"/kubepods/pod{UID}"),
        (QosClass.BURSTABLE, f"/kubepods/burstable/pod{UID}"),
        (QosClass.BEST_EFFORT, f"/kubepods/besteffort/pod{UID}"),
    ],
)
def test_pod_cgroup_parent_is_what_the_cgroup_model_recognises(qos: QosClass, parent: str) -> None:
    assert pod_cgroup_parent(qos, UID) == parent
    identity = identify(f"{parent}/{'ab' * 32}")
    assert (identity.pod_uid, identity.qos_class, identity.container_id) == (UID, qos, "ab" * 32)


def test_pod_cgroup_of_the_acceptance_nginx_pod() -> None:
    nginx = pod({"limits": {"cpu": "500m"}})
    assert pod_cgroup_config(nginx) == PodCgroupConfig(
        cpu_shares=512, cpu_quota_us=50_000, cpu_period_us=100_000, memory_limit_bytes=None
    )


def test_pod_cgroup_sums_limits_when_every_container_declares_them() -> None:
    both = pod(
        {"limits": {"cpu": "200m", "memory": "64Mi"}, "requests": {"cpu": "100m"}},
        {"limits": {"cpu": "300m", "memory": "32Mi"}, "requests": {"cpu": "50m"}},
    )
    assert pod_cgroup_config(both) == PodCgroupConfig(
        cpu_shares=153,  # (100 + 50) * 1024 // 1000
        cpu_quota_us=50_000,
        cpu_period_us=100_000,
        memory_limit_bytes=96 * 1024**2,
    )


def test_pod_cgroup_has_no_quota_when_one_container_is_unlimited() -> None:
    partial = pod({"limits": {"cpu": "200m", "memory": "64Mi"}}, {"requests": {"cpu": "300m"}})
    assert pod_cgroup_config(partial) == PodCgroupConfig(
        cpu_shares=512, cpu_quota_us=None, cpu_period_us=None, memory_limit_bytes=None
    )


def test_guaranteed_pod_cgroup_and_best_effort_pod_cgroup() -> None:
    guaranteed = pod({"limits": {"cpu": "2", "memory": "1Gi"}})
    assert pod_cgroup_config(guaranteed) == PodCgroupConfig(2048, 200_000, 100_000, GIB)
    assert pod_cgroup_config(pod({})) == PodCgroupConfig(2, None, None, None)


def test_container_resources_with_a_limit_only() -> None:
    nginx = pod({"limits": {"cpu": "500m"}})
    resources = container_resources(nginx, nginx.spec.containers[0], 4 * GIB)
    assert resources.cpu_shares == 512  # the request defaulted to the limit
    assert (resources.cpu_quota_us, resources.cpu_period_us) == (50_000, 100_000)
    assert resources.memory_limit_bytes == 0
    assert resources.oom_score_adj == 1000 - 1  # no memory request: just below BestEffort


def test_container_resources_without_a_limit_leave_quota_unset() -> None:
    requested = pod({"requests": {"cpu": "250m", "memory": "1Gi"}})
    resources = container_resources(requested, requested.spec.containers[0], 4 * GIB)
    assert (resources.cpu_shares, resources.cpu_quota_us, resources.cpu_period_us) == (
        256,
        0,
        100_000,
    )
    assert resources.oom_score_adj == 750  # 1000 - 1000 * 1Gi / 4Gi


def test_best_effort_container_gets_minimum_shares() -> None:
    best_effort = pod({})
    resources = container_resources(best_effort, best_effort.spec.containers[0], 4 * GIB)
    assert (resources.cpu_shares, resources.cpu_quota_us, resources.oom_score_adj) == (2, 0, 1000)


@pytest.mark.parametrize(
    ("qos", "memory_request", "adjust"),
    [
        (QosClass.GUARANTEED, GIB, -997),
        (QosClass.BEST_EFFORT, 0, 1000),
        (QosClass.BURSTABLE, 0, 999),
        (QosClass.BURSTABLE, GIB, 750),
        (QosClass.BURSTABLE, 3 * GIB, 250),
        (QosClass.BURSTABLE, 4 * GIB - 1, 3),  # 1000 - 999 = 1, raised to 3
        (QosClass.BURSTABLE, 8 * GIB, 3),
        (QosClass.BURSTABLE, 1, 999),  # rounds to 1000, lowered to 999
    ],
)
def test_oom_score_adj(qos: QosClass, memory_request: int, adjust: int) -> None:
    assert oom_score_adj(qos, memory_request, 4 * GIB) == adjust


def test_oom_score_adj_needs_a_memory_capacity() -> None:
    with pytest.raises(ValueError, match="capacity"):
        oom_score_adj(QosClass.BURSTABLE, 1, 0)


def test_sandbox_labels_carry_the_kubelet_identity_over_pod_labels() -> None:
    labelled = Pod.model_validate(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "web",
                "labels": {"app": "web", "io.kubernetes.pod.uid": "forged"},
                "annotations": {"team": "a"},
            },
            "spec": {"containers": [{"name": "c", "image": "i"}]},
        }
    )
    assert sandbox_labels(labelled, UID) == {
        "app": "web",
        "io.kubernetes.pod.name": "web",
        "io.kubernetes.pod.namespace": "default",
        "io.kubernetes.pod.uid": UID,
    }
    assert sandbox_annotations(labelled) == {"team": "a"}


def test_container_labels_are_identity_only() -> None:
    web = pod({})
    assert container_labels(web, UID, web.spec.containers[0]) == {
        "io.kubernetes.container.name": "c0",
        "io.kubernetes.pod.name": "web",
        "io.kubernetes.pod.namespace": "shop",
        "io.kubernetes.pod.uid": UID,
    }


def test_container_annotations() -> None:
    web = Pod.model_validate(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "web"},
            "spec": {
                "terminationGracePeriodSeconds": 5,
                "containers": [
                    {"name": "nginx", "image": "i", "ports": [{"containerPort": 80}]},
                    {"name": "side", "image": "i"},
                ],
            },
        }
    )
    nginx, side = web.spec.containers
    annotations = container_annotations(web, nginx)
    assert annotations["io.kubernetes.container.restartCount"] == "0"
    assert annotations["io.kubernetes.pod.terminationGracePeriod"] == "5"
    assert annotations["io.kubernetes.container.terminationMessagePath"] == "/dev/termination-log"
    assert annotations["io.kubernetes.container.terminationMessagePolicy"] == "File"
    assert json.loads(annotations["io.kubernetes.container.ports"]) == [
        {"containerPort": 80, "protocol": "TCP"}
    ]
    assert "io.kubernetes.container.ports" not in container_annotations(web, side)
    assert annotations["io.kubernetes.container.hash"] == container_hash(nginx)


def test_container_hash_changes_with_the_spec_only() -> None:
    first, same, other = (
        pod({"limits": {"cpu": cpu}}).spec.containers[0] for cpu in ("1", "1000m", "2")
    )
    assert container_hash(first) == container_hash(same)
    assert container_hash(first) != container_hash(other)
    assert len(container_hash(first)) <= 8
    int(container_hash(first), 16)


def test_log_locations_follow_the_kubelet() -> None:
    web = pod({})
    assert log_directory_name(web, UID) == f"shop_web_{UID}"
    assert container_log_path(web.spec.containers[0]) == "c0/0.log"


def test_the_acceptance_manifest_shape_validates() -> None:
    nginx = Pod.model_validate(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": "nginx-monitored", "labels": {"app": "nginx"}},
            "spec": {
                "containers": [
                    {
                        "name": "nginx",
                        "image": "localhost/kernel-gossip/nginx:1",
                        "imagePullPolicy": "Never",
                        "command": ["nginx"],
                        "args": ["-g", "daemon off;"],
                        "env": [{"name": "A", "value": "b"}],
                        "resources": {"limits": {"cpu": "500m"}},
                    }
                ]
            },
        }
    )
    assert nginx.key == "default/nginx-monitored"
    assert nginx.spec.containers[0].args == ["-g", "daemon off;"]


def _invalid(document: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as caught:
        Pod.model_validate(document)
    return str(caught.value)


def _document(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "web"},
        "spec": {"containers": [{"name": "c", "image": "i"}]},
    }
    document.update(changes)
    return document


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kind": "Deployment"}, "kind"),
        ({"apiVersion": "apps/v1"}, "apiVersion"),
        ({"metadata": {"name": "Web_1"}}, "DNS-1123 subdomain"),
        ({"metadata": {"name": "web", "namespace": "a.b"}}, "DNS-1123 label"),
        ({"spec": {"containers": []}}, "at least 1"),
        ({"spec": {"containers": [{"name": "C", "image": "i"}]}}, "DNS-1123 label"),
        (
            {"spec": {"containers": [{"name": "c", "image": "i"}, {"name": "c", "image": "j"}]}},
            "unique",
        ),
        ({"spec": {"containers": [{"name": "c", "image": "i"}], "volumes": []}}, "volumes"),
        (
            {"spec": {"containers": [{"name": "c", "image": "i", "imagePullPolicy": "Sometimes"}]}},
            "imagePullPolicy",
        ),
        (
            {"spec": {"containers": [{"name": "c", "image": "i"}], "restartPolicy": "No"}},
            "restartPolicy",
        ),
        (
            {
                "spec": {
                    "containers": [
                        {"name": "c", "image": "i", "resources": {"limits": {"cpu": "lots"}}}
                    ]
                }
            },
            "not a quantity",
        ),
        (
            {
                "spec": {
                    "containers": [
                        {"name": "c", "image": "i", "resources": {"limits": {"cpu": "-1"}}}
                    ]
                }
            },
            "greater than or equal to 0",
        ),
        (
            {
                "spec": {
                    "containers": [
                        {
                            "name": "c",
                            "image": "i",
                            "resources": {"limits": {"nvidia.com/gpu": "1"}},
                        }
                    ]
                }
            },
            "nvidia.com/gpu",
        ),
        (
            {
                "spec": {
                    "containers": [
                        {
                            "name": "c",
                            "image": "i",
                            "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}},
                        }
                    ]
                }
            },
            "cpu request must be less than or equal to cpu limit",
        ),
    ],
)
def test_invalid_manifests_are_refused_with_the_reason(
    changes: dict[str, Any], message: str
) -> None:
    assert message in _invalid(_document(**changes))


NGINX_YAML = """\
apiVersion: v1
kind: Pod
metadata: {name: a}
spec:
  containers: [{name: c, image: i, resources: {limits: {cpu: 500m, memory: 64Mi}}}]
"""


def test_parse_manifests_reads_every_document() -> None:
    pods = parse_manifests(NGINX_YAML + "---\n" + NGINX_YAML.replace("name: a", "name: b"), "f")
    assert [p.key for p in pods] == ["default/a", "default/b"]


def test_parsed_quantities_serialise_back_as_kubernetes_quantities() -> None:
    (nginx,) = parse_manifests(NGINX_YAML, "f")
    resources = nginx.model_dump(by_alias=True)["spec"]["containers"][0]["resources"]
    assert resources["limits"] == {"cpu": "500m", "memory": str(64 * 1024**2)}
    assert resources["requests"] == resources["limits"]  # defaulted, as the API server does
    assert parse_manifests(nginx.model_dump_json(by_alias=True), "again") == [nginx]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "f: no Pod manifest in it"),
        ("- 1\n- 2\n", "f: a Pod manifest is a mapping, not list"),
        ("a: [\n", "f: not YAML:"),
        (NGINX_YAML.replace("500m", "half"), "f: spec.containers.0.resources.limits.cpu: "),
        (NGINX_YAML.replace("name: c,", "name: c, volumeMounts: [],"), "volumeMounts: Extra"),
        (NGINX_YAML + "---\n" + NGINX_YAML, "f: the same pod twice: default/a"),
        (NGINX_YAML + "---\nkind: Pod\n", "f (document 2): apiVersion: Field required"),
    ],
)
def test_parse_manifests_errors_are_one_line_with_the_place(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)) as caught:
        parse_manifests(text, "f")
    assert "\n" not in str(caught.value)
