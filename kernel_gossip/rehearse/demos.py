"""The talk's demos, run as the speaker types them, with the evidence each wow moment needs:
the CRs as the cluster holds them, `kubectl` output, and (on the lab, where the node is this
host) the container's own cpu.stat sampled every second beside the Metrics API."""

import base64
import json
import shlex
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from kernel_gossip.errors import UserError
from kernel_gossip.kube.client import ApiError, KubeClient
from kernel_gossip.lab import images
from kernel_gossip.operator.analysis import parse_cpu_quantity
from kernel_gossip.operator.naming import certificate_name, whisper_name
from kernel_gossip.paths import REPO_DIR
from kernel_gossip.rehearse import moments
from kernel_gossip.rehearse.moments import JsonObject, Verdict
from kernel_gossip.rehearse.moments import window_seconds as _window_seconds
from kernel_gossip.rehearse.terminal import Terminal
from kernel_gossip.schema.crds import KERNEL_WHISPER, POD_BIRTH_CERTIFICATE, RESOURCES
from kernel_gossip.schema.resources import GROUP

MANIFESTS = REPO_DIR / "deploy" / "rehearse"
DEMO_MANIFESTS = REPO_DIR / "deploy" / "manifests" / "demo"
BIRTH_POD = "test-pod"
BIRTH_IMAGE = "nginx:alpine"
BURSTY_POD = "bursty-worker"
WEB_DEPLOYMENT = "web"
LIVE_DEMO_POD = "live-demo"
# The talk's exact body (shared/seeds, Act III), as a speaker pastes it.
TALK_WEBHOOK_BODY = (
    '{"type":"cpu_throttle","pod_name":"live-demo","namespace":"kernel-gossip",'
    '"container_name":"app","throttle_percentage":78.5,"actual_cpu_usage":1.5,'
    '"reported_cpu_usage":0.6,"period_seconds":60,"timestamp":"2025-08-25T11:00:00Z"}'
)
POLL_SECONDS = 0.1
BIRTH_WAIT_SECONDS = 180.0
COMPLETE_CERTIFICATE_SECONDS = 30.0
LIE_WAIT_SECONDS = 240.0
LIE_MIN_SAMPLE_SECONDS = 40.0
WEBHOOK_WAIT_SECONDS = 30.0
HPA_WAIT_SECONDS = 300.0


@dataclass
class Cluster:
    """Where the demos run: the lab (this host is the node) or any cluster."""

    terminal: Terminal
    namespace: str
    api: Callable[[str], JsonObject | None]
    lab: dict[str, Any] | None = None

    def get(self, path: str) -> JsonObject | None:
        return self.api(path)

    def crs(self, plural: str) -> list[JsonObject]:
        listed = self.get(f"/apis/kernel-gossip.dev/v1alpha1/namespaces/{self.namespace}/{plural}")
        return list((listed or {}).get("items", []))

    def cr(self, plural: str, name: str) -> JsonObject | None:
        return self.get(
            f"/apis/kernel-gossip.dev/v1alpha1/namespaces/{self.namespace}/{plural}/{name}"
        )

    def pod(self, name: str) -> JsonObject | None:
        return self.get(f"/api/v1/namespaces/{self.namespace}/pods/{name}")


def lab_reader(kubeconfig: Path) -> Callable[[str], JsonObject | None]:
    """Reads through the API directly, so a timing does not include kubectl's start-up."""
    client = KubeClient(kubeconfig)

    def get(path: str) -> JsonObject | None:
        try:
            answer: JsonObject = client.request("GET", path)
        except ApiError as error:
            if error.status == 404:
                return None
            raise
        return answer

    return get


def kubectl_reader(terminal: Terminal) -> Callable[[str], JsonObject | None]:
    def get(path: str) -> JsonObject | None:
        step = terminal.kubectl("get", "--raw", path, shown=False)
        if step.returncode != 0:
            if "NotFound" in step.output or "not found" in step.output:
                return None
            raise UserError(f"kubectl get --raw {path}: {step.output.splitlines()[-1:]}")
        answer: JsonObject = json.loads(step.output)
        return answer

    return get


def wait_for(
    what: Callable[[], JsonObject | None], timeout: float, poll: float = POLL_SECONDS
) -> tuple[JsonObject | None, float | None]:
    """(the first answer, seconds it took), or (None, None) past the timeout."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        found = what()
        if found is not None:
            return found, time.monotonic() - started
        time.sleep(poll)
    return None, None


@dataclass
class DemoResult:
    verdict: Verdict
    evidence: dict[str, Any] = field(default_factory=dict)


# --- 1. pod birth -----------------------------------------------------------------------


def birth(cluster: Cluster) -> DemoResult:
    term, ns = cluster.terminal, cluster.namespace
    term.moment = "birth"
    name = certificate_name(ns, ns, BIRTH_POD)
    term.kubectl("delete", "pod", BIRTH_POD, "-n", ns, "--ignore-not-found", shown=False)
    term.kubectl("delete", "podbirthcertificate", name, "-n", ns, "--ignore-not-found", shown=False)
    started = time.monotonic()
    term.kubectl("run", BIRTH_POD, f"--image={BIRTH_IMAGE}", "-n", ns)
    certificate, _ = wait_for(
        lambda: cluster.cr(POD_BIRTH_CERTIFICATE.plural, name), BIRTH_WAIT_SECONDS
    )
    seconds = time.monotonic() - started if certificate else None
    if certificate is not None:
        # The agent reports a pod once its containers started; a container born later
        # (its image still being unpacked) refines the certificate: wait for the
        # containers to start, then (a little) for every birth, the sandbox's included.
        pod, _ = wait_for(lambda: _containers_started(cluster.pod(BIRTH_POD)), BIRTH_WAIT_SECONDS)
        expected = 1 + len(
            (pod or cluster.pod(BIRTH_POD) or {}).get("spec", {}).get("containers", [])
        )
        complete, _ = wait_for(
            lambda: _with_births(cluster.cr(POD_BIRTH_CERTIFICATE.plural, name), expected),
            COMPLETE_CERTIFICATE_SECONDS,
        )
        certificate = complete or cluster.cr(POD_BIRTH_CERTIFICATE.plural, name) or certificate
    term.kubectl("get", "podbirthcertificate", "-n", ns)
    term.kubectl("describe", "podbirthcertificate", name, "-n", ns)
    verdict = moments.birth_verdict(certificate, seconds, BIRTH_WAIT_SECONDS)
    return DemoResult(verdict, {"certificate": certificate})


def _containers_started(pod: JsonObject | None) -> JsonObject | None:
    """The pod once each of its containers has started (running, or ran and ended)."""
    if pod is None:
        return None
    wanted = len(pod.get("spec", {}).get("containers", []))
    statuses = pod.get("status", {}).get("containerStatuses") or []
    started = [s for s in statuses if {"running", "terminated"} & set(s.get("state") or {})]
    return pod if wanted and len(started) >= wanted else None


def _with_births(certificate: JsonObject | None, expected: int) -> JsonObject | None:
    if certificate is None or moments.births_in(certificate) < expected:
        return None
    return certificate


# --- 2. the metrics lie ------------------------------------------------------------------


class TruthSampler:
    """Every second: the container's cpu.stat and cpuacct (found from /proc/PID/cgroup of
    its process, not through kernel-gossip's cgroup code) and the Metrics API's figure."""

    def __init__(self, cluster: Cluster, pod: str) -> None:
        self.cluster, self.pod = cluster, pod
        self.kernel: list[dict[str, float]] = []
        self.metrics: list[dict[str, Any]] = []
        self.created: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "TruthSampler":
        self.started = time.monotonic()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        cgroup: Path | None = None
        seen_metrics: set[str] = set()
        while not self._stop.is_set():
            now = time.time()
            if cgroup is None and self.cluster.lab is not None:
                cgroup = container_cpu_cgroup(self.cluster, self.pod)
            if cgroup is not None:
                sample = read_cpu_stat(cgroup)
                if sample is not None:
                    self.kernel.append({"t": now, **sample})
            item = self.cluster.get(
                f"/apis/metrics.k8s.io/v1beta1/namespaces/{self.cluster.namespace}/pods/{self.pod}"
            )
            if self.created is None:
                created = (self.cluster.pod(self.pod) or {}).get("metadata", {})
                self.created = _epoch(created["creationTimestamp"]) if created else None
            if (
                item is not None
                and item.get("timestamp") not in seen_metrics
                and self.created is not None
                # an earlier pod of the same name, until the next scrape replaces its item
                and _epoch(item["timestamp"]) - _window_seconds(item["window"]) >= self.created
            ):
                seen_metrics.add(item["timestamp"])
                cores = sum(parse_cpu_quantity(c["usage"]["cpu"]) for c in item["containers"])
                self.metrics.append(
                    {"timestamp": item["timestamp"], "window": item["window"], "cores": cores}
                )
            self._stop.wait(1.0)


def _epoch(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def container_cpu_cgroup(cluster: Cluster, pod: str) -> Path | None:
    """The cpu-controller cgroup of the pod's first container process, from /proc."""
    found = cluster.pod(pod)
    statuses = (found or {}).get("status", {}).get("containerStatuses") or []
    container_id = statuses[0].get("containerID", "").split("://")[-1] if statuses else ""
    if not container_id:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            lines = (proc / "cgroup").read_text().splitlines()
        except OSError:
            continue
        for line in lines:
            _, controllers, path = line.split(":", 2)
            if container_id in path and "cpu" in controllers.split(","):
                root = Path("/sys/fs/cgroup") / controllers
                if not root.exists():
                    root = Path("/sys/fs/cgroup/cpu")
                return root / path.lstrip("/")
    return None


def read_cpu_stat(cgroup: Path) -> dict[str, float] | None:
    try:
        stat = dict(line.split() for line in (cgroup / "cpu.stat").read_text().splitlines())
    except (OSError, ValueError):
        return None
    return {
        "nrPeriods": float(stat["nr_periods"]),
        "nrThrottled": float(stat["nr_throttled"]),
        "throttledSeconds": float(stat.get("throttled_time", 0)) / 1e9,
    }


def lie(cluster: Cluster) -> DemoResult:
    term, ns = cluster.terminal, cluster.namespace
    term.moment = "lie"
    term.kubectl(
        "apply",
        "-f",
        str(DEMO_MANIFESTS / "nginx-monitored.yaml"),
        "-f",
        str(MANIFESTS / "bursty-worker.yaml"),
    )
    name = whisper_name(ns, ns, BURSTY_POD)

    def whisper_from_metrics_api() -> JsonObject | None:
        whisper = cluster.cr(KERNEL_WHISPER.plural, name)
        source = (whisper or {}).get("status", {}).get("reportedUsage", {}).get("source")
        return whisper if source == "metrics-api" else None

    with TruthSampler(cluster, BURSTY_POD) as sampler:
        whisper, _ = wait_for(whisper_from_metrics_api, LIE_WAIT_SECONDS, poll=1.0)
        # Enough of the curve for the picture: the kernel's seconds against two scrapes.
        while time.monotonic() - sampler.started < LIE_MIN_SAMPLE_SECONDS:
            time.sleep(1.0)
        top = term.kubectl("top", "pod", "-n", ns)
        term.kubectl("get", "kernelwhisper", name, "-n", ns, "-o", "yaml")
        whisper = cluster.cr(KERNEL_WHISPER.plural, name) or whisper
    verdict = moments.lie_verdict(whisper, moments.parse_top_millicores(top.output, BURSTY_POD))
    return DemoResult(
        verdict,
        {"whisper": whisper, "kernelSamples": sampler.kernel, "metricsSamples": sampler.metrics},
    )


# --- 3. the live webhook -----------------------------------------------------------------


def webhook(cluster: Cluster) -> DemoResult:
    term, ns = cluster.terminal, cluster.namespace
    term.moment = "webhook"
    name = whisper_name(ns, ns, LIVE_DEMO_POD)
    term.kubectl("delete", "kernelwhisper", name, "-n", ns, "--ignore-not-found", shown=False)
    started = time.monotonic()
    status = _post_from_host(cluster) if cluster.lab is not None else _post_from_a_pod(cluster)
    whisper, _ = wait_for(lambda: cluster.cr(KERNEL_WHISPER.plural, name), WEBHOOK_WAIT_SECONDS)
    seconds = time.monotonic() - started if whisper else None
    term.kubectl("get", "kernelwhispers", name, "-n", ns)
    term.kubectl("describe", "kernelwhisper", name, "-n", ns)
    verdict = moments.webhook_verdict(status, seconds, whisper)
    where = "from the host (the lab has no Service network)" if cluster.lab else "from a pod"
    return DemoResult(verdict, {"whisper": whisper, "postedFrom": where})


def _post_from_host(cluster: Cluster) -> int | None:
    assert cluster.lab is not None
    url, token_file = cluster.lab.get("operatorUrl"), cluster.lab.get("webhookTokenFile")
    if not url or not token_file:
        cluster.terminal.echo("# the operator is not running: nothing listens for the webhook")
        return None
    token = Path(token_file).read_text().strip()
    argv = [
        "curl", "-sS", "-X", "POST", f"{url}/webhook/pixie",
        "-H", f"Authorization: Bearer {token}",
        "-H", "Content-Type: application/json",
        "-d", TALK_WEBHOOK_BODY,
        "-w", "\\n%{http_code}\\n",
    ]  # fmt: skip
    typed = (
        f'curl -X POST {url}/webhook/pixie -H "Authorization: Bearer $TOKEN" '
        f"-H \"Content-Type: application/json\" -d '{TALK_WEBHOOK_BODY}'"
    )
    step = cluster.terminal.run(typed, argv, secrets=[token])
    return _http_code(step.output)


def _post_from_a_pod(cluster: Cluster) -> int | None:
    term, ns = cluster.terminal, cluster.namespace
    secret = cluster.get(f"/api/v1/namespaces/{ns}/secrets/kernel-gossip-webhook")
    token = base64.b64decode((secret or {}).get("data", {}).get("token", "")).decode()
    url = f"http://kernel-gossip-operator.{ns}.svc.cluster.local:8080/webhook/pixie"
    curl = [
        "curl", "-sS", "-X", "POST", url,
        "-H", f"Authorization: Bearer {token}",
        "-H", "Content-Type: application/json",
        "-d", TALK_WEBHOOK_BODY,
        "-w", "\\n%{http_code}\\n",
    ]  # fmt: skip
    args = ["run", "webhook-live-demo", "--rm", "-i", "--image=curlimages/curl",
            "--restart=Never", "-n", ns, "--", *curl]  # fmt: skip
    typed = "kubectl " + shlex.join(args).replace(token, "$TOKEN")
    step = term.run(typed, [str(term.kubectl_binary), *args], secrets=[token] if token else [])
    return _http_code(step.output)


def _http_code(output: str) -> int | None:
    lines = [line for line in output.splitlines() if line.strip()]
    return int(lines[-1]) if lines and lines[-1].strip().isdigit() else None


# --- 4. autoscaling ----------------------------------------------------------------------


def hpa(cluster: Cluster) -> DemoResult:
    term, ns = cluster.terminal, cluster.namespace
    term.moment = "hpa"
    term.kubectl("apply", "-f", str(MANIFESTS / "web-hpa.yaml"))
    hpa_path = f"/apis/autoscaling/v2/namespaces/{ns}/horizontalpodautoscalers/{WEB_DEPLOYMENT}"

    def advised() -> JsonObject | None:
        found = cluster.get(hpa_path)
        if found is None or moments.hpa_utilization(found) is None:
            return None
        whispers = cluster.crs(KERNEL_WHISPER.plural)
        return found if moments.scale_out_whisper(whispers) is not None else None

    found, _ = wait_for(advised, HPA_WAIT_SECONDS, poll=2.0)
    term.kubectl("get", "hpa", "-n", ns)
    whispers = cluster.crs(KERNEL_WHISPER.plural)
    talk = "{.items[0].status.recommendation}"
    term.kubectl("get", "kernelwhisper", "-n", ns, "-o", f"jsonpath={talk}")
    index = moments.scale_out_whisper(whispers)
    evidence: dict[str, Any] = {"hpa": found or cluster.get(hpa_path), "whispers": whispers}
    if index is not None:
        advised_pod = whispers[index]
        first = (advised_pod["status"].get("recommendations") or [{}])[0].get("action")
        if index != 0 or first != moments.SCALE_OUT:
            term.echo(
                f"# items[0] is {whispers[0]['spec']['podName']}'s whisper and its first "
                f"recommendation is {first}: this picks the autoscaled pod's scale-out advice"
            )
            path = moments.jsonpath_for(advised_pod["spec"]["podName"])
            term.kubectl("get", "kernelwhisper", "-n", ns, "-o", f"jsonpath={path}")
            evidence["rightJsonpath"] = path
    verdict = moments.hpa_verdict(evidence["hpa"], whispers)
    return DemoResult(verdict, evidence)


DEMOS: dict[str, Callable[[Cluster], DemoResult]] = {
    "birth": birth,
    "lie": lie,
    "webhook": webhook,
    "hpa": hpa,
}


# --- reset and the pre-talk checklist ----------------------------------------------------


def reset(cluster: Cluster) -> None:
    """The talk's quick reset, plus the rehearsal's own Deployment and HPA."""
    term, ns = cluster.terminal, cluster.namespace
    term.moment = "reset"
    term.kubectl(
        "delete", "deployment,hpa", "-l", "app.kubernetes.io/part-of=kernel-gossip-rehearsal",
        "-n", ns, "--ignore-not-found",
    )  # fmt: skip
    term.kubectl("delete", "pods", "--all", "-n", ns)
    term.kubectl("delete", "kernelwhispers,podbirthcertificates", "--all", "-n", ns)


@dataclass(frozen=True)
class CheckLine:
    what: str
    ok: bool
    fix: str

    def render(self) -> str:
        return f"[{'ok' if self.ok else 'missing'}] {self.what}" + (
            "" if self.ok else f": {self.fix}"
        )


def checklist(cluster: Cluster) -> list[CheckLine]:
    term, ns = cluster.terminal, cluster.namespace
    term.moment = "check"
    lines = [
        CheckLine(
            "cluster reachable", term.kubectl("get", "--raw", "/readyz").returncode == 0,
            "start it (`kernel-gossip lab up`, or check --kubeconfig)",
        ),
    ]  # fmt: skip
    crds = cluster.get("/apis/apiextensions.k8s.io/v1/customresourcedefinitions")
    names = {item["metadata"]["name"] for item in (crds or {}).get("items", [])}
    for crd in (f"{resource.plural}.{GROUP}" for resource in RESOURCES):
        lines.append(
            CheckLine(f"CRD {crd}", crd in names, "kubectl apply -k deploy/manifests/crds")
        )
    lines.append(
        CheckLine(f"namespace {ns}", cluster.get(f"/api/v1/namespaces/{ns}") is not None,
                  f"kubectl create namespace {ns}")
    )  # fmt: skip
    metrics = cluster.get("/apis/metrics.k8s.io/v1beta1")
    lines.append(
        CheckLine("Metrics API (kubectl top)", metrics is not None, _fix(cluster, "metrics-server"))
    )
    if cluster.lab is not None:
        for component in cluster.lab.get("components", []):
            lines.append(
                CheckLine(
                    f"lab {component['name']}", bool(component["running"]), "kernel-gossip lab up"
                )
            )
        for ref in (BIRTH_IMAGE, "curlimages/curl", "busybox"):
            image = images.resolve(ref)
            built = image is not None and images.archive_path(image).exists()
            lines.append(CheckLine(f"image {ref}", built, "kernel-gossip lab up (builds it)"))
    else:
        for kind, name in (
            ("deployment", "kernel-gossip-operator"),
            ("daemonset", "kernel-gossip-agent"),
        ):
            step = term.kubectl("get", kind, name, "-n", ns, shown=False)
            lines.append(
                CheckLine(f"{kind} {name}", step.returncode == 0, "ansible-playbook lab.yml")
            )
    for line in lines:
        term.echo(line.render())
    return lines


def _fix(cluster: Cluster, part: str) -> str:
    return "kernel-gossip lab up" if cluster.lab is not None else f"install {part}"
