"""The lab API server as a cluster's: the built-in resources the lab kubelet, controller and
metrics stand-ins use, driven with the real kubectl and asserted as a user sees them
(defaults, 422s, binding, graceful deletion, Tables, kubectl top, kubectl logs, deployments,
scale, HPAs). Nothing reconciles here: where a controller or kubelet would write a status,
the test writes it as they do."""

import json
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from kernel_gossip.lab.apiserver import LabApi

JsonObject = dict[str, Any]
AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"
NODE = "lab-node"

pytestmark = pytest.mark.slow


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def run_kubectl(
    api: LabApi, *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(api.kubectl), "--kubeconfig", str(api.kubeconfig), *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=60,
    )


def kubectl(api: LabApi, *args: str, stdin: str | None = None) -> str:
    result = run_kubectl(api, *args, stdin=stdin)
    assert result.returncode == 0, result.stderr
    return result.stdout


def kubectl_error(api: LabApi, *args: str, stdin: str | None = None) -> str:
    result = run_kubectl(api, *args, stdin=stdin)
    assert result.returncode != 0, result.stdout
    return result.stderr.strip()


def table(text: str) -> list[list[str]]:
    """kubectl's columns: cells are separated by two spaces or more."""
    return [re.split(r"\s{2,}", line.strip()) for line in text.strip().splitlines()]


AGE = re.compile(r"\d+s")


@pytest.fixture(scope="module")
def ns(lab_api: LabApi) -> str:
    name = unique("cluster")
    kubectl(lab_api, "create", "namespace", name)
    return name


@pytest.fixture(scope="module")
def node(lab_api: LabApi) -> JsonObject:
    """The Node a lab kubelet registers (capacity 2 CPUs, 4 GiB, Ready)."""
    body = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": NODE, "labels": {"kubernetes.io/hostname": NODE}},
        "status": {
            "capacity": {"cpu": "2", "memory": "4Gi", "pods": "110"},
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "KubeletReady",
                    "message": "kubelet is posting ready status",
                }
            ],
            "addresses": [
                {"type": "InternalIP", "address": "10.0.0.5"},
                {"type": "Hostname", "address": NODE},
            ],
            "nodeInfo": {
                "kubeletVersion": "v1.36.4",
                "osImage": "Debian GNU/Linux 12 (bookworm)",
                "kernelVersion": "6.18.0",
                "containerRuntimeVersion": "containerd://1.7.24",
                "operatingSystem": "linux",
                "architecture": "amd64",
                "machineID": "",
                "systemUUID": "",
                "bootID": "",
                "kubeProxyVersion": "",
            },
        },
    }
    response = lab_api.request("POST", "/api/v1/nodes", body)
    assert response.status in (201, 409), response.text
    return lab_api.expect(200, "GET", f"/api/v1/nodes/{NODE}")


def pods_path(ns: str) -> str:
    return f"/api/v1/namespaces/{ns}/pods"


def create_pod(
    api: LabApi, ns: str, name: str, containers: list[str], image: str = "busybox:1.36"
) -> JsonObject:
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"containers": [{"name": c, "image": image} for c in containers]},
    }
    return api.expect(201, "POST", pods_path(ns), body)


def bind(api: LabApi, ns: str, name: str) -> None:
    binding = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name},
        "target": {"kind": "Node", "name": NODE},
    }
    api.expect(201, "POST", f"{pods_path(ns)}/{name}/binding", binding)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def running_status(
    pod: JsonObject, restarts: int = 0, last_finished: datetime | None = None, ip: str = "10.88.0.9"
) -> JsonObject:
    """The status a kubelet writes for a pod whose containers all run and are ready."""
    started = rfc3339(datetime.now(UTC))
    statuses = []
    for c in pod["spec"]["containers"]:
        status: JsonObject = {
            "name": c["name"],
            "image": c["image"],
            "imageID": "",
            "containerID": f"containerd://{uuid.uuid4().hex}",
            "ready": True,
            "started": True,
            "restartCount": restarts,
            "state": {"running": {"startedAt": started}},
        }
        if last_finished is not None:
            status["lastState"] = {
                "terminated": {
                    "exitCode": 1,
                    "reason": "Error",
                    "containerID": f"containerd://{uuid.uuid4().hex}",
                    "startedAt": rfc3339(last_finished - timedelta(seconds=5)),
                    "finishedAt": rfc3339(last_finished),
                }
            }
        statuses.append(status)
    conditions = [
        {"type": kind, "status": "True", "lastTransitionTime": started}
        for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready")
    ]
    return {
        "phase": "Running",
        "conditions": conditions,
        "hostIP": "10.0.0.5",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "startTime": started,
        "qosClass": pod["status"]["qosClass"],
        "containerStatuses": statuses,
    }


def write_status(api: LabApi, ns: str, name: str, status: JsonObject) -> JsonObject:
    pod = api.expect(200, "GET", f"{pods_path(ns)}/{name}")
    pod["status"] = status
    return api.expect(200, "PUT", f"{pods_path(ns)}/{name}/status", pod)


# --- discovery -------------------------------------------------------------------------------


def test_discovery_lists_the_built_in_groups(lab_api: LabApi) -> None:
    core = {r["name"] for r in lab_api.expect(200, "GET", "/api/v1")["resources"]}
    assert {
        "nodes",
        "nodes/status",
        "pods/binding",
        "pods/log",
        "secrets",
        "configmaps",
        "serviceaccounts",
    } <= core
    groups = {g["name"]: g for g in lab_api.expect(200, "GET", "/apis")["groups"]}
    assert groups["apps"]["preferredVersion"]["groupVersion"] == "apps/v1"
    assert groups["autoscaling"]["preferredVersion"]["groupVersion"] == "autoscaling/v2"
    assert groups["metrics.k8s.io"]["preferredVersion"]["groupVersion"] == "metrics.k8s.io/v1beta1"
    aggregated = lab_api.request("GET", "/apis", accept=AGGREGATED).json()
    names = {g["metadata"]["name"] for g in aggregated["items"]}
    assert {"apps", "autoscaling", "metrics.k8s.io", "kernel-gossip.dev"} <= names
    apps = {r["name"]: r for r in lab_api.expect(200, "GET", "/apis/apps/v1")["resources"]}
    assert {"deployments/status", "deployments/scale", "replicasets/scale"} <= set(apps)
    assert apps["deployments"]["shortNames"] == ["deploy"]
    assert apps["deployments"]["categories"] == ["all"]
    resources = kubectl(lab_api, "api-resources", "--api-group=apps", "-o", "name").split()
    assert resources == ["deployments.apps", "replicasets.apps"]


# --- pods: defaults, validation, binding, graceful deletion, Table ----------------------------


def test_kubectl_run_creates_a_pod_defaulted_as_kube_apiserver_does(
    lab_api: LabApi, ns: str
) -> None:
    kubectl(lab_api, "run", "web", "--image=nginx", "-n", ns)
    pod = json.loads(kubectl(lab_api, "get", "pod", "web", "-n", ns, "-o", "json"))
    spec = pod["spec"]
    assert pod["metadata"]["generation"] == 1
    assert pod["metadata"]["labels"] == {"run": "web"}
    assert spec["restartPolicy"] == "Always"
    assert spec["terminationGracePeriodSeconds"] == 30
    assert spec["dnsPolicy"] == "ClusterFirst"
    assert spec["schedulerName"] == "default-scheduler"
    assert spec["securityContext"] == {}
    assert spec["enableServiceLinks"] is True
    assert spec["priority"] == 0
    assert spec["serviceAccountName"] == "default"
    assert {t["key"]: t["tolerationSeconds"] for t in spec["tolerations"]} == {
        "node.kubernetes.io/not-ready": 300,
        "node.kubernetes.io/unreachable": 300,
    }
    (container,) = spec["containers"]
    assert container["imagePullPolicy"] == "Always", "no tag means :latest"
    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert container["terminationMessagePolicy"] == "File"
    assert pod["status"] == {"phase": "Pending", "qosClass": "BestEffort"}


@pytest.mark.parametrize(
    ("image", "policy"),
    [("nginx:1.27", "IfNotPresent"), ("nginx:latest", "Always"), ("lab/busybox", "Always")],
)
def test_image_pull_policy_follows_the_tag(
    lab_api: LabApi, ns: str, image: str, policy: str
) -> None:
    name = unique("pull")
    pod = create_pod(lab_api, ns, name, ["app"], image=image)
    assert pod["spec"]["containers"][0]["imagePullPolicy"] == policy


def test_limits_default_the_requests_and_give_the_qos_class(lab_api: LabApi, ns: str) -> None:
    body = {
        "metadata": {"name": unique("qos")},
        "spec": {
            "containers": [
                {
                    "name": "app",
                    "image": "busybox",
                    "resources": {"limits": {"cpu": "300m", "memory": "64Mi"}},
                }
            ]
        },
    }
    pod = lab_api.expect(201, "POST", pods_path(ns), body)
    assert pod["spec"]["containers"][0]["resources"]["requests"] == {
        "cpu": "300m",
        "memory": "64Mi",
    }
    assert pod["status"]["qosClass"] == "Guaranteed"
    body["metadata"]["name"] = unique("qos")
    body["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "100m"}}
    assert lab_api.expect(201, "POST", pods_path(ns), body)["status"]["qosClass"] == "Burstable"


BAD_PODS = [
    (
        {"metadata": {"name": "no-image"}, "spec": {"containers": [{"name": "app"}]}},
        'Pod "no-image" is invalid: spec.containers[0].image: Required value',
    ),
    (
        {
            "metadata": {"name": "twice"},
            "spec": {"containers": [{"name": "app", "image": "a"}, {"name": "app", "image": "b"}]},
        },
        'Pod "twice" is invalid: spec.containers[1].name: Duplicate value: "app"',
    ),
    (
        {"metadata": {"name": "none"}, "spec": {"containers": []}},
        'Pod "none" is invalid: spec.containers: Required value',
    ),
    (
        {
            "metadata": {"name": "policy"},
            "spec": {"restartPolicy": "Sometimes", "containers": [{"name": "app", "image": "a"}]},
        },
        'Pod "policy" is invalid: spec.restartPolicy: Unsupported value: "Sometimes": '
        'supported values: "Always", "OnFailure", "Never"',
    ),
    (
        {"metadata": {"name": "Bad_Name"}, "spec": {"containers": [{"name": "app", "image": "a"}]}},
        'Pod "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 '
        "subdomain must consist of",
    ),
    (
        {
            "metadata": {"name": "greedy"},
            "spec": {
                "containers": [
                    {
                        "name": "app",
                        "image": "a",
                        "resources": {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}},
                    }
                ]
            },
        },
        'Pod "greedy" is invalid: spec.containers[0].resources.requests[cpu]: Invalid value: "2": '
        "must be less than or equal to cpu limit of 1",
    ),
]


@pytest.mark.parametrize(("body", "message"), BAD_PODS, ids=[m.split('"')[1] for _, m in BAD_PODS])
def test_a_bad_pod_gets_the_apis_422(
    lab_api: LabApi, ns: str, body: JsonObject, message: str
) -> None:
    response = lab_api.request("POST", pods_path(ns), body)
    assert response.status == 422, response.text
    status = response.json()
    assert (status["kind"], status["reason"], status["details"]["kind"]) == (
        "Status",
        "Invalid",
        "Pod",
    )
    assert status["message"].startswith(message), status["message"]
    manifest = json.dumps({"apiVersion": "v1", "kind": "Pod", **body})
    assert kubectl_error(lab_api, "create", "-n", ns, "-f", "-", stdin=manifest).startswith(
        f"The {message}"
    )


def test_a_pods_spec_is_immutable_but_for_its_images(lab_api: LabApi, ns: str) -> None:
    name = unique("frozen")
    pod = create_pod(lab_api, ns, name, ["app"])
    pod["spec"]["containers"][0]["image"] = "busybox:1.37"
    pod = lab_api.expect(200, "PUT", f"{pods_path(ns)}/{name}", pod)
    assert pod["metadata"]["generation"] == 2, "a spec change bumps the generation"
    pod["spec"]["restartPolicy"] = "Never"
    response = lab_api.request("PUT", f"{pods_path(ns)}/{name}", pod)
    assert response.status == 422
    assert (
        "spec: Forbidden: pod updates may not change fields other than"
        in response.json()["message"]
    )


def test_binding_assigns_the_node_once(lab_api: LabApi, ns: str, node: JsonObject) -> None:
    name = unique("bound")
    create_pod(lab_api, ns, name, ["app"])
    bind(lab_api, ns, name)
    pod = lab_api.expect(200, "GET", f"{pods_path(ns)}/{name}")
    assert pod["spec"]["nodeName"] == NODE
    (scheduled,) = pod["status"]["conditions"]
    assert (scheduled["type"], scheduled["status"]) == ("PodScheduled", "True")
    assert scheduled["lastTransitionTime"]
    binding = {
        "apiVersion": "v1",
        "kind": "Binding",
        "metadata": {"name": name},
        "target": {"name": "other"},
    }
    again = lab_api.request("POST", f"{pods_path(ns)}/{name}/binding", binding)
    assert again.status == 409
    assert f'pod {name} is already assigned to node "{NODE}"' in again.json()["message"]
    nodes = lab_api.expect(
        200, "GET", pods_path(ns), query={"fieldSelector": f"spec.nodeName={NODE}"}
    )
    assert name in {p["metadata"]["name"] for p in nodes["items"]}


def test_deleting_a_running_pod_is_graceful_until_the_kubelets_zero_grace_delete(
    lab_api: LabApi, ns: str, node: JsonObject
) -> None:
    name = unique("graceful")
    pod = create_pod(lab_api, ns, name, ["app"])
    bind(lab_api, ns, name)
    write_status(lab_api, ns, name, running_status(pod))
    kubectl(lab_api, "delete", "pod", name, "-n", ns, "--wait=false")
    kept = lab_api.expect(200, "GET", f"{pods_path(ns)}/{name}")
    assert kept["metadata"]["deletionGracePeriodSeconds"] == 30
    deadline = datetime.fromisoformat(kept["metadata"]["deletionTimestamp"])
    assert timedelta(seconds=25) < deadline - datetime.now(UTC) <= timedelta(seconds=31)
    assert table(kubectl(lab_api, "get", "pod", name, "-n", ns))[1][2] == "Terminating"
    lab_api.expect(200, "DELETE", f"{pods_path(ns)}/{name}", query={"gracePeriodSeconds": "0"})
    assert lab_api.request("GET", f"{pods_path(ns)}/{name}").status == 404


def test_a_grace_period_asked_for_wins_and_unbound_pods_go_at_once(
    lab_api: LabApi, ns: str, node: JsonObject
) -> None:
    name = unique("short")
    pod = create_pod(lab_api, ns, name, ["app"])
    bind(lab_api, ns, name)
    write_status(lab_api, ns, name, running_status(pod))
    kubectl(lab_api, "delete", "pod", name, "-n", ns, "--grace-period=5", "--wait=false")
    assert (
        lab_api.expect(200, "GET", f"{pods_path(ns)}/{name}")["metadata"][
            "deletionGracePeriodSeconds"
        ]
        == 5
    )
    lab_api.expect(200, "DELETE", f"{pods_path(ns)}/{name}", query={"gracePeriodSeconds": "0"})
    unbound = unique("unbound")
    create_pod(lab_api, ns, unbound, ["app"])
    kubectl(lab_api, "delete", "pod", unbound, "-n", ns, "--wait=false")
    assert lab_api.request("GET", f"{pods_path(ns)}/{unbound}").status == 404


def test_kubectl_get_pods_shows_kube_apiservers_columns(
    lab_api: LabApi, ns: str, node: JsonObject
) -> None:
    name = unique("columns")
    pod = create_pod(lab_api, ns, name, ["app", "side"])
    header, row = table(kubectl(lab_api, "get", "pod", name, "-n", ns, "-o", "wide"))
    assert header == [
        "NAME",
        "READY",
        "STATUS",
        "RESTARTS",
        "AGE",
        "IP",
        "NODE",
        "NOMINATED NODE",
        "READINESS GATES",
    ]
    assert row[:4] == [name, "0/2", "Pending", "0"]
    assert AGE.fullmatch(row[4])
    assert row[5:] == ["<none>", "<none>", "<none>", "<none>"]
    bind(lab_api, ns, name)
    write_status(
        lab_api,
        ns,
        name,
        running_status(pod, restarts=2, last_finished=datetime.now(UTC) - timedelta(seconds=90)),
    )
    _, row = table(kubectl(lab_api, "get", "pod", name, "-n", ns, "-o", "wide"))
    assert row[:3] == [name, "2/2", "Running"]
    assert re.fullmatch(r"4 \(\d+s ago\)", row[3]), row[3]
    assert row[5:] == ["10.88.0.9", NODE, "<none>", "<none>"]
    crashing = running_status(pod, restarts=3)
    crashing["containerStatuses"][0]["ready"] = False
    crashing["containerStatuses"][0]["state"] = {"waiting": {"reason": "CrashLoopBackOff"}}
    write_status(lab_api, ns, name, crashing)
    _, row = table(kubectl(lab_api, "get", "pod", name, "-n", ns))
    assert row[1:4] == ["1/2", "CrashLoopBackOff", "6"]


# --- nodes, secrets, configmaps, serviceaccounts -------------------------------------------------


def test_kubectl_get_nodes_as_on_a_cluster(lab_api: LabApi, node: JsonObject) -> None:
    assert node["status"]["allocatable"] == {"cpu": "2", "memory": "4Gi", "pods": "110"}
    lines = table(kubectl(lab_api, "get", "nodes", "-o", "wide"))
    assert lines[0] == [
        "NAME",
        "STATUS",
        "ROLES",
        "AGE",
        "VERSION",
        "INTERNAL-IP",
        "EXTERNAL-IP",
        "OS-IMAGE",
        "KERNEL-VERSION",
        "CONTAINER-RUNTIME",
    ]
    (row,) = [r for r in lines[1:] if r[0] == NODE]
    assert row[1:3] == ["Ready", "<none>"]
    assert re.fullmatch(r"\d+[smh]\S*", row[3]), row[3]
    assert row[4:] == [
        "v1.36.4",
        "10.0.0.5",
        "<none>",
        "Debian GNU/Linux 12 (bookworm)",
        "6.18.0",
        "containerd://1.7.24",
    ]
    heartbeat = lab_api.expect(200, "GET", f"/api/v1/nodes/{NODE}")
    heartbeat["status"]["conditions"][0]["status"] = "False"
    heartbeat["spec"] = {"unschedulable": True}
    updated = lab_api.expect(200, "PUT", f"/api/v1/nodes/{NODE}/status", heartbeat)
    assert "unschedulable" not in updated["spec"], "nodes/status writes the status only"
    (row,) = [r for r in table(kubectl(lab_api, "get", "nodes"))[1:] if r[0] == NODE]
    assert row[1] == "NotReady"
    heartbeat = updated
    heartbeat["status"]["conditions"][0]["status"] = "True"
    lab_api.expect(200, "PUT", f"/api/v1/nodes/{NODE}/status", heartbeat)


def test_secrets_configmaps_and_serviceaccounts_are_stored_and_listed(
    lab_api: LabApi, ns: str
) -> None:
    kubectl(lab_api, "create", "secret", "generic", "creds", "--from-literal=user=lab", "-n", ns)
    secret = json.loads(kubectl(lab_api, "get", "secret", "creds", "-n", ns, "-o", "json"))
    assert secret["type"] == "Opaque"
    assert secret["data"] == {"user": "bGFi"}
    header, row = table(kubectl(lab_api, "get", "secret", "creds", "-n", ns))
    assert header == ["NAME", "TYPE", "DATA", "AGE"]
    assert row[:3] == ["creds", "Opaque", "1"]
    kubectl(
        lab_api,
        "create",
        "configmap",
        "settings",
        "--from-literal=a=1",
        "--from-literal=b=2",
        "-n",
        ns,
    )
    header, row = table(kubectl(lab_api, "get", "cm", "settings", "-n", ns))
    assert header == ["NAME", "DATA", "AGE"]
    assert row[:2] == ["settings", "2"]
    kubectl(lab_api, "create", "serviceaccount", "robot", "-n", ns)
    header, row = table(kubectl(lab_api, "get", "sa", "robot", "-n", ns))
    assert header == ["NAME", "SECRETS", "AGE"]
    assert row[:2] == ["robot", "0"]


# --- metrics.k8s.io ---------------------------------------------------------------------------


def test_kubectl_top_shows_the_metrics_objects_written_through_the_api(
    lab_api: LabApi, ns: str, node: JsonObject
) -> None:
    name = unique("busy")
    create_pod(lab_api, ns, name, ["app", "side"])
    now = rfc3339(datetime.now(UTC))
    pod_metrics = {
        "apiVersion": "metrics.k8s.io/v1beta1",
        "kind": "PodMetrics",
        "metadata": {"name": name, "namespace": ns, "labels": {"app": name}},
        "timestamp": now,
        "window": "15s",
        "containers": [
            {"name": "app", "usage": {"cpu": "250m", "memory": "64Mi"}},
            {"name": "side", "usage": {"cpu": "50m", "memory": "16Mi"}},
        ],
    }
    lab_api.expect(201, "POST", f"/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods", pod_metrics)
    header, row = table(kubectl(lab_api, "top", "pod", name, "-n", ns))
    assert header == ["NAME", "CPU(cores)", "MEMORY(bytes)"]
    assert row == [name, "300m", "80Mi"], "a pod's figure is the sum of its containers'"
    selected = table(kubectl(lab_api, "top", "pod", "-n", ns, "-l", f"app={name}", "--containers"))
    assert selected[1:] == [[name, "app", "250m", "64Mi"], [name, "side", "50m", "16Mi"]]
    node_metrics = {
        "apiVersion": "metrics.k8s.io/v1beta1",
        "kind": "NodeMetrics",
        "metadata": {"name": NODE},
        "timestamp": now,
        "window": "15s",
        "usage": {"cpu": "500m", "memory": "1Gi"},
    }
    response = lab_api.request("POST", "/apis/metrics.k8s.io/v1beta1/nodes", node_metrics)
    assert response.status in (201, 409), response.text
    lines = table(kubectl(lab_api, "top", "node"))
    assert lines[0] == ["NAME", "CPU(cores)", "CPU(%)", "MEMORY(bytes)", "MEMORY(%)"]
    assert [NODE, "500m", "25%", "1024Mi", "25%"] in lines[1:], "usage over the node's allocatable"
    lab_api.expect(200, "DELETE", f"/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods/{name}")
    gone = kubectl_error(lab_api, "top", "pod", name, "-n", ns)
    assert (
        gone == f'Error from server (NotFound): podmetrics.metrics.k8s.io "{ns}/{name}" not found'
    )


# --- pods/log -------------------------------------------------------------------------------


def cri_lines(stream: str, *parts: tuple[str, str]) -> str:
    """CRI log lines `<RFC3339Nano> <stream> <F|P> <text>`, a millisecond apart."""
    start = datetime.now(UTC) - timedelta(seconds=10)
    lines = []
    for i, (tag, text) in enumerate(parts):
        moment = (start + timedelta(milliseconds=i)).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")
        lines.append(f"{moment} {stream} {tag} {text}\n")
    return "".join(lines)


def log_dir(api: LabApi, pod: JsonObject, container: str) -> Path:
    meta = pod["metadata"]
    folder = api.pod_log_root / f"{meta['namespace']}_{meta['name']}_{meta['uid']}" / container
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture
def logged_pod(lab_api: LabApi, ns: str, node: JsonObject) -> Iterator[JsonObject]:
    """A running two-container pod whose `app` wrote a CRI log with a partial line."""
    name = unique("logs")
    pod = create_pod(lab_api, ns, name, ["app", "side"])
    bind(lab_api, ns, name)
    pod = write_status(lab_api, ns, name, running_status(pod))
    (log_dir(lab_api, pod, "app") / "0.log").write_text(
        cri_lines(
            "stdout", ("F", "first line"), ("P", "a long "), ("P", "line in "), ("F", "three parts")
        )
        + cri_lines("stderr", ("F", "an error"))
    )
    (log_dir(lab_api, pod, "side") / "0.log").write_text(cri_lines("stdout", ("F", "side car")))
    yield pod
    lab_api.request("DELETE", f"{pods_path(ns)}/{name}", query={"gracePeriodSeconds": "0"})


def test_kubectl_logs_prints_the_cri_log_with_partial_lines_joined(
    lab_api: LabApi, logged_pod: JsonObject
) -> None:
    name, ns = logged_pod["metadata"]["name"], logged_pod["metadata"]["namespace"]
    assert kubectl(lab_api, "logs", name, "-n", ns, "-c", "app") == (
        "first line\na long line in three parts\nan error\n"
    )
    assert kubectl(lab_api, "logs", name, "-n", ns, "-c", "side") == "side car\n"
    assert kubectl(lab_api, "logs", name, "-n", ns, "-c", "app", "--tail=1") == "an error\n"
    assert kubectl(lab_api, "logs", name, "-n", ns, "-c", "app", "--limit-bytes=5") == "first"
    stamped = kubectl(lab_api, "logs", name, "-n", ns, "-c", "app", "--timestamps").splitlines()
    assert [line.split(" ", 1)[1] for line in stamped] == [
        "first line",
        "a long line in three parts",
        "an error",
    ]
    assert all(datetime.fromisoformat(line.split(" ", 1)[0]) for line in stamped)
    assert kubectl(lab_api, "logs", name, "-n", ns, "-c", "app", "--since=1s") == ""


def test_logs_of_a_pod_with_several_containers_need_a_container(
    lab_api: LabApi, logged_pod: JsonObject
) -> None:
    name, ns = logged_pod["metadata"]["name"], logged_pod["metadata"]["namespace"]
    response = lab_api.request("GET", f"{pods_path(ns)}/{name}/log")
    assert response.status == 400
    assert response.json()["message"] == (
        f"a container name must be specified for pod {name}, choose one of: [app side]"
    )
    unknown = kubectl_error(lab_api, "logs", name, "-n", ns, "-c", "nope")
    assert unknown == f"error: container nope is not valid for pod {name} out of: app, side"
    raw = lab_api.request("GET", f"{pods_path(ns)}/{name}/log", query={"container": "nope"})
    assert raw.status == 400
    assert raw.json()["message"] == f"container nope is not valid for pod {name}"


def test_logs_previous_and_waiting_containers_answer_as_the_kubelet(
    lab_api: LabApi, logged_pod: JsonObject
) -> None:
    name, ns = logged_pod["metadata"]["name"], logged_pod["metadata"]["namespace"]
    refused = kubectl_error(lab_api, "logs", name, "-n", ns, "-c", "app", "--previous")
    assert refused == (
        "Error from server (BadRequest): "
        f'previous terminated container "app" in pod "{name}" not found'
    )
    restarted = running_status(logged_pod, restarts=1, last_finished=datetime.now(UTC))
    write_status(lab_api, ns, name, restarted)
    (log_dir(lab_api, logged_pod, "app") / "1.log").write_text(
        cri_lines("stdout", ("F", "second life"))
    )
    assert kubectl(lab_api, "logs", name, "-n", ns, "-c", "app") == "second life\n"
    assert kubectl(lab_api, "logs", name, "-n", ns, "-c", "app", "-p").startswith("first line\n")
    waiting = running_status(logged_pod)
    waiting["containerStatuses"][1]["state"] = {"waiting": {"reason": "ContainerCreating"}}
    write_status(lab_api, ns, name, waiting)
    assert kubectl_error(lab_api, "logs", name, "-n", ns, "-c", "side") == (
        f'Error from server (BadRequest): container "side" in pod "{name}" is waiting to start: '
        "ContainerCreating"
    )


def test_kubectl_logs_follow_streams_until_the_container_stops(
    lab_api: LabApi, logged_pod: JsonObject
) -> None:
    name, ns = logged_pod["metadata"]["name"], logged_pod["metadata"]["namespace"]
    log = log_dir(lab_api, logged_pod, "side") / "0.log"
    follow = subprocess.Popen(
        [
            str(lab_api.kubectl),
            "--kubeconfig",
            str(lab_api.kubeconfig),
            "logs",
            "-f",
            name,
            "-n",
            ns,
            "-c",
            "side",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert follow.stdout is not None
        assert follow.stdout.readline() == "side car\n"
        with log.open("a") as out:
            out.write(cri_lines("stdout", ("F", "appended later")))
        assert follow.stdout.readline() == "appended later\n"
        stopped = running_status(logged_pod)
        stopped["containerStatuses"][1]["state"] = {
            "terminated": {
                "exitCode": 0,
                "reason": "Completed",
                "finishedAt": rfc3339(datetime.now(UTC)),
            }
        }
        write_status(lab_api, ns, name, stopped)
        assert follow.wait(timeout=30) == 0, follow.stderr.read() if follow.stderr else ""
    finally:
        if follow.poll() is None:
            follow.kill()
            follow.wait()


# --- apps/v1 and autoscaling/v2 -----------------------------------------------------------------


def deployment_controller_status(deployment: JsonObject) -> JsonObject:
    """The status the deployment controller writes once a rollout completed."""
    replicas = deployment["spec"]["replicas"]
    now = rfc3339(datetime.now(UTC))
    return {
        "observedGeneration": deployment["metadata"]["generation"],
        "replicas": replicas,
        "updatedReplicas": replicas,
        "readyReplicas": replicas,
        "availableReplicas": replicas,
        "conditions": [
            {
                "type": "Available",
                "status": "True",
                "reason": "MinimumReplicasAvailable",
                "message": "Deployment has minimum availability.",
                "lastUpdateTime": now,
                "lastTransitionTime": now,
            },
            {
                "type": "Progressing",
                "status": "True",
                "reason": "NewReplicaSetAvailable",
                "message": f'ReplicaSet "{deployment["metadata"]["name"]}-5d9c8b7f6" '
                "has successfully progressed.",
                "lastUpdateTime": now,
                "lastTransitionTime": now,
            },
        ],
    }


def test_deployments_defaults_scale_generation_table_and_rollout_status(
    lab_api: LabApi, ns: str
) -> None:
    kubectl(lab_api, "create", "deployment", "web", "--image=nginx", "--replicas=2", "-n", ns)
    path = f"/apis/apps/v1/namespaces/{ns}/deployments/web"
    deployment = lab_api.expect(200, "GET", path)
    spec = deployment["spec"]
    assert deployment["metadata"]["generation"] == 1
    assert spec["replicas"] == 2
    assert spec["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"},
    }
    assert (spec["revisionHistoryLimit"], spec["progressDeadlineSeconds"]) == (10, 600)
    template = spec["template"]["spec"]
    assert (
        template["restartPolicy"],
        template["dnsPolicy"],
        template["terminationGracePeriodSeconds"],
    ) == (
        "Always",
        "ClusterFirst",
        30,
    )
    assert template["containers"][0]["imagePullPolicy"] == "Always"
    kubectl(lab_api, "scale", "deployment", "web", "--replicas=3", "-n", ns)
    deployment = lab_api.expect(200, "GET", path)
    assert (deployment["spec"]["replicas"], deployment["metadata"]["generation"]) == (3, 2)
    scale = lab_api.expect(200, "GET", f"{path}/scale")
    assert (scale["apiVersion"], scale["kind"]) == ("autoscaling/v1", "Scale")
    assert scale["spec"] == {"replicas": 3}
    assert scale["status"] == {
        "replicas": 0,
        "selector": "app=web",
    }
    header, row = table(kubectl(lab_api, "get", "deploy", "web", "-n", ns, "-o", "wide"))
    assert header == [
        "NAME",
        "READY",
        "UP-TO-DATE",
        "AVAILABLE",
        "AGE",
        "CONTAINERS",
        "IMAGES",
        "SELECTOR",
    ]
    assert row[:4] == ["web", "0/3", "0", "0"]
    assert row[5:] == ["nginx", "nginx", "app=web"]
    waiting = run_kubectl(lab_api, "rollout", "status", "deployment/web", "-n", ns, "--timeout=2s")
    assert waiting.returncode != 0
    assert "Waiting for deployment spec update to be observed..." in waiting.stdout
    deployment["status"] = deployment_controller_status(deployment)
    lab_api.expect(200, "PUT", f"{path}/status", deployment)
    assert lab_api.expect(200, "GET", path)["metadata"]["generation"] == 2, (
        "status does not bump it"
    )
    done = kubectl(lab_api, "rollout", "status", "deployment/web", "-n", ns, "--timeout=30s")
    assert done.strip() == 'deployment "web" successfully rolled out'
    _, row = table(kubectl(lab_api, "get", "deploy", "web", "-n", ns))
    assert row[:4] == ["web", "3/3", "3", "3"]
    bad = lab_api.request(
        "PATCH",
        f"{path}/scale",
        {"spec": {"replicas": -1}},
        content_type="application/merge-patch+json",
    )
    assert bad.status == 422
    assert (
        "spec.replicas: Invalid value: -1: must be greater than or equal to 0"
        in bad.json()["message"]
    )


def test_a_bad_deployment_gets_the_apis_422(lab_api: LabApi, ns: str) -> None:
    body = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "mismatch"},
        "spec": {
            "selector": {"matchLabels": {"app": "a"}},
            "template": {
                "metadata": {"labels": {"app": "b"}},
                "spec": {"containers": [{"name": "c", "image": "i"}]},
            },
        },
    }
    response = lab_api.request("POST", f"/apis/apps/v1/namespaces/{ns}/deployments", body)
    assert response.status == 422
    assert response.json()["message"] == (
        'Deployment.apps "mismatch" is invalid: spec.template.metadata.labels: Invalid value: '
        '{"app":"b"}: `selector` does not match template `labels`'
    )


def test_replicasets_have_desired_current_ready_and_scale(lab_api: LabApi, ns: str) -> None:
    body = {
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {"name": "web-rs"},
        "spec": {
            "selector": {"matchLabels": {"app": "rs"}},
            "template": {
                "metadata": {"labels": {"app": "rs"}},
                "spec": {"containers": [{"name": "c", "image": "nginx"}]},
            },
        },
    }
    created = lab_api.expect(201, "POST", f"/apis/apps/v1/namespaces/{ns}/replicasets", body)
    assert created["spec"]["replicas"] == 1
    assert created["metadata"]["generation"] == 1
    kubectl(lab_api, "scale", "rs", "web-rs", "--replicas=2", "-n", ns)
    header, row = table(kubectl(lab_api, "get", "rs", "web-rs", "-n", ns))
    assert header == ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]
    assert row[:4] == [
        "web-rs",
        "2",
        "0",
        "0",
    ]


def test_kubectl_autoscale_creates_a_defaulted_hpa_and_get_hpa_shows_its_figures(
    lab_api: LabApi, ns: str
) -> None:
    kubectl(lab_api, "create", "deployment", "api", "--image=nginx", "-n", ns)
    kubectl(
        lab_api,
        "autoscale",
        "deployment",
        "api",
        "--cpu-percent=80",
        "--min=1",
        "--max=4",
        "-n",
        ns,
    )
    path = f"/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers/api"
    hpa = lab_api.expect(200, "GET", path)
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "api",
    }
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (1, 4)
    assert hpa["spec"]["metrics"] == [
        {
            "type": "Resource",
            "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 80},
            },
        }
    ]
    header, row = table(kubectl(lab_api, "get", "hpa", "api", "-n", ns))
    assert header == ["NAME", "REFERENCE", "TARGETS", "MINPODS", "MAXPODS", "REPLICAS", "AGE"]
    assert row[:6] == ["api", "Deployment/api", "cpu: <unknown>/80%", "1", "4", "0"]
    hpa["status"] = {
        "currentReplicas": 2,
        "desiredReplicas": 2,
        "currentMetrics": [
            {
                "type": "Resource",
                "resource": {
                    "name": "cpu",
                    "current": {"averageUtilization": 40, "averageValue": "40m"},
                },
            }
        ],
    }
    lab_api.expect(200, "PUT", f"{path}/status", hpa)
    _, row = table(kubectl(lab_api, "get", "hpa", "api", "-n", ns))
    assert row[2:6] == ["cpu: 40%/80%", "1", "4", "2"]
    all_kinds = kubectl(lab_api, "get", "all", "-n", ns, "-o", "name").split()
    assert {"deployment.apps/api", "horizontalpodautoscaler.autoscaling/api"} <= set(all_kinds)


def test_hpa_defaults_and_422s(lab_api: LabApi, ns: str) -> None:
    hpas = f"/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers"
    body: JsonObject = {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "bare"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "maxReplicas": 3,
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 30}},
        },
    }
    hpa = lab_api.expect(201, "POST", hpas, body)
    assert hpa["spec"]["minReplicas"] == 1
    assert hpa["spec"]["metrics"][0]["resource"]["target"] == {
        "type": "Utilization",
        "averageUtilization": 80,
    }
    behavior = hpa["spec"]["behavior"]
    assert behavior["scaleDown"] == {
        "stabilizationWindowSeconds": 30,
        "selectPolicy": "Max",
        "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
    }
    assert behavior["scaleUp"] == {
        "stabilizationWindowSeconds": 0,
        "selectPolicy": "Max",
        "policies": [
            {"type": "Pods", "value": 4, "periodSeconds": 15},
            {"type": "Percent", "value": 100, "periodSeconds": 15},
        ],
    }
    body["metadata"]["name"] = "upside-down"
    body["spec"] |= {"minReplicas": 3, "maxReplicas": 2}
    response = lab_api.request("POST", hpas, body)
    assert response.status == 422
    assert response.json()["message"] == (
        'HorizontalPodAutoscaler.autoscaling "upside-down" is invalid: spec.maxReplicas: '
        "Invalid value: 2: must be greater than or equal to `minReplicas`"
    )


def test_pod_log_root_is_beside_the_api_dir_by_default(lab_api: LabApi) -> None:
    assert lab_api.pod_log_root == lab_api.dir.parent / "pod-logs"
    assert lab_api.pod_log_root.is_dir()


@pytest.mark.slow
def test_cli_refuses_a_pod_log_root_that_is_a_file(tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "kernel_gossip",
            "lab",
            "api",
            "start",
            "--dir",
            str(tmp_path / "api"),
            "--pod-log-root",
            str(not_a_dir),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"kernel-gossip lab: error: --pod-log-root {not_a_dir} exists and is not a directory"
    ]


def test_kubectl_get_events_shows_kube_apiservers_columns(lab_api: LabApi, ns: str) -> None:
    name = unique("evented")
    event = {
        "metadata": {"generateName": f"{name}."},
        "involvedObject": {"kind": "Pod", "name": name, "namespace": ns},
        "reason": "Scheduled",
        "message": f"Successfully assigned {ns}/{name} to {NODE}",
        "type": "Normal",
        "source": {"component": "default-scheduler"},
        "firstTimestamp": rfc3339(datetime.now(UTC) - timedelta(seconds=30)),
        "lastTimestamp": rfc3339(datetime.now(UTC)),
        "count": 1,
    }
    lab_api.expect(201, "POST", f"/api/v1/namespaces/{ns}/events", event)
    lines = table(
        kubectl(
            lab_api, "get", "events", "-n", ns, "--field-selector", f"involvedObject.name={name}"
        )
    )
    assert lines[0] == ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    (row,) = lines[1:]
    assert row[1:] == ["Normal", "Scheduled", f"pod/{name}", event["message"]]
    wide = table(
        kubectl(
            lab_api,
            "get",
            "events",
            "-n",
            ns,
            "-o",
            "wide",
            "--field-selector",
            f"involvedObject.name={name}",
        )
    )
    assert wide[0][4:] == ["SUBOBJECT", "SOURCE", "MESSAGE", "FIRST SEEN", "COUNT", "NAME"]


def test_a_status_without_the_qos_class_keeps_it(
    lab_api: LabApi, ns: str, node: JsonObject
) -> None:
    name = unique("qos-kept")
    pod = create_pod(lab_api, ns, name, ["app"])
    bind(lab_api, ns, name)
    status = running_status(pod)
    del status["qosClass"]
    assert write_status(lab_api, ns, name, status)["status"]["qosClass"] == "BestEffort"
