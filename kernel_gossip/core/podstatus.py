"""What the lab's kubelet writes to the API server, derived from what the CRI shows. Pure.

Pod status follows the kubelet's pkg/kubelet/kubelet_pods.go (convertToAPIContainerStatuses,
getPhase), pkg/kubelet/status/generate.go (the Ready/ContainersReady/Initialized/
PodReadyToStartContainers conditions) and the restart back-off of pkg/kubelet/kuberuntime
(client-go's flowcontrol.Backoff: 10 s doubling to 5 min, forgotten after 10 min without
a failure). The Node follows pkg/kubelet/nodestatus/setters.go: capacity from the host,
allocatable minus the default hard eviction thresholds, the four conditions and addresses.
"""

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kernel_gossip.core.podspec import Pod

BACKOFF_INITIAL_SECONDS = 10.0
BACKOFF_MAX_SECONDS = 300.0
MAX_PODS = 110
# The kubelet's default hard eviction thresholds (memory.available<100Mi,
# nodefs.available<10%), subtracted from capacity to give allocatable.
EVICTION_MEMORY_BYTES = 100 * 1024 * 1024
EVICTION_NODEFS_FRACTION = 0.1


def timestamp(moment: datetime) -> str:
    """metav1.Time on the wire: RFC 3339, seconds, UTC."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def from_ns(nanoseconds: int) -> str | None:
    return timestamp(datetime.fromtimestamp(nanoseconds / 1e9, UTC)) if nanoseconds else None


# --- restart back-off -------------------------------------------------------------------


@dataclass
class Backoff:
    """flowcontrol.Backoff keyed by pod UID and container name; times in seconds."""

    initial: float = BACKOFF_INITIAL_SECONDS
    maximum: float = BACKOFF_MAX_SECONDS
    _entries: dict[str, tuple[float, float]] = field(default_factory=dict)  # delay, last update

    def _expired(self, event_time: float, last_update: float) -> bool:
        return event_time - last_update > 2 * self.maximum

    def next(self, key: str, event_time: float, now: float) -> None:
        """A restart happens now for a failure at event_time: the next one waits longer."""
        entry = self._entries.get(key)
        if entry is None or self._expired(event_time, entry[1]):
            delay = self.initial
        else:
            delay = min(entry[0] * 2, self.maximum)
        self._entries[key] = (delay, now)

    def delay(self, key: str) -> float:
        entry = self._entries.get(key)
        return entry[0] if entry else self.initial

    def remaining(self, key: str, event_time: float, now: float) -> float:
        """Seconds until a failure at event_time may be retried (0: now): IsInBackOffSince."""
        entry = self._entries.get(key)
        if entry is None or self._expired(event_time, entry[1]):
            return 0.0
        return max(0.0, entry[0] - (now - event_time))

    def remaining_since_update(self, key: str, now: float) -> float:
        """IsInBackOffSinceUpdate: seconds left of the back-off started by the last next()."""
        entry = self._entries.get(key)
        return max(0.0, entry[0] - (now - entry[1])) if entry else 0.0

    def forget(self, prefix: str) -> None:
        for key in [key for key in self._entries if key.startswith(prefix)]:
            del self._entries[key]


def backoff_message(delay: float, container: str, pod: Pod, uid: str) -> str:
    """The kubelet's CrashLoopBackOff message."""
    name = f"{pod.metadata.name}_{pod.metadata.namespace}({uid})"
    return f"back-off {_duration(delay)} restarting failed container={container} pod={name}"


def _duration(seconds: float) -> str:
    """Go's time.Duration.String() for whole seconds: 10s, 1m20s, 5m0s."""
    whole = int(seconds)
    return f"{whole // 60}m{whole % 60}s" if whole >= 60 else f"{whole}s"


# --- pod status ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ContainerInstance:
    """One CRI container of a pod (a container name has one per start)."""

    id: str
    name: str
    restart_count: int  # the io.kubernetes.container.restartCount annotation
    state: str  # CREATED, RUNNING, EXITED, UNKNOWN
    exit_code: int
    reason: str
    message: str
    started_ns: int
    finished_ns: int
    image: str
    image_id: str


@dataclass(frozen=True)
class Waiting:
    reason: str
    message: str = ""


def latest_instances(
    instances: list[ContainerInstance],
) -> dict[str, tuple[ContainerInstance, ContainerInstance | None]]:
    """Per container name: the newest instance and the one before it."""
    by_name: dict[str, list[ContainerInstance]] = {}
    for instance in instances:
        by_name.setdefault(instance.name, []).append(instance)
    result = {}
    for name, found in by_name.items():
        ordered = sorted(found, key=lambda i: (i.restart_count, i.started_ns), reverse=True)
        result[name] = (ordered[0], ordered[1] if len(ordered) > 1 else None)
    return result


def _terminated(instance: ContainerInstance) -> dict[str, Any]:
    state: dict[str, Any] = {
        "exitCode": instance.exit_code,
        "reason": instance.reason or ("Completed" if instance.exit_code == 0 else "Error"),
        "startedAt": from_ns(instance.started_ns),
        "finishedAt": from_ns(instance.finished_ns),
        "containerID": f"containerd://{instance.id}",
    }
    if instance.message:
        state["message"] = instance.message
    return state


def container_status(
    name: str,
    spec_image: str,
    latest: ContainerInstance | None,
    previous: ContainerInstance | None,
    waiting: Waiting | None,
) -> dict[str, Any]:
    """One v1 ContainerStatus. `waiting` (a pull error, a back-off) overrides the state and
    moves a terminated latest instance into lastState, as the kubelet's reason cache does."""
    status: dict[str, Any] = {
        "name": name,
        "image": spec_image,
        "imageID": "",
        "ready": False,
        "started": False,
        "restartCount": 0,
        "state": {"waiting": {"reason": "ContainerCreating"}},
        "lastState": {},
    }
    if latest is not None:
        status.update(
            containerID=f"containerd://{latest.id}",
            image=latest.image or spec_image,
            imageID=latest.image_id,
            restartCount=latest.restart_count,
        )
        if latest.state == "RUNNING":
            status.update(ready=True, started=True)
            status["state"] = {"running": {"startedAt": from_ns(latest.started_ns)}}
        elif latest.state == "EXITED":
            status["state"] = {"terminated": _terminated(latest)}
        if previous is not None and previous.state == "EXITED":
            status["lastState"] = {"terminated": _terminated(previous)}
    if waiting is not None:
        if "terminated" in status["state"]:
            status["lastState"] = status["state"]
        body = {"reason": waiting.reason}
        if waiting.message:
            body["message"] = waiting.message
        status["state"] = {"waiting": body}
        status.update(ready=False, started=False)
    return status


def phase(statuses: list[dict[str, Any]], restart_policy: str) -> str:
    """getPhase for a pod without init containers."""
    running = stopped = succeeded = waiting = 0
    for status in statuses:
        state, last = status["state"], status["lastState"]
        if "running" in state:
            running += 1
        elif "terminated" in state:
            stopped += 1
            succeeded += state["terminated"]["exitCode"] == 0
        elif "terminated" in last:
            stopped += 1
        else:
            waiting += 1
    if waiting:
        return "Pending"
    if running:
        return "Running"
    if stopped:
        if restart_policy == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        if restart_policy == "Never":
            return "Failed"
        return "Running"
    return "Pending"


def _condition(
    kind: str, true: bool, previous: dict[str, dict[str, Any]], now: str, reason: str = ""
) -> dict[str, Any]:
    """A condition whose lastTransitionTime only moves when its status does."""
    status = "True" if true else "False"
    before = previous.get(kind)
    kept = before is not None and before.get("status") == status
    condition: dict[str, Any] = {
        "type": kind,
        "status": status,
        "lastProbeTime": None,
        "lastTransitionTime": before["lastTransitionTime"] if kept and before else now,
    }
    if reason:
        condition["reason"] = reason
    return condition


def _readiness(statuses: list[dict[str, Any]], pod_phase: str) -> tuple[bool, str, str]:
    """GeneratePodReadyCondition / GenerateContainersReadyCondition: ready, reason, message."""
    if pod_phase == "Succeeded":
        return False, "PodCompleted", ""
    unready = sorted(s["name"] for s in statuses if not s["ready"])
    if unready:
        return False, "ContainersNotReady", f"containers with unready status: [{' '.join(unready)}]"
    return True, "", ""


@dataclass(frozen=True)
class PodObservation:
    """What the kubelet knows of one pod when it writes its status."""

    sandbox_ready: bool
    pod_ip: str
    host_ip: str
    qos_class: str
    instances: list[ContainerInstance]
    waiting: dict[str, Waiting]  # container name -> why it is not running


def pod_status(
    pod: Pod, stored: dict[str, Any], seen: PodObservation, now: datetime
) -> dict[str, Any]:
    """The v1 PodStatus for `seen`, keeping what the API server or an earlier write set
    (PodScheduled, startTime, transition times). A terminal phase stays terminal."""
    when = timestamp(now)
    previous = {c["type"]: c for c in stored.get("conditions", []) if "type" in c}
    instances = latest_instances(seen.instances)
    statuses = []
    for container in sorted(pod.spec.containers, key=lambda c: c.name):
        latest, before = instances.get(container.name, (None, None))
        statuses.append(
            container_status(
                container.name, container.image, latest, before, seen.waiting.get(container.name)
            )
        )
    pod_phase = phase(statuses, pod.spec.restart_policy)
    if stored.get("phase") in ("Succeeded", "Failed"):
        pod_phase = stored["phase"]
    ready, reason, message = _readiness(statuses, pod_phase)
    conditions = [
        _condition("PodReadyToStartContainers", seen.sandbox_ready, previous, when),
        _condition("Initialized", True, previous, when),
        _condition("Ready", ready, previous, when, reason),
        _condition("ContainersReady", ready, previous, when, reason),
    ]
    for condition in conditions[2:]:
        if message:
            condition["message"] = message
    conditions.append(
        previous.get("PodScheduled") or _condition("PodScheduled", True, previous, when)
    )
    status: dict[str, Any] = {
        "phase": pod_phase,
        "conditions": conditions,
        "hostIP": seen.host_ip,
        "hostIPs": [{"ip": seen.host_ip}] if seen.host_ip else [],
        "startTime": stored.get("startTime") or when,
        "qosClass": seen.qos_class,
        "containerStatuses": statuses,
    }
    if seen.pod_ip:
        status["podIP"] = seen.pod_ip
        status["podIPs"] = [{"ip": seen.pod_ip}]
    return status


def rejected_status(stored: dict[str, Any], message: str, now: datetime) -> dict[str, Any]:
    """A pod the kubelet will not run: Failed, as the kubelet's admission rejects one."""
    return {
        **{k: v for k, v in stored.items() if k in ("conditions", "startTime")},
        "phase": "Failed",
        "reason": "UnsupportedByLab",
        "message": f"Pod was rejected: {message}",
        "startTime": stored.get("startTime") or timestamp(now),
    }


# --- the Node -----------------------------------------------------------------------------


@dataclass(frozen=True)
class HostFacts:
    """What the kubelet reads from its host (cAdvisor's machine info, uname, os-release)."""

    hostname: str
    internal_ip: str
    cpus: int
    memory_bytes: int
    ephemeral_bytes: int
    kernel_version: str
    os_image: str
    machine_id: str
    boot_id: str
    system_uuid: str
    architecture: str
    runtime_version: str
    kubelet_version: str


def node_name(hostname: str) -> str:
    """nodeutil.GetHostname: the host name, trimmed and lower-cased."""
    return hostname.strip().lower()


def node_object(facts: HostFacts) -> dict[str, Any]:
    """The Node the kubelet registers (initialNode): labels and spec."""
    name = node_name(facts.hostname)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                "beta.kubernetes.io/arch": facts.architecture,
                "beta.kubernetes.io/os": "linux",
                "kubernetes.io/arch": facts.architecture,
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
            },
        },
        "spec": {},
    }


def node_status(facts: HostFacts, previous: list[dict[str, Any]], now: datetime) -> dict[str, Any]:
    """NodeStatus with a fresh heartbeat on every condition (the heartbeat this is)."""
    when = timestamp(now)
    before = {c["type"]: c for c in previous if "type" in c}
    memory_ki = facts.memory_bytes // 1024
    capacity = {
        "cpu": str(facts.cpus),
        "ephemeral-storage": f"{facts.ephemeral_bytes // 1024}Ki",
        "hugepages-1Gi": "0",
        "hugepages-2Mi": "0",
        "memory": f"{memory_ki}Ki",
        "pods": str(MAX_PODS),
    }
    allocatable = {
        **capacity,
        "ephemeral-storage": str(int(facts.ephemeral_bytes * (1 - EVICTION_NODEFS_FRACTION))),
        "memory": f"{memory_ki - EVICTION_MEMORY_BYTES // 1024}Ki",
    }
    conditions = []
    for kind, status, reason, message in (
        (
            "MemoryPressure",
            "False",
            "KubeletHasSufficientMemory",
            "kubelet has sufficient memory available",
        ),
        ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
        ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
        ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
    ):
        old = before.get(kind)
        kept = old is not None and old.get("status") == status
        conditions.append(
            {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "lastHeartbeatTime": when,
                "lastTransitionTime": old["lastTransitionTime"] if kept and old else when,
            }
        )
    return {
        "capacity": capacity,
        "allocatable": allocatable,
        "conditions": conditions,
        "addresses": [
            {"type": "InternalIP", "address": facts.internal_ip},
            {"type": "Hostname", "address": node_name(facts.hostname)},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 0}},
        "nodeInfo": {
            "machineID": facts.machine_id,
            "systemUUID": facts.system_uuid,
            "bootID": facts.boot_id,
            "kernelVersion": facts.kernel_version,
            "osImage": facts.os_image,
            "containerRuntimeVersion": facts.runtime_version,
            "kubeletVersion": facts.kubelet_version,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": facts.architecture,
        },
    }
