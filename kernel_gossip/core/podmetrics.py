"""The Metrics API as metrics-server computes it (pkg/storage), and the kubelet's resource
metrics it reads (pkg/scraper/client/resource/decode.go). Pure: no I/O.

Every metric resolution the stand-in scrapes a batch: per running container its start
time, cumulative CPU (ns) and memory working set, and the same for the node. The storage
keeps the two latest points of each; a PodMetrics or NodeMetrics item is the CPU rate
between them (its `timestamp` is the latest point's, its `window` the time between the
two) and the latest working set. A container scraped once has no rate yet, a restarted
one starts over, a counter that went down is skipped: as metrics-server does.
"""

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

API_VERSION = "metrics.k8s.io/v1beta1"
NS_PER_SECOND = 1_000_000_000
# metrics-server's freshContainerMinMetricsResolution and its --metric-resolution floor.
FRESH_CONTAINER_MIN_NS = 10 * NS_PER_SECOND
MIN_METRIC_RESOLUTION_NS = 10 * NS_PER_SECOND
DEFAULT_METRIC_RESOLUTION_NS = 15 * NS_PER_SECOND  # what metrics-server's manifests set

PodRef = tuple[str, str]  # (namespace, name)


@dataclass(frozen=True)
class MetricsPoint:
    """One scrape of a container or node (metrics-server's storage.MetricsPoint)."""

    start_ns: int  # cumulative CPU was 0 then
    timestamp_ns: int  # when CPU was read
    cumulative_cpu_ns: int
    memory_bytes: int  # working set


@dataclass
class MetricsBatch:
    """One scrape of the node: node name -> point, pod -> container name -> point."""

    nodes: dict[str, MetricsPoint] = field(default_factory=dict)
    pods: dict[PodRef, dict[str, MetricsPoint]] = field(default_factory=dict)

    def add_pod(self, pod: PodRef, containers: Mapping[str, MetricsPoint]) -> None:
        """A pod with a container missing its CPU or memory is dropped whole, as
        metrics-server's decoder drops it (checkContainerMetrics)."""
        if any(p.cumulative_cpu_ns == 0 or p.memory_bytes == 0 for p in containers.values()):
            return
        if containers:
            self.pods[pod] = dict(containers)

    def add_node(self, name: str, point: MetricsPoint) -> None:
        """A node point without CPU or memory is dropped, as metrics-server does."""
        if point.cumulative_cpu_ns and point.memory_bytes:
            self.nodes[name] = point


@dataclass(frozen=True)
class Usage:
    """What a Metrics API item says: CPU in nanocores over [timestamp - window, timestamp]."""

    cpu_nanocores: int
    memory_bytes: int
    timestamp_ns: int
    window_ns: int

    def resources(self) -> dict[str, str]:
        return {
            "cpu": cpu_quantity(self.cpu_nanocores),
            "memory": memory_quantity(self.memory_bytes),
        }


def resource_usage(last: MetricsPoint, prev: MetricsPoint) -> Usage | None:
    """The rate between two points; None where metrics-server skips them (start time or
    cumulative CPU went down: a reset) or where they span no time."""
    if last.start_ns < prev.start_ns or last.cumulative_cpu_ns < prev.cumulative_cpu_ns:
        return None
    window_ns = last.timestamp_ns - prev.timestamp_ns
    if window_ns <= 0:
        return None
    rate = (last.cumulative_cpu_ns - prev.cumulative_cpu_ns) / (window_ns / NS_PER_SECOND)
    return Usage(int(rate), last.memory_bytes, last.timestamp_ns, window_ns)


@dataclass(frozen=True)
class ObjectRef:
    """A pod or node as the API lists it: what an item is named and labelled after."""

    name: str
    namespace: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ContainerMetrics:
    name: str
    usage: Usage


@dataclass(frozen=True)
class PodMetrics:
    pod: ObjectRef
    timestamp_ns: int | None  # None: every container was skipped (metrics-server's zero time)
    window_ns: int
    containers: tuple[ContainerMetrics, ...]

    def as_object(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": "PodMetrics",
            "metadata": _metadata(self.pod),
            "timestamp": None if self.timestamp_ns is None else rfc3339(self.timestamp_ns),
            "window": go_duration(self.window_ns),
            "containers": [{"name": c.name, "usage": c.usage.resources()} for c in self.containers],
        }


@dataclass(frozen=True)
class NodeMetrics:
    node: ObjectRef
    usage: Usage

    def as_object(self) -> dict[str, Any]:
        return {
            "apiVersion": API_VERSION,
            "kind": "NodeMetrics",
            "metadata": _metadata(self.node),
            "timestamp": rfc3339(self.usage.timestamp_ns),
            "window": go_duration(self.usage.window_ns),
            "usage": self.usage.resources(),
        }


def _metadata(ref: ObjectRef) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": ref.name}
    if ref.namespace:
        meta["namespace"] = ref.namespace
    if ref.labels:
        meta["labels"] = dict(ref.labels)
    return meta


class MetricsStorage:
    """The last two points of every container and node (metrics-server's podStorage and
    nodeStorage): store() takes each batch, *_metrics() answer for the pods/nodes the API
    lists."""

    def __init__(self, metric_resolution_ns: int) -> None:
        self.metric_resolution_ns = metric_resolution_ns
        self._last_pods: dict[PodRef, dict[str, MetricsPoint]] = {}
        self._prev_pods: dict[PodRef, dict[str, MetricsPoint]] = {}
        self._last_nodes: dict[str, MetricsPoint] = {}
        self._prev_nodes: dict[str, MetricsPoint] = {}

    def store(self, batch: MetricsBatch) -> None:
        self._store_pods(batch.pods)
        self._store_nodes(batch.nodes)

    def _store_pods(self, pods: Mapping[PodRef, Mapping[str, MetricsPoint]]) -> None:
        last_pods: dict[PodRef, dict[str, MetricsPoint]] = {}
        prev_pods: dict[PodRef, dict[str, MetricsPoint]] = {}
        for ref, containers in pods.items():
            stored_last = self._last_pods.get(ref, {})
            stored_prev = self._prev_pods.get(ref, {})
            prev: dict[str, MetricsPoint] = {}
            for name, point in containers.items():
                earlier = self._previous_point(point, stored_last.get(name), stored_prev.get(name))
                if earlier is not None:
                    prev[name] = earlier
            if prev:
                prev_pods[ref] = prev
            last_pods[ref] = dict(containers)
        self._last_pods, self._prev_pods = last_pods, prev_pods

    def _previous_point(
        self, point: MetricsPoint, last: MetricsPoint | None, prev: MetricsPoint | None
    ) -> MetricsPoint | None:
        """The point a new one is rated against. A container started less than a
        resolution ago (but at least 10 s) is rated from its start with zero CPU; one whose
        start is after the stored point restarted: it has none until its next scrape."""
        since_start = point.timestamp_ns - point.start_ns
        if 0 < since_start < self.metric_resolution_ns and since_start >= FRESH_CONTAINER_MIN_NS:
            return MetricsPoint(point.start_ns, point.start_ns, 0, point.memory_bytes)
        if last is None or not point.start_ns < last.timestamp_ns:
            return None
        if point.timestamp_ns > last.timestamp_ns:
            return last
        if prev is not None and prev.timestamp_ns < point.timestamp_ns:
            return prev
        return None

    def _store_nodes(self, nodes: Mapping[str, MetricsPoint]) -> None:
        prev_nodes: dict[str, MetricsPoint] = {}
        for name, point in nodes.items():
            last = self._last_nodes.get(name)
            prev = self._prev_nodes.get(name)
            if last is not None and point.timestamp_ns > last.timestamp_ns:
                prev_nodes[name] = last
            elif last is not None and prev is not None and prev.timestamp_ns < point.timestamp_ns:
                prev_nodes[name] = prev
        self._last_nodes, self._prev_nodes = dict(nodes), prev_nodes

    def pod_metrics(self, pods: Iterable[ObjectRef]) -> list[PodMetrics]:
        """One item per listed pod with two points for every container; a container whose
        rate cannot be computed is left out, the item's time is its earliest container's."""
        results = []
        for pod in pods:
            ref = (pod.namespace, pod.name)
            last, prev = self._last_pods.get(ref), self._prev_pods.get(ref)
            if last is None or prev is None or not set(last) <= set(prev):
                continue
            containers = []
            earliest: Usage | None = None
            for name in sorted(last):
                usage = resource_usage(last[name], prev[name])
                if usage is None:
                    continue
                containers.append(ContainerMetrics(name, usage))
                if earliest is None or usage.timestamp_ns < earliest.timestamp_ns:
                    earliest = usage
            results.append(
                PodMetrics(
                    pod,
                    earliest.timestamp_ns if earliest else None,
                    earliest.window_ns if earliest else 0,
                    tuple(containers),
                )
            )
        return results

    def node_metrics(self, nodes: Iterable[ObjectRef]) -> list[NodeMetrics]:
        results = []
        for node in nodes:
            last, prev = self._last_nodes.get(node.name), self._prev_nodes.get(node.name)
            if last is None or prev is None:
                continue
            usage = resource_usage(last, prev)
            if usage is not None:
                results.append(NodeMetrics(node, usage))
        return results


@dataclass(frozen=True)
class SyncPlan:
    """API calls that make the stored objects what the storage answers: create (POST),
    replace (PUT, with the stored resourceVersion) and delete."""

    create: list[dict[str, Any]]
    replace: list[dict[str, Any]]
    delete: list[PodRef]


def sync_plan(stored: Mapping[PodRef, str], wanted: Iterable[dict[str, Any]]) -> SyncPlan:
    """stored: (namespace, name) -> resourceVersion of the objects the API has now."""
    create, replace = [], []
    seen: set[PodRef] = set()
    for item in wanted:
        meta = item["metadata"]
        key = (str(meta.get("namespace", "")), str(meta["name"]))
        seen.add(key)
        if key in stored:
            replace.append({**item, "metadata": {**meta, "resourceVersion": stored[key]}})
        else:
            create.append(item)
    return SyncPlan(create, replace, sorted(set(stored) - seen))


# --- formats: Kubernetes quantities, metav1.Time, metav1.Duration --------------------------

_DECIMAL_SUFFIXES = {-9: "n", -6: "u", -3: "m", 0: "", 3: "k", 6: "M", 9: "G", 12: "T", 15: "P"}
_BINARY_SUFFIXES = ("", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei")


def cpu_quantity(nanocores: int) -> str:
    """A DecimalSI quantity of scale -9 in its canonical form: 300000000 -> "300m"."""
    value, exponent = nanocores, -9
    while value and value % 1000 == 0 and exponent < 15:
        value, exponent = value // 1000, exponent + 3
    return f"{value}{_DECIMAL_SUFFIXES[exponent] if value else ''}"


def memory_quantity(size: int) -> str:
    """A BinarySI quantity in its canonical form: 2097152 -> "2Mi", 1536 -> "1536"."""
    value, power = size, 0
    while value >= 1024 and value % 1024 == 0 and power < len(_BINARY_SUFFIXES) - 1:
        value, power = value // 1024, power + 1
    return f"{value}{_BINARY_SUFFIXES[power]}"


def rfc3339(timestamp_ns: int) -> str:
    """metav1.Time's wire form: UTC, whole seconds (the fraction is truncated)."""
    moment = datetime.fromtimestamp(timestamp_ns // NS_PER_SECOND, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def go_duration(ns: int) -> str:
    """time.Duration.String(), metav1.Duration's wire form: "15.002s", "1m0.5s", "800ms"."""
    if ns == 0:
        return "0s"
    sign, magnitude = ("-" if ns < 0 else ""), abs(ns)
    if magnitude < 1000:
        return f"{sign}{magnitude}ns"
    if magnitude < NS_PER_SECOND:
        unit, size = ("µs", 1000) if magnitude < 1_000_000 else ("ms", 1_000_000)
        return f"{sign}{_with_fraction(magnitude, size)}{unit}"
    minutes, nanoseconds = divmod(magnitude, 60 * NS_PER_SECOND)
    hours, minutes = divmod(minutes, 60)
    text = f"{_with_fraction(nanoseconds, NS_PER_SECOND)}s"
    if hours:
        return f"{sign}{hours}h{minutes}m{text}"
    return f"{sign}{minutes}m{text}" if minutes else f"{sign}{text}"


def _with_fraction(value: int, unit: int) -> str:
    whole, fraction = divmod(value, unit)
    if not fraction:
        return str(whole)
    digits = len(str(unit)) - 1
    return f"{whole}.{fraction:0{digits}d}".rstrip("0")


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_NS = {"ns": 1, "us": 1000, "µs": 1000, "ms": 1_000_000, "s": NS_PER_SECOND}
_UNIT_NS |= {"m": 60 * NS_PER_SECOND, "h": 3600 * NS_PER_SECOND}


def parse_go_duration(text: str) -> int:
    """time.ParseDuration for non-negative durations ("15s", "1m30s", "1.5m") -> ns."""
    parts = _DURATION_PART.findall(text)
    if not text or "".join(number + unit for number, unit in parts) != text:
        raise ValueError(f"not a duration (e.g. 15s, 1m): {text!r}")
    return round(sum(float(number) * _UNIT_NS[unit] for number, unit in parts))
