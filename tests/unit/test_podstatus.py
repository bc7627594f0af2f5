"""The lab kubelet's pure parts: back-off, phase, container statuses, conditions, the Node,
the image table and reading stored Pods, against the kubelet's documented behaviour."""

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from kernel_gossip.core.podspec import pod_from_api
from kernel_gossip.core.podstatus import (
    Backoff,
    ContainerInstance,
    HostFacts,
    PodObservation,
    Waiting,
    backoff_message,
    container_status,
    latest_instances,
    node_name,
    node_status,
    phase,
    pod_status,
    rejected_status,
)
from kernel_gossip.lab import images

NOW = datetime(2026, 12, 2, 8, 0, 0, tzinfo=UTC)
UID = "0f6d3a52-7c1e-4b8e-9a51-6b3c2d1e0f42"

# What the API server stores for `kubectl run web --image=nginx` (defaulted, bound).
KUBECTL_RUN: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Pod",
    "metadata": {
        "name": "web",
        "namespace": "default",
        "uid": UID,
        "resourceVersion": "42",
        "creationTimestamp": "2026-12-02T07:59:00Z",
        "labels": {"run": "web"},
    },
    "spec": {
        "containers": [
            {
                "name": "web",
                "image": "nginx",
                "imagePullPolicy": "Always",
                "resources": {},
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File",
            }
        ],
        "dnsPolicy": "ClusterFirst",
        "enableServiceLinks": True,
        "nodeName": "vm",
        "preemptionPolicy": "PreemptLowerPriority",
        "priority": 0,
        "restartPolicy": "Always",
        "schedulerName": "default-scheduler",
        "securityContext": {},
        "terminationGracePeriodSeconds": 30,
    },
    "status": {"phase": "Pending"},
}


def instance(
    name: str = "web", restarts: int = 0, state: str = "RUNNING", exit_code: int = 0, **more: Any
) -> ContainerInstance:
    values: dict[str, Any] = {
        "id": f"{name}{restarts}" + "0" * 60,
        "name": name,
        "restart_count": restarts,
        "state": state,
        "exit_code": exit_code,
        "reason": "",
        "message": "",
        "started_ns": 1_764_662_400_000_000_000 + restarts * 10**9,
        "finished_ns": 1_764_662_400_500_000_000 + restarts * 10**9 if state == "EXITED" else 0,
        "image": "docker.io/library/nginx:latest",
        "image_id": "sha256:" + "ab" * 32,
    }
    values.update(more)
    return ContainerInstance(**values)


# --- back-off -------------------------------------------------------------------------


def test_crash_back_off_doubles_from_10s_to_5min() -> None:
    backoff = Backoff()
    delays, now = [], 1000.0
    for _ in range(8):
        backoff.next("p/c", now, now)
        delays.append(backoff.delay("p/c"))
        now += backoff.delay("p/c") + 1
    assert delays == [10, 20, 40, 80, 160, 300, 300, 300]


def test_a_failure_is_retried_once_its_back_off_has_passed() -> None:
    backoff = Backoff()
    assert backoff.remaining("p/c", 100.0, 100.0) == 0  # the first failure restarts at once
    backoff.next("p/c", 100.0, 100.0)
    assert backoff.remaining("p/c", 101.0, 104.0) == pytest.approx(7.0)
    assert backoff.remaining("p/c", 101.0, 111.0) == 0


def test_back_off_is_forgotten_after_twice_the_maximum_without_a_failure() -> None:
    backoff = Backoff()
    for moment in (0.0, 11.0, 32.0):
        backoff.next("p/c", moment, moment)
    assert backoff.delay("p/c") == 40
    backoff.next("p/c", 32.0 + 601, 32.0 + 601)
    assert backoff.delay("p/c") == 10


def test_pull_back_off_runs_from_the_last_failure_and_forget_drops_a_pod() -> None:
    backoff = Backoff()
    backoff.next(f"{UID}/c/pull", 50.0, 50.0)
    assert backoff.remaining_since_update(f"{UID}/c/pull", 55.0) == pytest.approx(5.0)
    backoff.forget(UID)
    assert backoff.remaining_since_update(f"{UID}/c/pull", 55.0) == 0


@pytest.mark.parametrize(
    ("delay", "text"), [(10, "10s"), (40, "40s"), (80, "1m20s"), (300, "5m0s")]
)
def test_back_off_message_is_the_kubelets(delay: float, text: str) -> None:
    pod = pod_from_api(KUBECTL_RUN)
    assert backoff_message(delay, "web", pod, UID) == (
        f"back-off {text} restarting failed container=web pod=web_default({UID})"
    )


# --- container statuses and phase --------------------------------------------------------


def test_a_running_container() -> None:
    status = container_status("web", "nginx", instance(), None, None)
    assert status["state"] == {"running": {"startedAt": "2025-12-02T08:00:00Z"}}
    assert (status["ready"], status["started"], status["restartCount"]) == (True, True, 0)
    assert status["containerID"] == "containerd://web0" + "0" * 60
    assert status["image"] == "docker.io/library/nginx:latest"
    assert status["lastState"] == {}


def test_a_restarted_container_shows_the_previous_exit_as_last_state() -> None:
    previous = instance(restarts=1, state="EXITED", exit_code=137, reason="Error")
    status = container_status("web", "nginx", instance(restarts=2), previous, None)
    assert status["restartCount"] == 2
    assert status["lastState"]["terminated"]["exitCode"] == 137
    assert status["lastState"]["terminated"]["containerID"].endswith(previous.id)


def test_crash_loop_back_off_moves_the_exit_to_last_state() -> None:
    dead = instance(restarts=3, state="EXITED", exit_code=1)
    status = container_status("web", "nginx", dead, None, Waiting("CrashLoopBackOff", "back-off"))
    assert status["state"] == {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}}
    assert status["lastState"]["terminated"]["exitCode"] == 1
    assert status["lastState"]["terminated"]["reason"] == "Error"  # no reason from the runtime
    assert (status["ready"], status["restartCount"]) == (False, 3)


def test_a_container_never_started_is_creating_with_the_spec_image() -> None:
    status = container_status("web", "nginx", None, None, None)
    assert status["state"] == {"waiting": {"reason": "ContainerCreating"}}
    assert (status["image"], status["imageID"]) == ("nginx", "")
    assert "containerID" not in status


def _status(state: dict[str, Any], last: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"state": state, "lastState": last or {}}


RUNNING = _status({"running": {}})
EXIT_0 = _status({"terminated": {"exitCode": 0}})
EXIT_1 = _status({"terminated": {"exitCode": 1}})
BACKING_OFF = _status({"waiting": {"reason": "CrashLoopBackOff"}}, {"terminated": {}})
CREATING = _status({"waiting": {"reason": "ContainerCreating"}})


@pytest.mark.parametrize(
    ("statuses", "policy", "expected"),
    [
        ([RUNNING], "Always", "Running"),
        ([CREATING], "Always", "Pending"),
        ([RUNNING, CREATING], "Always", "Pending"),
        ([BACKING_OFF], "Always", "Running"),
        ([EXIT_0], "Always", "Running"),
        ([EXIT_0], "OnFailure", "Succeeded"),
        ([EXIT_1], "OnFailure", "Running"),
        ([EXIT_1], "Never", "Failed"),
        ([EXIT_0, EXIT_1], "Never", "Failed"),
        ([EXIT_0, EXIT_0], "Never", "Succeeded"),
        ([RUNNING, EXIT_1], "Never", "Running"),
        ([], "Always", "Pending"),
    ],
)
def test_phase_follows_get_phase(
    statuses: list[dict[str, Any]], policy: str, expected: str
) -> None:
    assert phase(statuses, policy) == expected


def test_latest_instances_pick_the_newest_and_the_one_before() -> None:
    found = latest_instances(
        [
            instance(restarts=0, state="EXITED"),
            instance(restarts=2),
            instance(restarts=1, state="EXITED"),
        ]
    )
    latest, before = found["web"]
    assert (latest.restart_count, before and before.restart_count) == (2, 1)


# --- the pod status -----------------------------------------------------------------------


def _seen(**changes: Any) -> PodObservation:
    values: dict[str, Any] = {
        "sandbox_ready": True,
        "pod_ip": "10.244.3.7",
        "host_ip": "192.0.2.10",
        "qos_class": "BestEffort",
        "instances": [instance()],
        "waiting": {},
    }
    values.update(changes)
    return PodObservation(**values)


def test_pod_status_of_a_running_pod() -> None:
    pod = pod_from_api(KUBECTL_RUN)
    scheduled = {
        "type": "PodScheduled",
        "status": "True",
        "lastTransitionTime": "2026-12-02T07:59:01Z",
    }
    status = pod_status(pod, {"phase": "Pending", "conditions": [scheduled]}, _seen(), NOW)
    assert status["phase"] == "Running"
    assert (status["podIP"], status["podIPs"]) == ("10.244.3.7", [{"ip": "10.244.3.7"}])
    assert (status["hostIP"], status["hostIPs"]) == ("192.0.2.10", [{"ip": "192.0.2.10"}])
    assert status["qosClass"] == "BestEffort"
    assert status["startTime"] == "2026-12-02T08:00:00Z"
    types = [c["type"] for c in status["conditions"]]
    assert types == [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
    ]
    assert all(c["status"] == "True" for c in status["conditions"])
    assert status["conditions"][-1] == scheduled  # the binding's condition, kept as it is


def test_conditions_keep_their_transition_time_until_their_status_changes() -> None:
    pod = pod_from_api(KUBECTL_RUN)
    first = pod_status(pod, {}, _seen(), NOW)
    later = NOW + timedelta(minutes=5)
    same = pod_status(pod, first, _seen(), later)
    assert same["conditions"] == first["conditions"]
    assert same["startTime"] == first["startTime"]
    crashed = _seen(
        instances=[instance(state="EXITED", exit_code=1)],
        waiting={"web": Waiting("CrashLoopBackOff", "back-off 10s")},
    )
    changed = pod_status(pod, first, crashed, later)
    ready = next(c for c in changed["conditions"] if c["type"] == "Ready")
    assert ready == {
        "type": "Ready",
        "status": "False",
        "lastProbeTime": None,
        "lastTransitionTime": "2026-12-02T08:05:00Z",
        "reason": "ContainersNotReady",
        "message": "containers with unready status: [web]",
    }
    assert changed["phase"] == "Running"


def test_a_terminal_phase_stays_terminal() -> None:
    pod = pod_from_api(KUBECTL_RUN)
    assert pod_status(pod, {"phase": "Failed"}, _seen(), NOW)["phase"] == "Failed"


def test_a_rejected_pod_is_failed_with_the_reason() -> None:
    status = rejected_status({"startTime": "2026-12-02T07:00:00Z"}, "spec.volumes: nope", NOW)
    assert status == {
        "phase": "Failed",
        "reason": "UnsupportedByLab",
        "message": "Pod was rejected: spec.volumes: nope",
        "startTime": "2026-12-02T07:00:00Z",
    }


# --- reading stored pods --------------------------------------------------------------------


def test_a_stored_kubectl_run_pod_reads_with_the_fields_the_kubelet_runs() -> None:
    pod = pod_from_api(KUBECTL_RUN)
    assert pod.key == "default/web"
    assert pod.spec.restart_policy == "Always"
    assert pod.spec.containers[0].image_pull_policy == "Always"
    assert pod.metadata.labels == {"run": "web"}


@pytest.mark.parametrize(
    ("spec", "container", "field"),
    [
        ({"volumes": [{"name": "v", "emptyDir": {}}]}, {}, "spec.volumes"),
        ({"initContainers": [{"name": "i", "image": "busybox"}]}, {}, "spec.initContainers"),
        ({}, {"livenessProbe": {"exec": {"command": ["true"]}}}, "livenessProbe"),
        ({}, {"volumeMounts": [{"name": "v", "mountPath": "/v"}]}, "volumeMounts"),
    ],
)
def test_a_field_the_lab_cannot_honour_is_named(
    spec: dict[str, Any], container: dict[str, Any], field: str
) -> None:
    stored = {
        **KUBECTL_RUN,
        "spec": {
            **KUBECTL_RUN["spec"],
            **spec,
            "containers": [{**KUBECTL_RUN["spec"]["containers"][0], **container}],
        },
    }
    with pytest.raises(ValueError, match=field):
        pod_from_api(stored)


# --- the Node -------------------------------------------------------------------------------

FACTS = HostFacts(
    hostname="Lab-Host.example",
    internal_ip="192.0.2.10",
    cpus=2,
    memory_bytes=24 * 1024**3,
    ephemeral_bytes=100 * 1024**3,
    kernel_version="6.18.0",
    os_image="Debian GNU/Linux 12 (bookworm)",
    machine_id="m",
    boot_id="b",
    system_uuid="",
    architecture="amd64",
    runtime_version="containerd://1.6.20~ds1",
    kubelet_version="v1.36.4-kernel-gossip-lab",
)


def test_node_name_is_the_lower_cased_host_name() -> None:
    assert node_name(" Lab-Host.example\n") == "lab-host.example"


def test_node_capacity_and_allocatable_follow_the_default_eviction_thresholds() -> None:
    status = node_status(FACTS, [], NOW)
    assert status["capacity"] == {
        "cpu": "2",
        "ephemeral-storage": f"{100 * 1024**2}Ki",
        "hugepages-1Gi": "0",
        "hugepages-2Mi": "0",
        "memory": f"{24 * 1024**2}Ki",
        "pods": "110",
    }
    assert status["allocatable"]["memory"] == f"{24 * 1024**2 - 100 * 1024}Ki"
    assert status["allocatable"]["ephemeral-storage"] == str(int(100 * 1024**3 * 0.9))
    assert status["addresses"] == [
        {"type": "InternalIP", "address": "192.0.2.10"},
        {"type": "Hostname", "address": "lab-host.example"},
    ]


def test_node_heartbeat_moves_but_transition_times_stay() -> None:
    first = node_status(FACTS, [], NOW)
    later = node_status(FACTS, first["conditions"], NOW + timedelta(seconds=10))
    ready = next(c for c in later["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "KubeletReady")
    assert ready["lastHeartbeatTime"] == "2026-12-02T08:00:10Z"
    assert ready["lastTransitionTime"] == "2026-12-02T08:00:00Z"
    assert [c["type"] for c in later["conditions"]] == [
        "MemoryPressure",
        "DiskPressure",
        "PIDPressure",
        "Ready",
    ]


# --- the image table ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("ref", "normalised"),
    [
        ("nginx", "docker.io/library/nginx:latest"),
        ("nginx:1.27", "docker.io/library/nginx:1.27"),
        ("library/busybox", "docker.io/library/busybox:latest"),
        ("docker.io/busybox:1.36", "docker.io/library/busybox:1.36"),
        ("index.docker.io/curlimages/curl", "docker.io/curlimages/curl:latest"),
        ("curlimages/curl:8.10.1", "docker.io/curlimages/curl:8.10.1"),
        ("localhost/kernel-gossip/nginx:1", "localhost/kernel-gossip/nginx:1"),
        ("registry.k8s.io/pause:3.10", "registry.k8s.io/pause:3.10"),
        ("localhost:5000/app", "localhost:5000/app:latest"),
        ("nginx@sha256:" + "0" * 64, "docker.io/library/nginx@sha256:" + "0" * 64),
    ],
)
def test_references_normalise_as_docker_names_them(ref: str, normalised: str) -> None:
    assert images.normalize_ref(ref) == normalised


@pytest.mark.parametrize(
    ("ref", "image"),
    [
        ("nginx", images.NGINX),
        ("nginx:alpine", images.NGINX),
        ("docker.io/library/nginx:1.27", images.NGINX),
        ("busybox", images.BUSYBOX_IMAGE),
        ("busybox:1.36", images.BUSYBOX_IMAGE),
        ("curlimages/curl", images.CURL),
        ("curlimages/curl:latest", images.CURL),
        ("localhost/kernel-gossip/busybox:1", images.BUSYBOX_IMAGE),
        ("redis:7", None),
        ("nginxinc/nginx-unprivileged", None),
        ("nginx@sha256:" + "0" * 64, None),
        ("quay.io/nginx/nginx", None),
    ],
)
def test_the_image_table(ref: str, image: images.LabImage | None) -> None:
    assert images.resolve(ref) == image


def test_the_table_summary_names_every_entry() -> None:
    for name in ("nginx", "busybox", "curlimages/curl", *[i.ref for i in images.ALL_IMAGES]):
        assert name in images.IMAGE_TABLE_SUMMARY


# --- `lab pods get --json` ------------------------------------------------------------------


def test_lab_pods_get_shows_the_object_with_the_nodes_side() -> None:
    from kernel_gossip.cli.lab_pods import views
    from kernel_gossip.lab.pods import ContainerView, PodView

    cid = "c" * 64
    stored = {
        **KUBECTL_RUN,
        "status": {
            "phase": "Running",
            "podIP": "10.244.3.7",
            "qosClass": "BestEffort",
            "containerStatuses": [
                container_status("web", "nginx", instance(id=cid), None, None),
            ],
        },
    }
    node = PodView(
        "default",
        "web",
        UID,
        True,
        "10.244.3.7",
        f"/kubepods/besteffort/pod{UID}",
        "s" * 64,
        0,
        [ContainerView("web", cid, "nginx", "sha256:x", "RUNNING", None, 4242, "", 0)],
    )
    (shown,) = views([stored], {UID: node})
    assert shown["cgroupParent"] == f"/kubepods/besteffort/pod{UID}"
    assert (shown["phase"], shown["podIP"], shown["sandboxId"]) == (
        "Running",
        "10.244.3.7",
        "s" * 64,
    )
    (container,) = shown["containers"]
    assert container == {
        "name": "web",
        "containerID": cid,
        "image": "docker.io/library/nginx:latest",
        "imageID": "sha256:" + "ab" * 32,
        "state": "RUNNING",
        "reason": None,
        "exitCode": None,
        "restartCount": 0,
        "pid": 4242,
        "cgroup": f"/kubepods/besteffort/pod{UID}/{cid}",
    }
    (waiting,) = views([{**KUBECTL_RUN, "status": {"phase": "Pending"}}], {})
    assert (waiting["cgroupParent"], waiting["sandboxId"], waiting["containers"]) == ("", None, [])
