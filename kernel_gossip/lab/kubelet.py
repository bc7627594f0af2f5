"""The lab's kubelet: the stand-in for a kubelet on this host (none is installable here).

It registers this host as a Node and keeps its Ready condition fresh (every 10 s, the
kubelet's nodeStatusUpdateFrequency), lists and watches the Pods of all namespaces, binds
pods without a node to itself (the lab has one node: it is also the scheduler), and runs
each pod of its node in a worker thread of its own through the CRI with pods.py's
machinery. What it knows comes from the API server and the runtime alone (the kubelet's
labels and annotations on sandboxes and containers), so a restarted kubelet finds every
pod, container and restart count where it left them, and starts nothing twice.

Each worker syncs its pod when the pod changes, when the runtime's relist (every 1 s, the
kubelet's PLEG period) shows one of its containers changed, or when a back-off expires:
sandbox, images ("pulled" from the lab's image table), containers per restartPolicy with
the CrashLoopBackOff back-off, then the status (kubelet_status.py) when it changed. A pod
with a deletionTimestamp is stopped with its grace period (StopContainer's timeout:
SIGTERM, then SIGKILL) and its object removed (DELETE gracePeriodSeconds=0); a sandbox
whose Pod object is gone is stopped and removed too. On SIGTERM the kubelet exits and
leaves its pods running, as a kubelet does.
"""

import contextlib
import os
import platform
import shutil
import signal
import socket
import subprocess
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from kernel_gossip import Say
from kernel_gossip.core import podspec
from kernel_gossip.core import podstatus as kubelet_status
from kernel_gossip.core.podstatus import (
    Backoff,
    ContainerInstance,
    HostFacts,
    PodObservation,
    Waiting,
)
from kernel_gossip.cri import CriClient, CriError
from kernel_gossip.errors import UserError
from kernel_gossip.kube.client import ApiError, KubeClient, pod_path
from kernel_gossip.lab import apibuild, images, pods, processes

RELIST_SECONDS = 1.0
NODE_STATUS_SECONDS = 10.0
RESYNC_SECONDS = 10.0
WATCH_TIMEOUT_SECONDS = 300
MINIMUM_GRACE_SECONDS = 2  # the kubelet's minimumGracePeriodInSeconds
KEPT_INSTANCES = 2  # per container: the latest and the one before (kubectl logs --previous)
TERMINAL = ("Succeeded", "Failed")


def _now() -> datetime:
    return datetime.now(UTC)


def node_ip() -> str:
    """The node's address (a kubelet's InternalIP): the source of its route outside."""
    route = subprocess.run(
        ["ip", "-o", "route", "get", "1.1.1.1"], capture_output=True, text=True, check=False
    ).stdout.split()
    return route[route.index("src") + 1] if "src" in route else "127.0.0.1"


def _read(path: str) -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return ""


def host_facts(cri: CriClient, lab: Path) -> HostFacts:
    """This host as cAdvisor and the kubelet's node setters read it."""
    memory = next(
        int(line.split()[1]) * 1024
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    os_release = dict(
        line.split("=", 1) for line in _read("/etc/os-release").splitlines() if "=" in line
    )
    runtime = cri.version().split()  # "containerd 1.6.20~ds1 (CRI v1)"
    pins = apibuild.parse_pins(apibuild.PINS_FILE.read_text())
    machine = platform.machine()
    return HostFacts(
        hostname=socket.gethostname(),
        internal_ip=node_ip(),
        cpus=os.cpu_count() or 1,
        memory_bytes=memory,
        ephemeral_bytes=shutil.disk_usage(lab).total,
        kernel_version=platform.release(),
        os_image=os_release.get("PRETTY_NAME", "Linux").strip('"'),
        machine_id=_read("/etc/machine-id"),
        boot_id=_read("/proc/sys/kernel/random/boot_id"),
        system_uuid=_read("/sys/class/dmi/id/product_uuid"),
        architecture={"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine),
        runtime_version=f"{runtime[0]}://{runtime[1]}",
        kubelet_version=f"{apibuild.kubernetes_version(pins)}-kernel-gossip-lab",
    )


class PodWorker:
    """One pod's thread: syncs on every wake-up, and on its own after `retry_after`."""

    def __init__(self, owner: "LabKubelet", uid: str) -> None:
        self.owner = owner
        self.uid = uid
        self.stored: dict[str, Any] | None = None  # None: no Pod object (any more)
        self.written: dict[str, Any] | None = None  # the last status this worker wrote
        self.wake = threading.Event()
        self.retry_after: float = RESYNC_SECONDS
        self.thread = threading.Thread(target=self._loop, name=f"pod-{uid[:8]}", daemon=True)

    def update(self, stored: dict[str, Any] | None) -> None:
        self.stored = stored
        self.wake.set()

    def _loop(self) -> None:
        owner = self.owner
        while not owner.stopping.is_set():
            self.wake.clear()
            try:
                if owner.sync(self):
                    owner.forget(self.uid)
                    return
            except (CriError, UserError, OSError) as error:
                owner.say(f"pod {self.uid}: sync failed, retrying: {error}")
                self.retry_after = min(self.retry_after, 2.0)
            self.wake.wait(self.retry_after)


class LabKubelet:
    def __init__(
        self,
        client: KubeClient,
        cri: CriClient,
        cri_socket: Path,
        lab: Path,
        log_root: Path,
        say: Say,
    ) -> None:
        self.client = client
        self.cri = cri
        self.cri_socket = cri_socket
        self.lab = lab
        self.log_root = log_root
        self.say = say
        self.facts = host_facts(cri, lab)
        self.node = kubelet_status.node_name(self.facts.hostname)
        self.stopping = threading.Event()
        self.listed = threading.Event()  # the first list of pods is done
        self.node_registered = threading.Event()
        self.crash_backoff = Backoff()
        self.pull_backoff = Backoff()
        self._pull_errors: dict[str, str] = {}
        self._workers: dict[str, PodWorker] = {}
        self._lock = threading.Lock()

    # --- the Node ---------------------------------------------------------------------

    def _node_heartbeat(self) -> None:
        while not self.stopping.is_set():
            try:
                self.update_node()
                self.node_registered.set()
            except UserError as error:
                self.say(f"node {self.node}: status not written: {error}")
            self.stopping.wait(NODE_STATUS_SECONDS)

    def update_node(self) -> None:
        """Register the Node when it is not there, then write its status (a heartbeat)."""
        path = f"/api/v1/nodes/{self.node}"
        try:
            current = self.client.request("GET", path)
        except ApiError as error:
            if error.status != 404:
                raise
            self.say(f"registering node {self.node}")
            current = self.client.request(
                "POST", "/api/v1/nodes", kubelet_status.node_object(self.facts)
            )
        previous = current.get("status", {}).get("conditions", [])
        current["status"] = kubelet_status.node_status(self.facts, previous, _now())
        self.client.request("PUT", f"{path}/status", current)

    # --- pods from the API ------------------------------------------------------------

    def _watch_pods(self) -> None:
        """List, then watch from the list's resourceVersion; relist when the watch fails."""
        while not self.stopping.is_set():
            try:
                listed = self.client.request("GET", "/api/v1/pods")
                present = set()
                for item in listed.get("items", []):
                    present.add(item["metadata"]["uid"])
                    self._dispatch(item)
                with self._lock:
                    vanished = [uid for uid in self._workers if uid not in present]
                for uid in vanished:
                    self._deliver(uid, None)
                self.listed.set()
                version = listed["metadata"]["resourceVersion"]
                while not self.stopping.is_set():
                    for event in self.client.watch("/api/v1/pods", version, WATCH_TIMEOUT_SECONDS):
                        kind, item = event.get("type"), event.get("object", {})
                        if kind == "ERROR":
                            raise ApiError(int(item.get("code", 500)), str(item))
                        version = item.get("metadata", {}).get("resourceVersion", version)
                        if kind in ("ADDED", "MODIFIED"):
                            self._dispatch(item)
                        elif kind == "DELETED":
                            self._deliver(item["metadata"]["uid"], None)
            except UserError as error:
                self.say(f"pods: list/watch failed, listing again: {error}")
                self.stopping.wait(1.0)

    def _dispatch(self, item: dict[str, Any]) -> None:
        node = item.get("spec", {}).get("nodeName", "")
        if not node:
            self._bind(item)
        elif node == self.node:
            self._deliver(item["metadata"]["uid"], item)

    def _bind(self, item: dict[str, Any]) -> None:
        """The scheduler's part: a v1 Binding to this node (409: bound meanwhile)."""
        meta = item["metadata"]
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"]},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node},
        }
        try:
            self.client.request(
                "POST", pod_path(meta["namespace"], meta["name"], "binding"), binding
            )
        except ApiError as error:
            if error.status not in (404, 409):
                self.say(f"pod {meta['namespace']}/{meta['name']}: not bound: {error}")

    def _deliver(self, uid: str, stored: dict[str, Any] | None) -> None:
        with self._lock:
            worker = self._workers.get(uid)
            if worker is None:
                worker = PodWorker(self, uid)
                self._workers[uid] = worker
                worker.stored = stored
                worker.thread.start()
                return
        worker.update(stored)

    def forget(self, uid: str) -> None:
        with self._lock:
            self._workers.pop(uid, None)
        self.crash_backoff.forget(uid)
        self.pull_backoff.forget(uid)

    # --- the runtime's relist ---------------------------------------------------------

    def _relist(self) -> None:
        """Every second, the runtime's containers and sandboxes: a worker whose pod's
        containers changed is woken; a sandbox with no Pod object gets a worker to end it."""
        before: dict[str, tuple[str, str]] = {}
        while not self.stopping.wait(RELIST_SECONDS):
            try:
                now = {
                    c.id: (c.labels.get(podspec.POD_UID_LABEL, ""), c.state)
                    for c in self.cri.list_containers()
                }
                sandboxes = self.cri.list_pod_sandboxes()
            except CriError as error:
                self.say(f"relist failed: {error}")
                continue
            changed = {uid for cid, (uid, state) in now.items() if before.get(cid) != (uid, state)}
            changed |= {uid for cid, (uid, _) in before.items() if cid not in now}
            before = now
            with self._lock:
                workers = dict(self._workers)
            for uid in changed:
                if uid in workers:
                    workers[uid].wake.set()
            if self.listed.is_set():
                for sandbox in sandboxes:
                    if sandbox.uid not in workers:
                        self.say(
                            f"pod {sandbox.namespace}/{sandbox.name}: no Pod object, ending it"
                        )
                        self._deliver(sandbox.uid, None)

    # --- one pod ----------------------------------------------------------------------

    def sync(self, worker: PodWorker) -> bool:
        """Bring one pod to what its object asks; True once the pod is gone for good."""
        stored = worker.stored
        worker.retry_after = RESYNC_SECONDS
        if stored is None or stored["metadata"].get("deletionTimestamp"):
            self._terminate(worker, stored)
            return True
        status = stored.get("status", {})
        try:
            pod = podspec.pod_from_api(stored)
        except ValueError as error:
            if status.get("phase") != "Failed":
                rejected = kubelet_status.rejected_status(status, str(error), _now())
                self._write_status(worker, rejected)
            return False
        if status.get("phase") in TERMINAL:
            self._stop_sandboxes(worker.uid)
            return False
        sandbox = self._ensure_sandbox(pod, worker.uid)
        waiting = self._start_containers(worker, pod, sandbox)
        seen = self._observe(pod, worker.uid, sandbox, waiting)
        written = kubelet_status.pod_status(pod, status, seen, _now())
        self._write_status(worker, written)
        if written["phase"] in TERMINAL:
            self._stop_sandboxes(worker.uid)
        return False

    def _ensure_sandbox(self, pod: podspec.Pod, uid: str) -> pods.StartedSandbox:
        """The pod's ready sandbox, or a new one (a sandbox that died is replaced)."""
        sandboxes = self.cri.list_pod_sandboxes({podspec.POD_UID_LABEL: uid})
        ready = [s for s in sandboxes if s.ready]
        if ready:
            sandbox = max(ready, key=lambda s: s.created_ns)
            detail = self.cri.pod_sandbox_status(sandbox.id)
            record = pods.running_record(pod, uid, sandbox.id, detail, self.lab, self.log_root)
            log_dir = Path(record.log_dir)
            config = pods.sandbox_config(self.cri, pod, uid, record.cgroup_parent, log_dir)
            return pods.StartedSandbox(record, config, detail.ip)
        for dead in sandboxes:
            self.say(f"pod {pod.key}: sandbox {dead.id[:13]} is not ready, replacing it")
            pods.stop_sandbox(self.cri, dead, 0, self.say)
            self.cri.remove_pod_sandbox(dead.id)
        self.say(f"pod {pod.key}: starting (uid {uid})")
        return pods.start_sandbox(pod, uid, self.cri, self.lab, self.log_root, len(sandboxes))

    def _instances(self, sandbox_id: str) -> list[ContainerInstance]:
        found = []
        for container in self.cri.list_containers(sandbox_id):
            status = self.cri.container_status(container.id)
            count = container.annotations.get(podspec.CONTAINER_RESTART_COUNT_ANNOTATION, "0")
            found.append(
                ContainerInstance(
                    id=container.id,
                    name=container.name,
                    restart_count=int(count) if count.isdigit() else 0,
                    state=status.state.removeprefix("CONTAINER_"),
                    exit_code=status.exit_code,
                    reason=status.reason,
                    message=status.message,
                    started_ns=status.started_ns,
                    finished_ns=status.finished_ns,
                    image=status.image,
                    image_id=status.image_ref,
                )
            )
        return found

    def _start_containers(
        self, worker: PodWorker, pod: podspec.Pod, sandbox: pods.StartedSandbox
    ) -> dict[str, Waiting]:
        """Start what should run (per restartPolicy and back-off); why the others wait."""
        uid, now = worker.uid, time.time()
        sandbox_id = sandbox.record.sandbox_id or ""
        latest = kubelet_status.latest_instances(self._instances(sandbox_id))
        waiting: dict[str, Waiting] = {}
        for container in pod.spec.containers:
            instance, _ = latest.get(container.name, (None, None))
            restart_count = 0
            if instance is not None:
                if instance.state != "EXITED" or not _should_restart(
                    pod.spec.restart_policy, instance.exit_code
                ):
                    continue
                key = f"{uid}/{container.name}"
                finished = instance.finished_ns / 1e9
                remaining = self.crash_backoff.remaining(key, finished, now)
                if remaining > 0:
                    delay = self.crash_backoff.delay(key)
                    message = kubelet_status.backoff_message(delay, container.name, pod, uid)
                    waiting[container.name] = Waiting("CrashLoopBackOff", message)
                    worker.retry_after = min(worker.retry_after, remaining + 0.1)
                    continue
                self.crash_backoff.next(key, finished, now)
                restart_count = instance.restart_count + 1
            image_id = self._pull(worker, container, waiting)
            if image_id is None:
                continue
            self.say(
                f"pod {pod.key}: starting container {container.name} (restart {restart_count})"
            )
            pods.start_container(
                self.cri, pod, uid, sandbox, container, image_id, restart_count, self.lab
            )
            self._prune(sandbox_id, container.name)
        return waiting

    def _pull(
        self, worker: PodWorker, container: podspec.Container, waiting: dict[str, Waiting]
    ) -> str | None:
        """The image ID, or None with ErrImagePull / ImagePullBackOff in `waiting`."""
        key, ref, now = f"{worker.uid}/{container.name}/pull", container.image, time.time()
        if images.by_ref(ref) is not None:  # built on this host: present whatever the policy
            return pods.pull_image(ref, self.cri, self.cri_socket, self.say)
        if container.image_pull_policy != "Always":
            found = self.cri.image_id(ref)
            if found is not None:
                return found
            if container.image_pull_policy == "Never":
                message = f'Container image "{ref}" is not present with pull policy of Never'
                waiting[container.name] = Waiting("ErrImageNeverPull", message)
                return None
        remaining = self.pull_backoff.remaining_since_update(key, now)
        if remaining > 0:
            error = self._pull_errors.get(key, "")
            message = f'Back-off pulling image "{ref}": ErrImagePull: {error}'
            waiting[container.name] = Waiting("ImagePullBackOff", message)
            worker.retry_after = min(worker.retry_after, remaining + 0.1)
            return None
        try:
            return pods.pull_image(ref, self.cri, self.cri_socket, self.say)
        except pods.ImageNotInLab as error:
            self.pull_backoff.next(key, now, now)
            self._pull_errors[key] = str(error)
            waiting[container.name] = Waiting("ErrImagePull", str(error))
            worker.retry_after = min(worker.retry_after, 1.0)  # then ImagePullBackOff
            return None

    def _prune(self, sandbox_id: str, name: str) -> None:
        """The kubelet's container GC: dead instances beyond the KEPT_INSTANCES newest go."""
        instances = [i for i in self._instances(sandbox_id) if i.name == name]
        ordered = sorted(instances, key=lambda i: i.restart_count, reverse=True)
        for old in ordered[KEPT_INSTANCES:]:
            if old.state == "EXITED":
                self.cri.remove_container(old.id)

    def _observe(
        self,
        pod: podspec.Pod,
        uid: str,
        sandbox: pods.StartedSandbox,
        waiting: dict[str, Waiting],
    ) -> PodObservation:
        return PodObservation(
            sandbox_ready=True,
            pod_ip=sandbox.ip,
            host_ip=self.facts.internal_ip,
            qos_class=podspec.qos_class(pod).value,
            instances=self._instances(sandbox.record.sandbox_id or ""),
            waiting=waiting,
        )

    def _write_status(self, worker: PodWorker, status: dict[str, Any]) -> None:
        """PUT pods/status when it differs from what this worker last wrote; a conflict
        reads the object again. A pod gone meanwhile is left to its DELETED event."""
        if status == worker.written or worker.stored is None:
            return
        current = worker.stored
        meta = current["metadata"]
        path = pod_path(meta["namespace"], meta["name"], "status")
        for _ in range(5):
            try:
                written = self.client.request("PUT", path, {**current, "status": status})
            except ApiError as error:
                if error.status == 404:
                    return
                if error.status != 409:
                    raise
                current = self.client.request("GET", pod_path(meta["namespace"], meta["name"]))
                if current["metadata"]["uid"] != worker.uid:
                    return
                continue
            worker.written = status
            worker.stored = written
            return

    def _stop_sandboxes(self, uid: str) -> None:
        """A terminal pod's sandbox is stopped (its IP released); it stays until deletion."""
        for sandbox in self.cri.list_pod_sandboxes({podspec.POD_UID_LABEL: uid}):
            if sandbox.ready:
                pods.stop_sandbox(self.cri, sandbox, 0, self.say)

    def _terminate(self, worker: PodWorker, stored: dict[str, Any] | None) -> None:
        """Stop the containers with the pod's grace (SIGTERM, SIGKILL once it is over),
        remove everything of the pod, then its object (DELETE gracePeriodSeconds=0)."""
        grace: int | None = None  # no object: the grace the containers were started with
        if stored is not None:
            meta = stored["metadata"]
            declared = meta.get("deletionGracePeriodSeconds")
            if declared is None:
                declared = stored.get("spec", {}).get("terminationGracePeriodSeconds", 30)
            grace = max(int(declared), MINIMUM_GRACE_SECONDS)
            self.say(f"pod {meta['namespace']}/{meta['name']}: deleting (grace {grace} s)")
        pods.remove_pod(self.cri, worker.uid, self.lab, grace, self.say)
        if stored is None:
            return
        body = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "gracePeriodSeconds": 0,
            "preconditions": {"uid": worker.uid},
        }
        with contextlib.suppress(ApiError):  # gone already, or another pod's name now
            self.client.request("DELETE", pod_path(meta["namespace"], meta["name"]), body)

    # --- the process ------------------------------------------------------------------

    def run(self) -> None:
        """Until stop(): node heartbeat, relist and pod workers in threads, list/watch here."""
        for target, name in ((self._node_heartbeat, "node"), (self._relist, "relist")):
            threading.Thread(target=target, name=name, daemon=True).start()
        self._watch_pods()

    def stop(self) -> None:
        self.stopping.set()

    def healthy(self) -> bool:
        return self.node_registered.is_set() and self.listed.is_set()


def _should_restart(policy: str, exit_code: int) -> bool:
    return policy == "Always" or (policy == "OnFailure" and exit_code != 0)


def main(
    kubeconfig: Path, cri_socket: Path, lab: Path, log_root: Path, healthz: str, say: Say
) -> int:
    """The process: runs until SIGTERM or SIGINT, leaving its pods running."""
    client = KubeClient(kubeconfig)
    host, _, port = healthz.rpartition(":")
    with CriClient(cri_socket) as cri:
        owner = LabKubelet(client, cri, cri_socket, lab, log_root, say)
        server = processes.serve_healthz(owner.healthy, host or "127.0.0.1", int(port))
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: owner.stop())
        say(f"node {owner.node}: kubelet for {client.server}, CRI {cri_socket}")
        watcher = threading.Thread(target=owner.run, name="watch", daemon=True)
        watcher.start()
        while not owner.stopping.wait(1.0):
            if not watcher.is_alive():
                raise UserError("the kubelet's watch ended unexpectedly")
        server.shutdown()
    say("stopped (pods keep running)")
    return 0
