"""Running one scenario: check what it requires, apply its workload, sample the truth,
drive the load (locust, its own process), let the last readings land, collect, evaluate,
report and clean up (what the run created is deleted, what it found stays)."""

import contextlib
import secrets
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from kernel_gossip import Say
from kernel_gossip.errors import UserError
from kernel_gossip.lab.stack import OPERATOR_NAMESPACE
from kernel_gossip.scenarios import load, report
from kernel_gossip.scenarios.cluster import READY_TIMEOUT_SECONDS, Cluster, documents, pod_ready
from kernel_gossip.scenarios.expectations import (
    Certificate,
    Evidence,
    Outcome,
    WebhookCall,
    evaluate,
    kernel_throttled_percent,
)
from kernel_gossip.scenarios.spec import (
    HpaExpectation,
    HttpLoad,
    LoadedScenario,
    LocustLoad,
    PodRef,
    PodsLoad,
    RecommendationExpectation,
    Scenario,
    WebhookLoad,
    WhisperExpectation,
)
from kernel_gossip.scenarios.truth import Sampler
from kernel_gossip.schema.crds import KERNEL_WHISPER, POD_BIRTH_CERTIFICATE
from kernel_gossip.schema.resources import API_VERSION

BASELINE_SECONDS = 2.0
PROGRESS_EVERY_SECONDS = 5.0
LOAD_STARTUP_ALLOWANCE_SECONDS = 120.0
WEBHOOK_NAMESPACE = "default"


class MissingPrerequisite(UserError):
    """The cluster lacks a part the spec requires (exit 2, like a bad spec)."""


@dataclass(frozen=True)
class Result:
    scenario: str
    outcomes: list[Outcome]
    report: Path | None

    @property
    def holds(self) -> bool:
        return all(outcome.holds for outcome in self.outcomes)

    def as_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "holds": self.holds,
            "report": str(self.report) if self.report else None,
            "expectations": [
                {"what": o.what, "measured": o.measured, "bound": o.bound, "holds": o.holds}
                for o in self.outcomes
            ],
        }


def check_requirements(scenario: Scenario, cluster: Cluster) -> None:
    checks = {
        "kubelet": (cluster.kube.kubelet_runs, "no Ready node: the lab kubelet is not running"),
        "metrics-api": (
            lambda: cluster.kube.served("metrics.k8s.io/v1beta1"),
            "the cluster serves no metrics.k8s.io/v1beta1 (the Metrics API)",
        ),
        "hpa": (
            lambda: cluster.kube.served("autoscaling/v2") and cluster.kube.served("apps/v1"),
            "the cluster serves no autoscaling/v2 HorizontalPodAutoscalers and apps/v1",
        ),
    }
    for part in scenario.requires:
        present, reason = checks[part]
        if not present():
            raise MissingPrerequisite(f"scenario {scenario.name} requires {part}: {reason}")


def _sampled_pods(scenario: Scenario) -> list[PodRef]:
    """The pods whose truth is sampled, each once."""
    refs: list[PodRef] = []
    for expectation in scenario.expect:
        if isinstance(expectation, WhisperExpectation):
            refs.append(expectation.kernel_whisper)
        elif isinstance(expectation, RecommendationExpectation):
            refs.append(expectation.recommendation)
    if isinstance(scenario.load, HttpLoad):
        refs.append(scenario.load.target)
    unique: dict[tuple[str, str], PodRef] = {}
    for ref in refs:
        unique.setdefault(ref.key, ref)
    return list(unique.values())


class Run:
    """One scenario on one cluster; `execute()` returns its outcomes."""

    def __init__(
        self,
        loaded: LoadedScenario,
        cluster: Cluster,
        say: Say,
        report_dir: Path | None,
        duration_seconds: float | None,
    ) -> None:
        self.loaded = loaded
        self.scenario = loaded.scenario
        self.cluster = cluster
        self.say = say
        self.report_dir = report_dir
        self.duration = duration_seconds or self.scenario.load.duration_seconds
        self.evidence = Evidence(load_started=0.0, load_ended=0.0)
        self.sampler = Sampler(cluster, self.evidence)
        self.run_id = secrets.token_hex(3)
        self.created_pods: list[tuple[str, str]] = []
        self.webhook_prefix = f"storm-{self.run_id}"
        self.resolved: dict[tuple[str, str], str] = {}

    def execute(self) -> Result:
        check_requirements(self.scenario, self.cluster)
        with tempfile.TemporaryDirectory(prefix=f"scenario-{self.scenario.name}-") as scratch:
            folder = (self.report_dir / self.scenario.name) if self.report_dir else Path(scratch)
            folder.mkdir(parents=True, exist_ok=True)
            try:
                return self._execute(folder)
            finally:
                self._clean_up()

    def _execute(self, folder: Path) -> Result:
        for manifest in self.loaded.manifests:
            self.cluster.apply(manifest)
        for ref in self.scenario.workload.ready:
            self.say(f"waiting for {ref.namespace}/{ref.label} to be Ready")
            self.cluster.wait_ready(ref.namespace, self.pod_name(ref))
        for ref in _sampled_pods(self.scenario):
            self.sampler.add_pod(ref.key, self.pod_name(ref))
        if "metrics-api" in self.scenario.requires:
            for ref in _sampled_pods(self.scenario):
                self.say(f"waiting for the Metrics API to serve {ref.namespace}/{ref.label}")
                self.cluster.wait_metrics(ref.namespace, self.pod_name(ref))
        self.sampler.hpas = [
            (e.hpa.namespace, e.hpa.name)
            for e in self.scenario.expect
            if isinstance(e, HpaExpectation)
        ]
        run = load.LoadRun(folder)
        with self._load_settings() as (host, settings):
            self.sampler.start()
            time.sleep(BASELINE_SECONDS)
            self.evidence.load_started = time.time()
            self.say(
                f"load: {self.scenario.load.kind}, {self.scenario.load.users} users, "
                f"{self.scenario.load.shape.kind}, {self.duration:g} s"
            )
            argv = load.command(
                self.scenario.load.kind, host, self._locustfile(), self._user_class(), run
            )
            self.evidence.load = load.run_load(
                argv,
                settings,
                run,
                self._progress,
                timeout=self.duration + LOAD_STARTUP_ALLOWANCE_SECONDS,
            )
            self.evidence.load_ended = time.time()
        settle = self.scenario.load.settle_seconds
        self.say(f"load done ({self.evidence.load.requests} requests); sampling {settle:g} s more")
        deadline = time.time() + settle
        while time.time() < deadline:
            time.sleep(min(PROGRESS_EVERY_SECONDS, max(deadline - time.time(), 0)))
            self._progress(time.time() - self.evidence.load_started, force=True)
        self.sampler.finish()
        self._collect(run)
        outcomes = evaluate(self.scenario, self.evidence)
        if self.report_dir:
            self._report(folder, outcomes)
        return Result(self.scenario.name, outcomes, folder if self.report_dir else None)

    def pod_name(self, ref: PodRef) -> str:
        """The pod a reference names; for a selector, the first Ready match by name (kept
        for the whole run)."""
        if ref.pod is not None:
            return ref.pod
        if ref.key not in self.resolved:
            deadline = time.monotonic() + READY_TIMEOUT_SECONDS
            while time.monotonic() < deadline:
                selector = quote(ref.selector or "")
                listing = self.cluster.kube.get(
                    f"/api/v1/namespaces/{ref.namespace}/pods?labelSelector={selector}"
                )
                ready = sorted(
                    p["metadata"]["name"] for p in (listing or {}).get("items", []) if pod_ready(p)
                )
                if ready:
                    self.resolved[ref.key] = ready[0]
                    break
                time.sleep(1.0)
            else:
                raise UserError(
                    f"no Ready pod with {ref.selector} in {ref.namespace} within "
                    f"{READY_TIMEOUT_SECONDS:.0f} s"
                )
        return self.resolved[ref.key]

    def _locustfile(self) -> Path | None:
        if isinstance(self.scenario.load, LocustLoad):
            return self.loaded.resolve(self.scenario.load.locustfile)
        return None

    def _user_class(self) -> str | None:
        return self.scenario.load.user_class if isinstance(self.scenario.load, LocustLoad) else None

    @contextlib.contextmanager
    def _load_settings(self) -> Iterator[tuple[str | None, dict[str, Any]]]:
        spec = self.scenario.load
        settings: dict[str, Any] = {
            "users": spec.users,
            "spawnRate": spec.spawn_rate,
            "durationSeconds": self.duration,
            "shape": spec.shape.model_dump(by_alias=True),
            "kubeconfig": str(self.cluster.kube.kubeconfig),
        }
        if isinstance(spec, HttpLoad):
            target = spec.target
            with self.cluster.pod_url(target.namespace, self.pod_name(target), target.port) as url:
                yield url, {**settings, "path": target.path}
        elif isinstance(spec, WebhookLoad):
            with self.cluster.webhook() as (url, token):
                yield (
                    url,
                    {
                        **settings,
                        "token": token,
                        "badFraction": spec.bad_fraction,
                        "podPrefix": self.webhook_prefix,
                        "namespace": WEBHOOK_NAMESPACE,
                    },
                )
        elif isinstance(spec, PodsLoad):
            (template,) = documents(self.loaded.resolve(spec.template))[:1]
            template = self.cluster.with_images(template)
            yield (
                None,
                {
                    **settings,
                    "template": template,
                    "count": spec.count,
                    "namespace": spec.namespace,
                },
            )
        else:
            yield None, settings

    _last_progress = 0.0

    def _progress(self, elapsed: float, force: bool = False) -> None:
        if not force and elapsed - self._last_progress < PROGRESS_EVERY_SECONDS:
            return
        self._last_progress = elapsed
        parts = [f"t={elapsed:4.0f}s"]
        now = time.time()
        for key, samples in self.evidence.cpu.items():
            throttled = kernel_throttled_percent(
                samples, now - PROGRESS_EVERY_SECONDS, samples[-1].time if samples else now
            )
            metrics = self.evidence.metrics.get(key, [])
            readings = self.evidence.readings.get(key, [])
            parts.append(
                f"{key[1]}: kernel {throttled or 0:.0f}% throttled"
                + (
                    f", Metrics API {metrics[-1].percent_of_limit or 0:.0f}% of limit"
                    if metrics
                    else ""
                )
                + f", {len(readings)} CR reading(s)"
            )
        self.say(" | ".join(parts))

    def _collect(self, run: load.LoadRun) -> None:
        spec = self.scenario.load
        entries = run.entries()
        if isinstance(spec, PodsLoad):
            self.created_pods = [(spec.namespace, e["pod"]) for e in entries if e.get("uid")]
            self.evidence.created_pods = {e["uid"]: e["pod"] for e in entries if e.get("uid")}
            self.evidence.certificates = [
                Certificate(
                    name=c["metadata"]["name"],
                    pod_name=c["spec"]["podName"],
                    pod_namespace=c["spec"]["podNamespace"],
                    pod_uid=c["spec"].get("podUid"),
                    total_syscalls=int(c["spec"]["totalSyscalls"]),
                )
                for c in self._list(POD_BIRTH_CERTIFICATE.plural)
            ]
        if isinstance(spec, WebhookLoad):
            self.evidence.webhook_calls = [
                WebhookCall(bool(e["valid"]), str(e["pod"]), int(e["status"])) for e in entries
            ]
            self.evidence.recorded_pods = {
                w["spec"]["podName"]
                for w in self._list(KERNEL_WHISPER.plural)
                if w["spec"]["podName"].startswith(self.webhook_prefix)
            }

    def _list(self, plural: str) -> list[dict[str, Any]]:
        found = self.cluster.kube.get(f"/apis/{API_VERSION}/{plural}") or {"items": []}
        items: list[dict[str, Any]] = found["items"]
        return items

    def _report(self, folder: Path, outcomes: list[Outcome]) -> None:
        resources: list[dict[str, Any]] = []
        for ref in _sampled_pods(self.scenario):
            whisper = self.cluster.kube.get(
                f"/apis/{API_VERSION}/namespaces/{OPERATOR_NAMESPACE}/{KERNEL_WHISPER.plural}/"
                f"{self.pod_name(ref)}-kw"
            )
            if whisper:
                resources.append(whisper)
        uids = set(self.evidence.created_pods)
        resources += [
            c for c in self._list(POD_BIRTH_CERTIFICATE.plural) if c["spec"].get("podUid") in uids
        ]
        for namespace, name in self.sampler.hpas:
            hpa = self.cluster.kube.get(
                f"/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers/{name}"
            )
            if hpa:
                resources.append(hpa)
        report.write_resources(folder / "resources.yaml", resources)
        report.write_truth_csv(folder / "truth.csv", self.evidence)
        report.write_outcomes(folder / "expectations.txt", outcomes)
        report.plot(
            folder / f"{self.scenario.name}.png",
            f"{self.scenario.name}: {self.scenario.description}",
            self.evidence,
        )
        self.say(f"report: {folder}")

    def _clean_up(self) -> None:
        """Pods the load created, resources the webhook storm wrote, then the workload."""
        self.sampler.stop.set()
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda pod: self.cluster.delete_pod(*pod), self.created_pods))
            if isinstance(self.scenario.load, WebhookLoad):
                stored = [
                    w["metadata"]["name"]
                    for w in self._list(KERNEL_WHISPER.plural)
                    if w["spec"]["podName"].startswith(self.webhook_prefix)
                ]
                list(pool.map(self._delete_whisper, stored))
        self.cluster.delete_applied()

    def _delete_whisper(self, name: str) -> None:
        with contextlib.suppress(UserError):
            self.cluster.kube.request(
                "DELETE",
                f"/apis/{API_VERSION}/namespaces/{OPERATOR_NAMESPACE}/{KERNEL_WHISPER.plural}/{name}",
            )


def run_scenario(
    loaded: LoadedScenario,
    cluster: Cluster,
    say: Say,
    report_dir: Path | None = None,
    duration_seconds: float | None = None,
) -> Result:
    return Run(loaded, cluster, say, report_dir, duration_seconds).execute()
