"""The lab's metrics-server stand-in: the I/O side of metrics.py.

Every metric resolution it scrapes what a kubelet's /metrics/resource would give
metrics-server (each running container of the lab's CRI: start time, cumulative CPU from
cpuacct.usage / usage_usec, working set; the node's from the root cgroup), stores the batch,
and writes the PodMetrics and NodeMetrics that metrics-server would then serve into the lab
API server's metrics.k8s.io/v1beta1, for the pods and nodes the API lists. Objects nobody
answers for any more (pods gone, a first or restarted scrape) are deleted, and all of them
on shutdown: no stale figure outlives the scraper.
"""

import itertools
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from kernel_gossip.core import podmetrics as metrics
from kernel_gossip.core.podmetrics import (
    MetricsBatch,
    MetricsPoint,
    MetricsStorage,
    ObjectRef,
    PodRef,
)
from kernel_gossip.cri import CriClient, CriError
from kernel_gossip.errors import UserError
from kernel_gossip.host.cgroupfs import CgroupFs
from kernel_gossip.kube.client import ApiError, KubeClient
from kernel_gossip.lab import pods

log = logging.getLogger("kernel_gossip.metrics_server")

METRICS_PATH = f"/apis/{metrics.API_VERSION}"
NODES_PATH = "/api/v1/nodes"
ALL_PODS_PATH = "/api/v1/pods"


def boot_time_ns() -> int:
    """The node's start time (its cumulative CPU was 0 then): /proc/stat btime."""
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("btime "):
            return int(line.split()[1]) * metrics.NS_PER_SECOND
    raise UserError("/proc/stat has no btime line")


def _point(cgroups: CgroupFs, rel: str, start_ns: int) -> MetricsPoint:
    """CPU first, then its timestamp (what a rate is computed over), then memory."""
    cpu = cgroups.read_counters(rel)
    timestamp = time.time_ns()
    memory = cgroups.read_memory(rel)
    return MetricsPoint(start_ns, timestamp, cpu.usage_ns, memory.working_set_bytes)


def scrape(cri: CriClient, cgroups: CgroupFs, node: str, node_start_ns: int) -> MetricsBatch:
    """What the kubelet's resource metrics hold now: running containers and the node."""
    batch = MetricsBatch()
    for pod in pods.get(cri):
        points: dict[str, MetricsPoint] = {}
        for container in pod.containers:
            if container.state != "RUNNING":
                continue
            try:
                points[container.name] = _point(cgroups, container.cgroup, container.started_ns)
            except (FileNotFoundError, ProcessLookupError):
                continue  # it stopped between the listing and the read
        batch.add_pod((pod.namespace, pod.name), points)
    batch.add_node(node, _point(cgroups, "/", node_start_ns))
    return batch


class MetricsApi:
    """The lab API server, for what metrics-server lists and what it serves."""

    def __init__(self, kubeconfig: Path) -> None:
        self._api = KubeClient(kubeconfig)

    def _list(self, path: str) -> list[dict[str, Any]]:
        items = self._api.request("GET", path).get("items") or []
        return [item for item in items if isinstance(item, dict)]

    def _optional_list(self, path: str) -> list[dict[str, Any]] | None:
        """None where the API does not serve the resource (404)."""
        try:
            return self._list(path)
        except ApiError as error:
            if error.status == 404:
                return None
            raise

    def pods(self) -> list[ObjectRef]:
        return [_ref(item) for item in self._list(ALL_PODS_PATH)]

    def nodes(self) -> list[ObjectRef]:
        return [_ref(item) for item in self._optional_list(NODES_PATH) or []]

    def stored(self, plural: str) -> dict[PodRef, str] | None:
        """(namespace, name) -> resourceVersion of the stored PodMetrics or NodeMetrics."""
        items = self._optional_list(f"{METRICS_PATH}/{plural}")
        if items is None:
            return None
        return {
            (str(m.get("namespace", "")), str(m["name"])): str(m.get("resourceVersion", ""))
            for m in (item.get("metadata", {}) for item in items)
        }

    def apply(self, plural: str, plan: metrics.SyncPlan) -> None:
        for item in plan.create:
            self._api.request("POST", _collection(plural, item["metadata"]), item)
        for item in plan.replace:
            self._api.request("PUT", _object(plural, item["metadata"]), item)
        for namespace, name in plan.delete:
            try:
                self._api.request("DELETE", _object(plural, {"namespace": namespace, "name": name}))
            except ApiError as error:
                if error.status != 404:
                    raise


def _ref(item: dict[str, Any]) -> ObjectRef:
    meta = item.get("metadata", {})
    return ObjectRef(
        str(meta.get("name")), str(meta.get("namespace") or ""), dict(meta.get("labels") or {})
    )


def _collection(plural: str, meta: dict[str, Any]) -> str:
    namespace = meta.get("namespace")
    return (
        f"{METRICS_PATH}/namespaces/{namespace}/{plural}"
        if namespace
        else f"{METRICS_PATH}/{plural}"
    )


def _object(plural: str, meta: dict[str, Any]) -> str:
    return f"{_collection(plural, meta)}/{meta['name']}"


@dataclass
class Health:
    """When the last cycle completed: /healthz is 200 while cycles keep coming."""

    resolution_seconds: float
    last_cycle: float | None = None

    def healthy(self) -> bool:
        limit = 3 * self.resolution_seconds
        return self.last_cycle is not None and time.monotonic() - self.last_cycle < limit


class MetricsServer:
    def __init__(
        self,
        kubeconfig: Path,
        cri_socket: Path,
        node: str,
        metric_resolution_ns: int,
        health_address: tuple[str, int],
    ) -> None:
        self.api = MetricsApi(kubeconfig)
        self.cri_socket = cri_socket
        self.node = node
        self.storage = MetricsStorage(metric_resolution_ns)
        self.resolution_seconds = metric_resolution_ns / metrics.NS_PER_SECOND
        self.cgroups = CgroupFs.detect()
        self.node_start_ns = boot_time_ns()
        self.health = Health(self.resolution_seconds)
        self.stop = threading.Event()
        self.unserved: set[str] = set()  # resources the API did not serve at the last try
        self.server = ThreadingHTTPServer(health_address, self._handler_class())

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}"

    def cycle(self) -> None:
        """Scrape, store, and make the API's objects what the storage answers."""
        with CriClient(self.cri_socket) as cri:
            self.storage.store(scrape(cri, self.cgroups, self.node, self.node_start_ns))
        pod_items = [m.as_object() for m in self.storage.pod_metrics(self.api.pods())]
        node_items = [m.as_object() for m in self.storage.node_metrics(self.api.nodes())]
        self._sync("pods", pod_items)
        self._sync("nodes", node_items)

    def _sync(self, plural: str, wanted: list[dict[str, Any]]) -> None:
        stored = self.api.stored(plural)
        if stored is None:
            if plural not in self.unserved:
                log.warning("the API server does not serve %s/%s", metrics.API_VERSION, plural)
            self.unserved.add(plural)
            return
        self.unserved.discard(plural)
        self.api.apply(plural, metrics.sync_plan(stored, wanted))

    def _ticks(self) -> Iterator[None]:
        """One tick per resolution, on a fixed schedule (a slow cycle does not shift it)."""
        start = time.monotonic()
        for count in itertools.count():
            if self.stop.wait(max(start + count * self.resolution_seconds - time.monotonic(), 0)):
                return
            yield

    def run(self) -> None:
        """Cycle until stop is set; a failed cycle is logged and the next one tried. The
        objects are deleted on the way out."""
        http = threading.Thread(target=self.server.serve_forever, name="http", daemon=True)
        http.start()
        for _ in self._ticks():
            try:
                self.cycle()
                self.health.last_cycle = time.monotonic()
            except (UserError, CriError, OSError) as error:
                log.warning("metrics cycle failed: %s", error)
        self._withdraw()
        self.server.shutdown()
        self.server.server_close()

    def _withdraw(self) -> None:
        for plural in ("pods", "nodes"):
            try:
                self._sync(plural, [])
            except (UserError, OSError) as error:
                log.warning("cannot delete the stored %s metrics: %s", plural, error)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        health = self.health

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path != "/healthz":
                    self._reply(404, {"error": "not found"})
                    return
                ok = health.healthy()
                self._reply(200 if ok else 503, {"ok": ok})

            def _reply(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body, allow_nan=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: object) -> None:
                log.debug(format, *args)

        return Handler
