"""The lab's controller-manager on the real lab (`lab up`: API server, kubelet, metrics-server,
controller-manager, operator, agent), driven by kubectl as on a cluster.

Ground truth is read here, independently of the controllers: the pods' cgroups and
processes on the host, the Metrics API's own items (averaged over the ready pods by this
file's arithmetic), and the KernelWhisper's kernel figures.
"""

import json
import math
import os
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from test_lab_stack import CLI, Lab, bridges, lab_processes, mounts_under
from timestamps import parse_time

from kernel_gossip.lab.apiserver import LabApi
from kernel_gossip.lab.stack import OPERATOR_NAMESPACE
from kernel_gossip.operator.analysis import unmet_demand_limit

pytestmark = [pytest.mark.slow, pytest.mark.kernel, pytest.mark.usefixtures("kernel_prereqs")]

Json = dict[str, Any]
SYNC_PERIOD_SECONDS = 15.0
TARGET_PERCENT = 80
BUSYBOX = "localhost/kernel-gossip/busybox:1"
# A busy loop for 0.4 s of wall time, then 1 s asleep, under a 200m limit: the loop gets
# its 20 ms quota in each of ~4 CFS periods and is throttled in each (about 80 ms of CPU,
# most periods it runs in throttled), while the average, ~60m, stays under 80% of the
# 100m request. Timed by the clock, not by a count of iterations, so a faster or slower
# CPU does not change it.
BURST = 'sh -c "while :; do :; done" & busy=$!; sleep 0.4; kill $busy; wait $busy; sleep 1'
BURSTS = f"while :; do {BURST}; done"
LOOP = "trap 'exit 0' TERM; while :; do sleep 1; done"


def deployment(name: str, replicas: int, script: str, **spec: Any) -> Json:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [
                        {
                            "name": "main",
                            "image": BUSYBOX,
                            "imagePullPolicy": "Never",
                            "command": ["sh", "-c", f"trap 'exit 0' TERM; {script}"],
                            "resources": {
                                "requests": {"cpu": "100m"},
                                "limits": {"cpu": "200m"},
                            },
                        }
                    ],
                },
            },
            **spec,
        },
    }


def autoscaler(name: str, low: int, high: int, **spec: Any) -> Json:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": name},
            "minReplicas": low,
            "maxReplicas": high,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": TARGET_PERCENT},
                    },
                }
            ],
            **spec,
        },
    }


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    """One whole lab for the module; `lab down` must leave nothing of it behind."""
    lab_dir = tmp_path_factory.mktemp("controllers-lab")
    env = {**os.environ, "KERNEL_GOSSIP_LAB_DIR": str(lab_dir)}
    bridges_before = bridges()
    try:
        up = subprocess.run(
            [CLI, "lab", "up"], capture_output=True, text=True, timeout=3000, env=env
        )
        assert up.returncode == 0, up.stderr
        status = json.loads(up.stdout)
        assert status["up"] is True
        assert {"name": "controller-manager", "running": True} in status["components"]
        assert status["controllerManagerHealthzUrl"]
    except BaseException:
        subprocess.run([CLI, "lab", "down"], capture_output=True, timeout=300, env=env)
        raise
    api = LabApi.at(lab_dir / "api", status["apiServer"])
    yield Lab(lab_dir, status, api)
    down = subprocess.run(
        [CLI, "lab", "down"], capture_output=True, text=True, timeout=300, env=env
    )
    assert down.returncode == 0, down.stderr
    assert lab_processes(lab_dir) == []
    assert bridges() <= bridges_before
    assert mounts_under(lab_dir) == []


def kubectl(lab: Lab, *args: str, stdin: str | None = None, timeout: float = 120) -> str:
    result = subprocess.run(
        [str(lab.api.kubectl), "--kubeconfig", str(lab.api.kubeconfig), *args],
        capture_output=True,
        text=True,
        input=stdin,
        timeout=timeout,
    )
    assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
    return result.stdout


def apply(lab: Lab, *objects: Json) -> None:
    kubectl(lab, "apply", "-f", "-", stdin="\n---\n".join(json.dumps(o) for o in objects))


def items(lab: Lab, kind: str, selector: str) -> list[Json]:
    listed: list[Json] = json.loads(
        kubectl(lab, "get", kind, "-n", "default", "-l", selector, "-o", "json")
    )["items"]
    return listed


def get(lab: Lab, kind: str, name: str) -> Json:
    found: Json = json.loads(kubectl(lab, "get", kind, name, "-n", "default", "-o", "json"))
    return found


def wait_for(
    what: str, check: Callable[[], Any], timeout: float = 240.0, every: float = 0.5
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"timed out waiting for {what}")


def pod_cgroups(uid: str) -> list[Path]:
    """The pod's cgroup in each hierarchy. Read while the kubelet may be removing them: a
    directory that goes while it is walked is gone."""
    for _ in range(20):
        try:
            return list(Path("/sys/fs/cgroup").glob(f"*/kubepods/**/pod{uid}"))
        except FileNotFoundError:
            continue
    return list(Path("/sys/fs/cgroup").glob(f"*/kubepods/**/pod{uid}"))


def cgroup_processes(uid: str) -> list[int]:
    """Processes in the pod's cgroups: the real containers the host runs."""
    pids: set[int] = set()
    for folder in pod_cgroups(uid):
        try:
            for procs in folder.glob("**/cgroup.procs"):
                pids.update(int(line) for line in procs.read_text().split())
        except FileNotFoundError:
            continue  # removed meanwhile: its processes are gone
    return sorted(pids)


def running_pods(lab: Lab, app: str, count: int) -> list[Json]:
    """Exactly `count` pods of the app Running and ready, each with processes on the host."""

    def check() -> list[Json] | None:
        pods = [
            p
            for p in items(lab, "pods", f"app={app}")
            if not p["metadata"].get("deletionTimestamp")
        ]
        ready = [
            p
            for p in pods
            if p["status"].get("phase") == "Running"
            and all(s.get("ready") for s in p["status"].get("containerStatuses", []))
            and cgroup_processes(p["metadata"]["uid"])
        ]
        return ready if len(ready) == count == len(pods) else None

    found: list[Json] = wait_for(f"{count} running pods of {app}", check)
    return found


def owner(obj: Json) -> Json:
    (reference,) = obj["metadata"]["ownerReferences"]
    return dict(reference)


def test_deployment_rolls_out_replica_sets_and_pods_as_on_a_cluster(lab: Lab) -> None:
    apply(lab, deployment("roll", 2, LOOP))
    out = kubectl(lab, "rollout", "status", "deployment/roll", "--timeout=240s", timeout=300)
    assert 'deployment "roll" successfully rolled out' in out
    made = get(lab, "deployment", "roll")
    (first,) = items(lab, "replicasets", "app=roll")
    pod_hash = first["metadata"]["labels"]["pod-template-hash"]
    assert first["metadata"]["name"] == f"roll-{pod_hash}"
    assert first["spec"]["selector"]["matchLabels"] == {
        "app": "roll",
        "pod-template-hash": pod_hash,
    }
    assert owner(first) == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "roll",
        "uid": made["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }
    pods = running_pods(lab, "roll", 2)
    for pod in pods:
        assert owner(pod)["uid"] == first["metadata"]["uid"]
        assert pod["metadata"]["name"].startswith(f"roll-{pod_hash}-")
        assert pod["metadata"]["labels"] == {"app": "roll", "pod-template-hash": pod_hash}
    status = made["status"]
    assert status["observedGeneration"] == made["metadata"]["generation"]
    assert {
        k: status.get(k)
        for k in ("replicas", "updatedReplicas", "readyReplicas", "availableReplicas")
    } == {
        "replicas": 2,
        "updatedReplicas": 2,
        "readyReplicas": 2,
        "availableReplicas": 2,
    }
    conditions = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert conditions == {
        "Available": ("True", "MinimumReplicasAvailable"),
        "Progressing": ("True", "NewReplicaSetAvailable"),
    }
    assert kubectl(lab, "get", "deployment", "roll", "--no-headers").split()[:4] == [
        "roll",
        "2/2",
        "2",
        "2",
    ]
    assert kubectl(lab, "get", "rs", first["metadata"]["name"], "--no-headers").split()[:4] == [
        first["metadata"]["name"],
        "2",
        "2",
        "2",
    ]

    # A template change rolls: never more than replicas + maxSurge (25% of 2 -> 1) wanted.
    wave = {"spec": {"template": {"metadata": {"annotations": {"wave": "2"}}}}}
    kubectl(lab, "patch", "deployment", "roll", "-p", json.dumps(wave))
    peak = 0
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        sets = items(lab, "replicasets", "app=roll")
        peak = max(peak, sum(rs["spec"]["replicas"] for rs in sets))
        rolled = get(lab, "deployment", "roll")
        done = rolled["status"].get("observedGeneration") == rolled["metadata"]["generation"] and (
            rolled["status"].get("updatedReplicas")
            == rolled["status"].get("availableReplicas")
            == 2
            and rolled["status"].get("replicas") == 2
        )
        if done:
            break
        time.sleep(0.3)
    out = kubectl(lab, "rollout", "status", "deployment/roll", "--timeout=60s", timeout=90)
    assert 'deployment "roll" successfully rolled out' in out
    assert peak <= 3
    by_name = {rs["metadata"]["name"]: rs for rs in items(lab, "replicasets", "app=roll")}
    assert len(by_name) == 2
    old = by_name.pop(first["metadata"]["name"])
    (new,) = by_name.values()
    assert (old["spec"]["replicas"], new["spec"]["replicas"]) == (0, 2)
    revision = "deployment.kubernetes.io/revision"
    assert (old["metadata"]["annotations"][revision], new["metadata"]["annotations"][revision]) == (
        "1",
        "2",
    )
    assert get(lab, "deployment", "roll")["metadata"]["annotations"][revision] == "2"
    for pod in running_pods(lab, "roll", 2):
        assert owner(pod)["uid"] == new["metadata"]["uid"]
        assert pod["metadata"]["annotations"] == {"wave": "2"}
    kubectl(lab, "delete", "deployment", "roll", "--wait=false")


@pytest.mark.parametrize("cascade", ["background", "foreground"])
def test_deleting_a_deployment_removes_its_replica_sets_pods_and_cgroups(
    lab: Lab, cascade: str
) -> None:
    name = f"gone-{cascade}"
    apply(lab, deployment(name, 2, LOOP))
    pods = running_pods(lab, name, 2)
    uids = [p["metadata"]["uid"] for p in pods]
    assert all(pod_cgroups(uid) for uid in uids)
    kubectl(lab, "delete", "deployment", name, f"--cascade={cascade}", "--wait=false")

    def all_gone() -> bool:
        left = items(lab, "replicasets", f"app={name}") + items(lab, "pods", f"app={name}")
        return not left and not any(pod_cgroups(uid) or cgroup_processes(uid) for uid in uids)

    wait_for(f"{name}'s ReplicaSets, Pods and cgroups to go", all_gone)

    def deployment_gone() -> bool:
        """Foreground: the object stays (deletionTimestamp, foregroundDeletion finalizer)
        until the garbage collector has seen its dependents go, then it goes too."""
        found = subprocess.run(
            [str(lab.api.kubectl), "--kubeconfig", str(lab.api.kubeconfig), "get", "deploy", name],
            capture_output=True,
            text=True,
            timeout=60,
        )
        return found.returncode != 0 and "NotFound" in found.stderr

    wait_for(f"deployment {name} to go", deployment_gone)


def metrics_items(lab: Lab, app: str) -> list[Json]:
    path = f"/apis/metrics.k8s.io/v1beta1/namespaces/default/pods?labelSelector=app%3D{app}"
    listed: list[Json] = json.loads(kubectl(lab, "get", "--raw", path))["items"]
    return listed


def millicores(quantity: str) -> float:
    scale = {"n": 1e-6, "u": 1e-3, "m": 1.0}
    return (
        float(quantity[:-1]) * scale[quantity[-1]]
        if quantity[-1] in scale
        else float(quantity) * 1000
    )


def seconds(duration: str) -> float:
    """A Go duration as metrics-server writes a window: "15.012s", "1m0.5s"."""
    minutes, _, rest = duration.rpartition("m")
    return 60 * float(minutes or 0) + float(rest.removesuffix("s"))


def ready_utilization(pods: list[Json], metrics: list[Json]) -> float | None:
    """The Metrics API's average over the ready pods, in percent of their requests: pods
    Running and Ready whose latest item covers a full window since they became ready
    (the readiness an HPA requires of a pod in its first minutes)."""
    by_name = {m["metadata"]["name"]: m for m in metrics}
    used = requested = 0.0
    for pod in pods:
        item = by_name.get(pod["metadata"]["name"])
        ready = next((c for c in pod["status"].get("conditions", []) if c["type"] == "Ready"), None)
        if (
            item is None
            or ready is None
            or ready["status"] != "True"
            or pod["metadata"].get("deletionTimestamp")
        ):
            continue
        if parse_time(item["timestamp"]) < parse_time(ready["lastTransitionTime"]) + seconds(
            item["window"]
        ):
            continue
        used += sum(millicores(c["usage"]["cpu"]) for c in item["containers"])
        requested += sum(
            millicores(c["resources"]["requests"]["cpu"]) for c in pod["spec"]["containers"]
        )
    return 100 * used / requested if requested else None


def hpa_reading(hpa: Json) -> tuple[int, int, int] | None:
    """(currentReplicas, desiredReplicas, averageUtilization) once the HPA computed one."""
    status = hpa.get("status") or {}
    for metric in status.get("currentMetrics") or []:
        current = (metric.get("resource") or {}).get("current") or {}
        if "averageUtilization" in current:
            return (
                status["currentReplicas"],
                status["desiredReplicas"],
                current["averageUtilization"],
            )
    return None


def formula(current: int, utilization: int, low: int, high: int) -> int:
    ratio = utilization / TARGET_PERCENT
    wanted = current if abs(1 - ratio) <= 0.1 else math.ceil(current * ratio)
    return min(max(wanted, low), high)


def test_hpa_reads_the_metrics_api_and_scales_out_when_the_load_rises(lab: Lab) -> None:
    """Bursts for 150 s (under the target), then a busy loop at the 200m limit (200% of
    the request): the HPA's figure is the Metrics API's over the ready pods, its desired
    count the formula's, and it scales out within two sync periods of the rise."""
    name = "hpa-load"
    script = (
        f"end=$(( $(date +%s) + 150 )); while [ $(date +%s) -lt $end ]; do {BURST}; done; "
        "while :; do :; done"
    )
    behavior = {"scaleDown": {"stabilizationWindowSeconds": 30}}
    apply(lab, deployment(name, 2, script), autoscaler(name, 2, 4, behavior=behavior))
    running_pods(lab, name, 2)
    snapshots: list[tuple[float, float]] = []  # (seen at, utilization of the ready pods)
    readings: list[tuple[float, tuple[int, int, int]]] = []
    raised_at = scaled_at = None
    deadline = time.monotonic() + 420
    while time.monotonic() < deadline and scaled_at is None:
        pods = items(lab, "pods", f"app={name}")
        utilization = ready_utilization(pods, metrics_items(lab, name))
        now = time.monotonic()
        if utilization is not None:
            snapshots.append((now, utilization))
            if raised_at is None and utilization > TARGET_PERCENT * 1.1:
                raised_at = now
        reading = hpa_reading(get(lab, "hpa", name))
        if reading is not None and (not readings or readings[-1][1] != reading):
            readings.append((now, reading))
        if get(lab, "deployment", name)["spec"]["replicas"] > 2:
            scaled_at = now
        time.sleep(1.0)
    assert readings, "the HPA computed no utilization"
    assert raised_at is not None, "the load never rose past the target"
    assert scaled_at is not None, "the HPA never scaled out"
    assert scaled_at - raised_at <= 2 * SYNC_PERIOD_SECONDS + 2.0  # polled every second
    for seen_at, (current, desired, utilization) in readings:
        before = [u for t, u in snapshots if t <= seen_at]
        assert any(abs(u - utilization) <= 1 for u in before), (utilization, before[-8:])
        assert desired == formula(current, utilization, 2, 4), (current, desired, utilization)
    under = [r for _, r in readings if r[2] < TARGET_PERCENT]
    assert under, ("no reading under the target before the rise", readings, snapshots[:30])
    hpa = get(lab, "hpa", name)
    assert hpa["status"]["lastScaleTime"]
    conditions = {c["type"]: c["reason"] for c in hpa["status"]["conditions"]}
    assert conditions["ScalingActive"] == "ValidMetricFound"
    assert conditions["AbleToScale"] in (
        "SucceededRescale",
        "ReadyForNewScale",
        "ScaleDownStabilized",
    )
    desired = get(lab, "deployment", name)["spec"]["replicas"]
    table = kubectl(lab, "get", "hpa", name, "--no-headers").split()
    assert table[0] == name
    assert f"/{TARGET_PERCENT}%" in " ".join(table)
    pods = running_pods(lab, name, desired)
    listed = kubectl(lab, "get", "pods", "-l", f"app={name}", "--no-headers").splitlines()
    assert len(listed) == desired
    assert all(" Running " in line and " 1/1 " in line for line in listed)
    assert all(cgroup_processes(p["metadata"]["uid"]) for p in pods)
    kubectl(lab, "delete", "hpa", name)
    kubectl(lab, "delete", "deployment", name, "--wait=false")


def test_throttled_replicas_under_an_hpa_below_target_get_scale_out_advice(lab: Lab) -> None:
    name = "advice"
    apply(lab, deployment(name, 2, BURSTS), autoscaler(name, 2, 10))
    pods = running_pods(lab, name, 2)
    names = {p["metadata"]["name"] for p in pods}
    seen_hpa: set[int] = set()

    def advice() -> tuple[Json, Json] | None:
        reading = hpa_reading(get(lab, "hpa", name))
        if reading is not None:
            seen_hpa.add(reading[2])
        listed = json.loads(
            kubectl(lab, "get", "kernelwhispers", "-n", OPERATOR_NAMESPACE, "-o", "json")
        )
        for whisper in listed["items"]:
            if whisper["spec"]["podName"] not in names:
                continue
            truth = whisper["spec"]["kernelTruth"]
            for recommendation in (whisper.get("status") or {}).get("recommendations", []):
                # Until the HPA has computed a utilization the advice says it has none;
                # the one under test quotes the HPA's figure.
                if (
                    recommendation["action"] == "scale_out_replicas"
                    and f"HPA {name} reads " in recommendation["reason"]
                    and truth["throttledPercent"] > 50
                ):
                    return whisper, recommendation
        return None

    whisper, recommendation = wait_for("scale_out_replicas advice", advice, timeout=300, every=2.0)
    truth = whisper["spec"]["kernelTruth"]
    per_pod = unmet_demand_limit(
        truth["cpuLimitCores"],
        truth["throttledPercent"],
        truth["throttledSeconds"],
        truth["windowSeconds"],
        10.0,
    )
    assert truth["cpuLimitCores"] == pytest.approx(0.2)
    assert recommendation["suggestedValue"] == str(math.ceil(round(2 * per_pod / 0.2, 6)))
    assert int(recommendation["suggestedValue"]) > 2
    reason = recommendation["reason"]
    assert reason.startswith(
        f"Deployment {name} runs 2 replicas at 0.200 cores each; HPA {name} reads "
    )
    shown = int(reason.split(" reads ")[1].split("%")[0])
    if (latest := hpa_reading(get(lab, "hpa", name))) is not None:
        seen_hpa.add(latest[2])
    assert shown in seen_hpa  # the HPA's own figure, as its status showed it
    assert shown < TARGET_PERCENT
    assert f"against its {TARGET_PERCENT}% target, so it adds no replicas" in reason
    assert f"the demand needs {per_pod:.3f} cores per pod" in reason
    kubectl(lab, "delete", "hpa", name)
    kubectl(lab, "delete", "deployment", name, "--wait=false")
