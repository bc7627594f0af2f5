"""Pods on the lab's containerd, run the way a kubelet runs them: the I/O side of podspec.py,
used by the lab's kubelet (kubelet_daemon.py), which decides when each step happens.

Start: the pod cgroup kubepods/<qos>/pod<uid> with the pod-level shares/quota (without a
kubelet nobody else does), RunPodSandbox with the kubelet's labels, that cgroup parent and
the pod's log directory, then CreateContainer/StartContainer with the derived Linux
resources. Removal: StopContainer with a grace period (0 for a teardown), StopPodSandbox,
RemovePodSandbox, then the pod cgroup, its logs and its record. A record per pod under
<lab dir>/pods/records/ is written before anything is created, so stop_containerd() can
clean up after a crash (clean_leftovers).
"""

import os
import shutil
import subprocess
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import Field

from kernel_gossip import Say, paths
from kernel_gossip.core import podspec
from kernel_gossip.core.cgroups import QosClass
from kernel_gossip.cri import CriClient, CriError, Sandbox, SandboxDetail
from kernel_gossip.errors import UserError
from kernel_gossip.lab import images, podcgroups
from kernel_gossip.schema.report import CamelModel

KILL_TIMEOUT_S = 10.0
TEARDOWN_WORKERS = 16  # pods removed at once by a teardown (each waits on runc and CNI)
CNI_RESULTS = Path("/var/lib/cni/results")  # libcni's cache: one file per sandbox network


class PodRecord(CamelModel):
    """What the lab made for one pod: enough to remove it without the CRI."""

    namespace: str
    name: str
    uid: str
    qos_class: QosClass
    cgroup_parent: str
    log_dir: str = ""
    sandbox_id: str | None = None
    netns_path: str | None = None
    containers: dict[str, str] = Field(default_factory=dict)  # name -> latest container ID
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
    started_ns: int


@dataclass(frozen=True)
class PodView:
    """A pod sandbox as the CRI shows it (not as our records say)."""

    namespace: str
    name: str
    uid: str
    ready: bool
    ip: str
    cgroup_parent: str
    sandbox_id: str
    created_ns: int
    containers: list[ContainerView]


def pods_dir(lab: Path | None = None) -> Path:
    return (lab or paths.lab_dir()).resolve() / "pods"


def _ancestors_file(lab: Path | None) -> Path:
    """The QoS-level cgroups this lab created for its pods."""
    return pods_dir(lab) / "created-cgroups"


def _record_path(lab: Path | None, uid: str) -> Path:
    return pods_dir(lab) / "records" / f"{uid}.json"


def _save(lab: Path | None, record: PodRecord) -> None:
    path = _record_path(lab, record.uid)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(record.model_dump_json(by_alias=True, indent=2))
    os.replace(partial, path)


def _records(lab: Path | None) -> list[PodRecord]:
    folder = pods_dir(lab) / "records"
    return [PodRecord.model_validate_json(p.read_text()) for p in sorted(folder.glob("*.json"))]


def _identity(uid: str) -> dict[str, str]:
    return {podspec.POD_UID_LABEL: uid}


# --- images: the lab's table stands in for a registry ------------------------------------


class ImageNotInLab(UserError):
    """A reference neither the image table nor the lab's containerd has: ErrImagePull."""


_pull_lock = threading.Lock()


def pull_image(ref: str, cri: CriClient, socket: Path, say: Say) -> str:
    """What a pull is in the lab: the table's image for `ref`, built if needed and tagged
    under the normalised reference; else an image containerd already has. The image ID."""
    lab_image = images.resolve(ref)
    if lab_image is not None:
        with _pull_lock:  # one build and import at a time: they share the cache and ctr
            return images.ensure_imported(lab_image, socket, cri, say, images.normalize_ref(ref))
    found = cri.image_id(ref)
    if found is None:
        raise ImageNotInLab(
            f"image {ref!r} is not in the lab and cannot be pulled (no registry here); "
            f"the lab has: {images.IMAGE_TABLE_SUMMARY}"
        )
    return found


# --- start -----------------------------------------------------------------------------


@dataclass(frozen=True)
class StartedSandbox:
    record: PodRecord
    config: Any  # the PodSandboxConfig, which CreateContainer takes again
    ip: str


def start_sandbox(
    pod: podspec.Pod, uid: str, cri: CriClient, lab: Path | None, log_root: Path, attempt: int
) -> StartedSandbox:
    """Pod cgroup with the pod-level limits, then RunPodSandbox; recorded before each step.
    A failure removes what was made and raises UserError."""
    qos = podspec.qos_class(pod)
    log_dir = log_root / podspec.log_directory_name(pod, uid)
    record = PodRecord(
        namespace=pod.metadata.namespace,
        name=pod.metadata.name,
        uid=uid,
        qos_class=qos,
        cgroup_parent=podspec.pod_cgroup_parent(qos, uid),
        log_dir=str(log_dir),
        created_at=datetime.now(UTC),
    )
    _save(lab, record)
    try:
        podcgroups.create_pod_cgroup(
            record.cgroup_parent, podspec.pod_cgroup_config(pod), _ancestors_file(lab)
        )
        config = sandbox_config(cri, pod, uid, record.cgroup_parent, log_dir, attempt)
        for container in pod.spec.containers:
            (log_dir / container.name).mkdir(parents=True, exist_ok=True)
        sandbox_id = cri.run_pod_sandbox(config)
        detail = cri.pod_sandbox_status(sandbox_id)
    except (CriError, OSError, UserError) as error:
        remove_pod(cri, uid, lab, grace=0)
        raise UserError(f"pod {pod.key}: the sandbox did not start: {error}") from None
    record = record.model_copy(update={"sandbox_id": sandbox_id, "netns_path": detail.netns_path})
    _save(lab, record)
    return StartedSandbox(record, config, detail.ip)


def running_record(
    pod: podspec.Pod,
    uid: str,
    sandbox_id: str,
    detail: SandboxDetail,
    lab: Path | None,
    log_root: Path,
) -> PodRecord:
    """The record of a running sandbox: as saved, or (saved records lost) rebuilt from
    the runtime's view, and saved again."""
    path = _record_path(lab, uid)
    if path.exists():
        return PodRecord.model_validate_json(path.read_text())
    record = PodRecord(
        namespace=pod.metadata.namespace,
        name=pod.metadata.name,
        uid=uid,
        qos_class=podspec.qos_class(pod),
        cgroup_parent=detail.cgroup_parent,
        log_dir=str(log_root / podspec.log_directory_name(pod, uid)),
        sandbox_id=sandbox_id,
        netns_path=detail.netns_path,
        created_at=datetime.now(UTC),
    )
    _save(lab, record)
    return record


def start_container(
    cri: CriClient,
    pod: podspec.Pod,
    uid: str,
    sandbox: StartedSandbox,
    container: podspec.Container,
    image_id: str,
    restart_count: int,
    lab: Path | None,
) -> str:
    """CreateContainer + StartContainer (restart_count: this start's attempt number)."""
    config = _container_config(cri, pod, uid, container, image_id, restart_count)
    container_id = cri.create_container(sandbox.record.sandbox_id or "", config, sandbox.config)
    record = sandbox.record.model_copy(
        update={"containers": {**sandbox.record.containers, container.name: container_id}}
    )
    _save(lab, record)
    cri.start_container(container_id)
    return container_id


def _namespace_options(cri: CriClient) -> Any:
    """The kubelet's default: network and IPC per pod, PID per container."""
    api = cri.api
    return api.NamespaceOption(network=api.POD, pid=api.CONTAINER, ipc=api.POD)


def _linux_resources(cri: CriClient, resources: podspec.ContainerResources) -> Any:
    return cri.api.LinuxContainerResources(
        cpu_period=resources.cpu_period_us,
        cpu_quota=resources.cpu_quota_us,
        cpu_shares=resources.cpu_shares,
        memory_limit_in_bytes=resources.memory_limit_bytes,
        oom_score_adj=resources.oom_score_adj,
    )


def sandbox_config(
    cri: CriClient,
    pod: podspec.Pod,
    uid: str,
    cgroup_parent: str,
    log_dir: Path,
    attempt: int = 0,
) -> Any:
    """The PodSandboxConfig a kubelet sends (generatePodSandboxConfig); the same for a
    running sandbox whenever it is computed again, so a restarted kubelet can use it."""
    api = cri.api
    return api.PodSandboxConfig(
        metadata=api.PodSandboxMetadata(
            name=pod.metadata.name, namespace=pod.metadata.namespace, uid=uid, attempt=attempt
        ),
        hostname=pod.spec.hostname or pod.metadata.name,
        log_directory=str(log_dir),
        labels=podspec.sandbox_labels(pod, uid),
        annotations=podspec.sandbox_annotations(pod),
        linux=api.LinuxPodSandboxConfig(
            cgroup_parent=cgroup_parent,
            security_context=api.LinuxSandboxSecurityContext(
                namespace_options=_namespace_options(cri)
            ),
            resources=_linux_resources(cri, podspec.sandbox_resources(pod)),
        ),
    )


def _container_config(
    cri: CriClient,
    pod: podspec.Pod,
    uid: str,
    container: podspec.Container,
    image_id: str,
    restart_count: int,
) -> Any:
    api = cri.api
    resources = podspec.container_resources(pod, container, _memory_capacity())
    return api.ContainerConfig(
        metadata=api.ContainerMetadata(name=container.name, attempt=restart_count),
        image=api.ImageSpec(image=image_id, user_specified_image=container.image),
        command=container.command,
        args=container.args,
        working_dir=container.working_dir or "",
        # CRI runtime.v1 (0.36) carries env values as bytes.
        envs=[api.KeyValue(key=env.name, value=env.value.encode()) for env in container.env],
        labels=podspec.container_labels(pod, uid, container),
        annotations=podspec.container_annotations(pod, container, restart_count),
        log_path=podspec.container_log_path(container, restart_count),
        linux=api.LinuxContainerConfig(
            resources=_linux_resources(cri, resources),
            security_context=api.LinuxContainerSecurityContext(
                namespace_options=_namespace_options(cri),
                masked_paths=list(podspec.DEFAULT_MASKED_PATHS),
                readonly_paths=list(podspec.DEFAULT_READONLY_PATHS),
            ),
        ),
    )


def _memory_capacity() -> int:
    """The node's memory as the kubelet sees it (cAdvisor: MemTotal)."""
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) * 1024
    raise UserError("no MemTotal in /proc/meminfo")


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
                started_ns=status.started_ns,
            )
        )
    return PodView(
        namespace=sandbox.namespace,
        name=sandbox.name,
        uid=sandbox.uid,
        ready=sandbox.ready,
        ip=detail.ip,
        cgroup_parent=detail.cgroup_parent,
        sandbox_id=sandbox.id,
        created_ns=sandbox.created_ns,
        containers=containers,
    )


# --- removal -----------------------------------------------------------------------------


def stop_sandbox(cri: CriClient, sandbox: Sandbox, grace: int | None, say: Say) -> None:
    """As the kubelet kills a pod: its running containers stopped in parallel, each with
    the grace period (None: the one the pod declared), then the sandbox stopped (network
    torn down). Containers and sandbox stay, for their logs and exit codes."""
    containers = [c for c in cri.list_containers(sandbox.id) if c.state != "CONTAINER_EXITED"]
    if containers:
        say(f"pod {sandbox.namespace}/{sandbox.name}: stopping {len(containers)} container(s)")
        with ThreadPoolExecutor(max_workers=len(containers)) as pool:
            list(
                pool.map(
                    lambda c: cri.stop_container(
                        c.id, _grace(c.annotations) if grace is None else grace
                    ),
                    containers,
                )
            )
    cri.stop_pod_sandbox(sandbox.id)


def _grace(annotations: dict[str, str]) -> int:
    value = annotations.get(podspec.POD_TERMINATION_GRACE_PERIOD_ANNOTATION, "30")
    return int(value) if value.isdigit() else 30


def remove_pod(
    cri: CriClient | None, uid: str, lab: Path | None, grace: int | None = None, say: Say = print
) -> None:
    """Everything of one pod: its sandboxes through the CRI (stopped with `grace`), then
    cgroup, netns, CNI results, logs and record by hand."""
    parents = set()  # the runtime's word for the pod cgroup counts too: a record may be lost
    if cri is not None:
        try:
            for sandbox in cri.list_pod_sandboxes(_identity(uid)):
                parents.add(cri.pod_sandbox_status(sandbox.id).cgroup_parent)
                stop_sandbox(cri, sandbox, grace, say)
                cri.remove_pod_sandbox(sandbox.id)
        except CriError as error:
            say(f"pod {uid}: CRI failed ({error}), removing by hand")
    path = _record_path(lab, uid)
    record = PodRecord.model_validate_json(path.read_text()) if path.exists() else None
    for parent in sorted(parents - {""}):
        podcgroups.remove_pod_cgroup(parent)
    if record is not None:
        podcgroups.remove_pod_cgroup(record.cgroup_parent)
        if record.netns_path:
            _remove_netns(Path(record.netns_path))
        if record.sandbox_id:
            for result in CNI_RESULTS.glob(f"*-{record.sandbox_id}-*"):
                result.unlink(missing_ok=True)
        if record.log_dir:
            shutil.rmtree(record.log_dir, ignore_errors=True)
    podcgroups.forget_empty_ancestors(_ancestors_file(lab))
    path.unlink(missing_ok=True)


def remove_all(
    cri: CriClient | None, lab: Path | None = None, say: Say = print, grace: int | None = 0
) -> list[str]:
    """Every pod this containerd runs and every pod our records list, in parallel (a
    teardown: grace 0 kills at once). Returns the UIDs removed."""
    uids = {record.uid for record in _records(lab)}
    if cri is not None:
        uids |= {sandbox.uid for sandbox in cri.list_pod_sandboxes()}
    if not uids:
        return []
    say(f"removing {len(uids)} pod(s), {TEARDOWN_WORKERS} at a time")
    with ThreadPoolExecutor(max_workers=min(TEARDOWN_WORKERS, len(uids))) as pool:
        list(pool.map(lambda uid: remove_pod(cri, uid, lab, grace, say), sorted(uids)))
    return sorted(uids)


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
        remove_pod(None, record.uid, lab, say=say)
