"""The operator end to end: `kernel-gossip operator` as a subprocess (kopf and its webhook)
against the real lab API server; every check reads the resources back from the server."""

import json
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from operator_harness import (
    KERNEL_GOSSIP,
    Operator,
    delete_resource,
    get_resource,
    list_resources,
    resource_path,
)
from signal_strategies import (
    BIRTH,
    LARGEST_PERCENT_OF_LIMIT,
    SUBNORMAL_LIMIT,
    TALK_CURL_BODY,
    THROTTLE_FULL,
    BadRequest,
    bad_requests,
    throttle_signals,
)

from kernel_gossip.lab.apiserver import LabApi
from kernel_gossip.operator.naming import whisper_name

pytestmark = pytest.mark.slow

KW, CERTS = "kernelwhispers", "podbirthcertificates"
T1 = datetime(2025, 8, 25, 11, 0, tzinfo=UTC)


def stamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def kw_of(pod: str, own: str = "kernel-gossip", namespace: str = THROTTLE_FULL["namespace"]) -> str:
    """The KernelWhisper name of a THROTTLE_FULL signal (namespace shop) for `pod`."""
    return whisper_name(own, namespace, pod)


def throttle(pod: str, moment: datetime, **changes: Any) -> str:
    return json.dumps({**THROTTLE_FULL, "pod_name": pod, "timestamp": stamp(moment), **changes})


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("operator")


def warm_up(api: LabApi, namespace: str) -> None:
    """Right after it starts, the lab API server holds the first custom-resource write for
    about 2 s (its storage is still initialising; measured: 2.0 s cold, 10 ms once warm or
    after ~8 s idle). Write and delete one resource first, so timings measure the operator."""
    ensure_namespace(api, namespace)
    body = {
        "apiVersion": "kernel-gossip.dev/v1alpha1",
        "kind": "KernelWhisper",
        "metadata": {"name": "warm-up-kw"},
        "spec": {
            "signalType": "cpu_throttle",
            "podName": "warm-up",
            "podNamespace": namespace,
            "observedAt": stamp(T1),
            "kernelTruth": {"throttledPercent": 0.0},
            "insights": [],
        },
    }
    api.expect(201, "POST", resource_path(namespace, KW), body)
    delete_resource(api, namespace, KW, "warm-up-kw")


@pytest.fixture(scope="module")
def operator(lab_api: LabApi, workdir: Path) -> Iterator[Operator]:
    """The talk's set-up: resources in namespace kernel-gossip."""
    warm_up(lab_api, "kernel-gossip")
    running = Operator(lab_api, "kernel-gossip", workdir).start()
    yield running
    assert running.stop() == 0, running.output()


def ensure_namespace(api: LabApi, name: str) -> None:
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
    assert api.request("POST", "/api/v1/namespaces", body).status in (201, 409)


def test_the_talk_curl_payload_becomes_live_demo_kw(operator: Operator, lab_api: LabApi) -> None:
    delete_resource(lab_api, "kernel-gossip", KW, "live-demo-kw")
    reply = operator.post(TALK_CURL_BODY)
    whisper = get_resource(lab_api, "kernel-gossip", KW, "live-demo-kw")
    assert reply.status == 202, reply.body
    assert reply.json() == {"status": "accepted", "name": "live-demo-kw"}
    assert whisper is not None
    assert whisper["spec"]["kernelTruth"]["throttledPercent"] == 78.5
    assert whisper["status"]["recommendations"], whisper["status"]

    spec, status = whisper["spec"], whisper["status"]
    assert (spec["podName"], spec["podNamespace"], spec["containerName"]) == (
        "live-demo",
        "kernel-gossip",
        "app",
    )
    assert spec["kernelTruth"]["cpuUsageCores"] == 1.5
    assert spec["reportedCpuUsageCores"] == 0.6
    assert status["severity"] == "critical"  # 78.5% of periods: critical from 50%
    # The lab serves no metrics.k8s.io, so the reported figure must be the payload's.
    metrics_api = "/apis/metrics.k8s.io/v1beta1/namespaces/kernel-gossip/pods/live-demo"
    assert lab_api.request("GET", metrics_api).status == 404
    assert status["reportedUsage"] == {"cores": 0.6, "source": "payload", "payloadCores": 0.6}
    assert (
        "Reported by the sender: 0.60 cores; kernel: 78.5% of periods throttled"
        in (spec["insights"])
    )
    assert status["recommendation"].startswith(status["recommendations"][0]["action"])
    assert [r["throttledPercent"] for r in status["history"]] == [78.5]
    assert "INSIGHT live-demo-kw: CPU throttling (critical)" in operator.output()


def test_pod_creation_payload_round_trips_every_figure(operator: Operator, lab_api: LabApi) -> None:
    delete_resource(lab_api, "kernel-gossip", CERTS, "nginx-demo-cert")
    reply = operator.post(json.dumps(BIRTH), path="/webhook/ebpf")
    assert reply.status == 202, reply.body
    assert reply.json() == {"status": "accepted", "name": "nginx-demo-cert"}
    certificate = get_resource(lab_api, "kernel-gossip", CERTS, "nginx-demo-cert")
    assert certificate is not None
    spec = certificate["spec"]
    assert spec["podName"] == BIRTH["pod_name"]
    assert spec["podNamespace"] == BIRTH["namespace"]
    assert spec["podUid"] == BIRTH["pod_uid"]
    assert spec["totalSyscalls"] == BIRTH["total_syscalls"]
    assert spec["syscalls"] == BIRTH["syscalls"]
    assert spec["namespaceOperations"] == BIRTH["namespace_ops"]
    assert spec["namespacesCreated"] == BIRTH["namespaces_created"]
    assert spec["mounts"] == BIRTH["mounts"]
    assert spec["cgroupWrites"] == BIRTH["cgroup_writes"]
    assert spec["execs"] == BIRTH["execs"]
    assert spec["durationMs"] == BIRTH["duration_ms"]
    assert spec["duration"] == "2.5s"
    started = datetime.fromisoformat(BIRTH["timestamp"])
    assert datetime.fromisoformat(spec["startedAt"]) == started
    timeline = [
        (e["name"], datetime.fromisoformat(e["timestamp"]), e["count"])
        for e in spec["syscallTimeline"]
    ]
    assert timeline == [
        (s["phase"], started + timedelta(milliseconds=s["offset_ms"]), s["count"])
        for s in BIRTH["timeline"]
    ]
    assert certificate["status"]["summary"].startswith("1812 syscalls in 2.5s")


def test_200_distinct_bad_inputs_are_refused_and_write_nothing(
    lab_api: LabApi, workdir: Path
) -> None:
    namespace = "kg-bad-inputs"
    hook = Operator(lab_api, namespace, workdir).start()
    seen: dict[tuple[str, bytes], int] = {}

    @settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
    @given(bad_requests)
    @example(SUBNORMAL_LIMIT)
    def post(bad: BadRequest) -> None:
        reply = hook.post(bad.body, content_type=bad.content_type)
        assert 400 <= reply.status < 500, (bad.why, reply.status, reply.body[:300])
        error = reply.json()
        assert list(error) == ["error"]
        assert error["error"]
        assert "\n" not in error["error"]
        seen[(bad.content_type, bad.body)] = reply.status

    try:
        post()
        assert len(seen) >= 200, f"only {len(seen)} distinct bad inputs"
        assert list_resources(lab_api, namespace, KW) == []
        assert list_resources(lab_api, namespace, CERTS) == []
        metrics = hook.get("/metrics").body.decode()
        rejected = sum(
            float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith("kernel_gossip_webhook_events_rejected_total{")
        )
        assert rejected >= len(seen)
        assert "kernel_gossip_webhook_events_accepted_total{" not in metrics
        print(f"{len(seen)} distinct bad inputs, statuses {sorted(set(seen.values()))}")
    finally:
        assert hook.stop() == 0, hook.output()


def test_any_valid_signal_is_written_as_sent(operator: Operator, lab_api: LabApi) -> None:
    """Odd but valid signals (253-character names, int64 counters, year 8999) are written,
    never refused or answered with a 5xx, and read back figure for figure."""
    figures = {
        "throttle_percentage": "throttledPercent",
        "actual_cpu_usage": "cpuUsageCores",
        "period_seconds": "windowSeconds",
        "nr_periods": "nrPeriods",
        "nr_throttled": "nrThrottled",
        "throttled_seconds": "throttledSeconds",
        "cpu_limit_cores": "cpuLimitCores",
        "runqueue_latency_p50_us": "runqueueLatencyP50Us",
        "runqueue_latency_p99_us": "runqueueLatencyP99Us",
        "involuntary_switches": "involuntarySwitches",
        "pod_uid": "podUid",
    }

    @settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow])
    @given(throttle_signals())
    @example(LARGEST_PERCENT_OF_LIMIT)
    def post(document: dict[str, Any]) -> None:
        reply = operator.post(json.dumps(document))
        assert reply.status == 202, reply.body
        name = reply.json()["name"]
        assert name == whisper_name("kernel-gossip", document["namespace"], document["pod_name"])
        whisper = get_resource(lab_api, "kernel-gossip", KW, name)
        assert whisper is not None
        truth = whisper["spec"]["kernelTruth"]
        for field, key in figures.items():
            if field in document:
                assert truth[key] == document[field], (field, truth[key], document[field])
        assert whisper["spec"]["podNamespace"] == document["namespace"]
        observed = datetime.fromisoformat(whisper["spec"]["observedAt"])
        assert observed == datetime.fromisoformat(document["timestamp"])
        delete_resource(lab_api, "kernel-gossip", KW, name)

    post()


def test_without_the_token_401_and_nothing_written(operator: Operator, lab_api: LabApi) -> None:
    body = throttle("no-token-demo", T1)
    delete_resource(lab_api, "kernel-gossip", KW, kw_of("no-token-demo"))
    for reply in (
        operator.post(body, authorize=False),
        operator.post(body, token="wrong-token"),
        operator.post(body, token=""),
    ):
        assert reply.status == 401, reply.body
        assert "Bearer" in reply.json()["error"]
    assert get_resource(lab_api, "kernel-gossip", KW, kw_of("no-token-demo")) is None


def test_same_signal_twice_is_one_resource_updated(operator: Operator, lab_api: LabApi) -> None:
    delete_resource(lab_api, "kernel-gossip", KW, kw_of("twice-demo"))
    body = throttle("twice-demo", T1)
    assert operator.post(body).status == 202
    first = get_resource(lab_api, "kernel-gossip", KW, kw_of("twice-demo"))
    assert operator.post(body).status == 202
    second = get_resource(lab_api, "kernel-gossip", KW, kw_of("twice-demo"))
    assert first is not None
    assert second is not None
    assert second["metadata"]["uid"] == first["metadata"]["uid"]
    assert second["metadata"]["resourceVersion"] != first["metadata"]["resourceVersion"]
    # As instants: "...05Z" sorts after "...05.1Z" as text.
    updated = [datetime.fromisoformat(r["status"]["updatedAt"]) for r in (first, second)]
    assert updated[1] > updated[0]
    assert len(second["status"]["history"]) == 1  # a replayed reading is the same reading
    named = [
        item
        for item in list_resources(lab_api, "kernel-gossip", KW)
        if item["spec"]["podName"] == "twice-demo"
    ]
    assert len(named) == 1

    later = throttle(
        "twice-demo", T1 + timedelta(minutes=1), throttle_percentage=60.0, nr_throttled=90
    )
    assert operator.post(later).status == 202
    third = get_resource(lab_api, "kernel-gossip", KW, kw_of("twice-demo"))
    assert third is not None
    assert third["spec"]["kernelTruth"]["throttledPercent"] == 60.0
    assert [r["throttledPercent"] for r in third["status"]["history"]] == [40.0, 60.0]


def test_a_whisper_changed_or_deleted_by_hand_is_read_again(
    operator: Operator, lab_api: LabApi
) -> None:
    """The writer remembers each resource as it stored it, so a pod's next signal needs no
    read; a hand edit (409 on the remembered resourceVersion) or a delete (404) makes it
    read the resource again, keeping the edit or starting afresh."""
    name = kw_of("by-hand-demo")
    delete_resource(lab_api, "kernel-gossip", KW, name)

    def reading(minute: int, throttled: int) -> dict[str, Any]:
        """Post a reading at T1 + minute, throttled of 150 periods; the resource after it."""
        moment = T1 + timedelta(minutes=minute)
        percent = throttled / 1.5
        body = throttle("by-hand-demo", moment, throttle_percentage=percent, nr_throttled=throttled)
        assert operator.post(body).status == 202
        whisper = get_resource(lab_api, "kernel-gossip", KW, name)
        assert whisper is not None
        assert whisper["spec"]["observedAt"] == stamp(moment)
        return whisper

    reading(0, 60)
    label = {"metadata": {"labels": {"team": "checkout"}}}
    path = resource_path("kernel-gossip", KW, name)
    lab_api.expect(200, "PATCH", path, label, content_type="application/merge-patch+json")
    edited = reading(1, 75)
    assert edited["metadata"]["labels"] == {"team": "checkout"}
    assert [r["throttledPercent"] for r in edited["status"]["history"]] == [40.0, 50.0]

    delete_resource(lab_api, "kernel-gossip", KW, name)
    afresh = reading(2, 90)
    assert afresh["metadata"]["uid"] != edited["metadata"]["uid"]
    assert [r["throttledPercent"] for r in afresh["status"]["history"]] == [60.0]
    assert operator.output().count(f"KernelWhisper {name} changed under us") >= 2


def test_restart_between_two_signals_keeps_both(lab_api: LabApi, workdir: Path) -> None:
    namespace = "kg-restart"
    hook = Operator(lab_api, namespace, workdir).start()
    try:
        assert hook.post(throttle("restart-demo", T1)).status == 202
        assert hook.stop() == 0, hook.output()
        hook.start()
        later = throttle(
            "restart-demo", T1 + timedelta(minutes=5), throttle_percentage=60.0, nr_throttled=90
        )
        assert hook.post(later).status == 202
        whisper = get_resource(lab_api, namespace, KW, kw_of("restart-demo", namespace))
        assert whisper is not None
        assert whisper["spec"]["observedAt"] == stamp(T1 + timedelta(minutes=5))
        assert [(r["observedAt"], r["throttledPercent"]) for r in whisper["status"]["history"]] == [
            (stamp(T1), 40.0),
            (stamp(T1 + timedelta(minutes=5)), 60.0),
        ]
    finally:
        assert hook.stop() == 0, hook.output()


def test_two_operators_writing_one_resource_lose_no_reading(lab_api: LabApi, workdir: Path) -> None:
    """Optimistic concurrency across processes: 10 readings of one pod posted at once to two
    operators all end up in status.history (a lost update would drop some)."""
    namespace = "kg-conflicts"
    first = Operator(lab_api, namespace, workdir).start()
    second = Operator(lab_api, namespace, workdir).start()
    try:
        bodies = [
            throttle("busy-demo", T1 + timedelta(seconds=i), throttle_percentage=40.0)
            for i in range(10)
        ]
        with ThreadPoolExecutor(max_workers=10) as pool:
            replies = list(
                pool.map(lambda i: (first, second)[i % 2].post(bodies[i]), range(len(bodies)))
            )
        logs = (first.output() + second.output()).splitlines()
        assert [r.status for r in replies] == [202] * 10, (
            [r.body for r in replies],
            [line for line in logs if "changed under us" in line or "kept changing" in line],
        )
        whisper = get_resource(lab_api, namespace, KW, kw_of("busy-demo", namespace))
        assert whisper is not None
        history = [r["observedAt"] for r in whisper["status"]["history"]]
        assert history == [stamp(T1 + timedelta(seconds=i)) for i in range(10)]
        retries = (first.output() + second.output()).count("changed under us")
        print(f"10 concurrent signals through two operators: {retries} conflicts retried")
    finally:
        assert first.stop() == 0, first.output()
        assert second.stop() == 0, second.output()


def test_events_on_an_existing_pod_and_its_limit_used(operator: Operator, lab_api: LabApi) -> None:
    ensure_namespace(lab_api, "shop")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "checkout-1", "namespace": "shop"},
        "spec": {
            "containers": [
                {
                    "name": "nginx",
                    "image": "nginx",
                    "resources": {"limits": {"cpu": "500m"}, "requests": {"cpu": "100m"}},
                }
            ]
        },
    }
    created = lab_api.request("POST", "/api/v1/namespaces/shop/pods", pod)
    assert created.status in (201, 409), created.text
    uid = lab_api.expect(200, "GET", "/api/v1/namespaces/shop/pods/checkout-1")["metadata"]["uid"]
    signal = json.loads(throttle("checkout-1", T1, pod_uid=uid))  # the pod's own UID
    del signal["cpu_limit_cores"]  # so the pod spec's limit is the one used
    assert operator.post(json.dumps(signal | {"namespace": "shop"})).status == 202
    birth = BIRTH | {"pod_name": "checkout-1", "namespace": "shop", "pod_uid": uid}
    assert operator.post(json.dumps(birth)).status == 202

    whisper = get_resource(lab_api, "kernel-gossip", KW, kw_of("checkout-1"))
    assert whisper is not None
    usage = whisper["status"]["reportedUsage"]
    assert usage["percentOfLimit"] == pytest.approx(100 * 0.31 / 0.5)
    review = next(
        r for r in whisper["status"]["recommendations"] if r["action"] == "review_resource_requests"
    )
    assert "requests.cpu 100m is below the 0.48 cores" in review["reason"]

    events = lab_api.expect(200, "GET", "/api/v1/namespaces/shop/events")["items"]
    about_pod = {e["reason"]: e for e in events if e["involvedObject"].get("name") == "checkout-1"}
    assert {"KernelThrottling", "PodBirthRecorded"} <= set(about_pod)
    throttling = about_pod["KernelThrottling"]
    assert throttling["involvedObject"]["uid"] == uid
    assert throttling["type"] == "Warning"
    assert "40.0% of CFS periods throttled" in throttling["message"]
    assert about_pod["PodBirthRecorded"]["message"].startswith("1812 syscalls in 2.5s")


def test_hand_written_kernelwhisper_is_concluded_by_kopf(
    operator: Operator, lab_api: LabApi
) -> None:
    delete_resource(lab_api, "kernel-gossip", KW, "by-hand-kw")
    body = {
        "apiVersion": "kernel-gossip.dev/v1alpha1",
        "kind": "KernelWhisper",
        "metadata": {"name": "by-hand-kw"},
        "spec": {
            "signalType": "cpu_throttle",
            "podName": "by-hand",
            "podNamespace": "kernel-gossip",
            "observedAt": stamp(T1),
            "kernelTruth": {"throttledPercent": 30.0, "windowSeconds": 60, "cpuUsageCores": 0.2},
            "reportedCpuUsageCores": 0.1,
            "insights": ["written with kubectl apply"],
        },
    }
    lab_api.expect(201, "POST", resource_path("kernel-gossip", KW), body)
    deadline = time.monotonic() + 30
    status: dict[str, Any] = {}
    while time.monotonic() < deadline and "severity" not in status:
        time.sleep(0.2)
        found = get_resource(lab_api, "kernel-gossip", KW, "by-hand-kw")
        status = (found or {}).get("status") or {}
    assert status.get("severity") == "warning", operator.output()[-3000:]
    assert status["reportedUsage"]["source"] == "payload"
    assert status["recommendations"]


def test_hand_written_birth_certificate_is_summarised_by_kopf(
    operator: Operator, lab_api: LabApi
) -> None:
    delete_resource(lab_api, "kernel-gossip", CERTS, "nginx-birth-demo")
    body = {
        "apiVersion": "kernel-gossip.dev/v1alpha1",
        "kind": "PodBirthCertificate",
        "metadata": {"name": "nginx-birth-demo"},
        "spec": {
            "podName": "nginx-demo",
            "podNamespace": "kernel-gossip",
            "startedAt": "2025-08-25T10:30:00Z",
            "syscallTimeline": [
                {"name": "clone", "timestamp": "2025-08-25T10:30:00.150Z", "count": 12}
            ],
            "totalSyscalls": 847,
            "syscalls": {"clone": 12},
            "namespaceOperations": 5,
            "namespacesCreated": ["mnt", "uts", "ipc", "pid", "net"],
            "mounts": 23,
            "cgroupWrites": 42,
            "execs": 3,
            "duration": "2.5s",
            "durationMs": 2500,
        },
    }
    lab_api.expect(201, "POST", resource_path("kernel-gossip", CERTS), body)
    deadline = time.monotonic() + 30
    status: dict[str, Any] = {}
    while time.monotonic() < deadline and "summary" not in status:
        time.sleep(0.2)
        found = get_resource(lab_api, "kernel-gossip", CERTS, "nginx-birth-demo")
        status = (found or {}).get("status") or {}
    assert status.get("summary") == (
        "847 syscalls in 2.5s: 5 namespace operations (created: mnt, uts, ipc, pid, net), "
        "23 mounts, 42 cgroup writes, 3 execs"
    ), operator.output()[-3000:]


def test_pods_of_one_name_in_two_namespaces_get_two_resources(
    operator: Operator, lab_api: LabApi
) -> None:
    """Unique per (namespace, pod): the own namespace's pod keeps `<pod>-kw` (the talk's
    names), another namespace's is `<namespace>.<pod>-kw`; neither is lost."""
    for name in ("twin-kw", "other.twin-kw"):
        delete_resource(lab_api, "kernel-gossip", KW, name)
    own = operator.post(throttle("twin", T1, namespace="kernel-gossip"))
    other = operator.post(throttle("twin", T1, namespace="other"))
    assert (own.status, other.status) == (202, 202), (own.body, other.body)
    assert own.json()["name"] == "twin-kw"
    assert other.json()["name"] == "other.twin-kw"
    for name, namespace in (("twin-kw", "kernel-gossip"), ("other.twin-kw", "other")):
        whisper = get_resource(lab_api, "kernel-gossip", KW, name)
        assert whisper is not None
        assert whisper["spec"]["podNamespace"] == namespace


def test_metrics_count_and_time_the_writes(operator: Operator, lab_api: LabApi) -> None:
    """One new signal moves each counter by exactly one."""
    counters = (
        'kernel_gossip_webhook_events_accepted_total{type="cpu_throttle"}',
        'kernel_gossip_signal_to_cr_seconds_count{type="cpu_throttle"}',
        'kernel_gossip_cr_writes_total{kind="KernelWhisper",operation="created"}',
        "kernel_gossip_webhook_events_received_total",
    )

    def read() -> dict[str, float]:
        text = operator.get("/metrics").body.decode()
        lines = dict(line.rsplit(" ", 1) for line in text.splitlines() if line[:1] != "#")
        return {name: float(lines.get(name, 0)) for name in counters}

    delete_resource(lab_api, "kernel-gossip", KW, "metrics-demo-kw")
    before = read()
    assert operator.post(throttle("metrics-demo", T1)).status == 202
    after = read()
    assert {name: after[name] - before[name] for name in counters} == dict.fromkeys(counters, 1.0)
    assert operator.get("/healthz").json() == {"status": "ok"}
    unknown = operator.get("/nope")
    assert unknown.status == 404
    assert "error" in unknown.json()


def test_insecure_webhook_warns_and_accepts_without_a_token(lab_api: LabApi, workdir: Path) -> None:
    hook = Operator(lab_api, "kg-insecure", workdir, token=None).start()
    try:
        assert hook.post(throttle("open-demo", T1), authorize=False).status == 202
        assert "--insecure-webhook" in hook.output()
        assert "WARNING" in hook.output()
    finally:
        assert hook.stop() == 0


def test_no_token_source_is_a_one_line_error(lab_api: LabApi) -> None:
    """Neither --token-file nor --insecure-webhook, and no Secret: refuse to start."""
    result = subprocess.run(
        [
            KERNEL_GOSSIP,
            "operator",
            "--kubeconfig",
            str(lab_api.kubeconfig),
            "--namespace",
            "kg-no-token",
            "--webhook-port",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert (
        result.stderr.strip()
        .splitlines()[-1]
        .startswith("kernel-gossip operator: error: no webhook token")
    )
