"""The lab's controller-manager: the Deployment, ReplicaSet, garbage-collector and
HorizontalPodAutoscaler controllers of kube-controller-manager, on the lab API server.

The decisions are the pure cores' (kernel_gossip.core.rollout, .autoscaling); this module
reads the objects, writes what they decide and records the controllers' events. The
workload controllers relist every second (the real ones watch; the objects and what
`kubectl` shows are the same, a second later at most); the HPA controller syncs every
sync period (15 s), as --horizontal-pod-autoscaler-sync-period says.
"""

import contextlib
import re
import signal
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from kernel_gossip import Say
from kernel_gossip.core import autoscaling, rollout
from kernel_gossip.core.autoscaling import History, PodMetric, PodSample
from kernel_gossip.errors import UserError
from kernel_gossip.kube.client import ApiError, KubeClient
from kernel_gossip.lab import processes

Json = dict[str, Any]
WORKLOAD_RESYNC_SECONDS = 1.0
APPS = "/apis/apps/v1"
AUTOSCALING = "/apis/autoscaling/v2"
METRICS = "/apis/metrics.k8s.io/v1beta1"
OWNER_KINDS = frozenset({"Deployment", "ReplicaSet"})
_PLURAL = {"Deployment": "deployments", "ReplicaSet": "replicasets", "Pod": "pods"}
_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_GO_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


def parse_go_duration(text: str) -> timedelta:
    """A Go time.Duration string ("15s", "1m30s", "15.012s") as metav1.Duration prints it."""
    parts = _GO_DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"not a duration: {text!r} (examples: 15s, 1m30s, 500ms)")
    return timedelta(seconds=sum(float(n) * _GO_UNIT_SECONDS[u] for n, u in parts))


def object_path(kind: str, namespace: str, name: str = "", subresource: str = "") -> str:
    base = "/api/v1" if kind == "Pod" else APPS
    path = f"{base}/namespaces/{namespace}/{_PLURAL[kind]}"
    return path + (f"/{name}" if name else "") + (f"/{subresource}" if subresource else "")


def _now() -> datetime:
    return datetime.now(UTC)


def _meta(obj: Json) -> Json:
    meta: Json = obj.get("metadata") or {}
    return meta


def pod_sample(pod: Json) -> PodSample:
    """What the HPA controller reads of a pod: phase, readiness, start, summed requests."""
    status = pod.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
    containers = (pod.get("spec") or {}).get("containers") or []
    requests: dict[str, int] = {}
    for resource in ("cpu", "memory"):
        amounts = [
            ((c.get("resources") or {}).get("requests") or {}).get(resource) for c in containers
        ]
        if containers and all(a is not None for a in amounts):
            requests[resource] = sum(autoscaling.milli_value(a) for a in amounts)
    return PodSample(
        name=str(_meta(pod).get("name")),
        phase=str(status.get("phase") or "Pending"),
        deleting=rollout.deleting(pod),
        ready=None if ready is None else ready.get("status") == "True",
        ready_since=None if ready is None else rollout.parse_time(ready.get("lastTransitionTime")),
        started=rollout.parse_time(status.get("startTime")),
        requests=requests,
    )


def pod_metrics(items: list[Json]) -> dict[str, dict[str, PodMetric]]:
    """resource -> pod -> usage summed over containers, as the HPA's metrics client sums
    it (a pod with a container lacking the resource is left out)."""
    found: dict[str, dict[str, PodMetric]] = {"cpu": {}, "memory": {}}
    for item in items:
        containers = item.get("containers") or []
        when = rollout.parse_time(item.get("timestamp"))
        try:
            window = parse_go_duration(str(item.get("window") or "0s"))
        except ValueError:
            continue
        for resource, by_pod in found.items():
            amounts = [(c.get("usage") or {}).get(resource) for c in containers]
            if not containers or when is None or any(a is None for a in amounts):
                continue
            total = sum(autoscaling.milli_value(a) for a in amounts)
            by_pod[str(_meta(item).get("name"))] = PodMetric(total, when, window)
    return found


def event(obj: Json, component: str, kind: str, reason: str, message: str, now: datetime) -> Json:
    """A core/v1 Event about a workload, as its controller records it."""
    meta = _meta(obj)
    stamp = rollout.timestamp(now)
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta.get('name')}.", "namespace": meta.get("namespace")},
        "involvedObject": {
            "apiVersion": obj.get("apiVersion"),
            "kind": obj.get("kind"),
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "reason": reason,
        "message": message,
        "type": kind,
        "source": {"component": component},
        "reportingComponent": component,
        "reportingInstance": socket.gethostname(),
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


@dataclass
class ControllerManager:
    client: KubeClient
    say: Say
    hpa_sync_period: float = autoscaling.SYNC_PERIOD_SECONDS

    def __post_init__(self) -> None:
        self.stopping = threading.Event()
        self.synced = {"workloads": threading.Event(), "autoscalers": threading.Event()}
        self.histories: dict[str, History] = {}

    # --- helpers ------------------------------------------------------------------------

    def _items(self, path: str, query: dict[str, str] | None = None) -> list[Json]:
        listed = self.client.request("GET", path, query=query)
        kind = str(listed.get("kind", "")).removesuffix("List")
        items: list[Json] = listed.get("items") or []
        for item in items:
            item.setdefault("kind", kind)
            item.setdefault("apiVersion", listed.get("apiVersion"))
        return items

    def _record(self, obj: Json, component: str, kind: str, reason: str, message: str) -> None:
        namespace = str(_meta(obj).get("namespace"))
        body = event(obj, component, kind, reason, message, _now())
        with contextlib.suppress(UserError):
            self.client.request("POST", f"/api/v1/namespaces/{namespace}/events", body)

    def _attempt(self, what: str, action: Callable[[], object]) -> None:
        """One write; a conflict or a vanished object is retried on the next pass."""
        try:
            action()
        except ApiError as error:
            if error.status not in (404, 409):
                self.say(f"{what}: {error}")

    # --- the workload controllers -------------------------------------------------------

    def sync_workloads(self) -> None:
        """One pass of the garbage collector, Deployment and ReplicaSet controllers."""
        pods = self._items("/api/v1/pods")
        replica_sets = self._items(f"{APPS}/replicasets")
        deployments = self._items(f"{APPS}/deployments")
        self._collect_garbage(deployments, replica_sets, pods)
        for deployment in deployments:
            self._sync_deployment(deployment, replica_sets, pods)
        for replica_set in replica_sets:
            self._sync_replica_set(replica_set, pods)

    def _collect_garbage(self, deployments: list[Json], sets: list[Json], pods: list[Json]) -> None:
        plan = rollout.collect([*deployments, *sets], [*sets, *pods], OWNER_KINDS)
        for kind, namespace, name, policy in plan.delete:
            body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": policy}
            self._attempt(
                f"garbage-collect {kind} {namespace}/{name}",
                partial(self.client.request, "DELETE", object_path(kind, namespace, name), body),
            )
        for kind, namespace, name, owner_uid in plan.orphan:
            self._attempt(
                f"orphan {kind} {namespace}/{name}",
                partial(self._edit, kind, namespace, name, partial(_drop_owner, uid=owner_uid)),
            )
        for kind, namespace, name, finalizer in plan.finalize:
            self._attempt(
                f"finalize {kind} {namespace}/{name}",
                partial(self._edit, kind, namespace, name, partial(_drop_finalizer, key=finalizer)),
            )

    def _edit(self, kind: str, namespace: str, name: str, change: Callable[[Json], None]) -> None:
        path = object_path(kind, namespace, name)
        current = self.client.request("GET", path)
        change(current["metadata"])
        self.client.request("PUT", path, current)

    def _sync_deployment(self, deployment: Json, sets: list[Json], pods: list[Json]) -> None:
        meta = _meta(deployment)
        namespace, name = str(meta.get("namespace")), str(meta.get("name"))
        owned = rollout.owned_by(deployment, sets)
        new_set, old_sets = rollout.split_replica_sets(deployment, owned)
        old_uids = {rollout.uid(rs) for rs in old_sets}
        old_pods = [
            p
            for p in pods
            if rollout.controller_uid(p) in old_uids
            and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
        ]
        plan = rollout.plan_deployment(deployment, owned, len(old_pods), _now())
        if plan.create is not None:
            self._create_replica_set(deployment, plan.create, plan.status)
        surge, _ = rollout.fenceposts(deployment)
        wanted = rollout.spec_replicas(deployment)
        for rs in owned:
            size = plan.scale.get(rollout.name(rs))
            annotations = plan.annotate.get(rollout.name(rs))
            if size is not None or annotations is not None:
                self._update_replica_set(deployment, rs, size, annotations, wanted, surge)
        for rs_name in plan.delete:
            self._attempt(
                f"delete old ReplicaSet {namespace}/{rs_name}",
                partial(
                    self.client.request, "DELETE", object_path("ReplicaSet", namespace, rs_name)
                ),
            )
        if plan.status != (deployment.get("status") or {}):
            body = {**deployment, "status": plan.status}
            self._attempt(
                f"status of Deployment {namespace}/{name}",
                lambda: self.client.request(
                    "PUT", object_path("Deployment", namespace, name, "status"), body
                ),
            )
        newest: Json | None = None
        if plan.create is not None:
            newest = _meta(plan.create).get("annotations")
        elif new_set is not None:
            newest = plan.annotate.get(rollout.name(new_set)) or _meta(new_set).get("annotations")
        self._sync_revision(deployment, (newest or {}).get(rollout.REVISION))

    def _create_replica_set(self, deployment: Json, created: Json, status: Json) -> None:
        meta = _meta(created)
        namespace, name = str(meta["namespace"]), str(meta["name"])
        try:
            self.client.request("POST", object_path("ReplicaSet", namespace), created)
        except ApiError as error:
            if error.status != 409:
                raise
            # A ReplicaSet of that name with another template: hash collision; the next
            # pass hashes with collisionCount + 1, as the controller does.
            status["collisionCount"] = int(status.get("collisionCount") or 0) + 1
            return
        self._record(
            deployment,
            "deployment-controller",
            "Normal",
            "ScalingReplicaSet",
            f"Scaled up replica set {name} from 0 to {created['spec']['replicas']}",
        )

    def _update_replica_set(
        self,
        deployment: Json,
        rs: Json,
        size: int | None,
        promoted: dict[str, str] | None,
        wanted: int,
        surge: int,
    ) -> None:
        """A new size (with the desired/max-replicas annotations) or a new revision."""
        before = rollout.spec_replicas(rs)
        annotations = dict(promoted or _meta(rs).get("annotations") or {})
        replicas = before if size is None else size
        if size is not None:
            annotations[rollout.DESIRED_REPLICAS] = str(wanted)
            annotations[rollout.MAX_REPLICAS] = str(
                wanted + (0 if rollout.is_recreate(deployment) else surge)
            )
        body = {
            **rs,
            "metadata": {**_meta(rs), "annotations": annotations},
            "spec": {**rs["spec"], "replicas": replicas},
        }
        namespace, name = str(_meta(rs).get("namespace")), rollout.name(rs)

        def update() -> None:
            self.client.request("PUT", object_path("ReplicaSet", namespace, name), body)
            if replicas != before:
                direction = "up" if replicas > before else "down"
                self._record(
                    deployment,
                    "deployment-controller",
                    "Normal",
                    "ScalingReplicaSet",
                    f"Scaled {direction} replica set {name} from {before} to {replicas}",
                )

        self._attempt(f"update ReplicaSet {namespace}/{name}", update)

    def _sync_revision(self, deployment: Json, revision: str | None) -> None:
        """SetDeploymentRevision: the Deployment carries its new ReplicaSet's revision."""
        annotations = dict(_meta(deployment).get("annotations") or {})
        if revision is None or annotations.get(rollout.REVISION) == revision:
            return
        annotations[rollout.REVISION] = revision
        meta = _meta(deployment)
        self._attempt(
            f"revision of Deployment {meta.get('namespace')}/{meta.get('name')}",
            lambda: self._edit(
                "Deployment",
                str(meta.get("namespace")),
                str(meta.get("name")),
                lambda m: m.update(annotations={**(m.get("annotations") or {}), **annotations}),
            ),
        )

    def _sync_replica_set(self, replica_set: Json, pods: list[Json]) -> None:
        if rollout.deleting(replica_set):
            return
        meta = _meta(replica_set)
        namespace, name = str(meta.get("namespace")), str(meta.get("name"))
        selector = (replica_set.get("spec") or {}).get("selector")
        owned = [
            p
            for p in rollout.owned_by(replica_set, pods)
            if rollout.selector_matches(selector, _meta(p).get("labels") or {})
        ]
        plan = rollout.plan_replica_set(replica_set, owned, _now())
        for _ in range(plan.create):
            pod = rollout.pod_from_template(replica_set)
            try:
                made = self.client.request("POST", object_path("Pod", namespace), pod)
            except ApiError as error:
                self._record(
                    replica_set, "replicaset-controller", "Warning", "FailedCreate", str(error)
                )
                break
            self._record(
                replica_set,
                "replicaset-controller",
                "Normal",
                "SuccessfulCreate",
                f"Created pod: {made['metadata']['name']}",
            )
        for pod_name in plan.delete:

            def delete(pod_name: str = pod_name) -> None:
                self.client.request("DELETE", object_path("Pod", namespace, pod_name))
                self._record(
                    replica_set,
                    "replicaset-controller",
                    "Normal",
                    "SuccessfulDelete",
                    f"Deleted pod: {pod_name}",
                )

            self._attempt(f"delete Pod {namespace}/{pod_name}", delete)
        if plan.status != (replica_set.get("status") or {}):
            body = {**replica_set, "status": plan.status}
            self._attempt(
                f"status of ReplicaSet {namespace}/{name}",
                lambda: self.client.request(
                    "PUT", object_path("ReplicaSet", namespace, name, "status"), body
                ),
            )

    # --- the HPA controller -------------------------------------------------------------

    def sync_autoscalers(self) -> None:
        hpas = self._items(f"{AUTOSCALING}/horizontalpodautoscalers")
        for hpa in hpas:
            try:
                self._sync_autoscaler(hpa)
            except UserError as error:
                self.say(f"HPA {_meta(hpa).get('namespace')}/{_meta(hpa).get('name')}: {error}")
        for gone in set(self.histories) - {str(_meta(h).get("uid")) for h in hpas}:
            del self.histories[gone]

    def _sync_autoscaler(self, hpa: Json) -> None:
        meta = _meta(hpa)
        namespace, name = str(meta.get("namespace")), str(meta.get("name"))
        history = self.histories.setdefault(str(meta.get("uid")), History())
        ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
        kind, target = str(ref.get("kind")), str(ref.get("name"))
        now = _now()
        if kind not in ("Deployment", "ReplicaSet"):
            done = autoscaling.failed_get_scale(
                hpa, f'the lab serves no scale for kind "{kind}"', now
            )
            scale: Json = {}
        else:
            scale_path = object_path(kind, namespace, target, "scale")
            try:
                scale = self.client.request("GET", scale_path)
            except ApiError as error:
                done = autoscaling.failed_get_scale(hpa, str(error), now)
                scale = {}
        if scale:
            selector = (scale.get("status") or {}).get("selector")
            pods: list[Json] = []
            metrics: dict[str, dict[str, PodMetric]] | str = {}
            if selector:
                query = {"labelSelector": str(selector)}
                pods = self._items(f"/api/v1/namespaces/{namespace}/pods", query)
                try:
                    metrics = pod_metrics(
                        self._items(f"{METRICS}/namespaces/{namespace}/pods", query)
                    )
                except ApiError as error:
                    metrics = str(error)
            replicas = int((scale.get("spec") or {}).get("replicas") or 0)
            done = autoscaling.reconcile(
                hpa, replicas, selector, [pod_sample(p) for p in pods], metrics, history, now
            )
            if done.scale_to is not None:
                body = {**scale, "spec": {**scale.get("spec", {}), "replicas": done.scale_to}}
                try:
                    self.client.request("PUT", object_path(kind, namespace, target, "scale"), body)
                except ApiError as error:
                    autoscaling.set_condition(
                        done.status["conditions"],
                        "AbleToScale",
                        False,
                        "FailedUpdateScale",
                        f"the HPA controller was unable to update the target scale: {error}",
                        rollout.timestamp(now),
                    )
                    done.events[-1] = (
                        "Warning",
                        "FailedRescale",
                        f"New size: {done.scale_to}; error: {error}",
                    )
        for kind_, reason, message in done.events:
            self._record(hpa, "horizontal-pod-autoscaler", kind_, reason, message)
        if done.status != (hpa.get("status") or {}):
            body = {**hpa, "status": done.status}
            self._attempt(
                f"status of HPA {namespace}/{name}",
                lambda: self.client.request(
                    "PUT",
                    f"{AUTOSCALING}/namespaces/{namespace}/horizontalpodautoscalers/{name}/status",
                    body,
                ),
            )

    # --- the process --------------------------------------------------------------------

    def _loop(self, name: str, period: float, sync: Callable[[], None]) -> None:
        while not self.stopping.is_set():
            started = _now()
            try:
                sync()
            except UserError as error:
                self.say(f"{name}: {error}")
            self.synced[name].set()
            elapsed = (_now() - started).total_seconds()
            self.stopping.wait(max(period - elapsed, 0.05))

    def run(self) -> list[threading.Thread]:
        loops = (
            ("workloads", WORKLOAD_RESYNC_SECONDS, self.sync_workloads),
            ("autoscalers", self.hpa_sync_period, self.sync_autoscalers),
        )
        threads = [
            threading.Thread(target=self._loop, args=loop, name=loop[0], daemon=True)
            for loop in loops
        ]
        for thread in threads:
            thread.start()
        return threads

    def stop(self) -> None:
        self.stopping.set()

    def healthy(self) -> bool:
        return all(event.is_set() for event in self.synced.values())


def _drop_owner(meta: Json, uid: str) -> None:
    meta["ownerReferences"] = [r for r in meta.get("ownerReferences") or [] if r.get("uid") != uid]


def _drop_finalizer(meta: Json, key: str) -> None:
    meta["finalizers"] = [f for f in meta.get("finalizers") or [] if f != key]


def main(kubeconfig: Path, healthz: str, hpa_sync_period: float, say: Say) -> int:
    """The process: runs until SIGTERM or SIGINT."""
    client = KubeClient(kubeconfig)
    owner = ControllerManager(client, say, hpa_sync_period)
    host, _, port = healthz.rpartition(":")
    server = processes.serve_healthz(owner.healthy, host or "127.0.0.1", int(port))
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: owner.stop())
    say(
        f"controllers for {client.server}: deployment, replicaset, garbagecollector, "
        f"horizontalpodautoscaling (sync period {hpa_sync_period:g} s)"
    )
    owner.run()
    while not owner.stopping.wait(1.0):
        pass
    server.shutdown()
    say("stopped")
    return 0
