"""The talk's wow moments as verdicts over measured evidence. Pure: the figures come in,
each verdict says what was measured, on what, and whether the demo would work on stage.

The talk's own numbers (847 syscalls, 92.3% throttled, 48% usage) are claims; they appear
here only as the claims the measurements are set against, never as results."""

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kernel_gossip.operator.analysis import parse_cpu_quantity

Moment = str
MOMENTS: tuple[Moment, ...] = ("birth", "lie", "webhook", "hpa")

WEBHOOK_CLAIM_SECONDS = 2.0
CLAIMS: dict[Moment, str] = {
    "birth": "the talk: \"Pod 'Running' = 847 syscalls later\" (a claim, never measured)",
    "lie": 'the talk: "Metrics say 48%, kernel says 92% throttled" (a claim, never measured)',
    "webhook": 'the talk: "in less than 2 seconds that kernel event became a Kubernetes resource"',
    "hpa": 'the talk: "HPA scales on lies" (2 replicas at a comfortable 40%)',
}
SCALE_OUT = "scale_out_replicas"

JsonObject = dict[str, Any]


@dataclass(frozen=True)
class Verdict:
    moment: Moment
    ok: bool
    line: str
    figures: dict[str, Any] = field(default_factory=dict)

    def render(self) -> str:
        return f"[{'ok' if self.ok else 'FAILED'}] {self.moment}: {self.line}"


def birth_verdict(
    certificate: JsonObject | None, seconds_to_certificate: float | None, waited: float
) -> Verdict:
    """The pod's birth certificate arrived and counts what the kernel saw."""
    if certificate is None:
        return Verdict(
            "birth",
            False,
            f"no PodBirthCertificate within {waited:.0f} s of `kubectl run` "
            "(is the agent running and the pod started?)",
        )
    spec = certificate.get("spec", {})
    total = int(spec.get("totalSyscalls", 0))
    figures = {
        "births": births_in(certificate),
        "totalSyscalls": total,
        "namespaceOperations": spec.get("namespaceOperations"),
        "namespacesCreated": spec.get("namespacesCreated"),
        "mounts": spec.get("mounts"),
        "cgroupWrites": spec.get("cgroupWrites"),
        "execs": spec.get("execs"),
        "durationMs": spec.get("durationMs"),
        "secondsToCertificate": seconds_to_certificate,
        "name": certificate.get("metadata", {}).get("name"),
    }
    if total <= 0:
        return Verdict("birth", False, "the certificate counts no syscall", figures)
    line = (
        f"{total} syscalls, {spec.get('namespaceOperations')} namespace operations, "
        f"{spec.get('mounts')} mounts, {spec.get('execs')} execs in "
        f"{float(spec.get('durationMs', 0)):.0f} ms over {figures['births']} container births "
        f"(kernel, traced on node "
        f"{spec.get('node') or '?'}); certificate {seconds_to_certificate:.1f} s after "
        "`kubectl run`"
    )
    return Verdict("birth", True, line, figures)


def parse_top_millicores(output: str, pod: str) -> int | None:
    """The CPU(cores) column of `kubectl top pod` for one pod, in millicores."""
    for line in output.splitlines()[1:]:
        columns = line.split()
        if len(columns) >= 2 and columns[0] == pod:
            try:
                return round(parse_cpu_quantity(columns[1]) * 1000)
            except ValueError:
                return None
    return None


def lie_verdict(whisper: JsonObject | None, top_millicores: int | None) -> Verdict:
    """The KernelWhisper shows the kernel's throttling next to the Metrics API's usage,
    and the kernel says more than the usage figure does."""
    if whisper is None:
        return Verdict("lie", False, "no KernelWhisper for the bursty workload (agent?)")
    truth = whisper.get("spec", {}).get("kernelTruth", {})
    status = whisper.get("status", {})
    reported = status.get("reportedUsage", {})
    throttled = truth.get("throttledPercent")
    limit = truth.get("cpuLimitCores")
    percent_of_limit = reported.get("percentOfLimit")
    figures = {
        "pod": whisper.get("spec", {}).get("podName"),
        "throttledPercent": throttled,
        "nrPeriods": truth.get("nrPeriods"),
        "nrThrottled": truth.get("nrThrottled"),
        "cpuLimitCores": limit,
        "windowSeconds": truth.get("windowSeconds"),
        "reportedSource": reported.get("source"),
        "reportedCores": reported.get("cores"),
        "reportedPercentOfLimit": percent_of_limit,
        "kubectlTopMillicores": top_millicores,
        "severity": status.get("severity"),
        "recommendation": status.get("recommendation"),
    }
    if reported.get("source") != "metrics-api":
        return Verdict(
            "lie",
            False,
            f"the reported usage comes from {reported.get('source')!r}, not the Metrics API",
            figures,
        )
    if throttled is None or percent_of_limit is None:
        return Verdict("lie", False, "the whisper lacks the throttling or the limit", figures)
    gap = float(throttled) - float(percent_of_limit)
    figures["liesByPoints"] = round(gap, 1)
    line = (
        f"Metrics API: {percent_of_limit:.0f}% of the {limit} core limit"
        f" (kubectl top: {top_millicores}m); kernel: {throttled:.1f}% of "
        f"{truth.get('nrPeriods')} CFS periods throttled (cpu.stat)"
    )
    if gap <= 0:
        return Verdict("lie", False, f"no lie measured: {line}", figures)
    return Verdict("lie", True, f"{line}: the metrics lie by {gap:.0f} points", figures)


def webhook_verdict(
    http_status: int | None, seconds_to_readable: float | None, whisper: JsonObject | None
) -> Verdict:
    """The talk's curl became a KernelWhisper, and how fast against the talk's < 2 s."""
    figures = {"httpStatus": http_status, "secondsToReadable": seconds_to_readable}
    if http_status != 202:
        return Verdict(
            "webhook",
            False,
            f"the webhook answered {http_status if http_status else 'nothing'} (operator?)",
            figures,
        )
    if whisper is None or seconds_to_readable is None:
        return Verdict("webhook", False, "202, but no live-demo-kw became readable", figures)
    figures["throttledPercent"] = (
        whisper.get("spec", {}).get("kernelTruth", {}).get("throttledPercent")
    )
    figures["severity"] = whisper.get("status", {}).get("severity")
    within = seconds_to_readable < WEBHOOK_CLAIM_SECONDS
    line = (
        f"POST to readable KernelWhisper in {seconds_to_readable * 1000:.0f} ms "
        f"({'within' if within else 'OVER'} the talk's < {WEBHOOK_CLAIM_SECONDS:.0f} s), "
        f"severity {figures['severity']}"
    )
    return Verdict("webhook", within, line, figures)


def scale_out_whisper(whispers: list[JsonObject]) -> int | None:
    """The index (in list order, as jsonpath's .items[N]) of the first whisper that
    recommends scaling out."""
    for index, whisper in enumerate(whispers):
        actions = [r.get("action") for r in whisper.get("status", {}).get("recommendations", [])]
        if SCALE_OUT in actions:
            return index
    return None


def jsonpath_for(pod: str) -> str:
    """The jsonpath that picks one pod's scale-out advice, whatever the whisper's position
    in the list and the advice's in the whisper."""
    return (
        f'{{.items[?(@.spec.podName=="{pod}")]'
        f'.status.recommendations[?(@.action=="{SCALE_OUT}")].reason}}'
    )


def hpa_verdict(hpa: JsonObject | None, whispers: list[JsonObject]) -> Verdict:
    """The HPA sits at its figure while a whisper of its pods asks for more replicas."""
    if hpa is None:
        return Verdict("hpa", False, "no HorizontalPodAutoscaler (controller?)")
    status = hpa.get("status", {})
    current = status.get("currentReplicas")
    desired = status.get("desiredReplicas")
    utilization = hpa_utilization(hpa)
    index = scale_out_whisper(whispers)
    figures: dict[str, Any] = {
        "hpa": hpa.get("metadata", {}).get("name"),
        "currentReplicas": current,
        "desiredReplicas": desired,
        "averageUtilization": utilization,
        "whisperIndex": index,
    }
    if utilization is None:
        return Verdict("hpa", False, "the HPA has no CPU utilization (Metrics API?)", figures)
    target = hpa_target(hpa)
    figures["targetUtilization"] = target
    if target is not None and utilization >= target:
        return Verdict(
            "hpa",
            False,
            f"the HPA reads {utilization}% against its {target}% target: it scales by its own "
            "figure, the moment is not shown (make the workload burstier)",
            figures,
        )
    if index is None:
        return Verdict(
            "hpa",
            False,
            f"HPA at {utilization}% with {current} replicas, but no whisper recommends {SCALE_OUT}",
            figures,
        )
    whisper = whispers[index]
    advice = next(r for r in whisper["status"]["recommendations"] if r.get("action") == SCALE_OUT)
    figures.update(
        pod=whisper["spec"]["podName"],
        suggestedReplicas=advice.get("suggestedValue"),
        reason=advice.get("reason"),
        throttledPercent=whisper["spec"]["kernelTruth"].get("throttledPercent"),
    )
    line = (
        f"HPA: {current} replicas at {utilization}% average utilization (target {target}%), "
        "so it does not act; kernel: "
        f"{figures['throttledPercent']}% of periods throttled in {figures['pod']}, "
        f"advice {SCALE_OUT} to {advice.get('suggestedValue')}"
    )
    return Verdict("hpa", True, line, figures)


def hpa_utilization(hpa: JsonObject) -> int | None:
    """The HPA's own figure: its current average CPU utilization, when it has one."""
    for metric in hpa.get("status", {}).get("currentMetrics") or []:
        resource = metric.get("resource") or {}
        if resource.get("name") == "cpu":
            value = resource.get("current", {}).get("averageUtilization")
            return int(value) if value is not None else None
    return None


def hpa_target(hpa: JsonObject) -> int | None:
    for metric in hpa.get("spec", {}).get("metrics") or []:
        resource = metric.get("resource") or {}
        if resource.get("name") == "cpu":
            value = resource.get("target", {}).get("averageUtilization")
            return int(value) if value is not None else None
    return None


@dataclass(frozen=True)
class PhaseBar:
    container: str
    phase: str
    start_ms: float
    end_ms: float
    count: int


_CONTAINER_PREFIX = re.compile(r"^(c\d+)-(.+)$")


def births_in(certificate: JsonObject) -> int:
    """How many container births (the sandbox's included) the certificate adds up: the
    timeline prefixes each one's phases with c<N>- when there are several."""
    names = [entry["name"] for entry in certificate["spec"].get("syscallTimeline", [])]
    prefixes = {match[1] for name in names if (match := _CONTAINER_PREFIX.match(name))}
    return len(prefixes) or (1 if names else 0)


def birth_bars(certificate: JsonObject) -> list[PhaseBar]:
    """Each container's phases as bars on the pod's millisecond axis: a phase lasts until
    the container's next phase; the last one (the entrypoint's exec) is an instant."""
    spec = certificate["spec"]
    started = _epoch_ms(spec["startedAt"])
    steps: dict[str, list[tuple[str, float, int]]] = {}
    for entry in spec.get("syscallTimeline", []):
        match = _CONTAINER_PREFIX.match(entry["name"])
        container, phase = (match[1], match[2]) if match else ("c0", entry["name"])
        offset = _epoch_ms(entry["timestamp"]) - started
        steps.setdefault(container, []).append((phase, offset, int(entry.get("count", 0))))
    bars = []
    for container, phases in sorted(steps.items()):
        phases.sort(key=lambda step: step[1])
        for index, (phase, offset, count) in enumerate(phases):
            following = phases[index + 1][1] if index + 1 < len(phases) else offset
            bars.append(PhaseBar(container, phase, offset, following, count))
    return bars


def top_syscalls(certificate: JsonObject, how_many: int = 10) -> list[tuple[str, int]]:
    counts = certificate["spec"].get("syscalls", {})
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:how_many]


def _epoch_ms(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp() * 1000


def window_seconds(duration: str) -> float:
    """A metrics.k8s.io window ("15s", "15.004s", "1m0s") in seconds."""
    total, number = 0.0, ""
    for char in duration:
        if char.isdigit() or char == ".":
            number += char
        else:
            total += float(number or 0) * {"h": 3600, "m": 60, "s": 1}.get(char, 0)
            number = ""
    return total
