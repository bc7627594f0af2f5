"""Pods on the lab's containerd, run the way a kubelet runs them: the I/O side of kubelet.py.

apply: create the pod cgroup kubepods/<qos>/pod<uid> with the pod-level shares/quota
(without a kubelet nobody else does), RunPodSandbox with the kubelet's labels and that
cgroup parent, then CreateContainer/StartContainer with the derived Linux resources.
delete: StopContainer with the grace period, StopPodSandbox, RemovePodSandbox, then the pod
cgroup, its logs and its record. A record per pod under <lab dir>/pods/ is written before
anything is created, so stop_containerd() can clean up after a crash (clean_leftovers).

When a Kubernetes API (the lab's API server) is given, the Pod object is created there
first and its uid is the pod's uid, as on a real node; its status follows the pod.
"""

import base64
import contextlib
import errno
import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import yaml
from pydantic import Field

from kernel_gossip import paths
from kernel_gossip.cgroupfs import remove_cgroup
from kernel_gossip.cgroups import QosClass
from kernel_gossip.errors import UserError
from kernel_gossip.lab import images, kubelet
from kernel_gossip.lab.cri import CriClient, CriError, Sandbox
from kernel_gossip.models import CamelModel

Say = Callable[[str], None]
KILL_TIMEOUT_S = 10.0
CNI_RESULTS = Path("/var/lib/cni/results")  # libcni's cache: one file per sandbox network


class PodApi(Protocol):
    """The Kubernetes API side of a pod (the lab API server), when one runs."""

    def create_pod(self, pod: kubelet.Pod) -> str:
        """Create the Pod object; returns the uid the API server gave it."""
        ...

    def set_pod_status(self, view: "PodView") -> None: ...

    def delete_pod(self, namespace: str, name: str) -> None: ...


class PodRecord(CamelModel):
    """What the lab made for one pod: enough to remove it without the CRI."""

    namespace: str
    name: str
    uid: str
    qos_class: QosClass
    cgroup_parent: str
    sandbox_id: str | None = None
    netns_path: str | None = None
    containers: dict[str, str] = Field(default_factory=dict)  # name -> container ID
    created_at: datetime


@dataclass(frozen=True)
class ContainerView:
    name: str
    id: str
    image: str
    image_id: str
    state: str
    exit_code: int | None
    pid: int | None
    cgroup: str


@dataclass(frozen=True)
class PodView:
    """A pod as `lab pods get` shows it, from the CRI (not from our records)."""

    namespace: str
    name: str
    uid: str
    phase: str
    ip: str
    qos_class: str
    cgroup_parent: str
    sandbox_id: str
    created_ns: int
    containers: list[ContainerView]

    def as_json(self) -> dict[str, Any]:
        return {
            "namespace": self.namespace,
            "name": self.name,
            "uid": self.uid,
            "phase": self.phase,
            "podIP": self.ip,
            "qosClass": self.qos_class,
            "cgroupParent": self.cgroup_parent,
            "sandboxId": self.sandbox_id,
            "containers": [
                {
                    "name": c.name,
                    "containerID": c.id,
                    "image": c.image,
                    "imageID": c.image_id,
                    "state": c.state,
                    "exitCode": c.exit_code,
                    "pid": c.pid,
                    "cgroup": c.cgroup,
                }
                for c in self.containers
            ],
        }


def pods_dir(lab: Path | None = None) -> Path:
    return (lab or paths.lab_dir()).resolve() / "pods"


def _record_path(lab: Path | None, namespace: str, name: str) -> Path:
    return pods_dir(lab) / "records" / f"{namespace}_{name}.json"


def _save(lab: Path | None, record: PodRecord) -> None:
    path = _record_path(lab, record.namespace, record.name)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(record.model_dump_json(by_alias=True, indent=2))
    os.replace(partial, path)


def _records(lab: Path | None) -> list[PodRecord]:
    folder = pods_dir(lab) / "records"
    return [PodRecord.model_validate_json(p.read_text()) for p in sorted(folder.glob("*.json"))]


def _log_dir(lab: Path | None, namespace: str, name: str, uid: str) -> Path:
    return pods_dir(lab) / "logs" / f"{namespace}_{name}_{uid}"


# --- the Pod object in a Kubernetes API ----------------------------------------------------


class KubePodApi:
    """Pods in the API server a kubeconfig names (its current context; token auth, as the
    lab's kubeconfig has): created first so the API's uid is the pod's, status updated."""

    def __init__(self, kubeconfig: Path, node_name: str | None = None) -> None:
        self.server, self._context, self._token = _read_kubeconfig(kubeconfig)
        self.node_name = node_name or socket.gethostname()

    def request(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        """One API call; the decoded JSON answer, or UserError with the API's message."""
        url = urllib.parse.urlsplit(self.server)
        connection = http.client.HTTPSConnection(
            url.hostname or "", url.port or 443, context=self._context, timeout=30
        )
        headers = {"Accept": "application/json", "Content-Type": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        try:
            data = None if body is None else json.dumps(body).encode()
            connection.request(method, path, body=data, headers=headers)
            response = connection.getresponse()
            text = response.read().decode()
        except (OSError, http.client.HTTPException) as error:
            raise UserError(f"the API server at {self.server} did not answer: {error}") from None
        finally:
            connection.close()
        if response.status >= 300:
            message = text[:300]
            with contextlib.suppress(ValueError, AttributeError):
                message = json.loads(text).get("message", message)
            raise ApiStatusError(response.status, f"{method} {path}: {response.status} {message}")
        return json.loads(text)

    def ready(self) -> bool:
        try:
            self.request("GET", "/api/v1/namespaces/default/pods?limit=1")
        except UserError:
            return False
        return True

    def _path(self, namespace: str, name: str = "") -> str:
        return f"/api/v1/namespaces/{namespace}/pods" + (f"/{name}" if name else "")

    def create_pod(self, pod: kubelet.Pod) -> str:
        body = pod.model_dump(by_alias=True, exclude_defaults=True)
        body["spec"]["nodeName"] = self.node_name
        created = self.request("POST", self._path(pod.metadata.namespace), body)
        return str(created["metadata"]["uid"])

    def set_pod_status(self, view: "PodView") -> None:
        path = self._path(view.namespace, view.name)
        current = self.request("GET", path)
        current["status"] = pod_status(view, _node_ip())
        self.request("PUT", f"{path}/status", current)

    def delete_pod(self, namespace: str, name: str) -> None:
        try:
            self.request("DELETE", self._path(namespace, name))
        except ApiStatusError as error:
            if error.status != 404:
                raise


class ApiStatusError(UserError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _read_kubeconfig(path: Path) -> tuple[str, ssl.SSLContext, str | None]:
    """(server, TLS context trusting its CA, bearer token) of the current context."""
    try:
        config = yaml.safe_load(path.read_text())
        context_name = config["current-context"]
        context = next(c["context"] for c in config["contexts"] if c["name"] == context_name)
        cluster = next(c["cluster"] for c in config["clusters"] if c["name"] == context["cluster"])
        user = next(u["user"] for u in config["users"] if u["name"] == context["user"])
        server = str(cluster["server"])
    except (OSError, yaml.YAMLError, KeyError, TypeError, StopIteration) as error:
        raise UserError(f"cannot use kubeconfig {path}: {error!r}") from None
    tls = ssl.create_default_context()
    if "certificate-authority-data" in cluster:
        tls.load_verify_locations(
            cadata=base64.b64decode(cluster["certificate-authority-data"]).decode()
        )
    elif "certificate-authority" in cluster:
        tls.load_verify_locations(cafile=cluster["certificate-authority"])
    token = user.get("token")
    if token is None and user:
        raise UserError(f"kubeconfig {path}: only token authentication is supported")
    return server, tls, token


def _node_ip() -> str:
    """The node's address (a kubelet's hostIP): the source of its route to the outside."""
    route = subprocess.run(
        ["ip", "-o", "route", "get", "1.1.1.1"], capture_output=True, text=True, check=False
    ).stdout.split()
    return route[route.index("src") + 1] if "src" in route else ""


def pod_status(view: "PodView", host_ip: str) -> dict[str, Any]:
    """The v1 PodStatus a kubelet would report for what the CRI shows."""
    running = view.phase == "Running"
    started = datetime.fromtimestamp(view.created_ns / 1e9, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    ready = "True" if running else "False"
    return {
        "phase": view.phase,
        "hostIP": host_ip,
        "podIP": view.ip,
        "podIPs": [{"ip": view.ip}] if view.ip else [],
        "qosClass": view.qos_class,
        "startTime": started,
        "conditions": [
            {"type": kind, "status": status, "lastTransitionTime": started}
            for kind, status in (
                ("PodScheduled", "True"),
                ("Initialized", "True"),
                ("ContainersReady", ready),
                ("Ready", ready),
            )
        ],
        "containerStatuses": [
            {
                "name": c.name,
                "containerID": f"containerd://{c.id}",
                "image": c.image,
                "imageID": c.image_id,
                "ready": c.state == "RUNNING",
                "started": c.state == "RUNNING",
                "restartCount": 0,
                "state": (
                    {"running": {"startedAt": started}}
                    if c.state == "RUNNING"
                    else {"terminated": {"exitCode": c.exit_code or 0}}
                    if c.state == "EXITED"
                    else {"waiting": {"reason": "ContainerCreating"}}
                ),
            }
            for c in view.containers
        ],
    }


# --- apply -------------------------------------------------------------------------------


def apply(
    manifests: list[kubelet.Pod],
    cri: CriClient,
    socket: Path,
    lab: Path | None = None,
    say: Say = print,
    api: PodApi | None = None,
) -> list[PodView]:
    """Run each pod; a pod that fails to start is removed again before the error is raised."""
    for pod in manifests:
        if cri.list_pod_sandboxes(_identity(pod.metadata.namespace, pod.metadata.name)):
            raise UserError(f"pod {pod.key} already exists: delete it first")
        if api is not None:
            # Not running in the lab: a Pod object of that name is stale (a lab stopped
            # without its API server, a crash); the lab is this node's kubelet, so it goes.
            api.delete_pod(pod.metadata.namespace, pod.metadata.name)
    for image in sorted({c.image for pod in manifests for c in pod.spec.containers}):
        _ensure_image(image, cri, socket, say)
    return [_run_pod(pod, cri, lab, say, api) for pod in manifests]


def _identity(namespace: str, name: str) -> dict[str, str]:
    return {kubelet.POD_NAMESPACE_LABEL: namespace, kubelet.POD_NAME_LABEL: name}


def _ensure_image(ref: str, cri: CriClient, socket: Path, say: Say) -> None:
    lab_image = images.by_ref(ref)
    if lab_image is not None:
        images.ensure_imported(lab_image, socket, cri, say)
    elif cri.image_id(ref) is None:
        names = ", ".join(image.ref for image in images.ALL_IMAGES)
        raise UserError(f"image {ref} is not in the lab and cannot be pulled (lab images: {names})")


def _run_pod(
    pod: kubelet.Pod, cri: CriClient, lab: Path | None, say: Say, api: PodApi | None
) -> PodView:
    uid = api.create_pod(pod) if api is not None else str(uuid.uuid4())
    qos = kubelet.qos_class(pod)
    record = PodRecord(
        namespace=pod.metadata.namespace,
        name=pod.metadata.name,
        uid=uid,
        qos_class=qos,
        cgroup_parent=kubelet.pod_cgroup_parent(qos, uid),
        created_at=datetime.now(UTC),
    )
    _save(lab, record)
    say(f"pod {pod.key}: uid {uid}, {qos.value}, cgroup {record.cgroup_parent}")
    try:
        create_pod_cgroup(record.cgroup_parent, kubelet.pod_cgroup_config(pod), lab)
        log_dir = _log_dir(lab, record.namespace, record.name, uid)
        sandbox_config = _sandbox_config(cri, pod, uid, record.cgroup_parent, log_dir)
        for container in pod.spec.containers:
            (log_dir / container.name).mkdir(parents=True, exist_ok=True)
        sandbox_id = cri.run_pod_sandbox(sandbox_config)
        detail = cri.pod_sandbox_status(sandbox_id)
        record = record.model_copy(
            update={"sandbox_id": sandbox_id, "netns_path": detail.netns_path}
        )
        _save(lab, record)
        say(f"pod {pod.key}: sandbox {sandbox_id[:13]} ready, IP {detail.ip}")
        memory_capacity = _memory_capacity()
        for container in pod.spec.containers:
            config = _container_config(cri, pod, uid, container, memory_capacity)
            container_id = cri.create_container(sandbox_id, config, sandbox_config)
            record = record.model_copy(
                update={"containers": {**record.containers, container.name: container_id}}
            )
            _save(lab, record)
            cri.start_container(container_id)
            say(f"pod {pod.key}: container {container.name} {container_id[:13]} started")
    except (CriError, OSError, UserError) as error:
        say(f"pod {pod.key}: failed ({error}), removing what was created")
        _remove(cri, record, lab, say)
        if api is not None:
            api.delete_pod(record.namespace, record.name)
        raise UserError(f"pod {pod.key} did not start: {error}") from None
    view = _view(cri, cri.pod_sandbox_status(sandbox_id).sandbox)
    if api is not None:
        api.set_pod_status(view)
    return view


def _namespace_options(cri: CriClient) -> Any:
    """The kubelet's default: network and IPC per pod, PID per container."""
    api = cri.api
    return api.NamespaceOption(network=api.POD, pid=api.CONTAINER, ipc=api.POD)


def _linux_resources(cri: CriClient, resources: kubelet.ContainerResources) -> Any:
    return cri.api.LinuxContainerResources(
        cpu_period=resources.cpu_period_us,
        cpu_quota=resources.cpu_quota_us,
        cpu_shares=resources.cpu_shares,
        memory_limit_in_bytes=resources.memory_limit_bytes,
        oom_score_adj=resources.oom_score_adj,
    )


def _sandbox_config(
    cri: CriClient, pod: kubelet.Pod, uid: str, cgroup_parent: str, log_dir: Path
) -> Any:
    api = cri.api
    return api.PodSandboxConfig(
        metadata=api.PodSandboxMetadata(
            name=pod.metadata.name, namespace=pod.metadata.namespace, uid=uid, attempt=0
        ),
        hostname=pod.spec.hostname or pod.metadata.name,
        log_directory=str(log_dir),
        labels=kubelet.sandbox_labels(pod, uid),
        annotations=kubelet.sandbox_annotations(pod),
        linux=api.LinuxPodSandboxConfig(
            cgroup_parent=cgroup_parent,
            security_context=api.LinuxSandboxSecurityContext(
                namespace_options=_namespace_options(cri)
            ),
            resources=_linux_resources(cri, kubelet.sandbox_resources(pod)),
        ),
    )


def _container_config(
    cri: CriClient, pod: kubelet.Pod, uid: str, container: kubelet.Container, memory: int
) -> Any:
    api = cri.api
    image_id = cri.image_id(container.image) or container.image
    return api.ContainerConfig(
        metadata=api.ContainerMetadata(name=container.name, attempt=0),
        image=api.ImageSpec(image=image_id, user_specified_image=container.image),
        command=container.command,
        args=container.args,
        working_dir=container.working_dir or "",
        envs=[api.KeyValue(key=env.name, value=env.value) for env in container.env],
        labels=kubelet.container_labels(pod, uid, container),
        annotations=kubelet.container_annotations(pod, container),
        log_path=kubelet.container_log_path(container),
        linux=api.LinuxContainerConfig(
            resources=_linux_resources(cri, kubelet.container_resources(pod, container, memory)),
            security_context=api.LinuxContainerSecurityContext(
                namespace_options=_namespace_options(cri),
                masked_paths=list(kubelet.DEFAULT_MASKED_PATHS),
                readonly_paths=list(kubelet.DEFAULT_READONLY_PATHS),
            ),
        ),
    )


def _memory_capacity() -> int:
    """The node's memory as the kubelet sees it (cAdvisor: MemTotal)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise UserError("no MemTotal in /proc/meminfo")


# --- pod cgroups (cgroup v1 and the hybrid layout) ----------------------------------------


def cgroup_hierarchies() -> list[Path]:
    """Every mounted cgroup hierarchy (v1 controllers, named ones, cgroup2): runc creates a
    container's cgroup in each, so the pod's parent has to exist, and go, in each."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        pre, _, post = line.partition(" - ")
        if post.split()[:1] in (["cgroup"], ["cgroup2"]):
            found.append(Path(pre.split()[4]))
    return found


def _cpu_hierarchy(hierarchies: list[Path]) -> Path:
    for hierarchy in hierarchies:
        if (hierarchy / "cpu.cfs_quota_us").exists():
            return hierarchy
    raise UserError("lab pods need the cgroup v1 cpu controller (hybrid or v1 layout)")


def create_pod_cgroup(parent: str, config: kubelet.PodCgroupConfig, lab: Path | None) -> None:
    """mkdir the pod cgroup in every hierarchy and write the pod-level CPU and memory
    limits, as the kubelet's pod container manager does before RunPodSandbox."""
    hierarchies = cgroup_hierarchies()
    cpu = _cpu_hierarchy(hierarchies)
    created: list[str] = []
    for hierarchy in hierarchies:
        for ancestor in _ancestors(parent):
            folder = hierarchy / ancestor.lstrip("/")
            try:
                folder.mkdir()
            except FileExistsError:
                continue
            if ancestor != parent:
                created.append(str(folder))
            _inherit_cpuset(folder)
    _remember_ancestors(lab, created)
    pod_cpu = cpu / parent.lstrip("/")
    (pod_cpu / "cpu.shares").write_text(str(config.cpu_shares))
    if config.cpu_period_us is not None and config.cpu_quota_us is not None:
        (pod_cpu / "cpu.cfs_period_us").write_text(str(config.cpu_period_us))
        (pod_cpu / "cpu.cfs_quota_us").write_text(str(config.cpu_quota_us))
    if config.memory_limit_bytes is not None:
        memory = next((h for h in hierarchies if (h / "memory.limit_in_bytes").exists()), None)
        if memory is None:
            raise UserError("a memory limit needs the cgroup v1 memory controller")
        (memory / parent.lstrip("/") / "memory.limit_in_bytes").write_text(
            str(config.memory_limit_bytes)
        )


def _ancestors(parent: str) -> list[str]:
    """/kubepods/burstable/podX -> [/kubepods, /kubepods/burstable, /kubepods/burstable/podX]."""
    parts = parent.strip("/").split("/")
    return ["/" + "/".join(parts[: index + 1]) for index in range(len(parts))]


def _inherit_cpuset(folder: Path) -> None:
    """A new v1 cpuset cgroup starts with no CPUs or memory nodes: copy the parent's."""
    for name in ("cpuset.cpus", "cpuset.mems"):
        own = folder / name
        if own.exists() and not own.read_text().strip():
            own.write_text((folder.parent / name).read_text())


def _ancestors_file(lab: Path | None) -> Path:
    return pods_dir(lab) / "created-cgroups"


def _remember_ancestors(lab: Path | None, created: list[str]) -> None:
    """QoS-level cgroups the lab created (shared by its pods): removed once empty."""
    if not created:
        return
    path = _ancestors_file(lab)
    path.parent.mkdir(parents=True, exist_ok=True)
    known = path.read_text().split() if path.exists() else []
    path.write_text("".join(f"{entry}\n" for entry in dict.fromkeys([*known, *created])))


def _forget_empty_ancestors(lab: Path | None) -> None:
    path = _ancestors_file(lab)
    if not path.exists():
        return
    remaining = []
    for entry in sorted(path.read_text().split(), key=len, reverse=True):
        try:
            os.rmdir(entry)
        except FileNotFoundError:
            continue
        except OSError as error:
            if error.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                raise
            remaining.append(entry)
    if remaining:
        path.write_text("".join(f"{entry}\n" for entry in remaining))
    else:
        path.unlink()


def remove_pod_cgroup(parent: str) -> None:
    """Kill what is still inside, then rmdir the pod cgroup tree in every hierarchy."""
    hierarchies = cgroup_hierarchies()
    _kill_cgroup_processes(parent, hierarchies)
    for hierarchy in hierarchies:
        top = hierarchy / parent.lstrip("/")
        if not top.is_dir():
            continue
        for folder in sorted(_walk_dirs(top), key=lambda p: len(p.parts), reverse=True):
            _rmdir_when_empty(folder)


def _walk_dirs(top: Path) -> Iterator[Path]:
    for dirpath, _dirnames, _files in os.walk(top):
        yield Path(dirpath)


def _kill_cgroup_processes(parent: str, hierarchies: list[Path]) -> None:
    deadline = time.monotonic() + KILL_TIMEOUT_S
    while True:
        pids = {
            int(pid)
            for hierarchy in hierarchies
            if (hierarchy / parent.lstrip("/")).is_dir()
            for folder in _walk_dirs(hierarchy / parent.lstrip("/"))
            for pid in _read(folder / "cgroup.procs").split()
        }
        if not pids:
            return
        if time.monotonic() > deadline:
            raise UserError(f"processes {sorted(pids)} in {parent} survive SIGKILL")
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except (FileNotFoundError, ProcessLookupError):
        return ""


def _rmdir_when_empty(folder: Path) -> None:
    """rmdir a cgroup, retrying while the kernel still counts exiting tasks in it."""
    try:
        remove_cgroup(folder, KILL_TIMEOUT_S)
    except OSError as error:
        raise UserError(f"cannot remove cgroup {folder}: {error.strerror}") from None


# --- get ---------------------------------------------------------------------------------


def get(cri: CriClient) -> list[PodView]:
    """Every pod sandbox the CRI knows, with its containers' states."""
    sandboxes = sorted(cri.list_pod_sandboxes(), key=lambda s: (s.namespace, s.name, s.created_ns))
    return [_view(cri, sandbox) for sandbox in sandboxes]


def _view(cri: CriClient, sandbox: Sandbox) -> PodView:
    detail = cri.pod_sandbox_status(sandbox.id)
    containers = []
    for container in sorted(cri.list_containers(sandbox.id), key=lambda c: c.name):
        status = cri.container_status(container.id)
        containers.append(
            ContainerView(
                name=container.name,
                id=container.id,
                image=status.image,
                image_id=status.image_ref,
                state=status.state.removeprefix("CONTAINER_"),
                exit_code=status.exit_code if status.state == "CONTAINER_EXITED" else None,
                pid=status.pid,
                cgroup=f"{detail.cgroup_parent}/{container.id}",
            )
        )
    qos = _qos_of(detail.cgroup_parent)
    return PodView(
        namespace=sandbox.namespace,
        name=sandbox.name,
        uid=sandbox.uid,
        phase=_phase(sandbox.ready, containers),
        ip=detail.ip,
        qos_class=qos,
        cgroup_parent=detail.cgroup_parent,
        sandbox_id=sandbox.id,
        created_ns=sandbox.created_ns,
        containers=containers,
    )


def _qos_of(cgroup_parent: str) -> str:
    parts = cgroup_parent.strip("/").split("/")
    if len(parts) == 2 and parts[0] == "kubepods":
        return QosClass.GUARANTEED.value
    by_name = {"burstable": QosClass.BURSTABLE, "besteffort": QosClass.BEST_EFFORT}
    return by_name[parts[1]].value if len(parts) == 3 and parts[1] in by_name else "-"


def _phase(ready: bool, containers: list[ContainerView]) -> str:
    """The pod phase a kubelet would report for containers that are never restarted."""
    states = {c.state for c in containers}
    if ready and states == {"RUNNING"}:
        return "Running"
    if containers and states == {"EXITED"}:
        return "Succeeded" if all(c.exit_code == 0 for c in containers) else "Failed"
    if "RUNNING" in states:
        return "Running"
    return "Pending" if ready else "Unknown"


# --- delete ------------------------------------------------------------------------------


def delete(
    cri: CriClient,
    namespace: str,
    name: str,
    lab: Path | None = None,
    say: Say = print,
    api: PodApi | None = None,
) -> None:
    sandboxes = cri.list_pod_sandboxes(_identity(namespace, name))
    record_path = _record_path(lab, namespace, name)
    record = (
        PodRecord.model_validate_json(record_path.read_text()) if record_path.exists() else None
    )
    if not sandboxes and record is None:
        raise UserError(f"no pod {namespace}/{name} in the lab")
    for sandbox in sandboxes:
        parent = cri.pod_sandbox_status(sandbox.id).cgroup_parent
        _remove_sandbox(cri, sandbox, say)
        _finish_removal(lab, namespace, name, sandbox.uid, parent)
    if record is not None:
        _remove(cri, record, lab, say)
    if api is not None:
        api.delete_pod(namespace, name)
    say(f"pod {namespace}/{name} deleted")


def delete_all(
    cri: CriClient, lab: Path | None = None, say: Say = print, api: PodApi | None = None
) -> None:
    """Every pod sandbox of this containerd, then anything only our records still know;
    with an API server, their Pod objects too."""
    for sandbox in cri.list_pod_sandboxes():
        delete(cri, sandbox.namespace, sandbox.name, lab, say, api)
    for record in _records(lab):
        _remove(cri, record, lab, say)
        if api is not None:
            api.delete_pod(record.namespace, record.name)


def _remove_sandbox(cri: CriClient, sandbox: Sandbox, say: Say) -> None:
    """As the kubelet kills a pod: containers stopped in parallel with their grace
    period, then the sandbox stopped (network torn down) and removed."""
    containers = [c for c in cri.list_containers(sandbox.id) if c.state != "CONTAINER_EXITED"]
    if containers:
        say(f"pod {sandbox.namespace}/{sandbox.name}: stopping {len(containers)} container(s)")
        with ThreadPoolExecutor(max_workers=len(containers)) as pool:
            list(pool.map(lambda c: cri.stop_container(c.id, _grace(c.annotations)), containers))
    cri.stop_pod_sandbox(sandbox.id)
    cri.remove_pod_sandbox(sandbox.id)


def _grace(annotations: dict[str, str]) -> int:
    value = annotations.get(kubelet.POD_TERMINATION_GRACE_PERIOD_ANNOTATION, "30")
    return int(value) if value.isdigit() else 30


def _remove(cri: CriClient | None, record: PodRecord, lab: Path | None, say: Say) -> None:
    """Undo one record: its sandbox through the CRI when it can, the rest by hand."""
    if cri is not None and record.sandbox_id:
        try:
            sandbox = next((s for s in cri.list_pod_sandboxes() if s.id == record.sandbox_id), None)
            if sandbox is not None:
                _remove_sandbox(cri, sandbox, say)
        except CriError as error:
            say(f"pod {record.namespace}/{record.name}: CRI failed ({error}), removing by hand")
    _finish_removal(lab, record.namespace, record.name, record.uid, record.cgroup_parent)
    if record.netns_path:
        _remove_netns(Path(record.netns_path))
    if record.sandbox_id:
        for result in CNI_RESULTS.glob(f"*-{record.sandbox_id}-*"):
            result.unlink(missing_ok=True)


def _finish_removal(lab: Path | None, namespace: str, name: str, uid: str, parent: str) -> None:
    if parent:
        remove_pod_cgroup(parent)
    _forget_empty_ancestors(lab)
    shutil.rmtree(_log_dir(lab, namespace, name, uid), ignore_errors=True)
    _record_path(lab, namespace, name).unlink(missing_ok=True)


def _remove_netns(path: Path) -> None:
    """A pinned network namespace (a bind mount on a file in /run/netns) and its file."""
    if not path.exists():
        return
    subprocess.run(["umount", "-l", str(path)], check=False, capture_output=True)
    path.unlink(missing_ok=True)


def clean_leftovers(lab: Path | None = None, say: Say = print) -> None:
    """After containerd is gone: whatever our records still list, removed by hand."""
    for record in _records(lab):
        say(f"pod {record.namespace}/{record.name}: removing leftovers")
        _remove(None, record, lab, say)
