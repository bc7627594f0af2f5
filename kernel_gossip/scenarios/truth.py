"""The ground truth, sampled beside the load by the runner itself and independent of the
code under test (the agent's and operator's readers are not used): each container's
cgroup is found from /proc/PID/cgroup of a process of it, then its cpu.stat and
cpuacct.usage (v1) or cpu.stat (v2) are read on the node; the Metrics API, the
KernelWhispers and the HPAs are read every second. Everything read is kept."""

import contextlib
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kernel_gossip.core.podspec import parse_quantity
from kernel_gossip.errors import UserError
from kernel_gossip.lab.stack import OPERATOR_NAMESPACE
from kernel_gossip.scenarios.cluster import Cluster
from kernel_gossip.scenarios.expectations import (
    CpuSample,
    Evidence,
    MetricsSample,
    PodKey,
    WhisperReading,
)
from kernel_gossip.schema.crds import KERNEL_WHISPER
from kernel_gossip.schema.resources import API_VERSION, kernel_whisper_name

API_POLL_SECONDS = 1.0


@dataclass(frozen=True)
class CgroupFiles:
    """Where one container's CPU counters are on the node."""

    cpu_stat: str
    cpuacct_usage: str | None  # None on cgroup v2: usage_usec is in cpu.stat

    def parse(self, stat_text: str, usage_text: str | None, moment: float) -> CpuSample:
        stat = dict(line.split() for line in stat_text.splitlines() if line.strip())
        if self.cpuacct_usage is None:
            throttled = int(stat["throttled_usec"]) / 1e6
            usage = int(stat["usage_usec"]) / 1e6
        else:
            throttled = int(stat["throttled_time"]) / 1e9
            usage = int(usage_text or "0") / 1e9
        return CpuSample(
            moment, int(stat["nr_periods"]), int(stat["nr_throttled"]), throttled, usage
        )


def cgroup_files(proc_cgroup: str, mountinfo: str) -> CgroupFiles:
    """From a process's /proc/PID/cgroup and the node's mountinfo: its cpu and cpuacct
    files (v1 controllers, as on this host's hybrid layout) or its cgroup2 cpu.stat."""
    paths: dict[str, str] = {}
    for line in proc_cgroup.splitlines():
        _, controllers, path = line.split(":", 2)
        for controller in controllers.split(",") if controllers else [""]:
            paths[controller] = path
    mounts: dict[str, tuple[str, str]] = {}  # controller -> (mount root, mount point)
    for line in mountinfo.splitlines():
        pre, _, post = line.partition(" - ")
        fields, fs = pre.split(), post.split()
        if fs[:1] == ["cgroup"]:
            for option in fs[2].split(","):
                mounts.setdefault(option, (fields[3], fields[4]))
        elif fs[:1] == ["cgroup2"]:
            mounts.setdefault("", (fields[3], fields[4]))

    def file_of(controller: str, name: str) -> str:
        root, point = mounts[controller]
        relative = paths[controller]
        if root != "/" and relative.startswith(root):
            relative = relative[len(root) :]
        return f"{point.rstrip('/')}/{relative.strip('/')}/{name}".replace("//", "/")

    if "cpu" in paths and "cpu" in mounts and "cpuacct" in paths and "cpuacct" in mounts:
        return CgroupFiles(file_of("cpu", "cpu.stat"), file_of("cpuacct", "cpuacct.usage"))
    if "" in paths and "" in mounts:
        return CgroupFiles(file_of("", "cpu.stat"), None)
    raise UserError("the container's process shows neither v1 cpu/cpuacct nor a cgroup2 path")


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _limit_cores(pod: dict[str, Any], container: str | None) -> float | None:
    for spec in pod.get("spec", {}).get("containers", []):
        if container is None or spec.get("name") == container:
            limit = spec.get("resources", {}).get("limits", {}).get("cpu")
            return float(parse_quantity(limit)) if limit is not None else None
    return None


@dataclass
class Target:
    """A pod whose truth is sampled: its first container's cgroup, its UID, its limit."""

    key: PodKey  # how the evidence is keyed: the spec's (namespace, pod or selector)
    name: str
    uid: str
    container: str
    limit_cores: float | None
    files: CgroupFiles


@dataclass
class Sampler:
    """Two threads: cpu.stat at the provider's rate, the APIs every second."""

    cluster: Cluster
    evidence: Evidence
    targets: list[Target] = field(default_factory=list)
    hpas: list[PodKey] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    _seen: dict[PodKey, set[str]] = field(default_factory=dict)
    _last_metrics: dict[PodKey, str] = field(default_factory=dict)

    def add_pod(self, key: PodKey, name: str) -> None:
        namespace = key[0]
        pod = self.cluster.wait_ready(namespace, name)
        statuses = pod.get("status", {}).get("containerStatuses", [])
        if not statuses or not statuses[0].get("containerID"):
            raise UserError(f"pod {namespace}/{name} reports no container ID")
        container_id = statuses[0]["containerID"].split("://")[-1]
        proc_cgroup = self.cluster.node_processes_of(container_id)
        if proc_cgroup is None:
            raise UserError(f"no process of container {container_id[:13]} on the node")
        files = cgroup_files(proc_cgroup, self.cluster.node_mountinfo())
        container = str(statuses[0]["name"])
        self.targets.append(
            Target(
                key,
                name,
                pod["metadata"]["uid"],
                container,
                _limit_cores(pod, container),
                files,
            )
        )
        self.evidence.cpu.setdefault(key, [])

    def start(self) -> None:
        for loop in (self._sample_cpu, self._poll_apis):
            thread = threading.Thread(target=self._guard, args=(loop,), daemon=True)
            thread.start()
            self.threads.append(thread)

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)
        if self.errors:
            raise UserError(f"sampling the truth failed: {self.errors[0]}")

    def _guard(self, loop: Any) -> None:
        try:
            loop()
        except (UserError, OSError, ValueError, KeyError) as error:
            self.errors.append(str(error))

    def _sample_cpu(self) -> None:
        interval = self.cluster.sample_interval()
        while not self.stop.is_set():
            for target in self.targets:
                moment = time.time()
                stat = self.cluster.read_node_file(target.files.cpu_stat)
                usage = (
                    self.cluster.read_node_file(target.files.cpuacct_usage)
                    if target.files.cpuacct_usage
                    else None
                )
                self.evidence.cpu[target.key].append(target.files.parse(stat, usage, moment))
            self.stop.wait(interval)

    def _poll_apis(self) -> None:
        while not self.stop.is_set():
            for target in self.targets:
                self._read_metrics(target)
                self._read_whisper(target)
            for namespace, name in self.hpas:
                hpa = self.cluster.kube.get(
                    f"/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers/{name}"
                )
                if hpa is not None:
                    replicas = int(hpa.get("status", {}).get("currentReplicas", 0))
                    self.evidence.hpa_replicas.setdefault((namespace, name), []).append(
                        (time.time(), replicas)
                    )
            self.stop.wait(API_POLL_SECONDS)

    def _read_metrics(self, target: Target) -> None:
        namespace, name = target.key[0], target.name
        with contextlib.suppress(UserError):
            found = self.cluster.kube.get(
                f"/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods/{name}"
            )
            if not found:
                return
            usage = sum(
                float(parse_quantity(c.get("usage", {}).get("cpu", "0")))
                for c in found.get("containers", [])
                if c.get("name") == target.container
            )
            window = float(str(found.get("window", "0s")).rstrip("s") or 0)
            self.evidence.metrics.setdefault(target.key, []).append(
                MetricsSample(
                    time.time(), _seconds(found["timestamp"]), window, usage, target.limit_cores
                )
            )

    def _read_whisper(self, target: Target) -> None:
        namespace, name = target.key[0], target.name
        whisper = self.cluster.kube.get(
            f"/apis/{API_VERSION}/namespaces/{OPERATOR_NAMESPACE}/{KERNEL_WHISPER.plural}/"
            f"{kernel_whisper_name(name)}"
        )
        if not whisper or "status" not in whisper:
            return
        spec, status = whisper["spec"], whisper["status"]
        truth = spec.get("kernelTruth", {})
        if spec.get("podNamespace") != namespace or truth.get("podUid") not in (None, target.uid):
            return  # another pod of that name, or an earlier one
        stamp = spec["observedAt"]
        seen = self._seen.setdefault(target.key, set())
        if stamp in seen:
            return
        seen.add(stamp)
        reported = status.get("reportedUsage", {})
        self.evidence.readings.setdefault(target.key, []).append(
            WhisperReading(
                observed_at=_seconds(stamp),
                window_seconds=float(truth.get("windowSeconds") or 0),
                throttled_percent=float(truth["throttledPercent"]),
                severity=status.get("severity"),
                source=reported.get("source"),
                percent_of_limit=reported.get("percentOfLimit"),
                actions=tuple(r["action"] for r in status.get("recommendations", [])),
            )
        )
