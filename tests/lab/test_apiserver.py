"""The lab API server: pure parts (pins, apt configuration, kubeconfig, ports), then the real
server built from Kubernetes' API machinery (fixture lab_api) with our CRDs: discovery,
round trips, 422s, the status subresource, watch, kubectl's columns, core types and kopf."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from kernel_gossip import paths
from kernel_gossip.errors import UserError
from kernel_gossip.lab import apibuild, apiserver
from kernel_gossip.lab.apiserver import LabApi
from kernel_gossip.schema import crds
from kernel_gossip.schema.resources import (
    API_VERSION,
    CertificateTimelineStep,
    KernelTruth,
    KernelWhisperSpec,
    KernelWhisperStatus,
    PodBirthCertificateSpec,
    PodBirthCertificateStatus,
    Recommendation,
    ReportedUsage,
    ThrottleReading,
    birth_certificate_name,
    kernel_whisper_name,
)

JsonObject = dict[str, Any]
CLI = [sys.executable, "-m", "kernel_gossip"]
AGGREGATED = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList"

# --- pure: pins, apt, kubeconfig, ports ------------------------------------------------------


def test_parse_pins_reads_lines_and_ignores_comments() -> None:
    text = "# header\n\ngolang-1.27-go=1.27.3-1  # the toolchain\nkubectl=1:1.36.4+ds-1\n"
    assert [str(p) for p in apibuild.parse_pins(text)] == [
        "golang-1.27-go=1.27.3-1",
        "kubectl=1:1.36.4+ds-1",
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("golang-1.27-go\n", "line 1: expected package=version"),
        ("aa=1\nbb = 2\n", "line 2: expected package=version"),
        ("Bad=1\n", "expected package=version"),
        ("aa=1\naa=2\n", "line 2: aa is pinned twice"),
    ],
)
def test_parse_pins_refuses_bad_lines(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        apibuild.parse_pins(text)


def test_pins_hash_depends_on_pins_not_on_order_or_comments() -> None:
    base = apibuild.pins_hash("aa=1\nbb=2\n")
    assert apibuild.pins_hash("# note\nbb=2\n\naa=1  # why\n") == base
    assert apibuild.pins_hash("aa=1\nbb=3\n") != base
    assert apibuild.pins_hash("aa=1\n") != base


def test_kubernetes_version_of_the_pinned_machinery() -> None:
    pins = apibuild.parse_pins("golang-k8s-apiserver-dev=0.36.4-2\n")
    assert apibuild.kubernetes_version(pins) == "v1.36.4"
    with pytest.raises(ValueError, match="not pinned"):
        apibuild.kubernetes_version(apibuild.parse_pins("kubectl=1.36.4+ds-1\n"))


def test_pins_file_pins_toolchain_machinery_and_kubectl_exactly() -> None:
    pins = {p.package: p.version for p in apibuild.parse_pins(apibuild.PINS_FILE.read_text())}
    assert pins["golang-1.27-go"] == pins["golang-1.27-src"]
    assert pins["golang-k8s-apiextensions-apiserver-dev"].startswith("0.36.")
    assert pins["golang-k8s-apiserver-dev"].startswith("0.36.")
    assert pins["kubectl"] == pins["kubernetes-client"]
    assert pins["kubectl"].startswith("1.36.")
    assert all(name.startswith("golang-") for name in set(pins) - {"kubectl", "kubernetes-client"})


def test_apt_config_keeps_all_state_under_its_base(tmp_path: Path) -> None:
    lines = apibuild.apt_config(tmp_path).splitlines()
    dirs = [line for line in lines if line.startswith("Dir::")]
    assert len(dirs) == 9
    assert all(f'"{tmp_path}/' in line for line in dirs)
    assert 'Dir::State::status "' + f'{tmp_path}/status";' in lines
    assert "sid main" in apibuild.SID_SOURCE
    assert apibuild.SID_SOURCE.startswith("deb [signed-by=/usr/share/keyrings/")


def test_kubeconfig_yaml_names_server_ca_and_a_context() -> None:
    config = yaml.safe_load(apiserver.kubeconfig_yaml("https://127.0.0.1:6443", b"PEM"))
    (cluster,) = config["clusters"]
    assert cluster["cluster"] == {
        "server": "https://127.0.0.1:6443",
        "certificate-authority-data": "UEVN",
    }
    (context,) = config["contexts"]
    assert config["current-context"] == context["name"]
    assert context["context"]["cluster"] == cluster["name"]
    (user,) = config["users"]
    assert context["context"]["user"] == user["name"]


def test_choose_ports_prefers_asked_then_previous_then_free() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        with pytest.raises(UserError, match=f"port {taken} for the API server is in use"):
            apiserver.choose_ports(None, taken, None)
        previous = apiserver.Ports(api=taken, etcd=taken, etcd_peer=taken)
        ports = apiserver.choose_ports(previous, None, None)
        assert taken not in (ports.api, ports.etcd, ports.etcd_peer)
    free = apiserver.choose_ports(None, None, None)
    assert apiserver.choose_ports(free, None, None) == free
    asked = apiserver._free_port()  # a free port asked for wins over the previous one
    assert apiserver.choose_ports(free, asked, None) == apiserver.Ports(
        api=asked, etcd=free.etcd, etcd_peer=free.etcd_peer
    )


# --- examples: every field set ----------------------------------------------------------------

OBSERVED = datetime(2026, 11, 23, 17, 0, 0, tzinfo=UTC)


def full_kernel_whisper_spec(pod: str, namespace: str) -> KernelWhisperSpec:
    return KernelWhisperSpec(
        signal_type="cpu_throttle",
        pod_name=pod,
        pod_namespace=namespace,
        container_name="app",
        node="lab-node",
        observed_at=OBSERVED,
        kernel_truth=KernelTruth(
            window_seconds=15.0,
            cgroup_path="/kubepods/burstable/pod1234/abcd",
            pod_uid="1234",
            container_id="abcd",
            runtime="containerd",
            cpu_limit_cores=0.5,
            cpu_usage_cores=0.31,
            nr_periods=150,
            nr_throttled=57,
            throttled_percent=38.0,
            throttled_seconds=2.25,
            runqueue_latency_p50_us=12.5,
            runqueue_latency_p99_us=4100.0,
            involuntary_switches=321,
        ),
        reported_cpu_usage_cores=0.29,
        insights=["throttled in 38% of CFS periods", "usage looks like 0.29 cores"],
    )


def full_kernel_whisper_status() -> KernelWhisperStatus:
    return KernelWhisperStatus(
        severity="critical",
        reported_usage=ReportedUsage(
            cores=0.29,
            source="metrics-api",
            percent_of_limit=58.0,
            metrics_api_cores=0.29,
            payload_cores=0.3,
        ),
        recommendations=[
            Recommendation(
                action="increase_cpu_limits", reason="throttled", suggested_value="750m"
            ),
            Recommendation(action="review_requests", reason="bursty", suggested_value="300m"),
        ],
        recommendation="increase_cpu_limits to 750m: throttled",
        history=[ThrottleReading(observed_at=OBSERVED, throttled_percent=38.0, pod_uid="1234")],
        updated_at=OBSERVED,
    )


def full_birth_certificate_spec(pod: str, namespace: str) -> PodBirthCertificateSpec:
    return PodBirthCertificateSpec(
        pod_name=pod,
        pod_namespace=namespace,
        pod_uid="5678",
        node="lab-node",
        started_at=OBSERVED,
        syscall_timeline=[
            CertificateTimelineStep(name="clone3", timestamp=OBSERVED, count=4),
            CertificateTimelineStep(name="execve", timestamp=OBSERVED, count=2),
        ],
        total_syscalls=1234,
        syscalls={"clone3": 4, "execve": 2, "mount": 17},
        namespace_operations=6,
        namespaces_created=["mnt", "uts", "ipc", "pid", "net"],
        mounts=17,
        cgroup_writes=9,
        execs=2,
        duration="1.8s",
        duration_ms=1800.0,
    )


def full_birth_certificate_status() -> PodBirthCertificateStatus:
    return PodBirthCertificateStatus(summary="1234 syscalls in 1.8s", recorded_at=OBSERVED)


def dumped(model: Any) -> JsonObject:
    value: JsonObject = model.model_dump(mode="json", by_alias=True)
    return value


def assert_every_field_set(value: Any, path: str = "") -> None:
    """A full example: no field left null, so a pruned field cannot hide."""
    assert value is not None, path
    if isinstance(value, dict):
        for key, child in value.items():
            assert_every_field_set(child, f"{path}.{key}")
    elif isinstance(value, list):
        assert value, path
        for index, child in enumerate(value):
            assert_every_field_set(child, f"{path}[{index}]")


def resource(kind: str, name: str, namespace: str, spec: JsonObject) -> JsonObject:
    return {
        "apiVersion": API_VERSION,
        "kind": kind,
        "metadata": {"name": name, "namespace": namespace},
        "spec": spec,
    }


def collection(namespace: str, plural: str) -> str:
    return f"/apis/{API_VERSION}/namespaces/{namespace}/{plural}"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --- the real server -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def namespace(lab_api: LabApi) -> str:
    name = unique("test-apiserver")
    lab_api.expect(201, "POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    return name


def kubectl(api: LabApi, *args: str) -> str:
    result = subprocess.run(
        [str(api.kubectl), "--kubeconfig", str(api.kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.slow
def test_server_reports_the_pinned_kubernetes_version(lab_api: LabApi) -> None:
    """k8s.io/apiserver 0.X.Y is Kubernetes v1.X.Y: read from the pins file's own line,
    not through the function that stamped the server."""
    pinned = re.search(
        r"^golang-k8s-apiserver-dev=0\.(\d+)\.(\d+)-", apibuild.PINS_FILE.read_text(), re.M
    )
    assert pinned, "golang-k8s-apiserver-dev is not pinned"
    version = lab_api.expect(200, "GET", "/version")
    assert version["gitVersion"] == f"v1.{pinned.group(1)}.{pinned.group(2)}"
    assert f"Server Version: {version['gitVersion']}" in kubectl(lab_api, "version")


@pytest.mark.slow
def test_discovery_serves_core_extensions_and_our_group(lab_api: LabApi) -> None:
    assert lab_api.expect(200, "GET", "/api")["versions"] == ["v1"]
    core = {r["name"]: r for r in lab_api.expect(200, "GET", "/api/v1")["resources"]}
    assert {"namespaces", "events", "pods", "pods/status"} <= set(core)
    assert core["pods"]["shortNames"] == ["po"]
    assert core["namespaces"]["namespaced"] is False
    groups = {g["name"]: g for g in lab_api.expect(200, "GET", "/apis")["groups"]}
    assert {"apiextensions.k8s.io", "kernel-gossip.dev"} <= set(groups)
    assert groups["kernel-gossip.dev"]["preferredVersion"]["groupVersion"] == API_VERSION
    ours = {r["name"]: r for r in lab_api.expect(200, "GET", f"/apis/{API_VERSION}")["resources"]}
    assert ours["kernelwhispers"]["shortNames"] == ["kw"]
    assert ours["podbirthcertificates"]["shortNames"] == ["pbc"]
    assert {"kernelwhispers/status", "podbirthcertificates/status"} <= set(ours)
    aggregated = lab_api.request("GET", "/apis", accept=AGGREGATED).json()
    assert aggregated["kind"] == "APIGroupDiscoveryList"
    (group,) = [g for g in aggregated["items"] if g["metadata"]["name"] == "kernel-gossip.dev"]
    (version,) = group["versions"]
    assert {r["resource"]: r["shortNames"] for r in version["resources"]} == {
        "kernelwhispers": ["kw"],
        "podbirthcertificates": ["pbc"],
    }
    resources = kubectl(lab_api, "api-resources", "--api-group=kernel-gossip.dev", "-o", "name")
    assert resources.split() == [
        "kernelwhispers.kernel-gossip.dev",
        "podbirthcertificates.kernel-gossip.dev",
    ]


@pytest.mark.slow
def test_crds_are_established_and_the_files_apply(lab_api: LabApi) -> None:
    applied = kubectl(
        lab_api,
        "apply",
        "--server-side",
        "--field-manager=kernel-gossip-lab",
        "-k",
        "deploy/manifests/crds/",
    )
    assert applied.count("serverside-applied") == 2, applied
    base = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    for resource_ in crds.RESOURCES:
        stored = lab_api.expect(200, "GET", f"{base}/{resource_.plural}.kernel-gossip.dev")
        conditions = {c["type"]: c["status"] for c in stored["status"]["conditions"]}
        assert conditions["Established"] == "True"
        assert conditions["NamesAccepted"] == "True"
        assert "NonStructuralSchema" not in conditions
        (version,) = stored["spec"]["versions"]
        (generated,) = crds.crd(resource_)["spec"]["versions"]
        assert version["schema"] == generated["schema"]
        assert version["additionalPrinterColumns"] == generated["additionalPrinterColumns"]
        assert stored["status"]["acceptedNames"]["shortNames"] == [resource_.short_name]


@pytest.mark.slow
def test_full_kernel_whisper_round_trips_with_no_field_lost(
    lab_api: LabApi, namespace: str
) -> None:
    pod = unique("nginx-stress-demo")
    spec, status = full_kernel_whisper_spec(pod, namespace), full_kernel_whisper_status()
    sent_spec, sent_status = dumped(spec), dumped(status)
    assert_every_field_set(sent_spec)
    assert_every_field_set(sent_status)
    path = collection(namespace, "kernelwhispers")
    name = kernel_whisper_name(pod)
    body = resource("KernelWhisper", name, namespace, sent_spec)
    created = lab_api.expect(201, "POST", path, body, query={"fieldValidation": "Strict"})
    assert created["metadata"]["name"] == f"{pod}-kw"
    created["status"] = sent_status
    lab_api.expect(200, "PUT", f"{path}/{name}/status", created)
    stored = lab_api.expect(200, "GET", f"{path}/{name}")
    assert stored["spec"] == sent_spec
    assert stored["status"] == sent_status
    assert KernelWhisperSpec.model_validate(stored["spec"]) == spec
    assert KernelWhisperStatus.model_validate(stored["status"]) == status


@pytest.mark.slow
def test_full_birth_certificate_round_trips_with_no_field_lost(
    lab_api: LabApi, namespace: str
) -> None:
    pod = unique("nginx-demo")
    spec, status = full_birth_certificate_spec(pod, namespace), full_birth_certificate_status()
    sent_spec, sent_status = dumped(spec), dumped(status)
    assert_every_field_set(sent_spec)
    path = collection(namespace, "podbirthcertificates")
    name = birth_certificate_name(pod)
    body = resource("PodBirthCertificate", name, namespace, sent_spec)
    created = lab_api.expect(201, "POST", path, body, query={"fieldValidation": "Strict"})
    assert created["metadata"]["name"] == f"{pod}-cert"
    created["status"] = sent_status
    lab_api.expect(200, "PUT", f"{path}/{name}/status", created)
    stored = lab_api.expect(200, "GET", f"{path}/{name}")
    assert stored["spec"] == sent_spec
    assert stored["status"] == sent_status
    assert PodBirthCertificateSpec.model_validate(stored["spec"]) == spec
    assert PodBirthCertificateStatus.model_validate(stored["status"]) == status


def without(spec: JsonObject, dotted: str) -> JsonObject:
    *parents, last = dotted.split(".")
    node = spec
    for part in parents:
        node = node[part]
    del node[last]
    return spec


def replaced(spec: JsonObject, dotted: str, value: Any) -> JsonObject:
    *parents, last = dotted.split(".")
    node = spec
    for part in parents:
        node = node[part]
    node[last] = value
    return spec


INVALID = [
    ("KernelWhisper", "kernelTruth.throttledPercent", "high", "spec.kernelTruth.throttledPercent"),
    ("KernelWhisper", "kernelTruth.throttledPercent", 150, "spec.kernelTruth.throttledPercent"),
    ("KernelWhisper", "signalType", "memory_pressure", "spec.signalType"),
    ("KernelWhisper", "insights", "not a list", "spec.insights"),
    ("KernelWhisper", "kernelTruth.windowSeconds", 0, "spec.kernelTruth.windowSeconds"),
    ("KernelWhisper", "podName", None, "spec.podName"),
    ("KernelWhisper", "kernelTruth.throttledPercent", None, "spec.kernelTruth.throttledPercent"),
    ("PodBirthCertificate", "totalSyscalls", "many", "spec.totalSyscalls"),
    ("PodBirthCertificate", "namespacesCreated", ["mnt", "bogus"], "spec.namespacesCreated[1]"),
    ("PodBirthCertificate", "syscallTimeline", [{"name": "clone"}], "spec.syscallTimeline[0]"),
    ("PodBirthCertificate", "syscalls", {"clone": "x"}, "spec.syscalls.clone"),
    ("PodBirthCertificate", "cgroupWrites", -1, "spec.cgroupWrites"),
    ("PodBirthCertificate", "duration", None, "spec.duration"),
]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("kind", "field", "value", "reported"), INVALID, ids=[f"{c[0]}-{c[1]}-{c[2]}" for c in INVALID]
)
def test_invalid_objects_get_422_naming_the_field(
    lab_api: LabApi, namespace: str, kind: str, field: str, value: Any, reported: str
) -> None:
    pod = unique("invalid")
    if kind == "KernelWhisper":
        plural, spec = "kernelwhispers", dumped(full_kernel_whisper_spec(pod, namespace))
    else:
        plural, spec = "podbirthcertificates", dumped(full_birth_certificate_spec(pod, namespace))
    spec = without(spec, field) if value is None else replaced(spec, field, value)
    body = resource(kind, f"{pod}-x", namespace, spec)
    answer = lab_api.request("POST", collection(namespace, plural), body)
    assert answer.status == 422, answer.text
    status = answer.json()
    assert status["reason"] == "Invalid"
    fields = [cause.get("field", "") for cause in status["details"]["causes"]]
    assert any(f.startswith(reported) for f in fields), fields


@pytest.mark.slow
def test_a_missing_spec_gets_422(lab_api: LabApi, namespace: str) -> None:
    body = {"apiVersion": API_VERSION, "kind": "KernelWhisper", "metadata": {"name": "no-spec"}}
    answer = lab_api.request("POST", collection(namespace, "kernelwhispers"), body)
    assert answer.status == 422, answer.text
    assert "spec" in answer.text


@pytest.mark.slow
def test_status_is_only_written_through_the_status_subresource(
    lab_api: LabApi, namespace: str
) -> None:
    pod = unique("status")
    path = collection(namespace, "kernelwhispers")
    name = kernel_whisper_name(pod)
    body = resource(
        "KernelWhisper", name, namespace, dumped(full_kernel_whisper_spec(pod, namespace))
    )
    status = dumped(full_kernel_whisper_status())
    created = lab_api.expect(201, "POST", path, body | {"status": status})
    assert "status" not in created, "create must drop the status"
    created["status"] = status
    updated = lab_api.expect(200, "PUT", f"{path}/{name}", created)
    assert "status" not in updated, "the main resource must not write the status"
    assert updated["metadata"]["generation"] == 1
    updated["status"] = status
    updated["spec"]["podName"] = "changed-through-status"
    with_status = lab_api.expect(200, "PUT", f"{path}/{name}/status", updated)
    assert with_status["status"] == status
    assert with_status["spec"]["podName"] == pod, "/status must not write the spec"
    assert with_status["metadata"]["generation"] == 1
    with_status["spec"]["insights"] = ["a new insight"]
    with_status["status"] = dumped(full_kernel_whisper_status()) | {"severity": "info"}
    respecified = lab_api.expect(200, "PUT", f"{path}/{name}", with_status)
    assert respecified["metadata"]["generation"] == 2
    assert respecified["status"] == status, "a spec update keeps the stored status"
    patched = lab_api.expect(
        200,
        "PATCH",
        f"{path}/{name}/status",
        {"status": {"severity": "warning"}},
        content_type="application/merge-patch+json",
    )
    assert patched["status"]["severity"] == "warning"
    assert lab_api.expect(200, "GET", f"{path}/{name}")["status"]["severity"] == "warning"


@pytest.mark.slow
def test_watch_delivers_added_and_modified(lab_api: LabApi, namespace: str) -> None:
    path = collection(namespace, "podbirthcertificates")
    since = lab_api.expect(200, "GET", path)["metadata"]["resourceVersion"]
    pod = unique("watched")
    name = birth_certificate_name(pod)
    events: list[tuple[str, str]] = []

    def watch() -> None:
        for event in lab_api.watch(path, since, timeout_seconds=20):
            events.append((event["type"], event["object"]["metadata"]["name"]))
            if len(events) == 2:
                return

    watcher = threading.Thread(target=watch)
    watcher.start()
    body = resource(
        "PodBirthCertificate", name, namespace, dumped(full_birth_certificate_spec(pod, namespace))
    )
    created = lab_api.expect(201, "POST", path, body)
    created["spec"]["totalSyscalls"] = 4321
    lab_api.expect(200, "PUT", f"{path}/{name}", created)
    watcher.join(timeout=40)
    assert events == [("ADDED", name), ("MODIFIED", name)]


@pytest.mark.slow
def test_kubectl_get_shows_the_printer_columns(lab_api: LabApi, namespace: str) -> None:
    pod = unique("columns")
    kw_path, pbc_path = (
        collection(namespace, p) for p in ("kernelwhispers", "podbirthcertificates")
    )
    whisper = resource(
        "KernelWhisper",
        kernel_whisper_name(pod),
        namespace,
        dumped(full_kernel_whisper_spec(pod, namespace)),
    )
    created = lab_api.expect(201, "POST", kw_path, whisper)
    created["status"] = dumped(full_kernel_whisper_status())
    lab_api.expect(200, "PUT", f"{kw_path}/{kernel_whisper_name(pod)}/status", created)
    certificate = resource(
        "PodBirthCertificate",
        birth_certificate_name(pod),
        namespace,
        dumped(full_birth_certificate_spec(pod, namespace)),
    )
    lab_api.expect(201, "POST", pbc_path, certificate)

    output = kubectl(lab_api, "get", "kw,pbc", "-A")
    tables = [t.splitlines() for t in output.strip().split("\n\n")]
    assert len(tables) == 2, output
    assert tables[0][0].split() == [
        "NAMESPACE",
        "NAME",
        "POD",
        "THROTTLED",
        "REPORTED",
        "SEVERITY",
        "AGE",
    ]
    assert tables[1][0].split() == [
        "NAMESPACE",
        "NAME",
        "POD",
        "SYSCALLS",
        "NAMESPACES",
        "DURATION",
        "AGE",
    ]
    (kw_row,) = [r.split() for r in tables[0] if f"/{pod}-kw " in r + " "]
    assert kw_row[:6] == [
        namespace,
        f"kernelwhisper.kernel-gossip.dev/{pod}-kw",
        pod,
        "38",
        "0.29",
        "critical",
    ]
    (pbc_row,) = [r.split() for r in tables[1] if f"/{pod}-cert " in r + " "]
    assert pbc_row[:6] == [
        namespace,
        f"podbirthcertificate.kernel-gossip.dev/{pod}-cert",
        pod,
        "1234",
        "6",
        "1.8s",
    ]
    talk = kubectl(
        lab_api,
        "get",
        "kernelwhisper",
        f"{pod}-kw",
        "-n",
        namespace,
        "-o",
        "jsonpath={.status.recommendation}",
    )
    assert talk == "increase_cpu_limits to 750m: throttled"


@pytest.mark.slow
def test_core_types_namespaces_pods_and_events(lab_api: LabApi, namespace: str) -> None:
    ns = lab_api.expect(200, "GET", f"/api/v1/namespaces/{namespace}")
    assert ns["status"]["phase"] == "Active"
    pods = f"/api/v1/namespaces/{namespace}/pods"
    name = unique("pod")
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "lab"}},
        "spec": {"nodeName": "lab-node", "containers": [{"name": "app", "image": "lab/busybox"}]},
        "status": {"phase": "Running"},
    }
    created = lab_api.expect(201, "POST", pods, pod)
    assert created["status"]["phase"] == "Pending", "a new pod starts Pending whatever it says"
    created["status"] = {"phase": "Running", "podIP": "10.88.0.7"}
    running = lab_api.expect(200, "PUT", f"{pods}/{name}/status", created)
    assert running["status"]["podIP"] == "10.88.0.7"
    running["status"]["phase"] = "Failed"
    running["spec"]["containers"][0]["image"] = "lab/other"
    updated = lab_api.expect(200, "PUT", f"{pods}/{name}", running)
    assert updated["status"]["phase"] == "Running", "the main resource must not write the status"
    assert updated["spec"]["containers"][0]["image"] == "lab/other"
    selected = lab_api.expect(
        200, "GET", pods, query={"fieldSelector": "spec.nodeName=lab-node,status.phase=Running"}
    )
    assert [p["metadata"]["name"] for p in selected["items"]] == [name]
    applied = lab_api.expect(
        200,
        "PATCH",
        f"{pods}/{name}",
        {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"tier": "x"}}},
        query={"fieldManager": "lab-test"},
        content_type="application/apply-patch+yaml",
    )
    assert applied["metadata"]["labels"] == {"app": "lab", "tier": "x"}
    assert "lab-test" in {m["manager"] for m in applied["metadata"]["managedFields"]}

    event = {
        "metadata": {"generateName": "lab-"},
        "involvedObject": {"kind": "Pod", "name": name, "namespace": namespace},
        "reason": "Tested",
        "message": "an event",
        "type": "Normal",
    }
    lab_api.expect(201, "POST", f"/api/v1/namespaces/{namespace}/events", event)
    found = lab_api.expect(
        200,
        "GET",
        f"/api/v1/namespaces/{namespace}/events",
        query={"fieldSelector": f"involvedObject.name={name},involvedObject.kind=Pod"},
    )
    assert [e["reason"] for e in found["items"]] == ["Tested"]
    unknown = lab_api.request("GET", pods, query={"fieldSelector": "spec.bogus=1"})
    assert unknown.status == 400
    # Bound and not finished: a kubelet's zero-grace delete removes it (graceful deletion
    # is tested in test_apiserver_cluster.py).
    lab_api.expect(200, "DELETE", f"{pods}/{name}", query={"gracePeriodSeconds": "0"})
    assert lab_api.request("GET", f"{pods}/{name}").status == 404


KOPF_PEERING_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "kopfpeerings.kopf.dev"},
    "spec": {
        "scope": "Namespaced",
        "group": "kopf.dev",
        "names": {"kind": "KopfPeering", "plural": "kopfpeerings", "singular": "kopfpeering"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "status": {
                                "type": "object",
                                "x-kubernetes-preserve-unknown-fields": True,
                            }
                        },
                    }
                },
            }
        ],
    },
}

KOPF_HANDLER = """
import kopf

@kopf.on.create("kernel-gossip.dev", "v1alpha1", "kernelwhispers")
def seen(name, body, logger, **_):
    logger.info("lab test saw %s", name)
    kopf.info(body, reason="Seen", message=f"lab test saw {name}")
"""


def wait_for(condition: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.3)


@pytest.mark.slow
def test_kopf_runs_a_kernel_whisper_handler_with_no_warnings(
    lab_api: LabApi, tmp_path: Path
) -> None:
    """kopf with peering: discovery, watch, merge patches, its peering CRD, events."""
    namespace = unique("test-kopf")
    lab_api.expect(201, "POST", "/api/v1/namespaces", {"metadata": {"name": namespace}})
    crd_path = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    applied = lab_api.request(
        "PATCH",
        f"{crd_path}/kopfpeerings.kopf.dev",
        KOPF_PEERING_CRD,
        query={"fieldManager": "lab-test", "force": "true"},
        content_type="application/apply-patch+yaml",
    )
    assert applied.status in (200, 201), applied.text
    peering = {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "default"}}
    wait_for(
        lambda: (
            lab_api.request(
                "POST", f"/apis/kopf.dev/v1/namespaces/{namespace}/kopfpeerings", peering
            ).status
            == 201
        ),
        60,
        "the KopfPeering CRD",
    )
    handler = tmp_path / "handler.py"
    handler.write_text(KOPF_HANDLER)
    log = tmp_path / "kopf.log"
    kopf = Path(sys.executable).with_name("kopf")
    with log.open("w") as out:
        operator = subprocess.Popen(
            [str(kopf), "run", "--namespace", namespace, str(handler)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=os.environ | {"KUBECONFIG": str(lab_api.kubeconfig)},
        )
    try:
        wait_for(lambda: "Initial authentication has finished" in log.read_text(), 60, "kopf")
        pod = unique("kopf")
        body = resource(
            "KernelWhisper",
            kernel_whisper_name(pod),
            namespace,
            dumped(full_kernel_whisper_spec(pod, namespace)),
        )
        lab_api.expect(201, "POST", collection(namespace, "kernelwhispers"), body)
        wait_for(lambda: "Handler 'seen' succeeded" in log.read_text(), 60, "the handler")
        events = f"/api/v1/namespaces/{namespace}/events"
        selector = {"fieldSelector": f"involvedObject.name={pod}-kw,reason=Seen"}
        wait_for(
            lambda: lab_api.expect(200, "GET", events, query=selector)["items"], 60, "its event"
        )
    finally:
        operator.send_signal(signal.SIGTERM)
        operator.wait(timeout=60)
    text = log.read_text()
    assert f"lab test saw {pod}-kw" in text
    noisy = [line for line in text.splitlines() if re.search(r"\[(WARNING|ERROR|CRITICAL)", line)]
    assert noisy == [], text


# --- the CLI: a second server, warm -----------------------------------------------------------


def run_cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=timeout, cwd=paths.REPO_DIR
    )


@pytest.mark.slow
def test_cli_warm_start_stop_and_restart_keep_the_data(lab_api: LabApi, tmp_path: Path) -> None:
    """The fixture built the binary: a second server starts from the cache."""
    assert apibuild.ensure_binary().built is False
    directory = tmp_path / "second"
    started = time.monotonic()
    first = run_cli("lab", "api", "start", "--dir", str(directory), timeout=120)
    seconds = time.monotonic() - started
    print(f"warm start: {seconds:.1f} s")
    assert first.returncode == 0, first.stderr
    (line,) = first.stdout.splitlines()
    answer = json.loads(line)
    assert set(answer) == {"kubeconfig", "server"}
    assert answer["kubeconfig"] == str(directory.resolve() / "kubeconfig")
    assert re.fullmatch(r"https://127\.0\.0\.1:\d+", answer["server"])
    try:
        api = LabApi(
            directory.resolve(),
            answer["server"],
            Path(answer["kubeconfig"]),
            directory.resolve() / "pki" / "ca.crt",
            directory.resolve() / "bin" / "kubectl",
        )
        assert api.request("GET", "/readyz").text == "ok"
        assert apiserver.running_server(directory) == answer["server"]
        assert kubectl(api, "get", "kw", "-A").strip() == ""
        pod = unique("persisted")
        body = resource(
            "KernelWhisper",
            kernel_whisper_name(pod),
            "default",
            dumped(full_kernel_whisper_spec(pod, "default")),
        )
        api.expect(201, "POST", collection("default", "kernelwhispers"), body)

        again = run_cli("lab", "api", "start", "--dir", str(directory))
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout) == answer, "start is idempotent"
        stopped = run_cli("lab", "api", "stop", "--dir", str(directory))
        assert json.loads(stopped.stdout) == {"stopped": ["apiserver", "etcd"]}
        assert not list(directory.glob("*.pid"))
        assert apiserver.running_server(directory) is None
        with pytest.raises(ConnectionRefusedError):
            api.request("GET", "/readyz", timeout=5)
        restarted = run_cli("lab", "api", "start", "--dir", str(directory), timeout=120)
        assert json.loads(restarted.stdout) == answer, "same port and kubeconfig after a restart"
        names = kubectl(api, "get", "kw", "-n", "default", "-o", "name")
        assert names.split() == [f"kernelwhisper.kernel-gossip.dev/{pod}-kw"]
    finally:
        final = run_cli("lab", "api", "stop", "--dir", str(directory))
    assert json.loads(final.stdout) == {"stopped": ["apiserver", "etcd"]}
    assert json.loads(run_cli("lab", "api", "stop", "--dir", str(directory)).stdout) == {
        "stopped": []
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--port", "0"], "must be within [1, 65535]: 0"),
        (["--port", "https"], "not a port number: 'https'"),
    ],
)
def test_cli_refuses_bad_ports_in_one_line(args: list[str], message: str) -> None:
    result = run_cli("lab", "api", "start", *args, timeout=60)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_cli_refuses_a_dir_that_is_a_file(tmp_path: Path) -> None:
    afile = tmp_path / "file"
    afile.write_text("")
    result = run_cli("lab", "api", "start", "--dir", str(afile), timeout=60)
    assert result.returncode == 2
    assert (
        result.stderr.strip()
        == f"kernel-gossip lab: error: --dir {afile} exists and is not a directory"
    )


def test_stop_of_a_never_started_dir_stops_nothing(tmp_path: Path) -> None:
    assert apiserver.stop(tmp_path) == []
    (tmp_path / "apiserver.pid").write_text("1\n")  # pid 1 is alive but not ours: left alone
    assert apiserver.stop(tmp_path) == []
    assert not (tmp_path / "apiserver.pid").exists()
