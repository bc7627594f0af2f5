"""Pod birth certificates: what a container's birth is, and how its certificate is assembled
from what bpf/births.c saw. Pure: no clock, no BPF, no file system (birthprobe.py does I/O).

What a birth is. A container's birth is the work of the OCI runtime invocation that creates
it (runc, crun: any program whose name is one of the configured runtimes) and of all its
descendants, threads included, from the runtime's exec until the container's entrypoint
execve succeeds. The entrypoint is the first successful exec by a task that switched into the
container's root file system (pivot_root, or chroot without it) or descends from one that
did; the runtime re-executing itself or running hooks does not end a birth. Every syscall
entered by those tasks in that span counts, the runtime's own execve and the entrypoint's
included; syscalls that never return (exit_group) count once. The container is the cgroup
its init joins (cgroup:cgroup_attach_task of a task of the birth; else the entrypoint's
cgroup v2 id), and cgroups.identify() names its pod UID and container ID. A runtime
invocation that creates no container (runc list, crun delete) is no birth.

A pod's birth groups the births of its containers (the first one born, the sandbox, first)
and the creation of the pod's cgroup (cgroup:cgroup_mkdir), from the first of those events to
the last container's entrypoint exec.

The timeline splits a birth at the first time each phase is reached: runtime-start (the
runtime's exec), cgroup-limits (first write to a cgroup file), namespaces (first clone,
clone3, unshare or setns that creates or joins a namespace), mounts (first call of the mount
family), rootfs (pivot_root or chroot into the container's root) and entrypoint-exec (the
entrypoint's execve, counted there alone). Each phase counts the syscalls entered from its
start until the next phase starts, so the counts add up to totalSyscalls. The counts by
name never add up to more: the kernel counts a syscall by phase before it counts it by name,
and user space reads the names first.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import IntEnum
from pathlib import PurePosixPath

from kernel_gossip.core.cgroups import identify
from kernel_gossip.schema.report import ContainerBirth, NamespaceKind, TimelineStep


class Phase(IntEnum):
    """Phases the probe tracks, in the order they are listed when reached at the same time."""

    RUNTIME_START = 0
    CGROUP_LIMITS = 1
    NAMESPACES = 2
    MOUNTS = 3
    ROOTFS = 4


PHASE_NAMES: dict[Phase, str] = {
    Phase.RUNTIME_START: "runtime-start",
    Phase.CGROUP_LIMITS: "cgroup-limits",
    Phase.NAMESPACES: "namespaces",
    Phase.MOUNTS: "mounts",
    Phase.ROOTFS: "rootfs",
}
ENTRYPOINT_EXEC = "entrypoint-exec"


class EventKind(IntEnum):
    """The ring buffer's lifecycle events (EVENT_* in bpf/births.c)."""

    START = 1
    ATTACH = 2
    NAMESPACE = 3
    ENTRYPOINT = 4
    MKDIR = 5


class NamespaceOp(IntEnum):
    """The syscalls that create or join namespaces (OP_* in bpf/births.c)."""

    CLONE = 0
    CLONE3 = 1
    UNSHARE = 2
    SETNS = 3


# CLONE_NEW* flags (include/uapi/linux/sched.h), in the order certificates list them.
NAMESPACE_FLAGS: dict[NamespaceKind, int] = {
    "mnt": 0x00020000,
    "uts": 0x04000000,
    "ipc": 0x08000000,
    "pid": 0x20000000,
    "net": 0x40000000,
    "cgroup": 0x02000000,
    "user": 0x10000000,
    "time": 0x00000080,
}
CSIGNAL = 0xFF  # clone(2) keeps the exit signal in the low byte, where CLONE_NEWTIME lives


def namespaces_created(op: NamespaceOp, flags: int) -> list[NamespaceKind]:
    """The namespaces a clone/clone3/unshare call asks to create; setns creates none."""
    if op is NamespaceOp.SETNS:
        return []
    if op is NamespaceOp.CLONE:
        flags &= ~CSIGNAL
    return [kind for kind, bit in NAMESPACE_FLAGS.items() if flags & bit]


def is_namespace_operation(op: NamespaceOp, flags: int) -> bool:
    """setns always joins a namespace; the others count when they create one."""
    return op is NamespaceOp.SETNS or bool(namespaces_created(op, flags))


@dataclass(frozen=True)
class ProbeEvent:
    """One lifecycle event from the ring buffer, as bpf/births.c's struct event."""

    kind: EventKind
    serial: int
    pid: int
    ts_ns: int
    arg: int = 0
    arg2: int = 0
    aux: int = 0
    text: str = ""


@dataclass(frozen=True)
class BirthCounters:
    """A birth's entry in the probe's births map."""

    start_ns: int
    end_ns: int
    milestones_ns: Mapping[Phase, int]  # phases reached -> when first reached
    phase_syscalls: Mapping[Phase, int]
    mounts: int
    cgroup_writes: int
    execs: int
    done: bool = False  # the entrypoint ran


@dataclass(frozen=True)
class Entrypoint:
    """The successful exec that ended a birth."""

    pid: int
    exec_ns: int  # when the exec succeeded
    entered_ns: int  # when its execve was entered
    entered_phase: Phase
    cgroup_id: int  # the entrypoint's cgroup v2 id


@dataclass
class BirthEvidence:
    """What the lifecycle events told about one birth."""

    serial: int
    runtime: str = ""
    root_pid: int = 0
    start_ns: int = 0
    attaches: list[str] = field(default_factory=list)  # cgroup paths, in order
    namespace_ops: list[tuple[NamespaceOp, int]] = field(default_factory=list)
    entrypoint: Entrypoint | None = None


class BirthLedger:
    """Lifecycle events in, finished births out. Also remembers when pods' cgroups appeared."""

    def __init__(self) -> None:
        self.open: dict[int, BirthEvidence] = {}
        self.pod_cgroups_created_ns: dict[str, int] = {}

    def record(self, event: ProbeEvent) -> BirthEvidence | None:
        """Take one event; returns the birth's evidence when this event ends the birth."""
        if event.kind is EventKind.MKDIR:
            who = identify(event.text)
            if who.pod_uid is not None and who.container_id is None:
                self.pod_cgroups_created_ns.setdefault(who.pod_uid, event.ts_ns)
            return None
        evidence = self.open.setdefault(event.serial, BirthEvidence(event.serial))
        if event.kind is EventKind.START:
            evidence.runtime = event.text
            evidence.root_pid = event.pid
            evidence.start_ns = event.ts_ns
        elif event.kind is EventKind.ATTACH:
            evidence.attaches.append(event.text)
        elif event.kind is EventKind.NAMESPACE:
            evidence.namespace_ops.append((NamespaceOp(event.aux), event.arg))
        elif event.kind is EventKind.ENTRYPOINT:
            evidence.entrypoint = Entrypoint(
                pid=event.pid,
                exec_ns=event.ts_ns,
                entered_ns=event.arg,
                entered_phase=Phase(event.aux) if event.aux < len(Phase) else Phase.RUNTIME_START,
                cgroup_id=event.arg2,
            )
            return self.open.pop(event.serial)
        return None

    def forget(self, serials: Iterable[int]) -> None:
        for serial in serials:
            self.open.pop(serial, None)

    def forget_pod_cgroups_before(self, ts_ns: int) -> None:
        """Drop pod cgroups created before ts_ns (a long-running watch stays bounded)."""
        self.pod_cgroups_created_ns = {
            uid: created for uid, created in self.pod_cgroups_created_ns.items() if created >= ts_ns
        }


def container_cgroup(attaches: Sequence[str]) -> str | None:
    """The cgroup the container's init joined: the last attach naming a container, else the
    last one below the root (one attach per hierarchy, normally all the same path)."""
    below_root = [path for path in attaches if path.strip("/")]
    for path in reversed(below_root):
        if identify(path).container_id is not None:
            return path
    return below_root[-1] if below_root else None


def container_id(cgroup_path: str) -> str:
    """The ID cgroups.identify() finds, else the cgroup's own name (runc's default path)."""
    return identify(cgroup_path).container_id or PurePosixPath(cgroup_path).name


def ms_between(earlier_ns: int, later_ns: int) -> float:
    return max(later_ns - earlier_ns, 0) / 1e6


def timeline(counters: BirthCounters, entrypoint: Entrypoint) -> list[TimelineStep]:
    """Phases in time order, each with the syscalls entered while it was the latest; the
    entrypoint's execve is moved from the phase it was entered in to entrypoint-exec."""
    counts = {phase: counters.phase_syscalls.get(phase, 0) for phase in Phase}
    if counts[entrypoint.entered_phase] > 0:
        counts[entrypoint.entered_phase] -= 1
    reached = sorted(counters.milestones_ns.items(), key=lambda item: (item[1], int(item[0])))
    phases = [
        TimelineStep(
            phase=PHASE_NAMES[phase],
            offset_ms=ms_between(counters.start_ns, at_ns),
            count=counts[phase],
        )
        for phase, at_ns in reached
    ]
    last_offset = phases[-1].offset_ms if phases else 0.0
    phases.append(
        TimelineStep(
            phase=ENTRYPOINT_EXEC,
            offset_ms=max(ms_between(counters.start_ns, entrypoint.entered_ns), last_offset),
            count=1,
        )
    )
    return phases


def wall_time(monotonic_ns: int, wall_offset_ns: int) -> datetime:
    """A bpf_ktime_get_ns() (CLOCK_MONOTONIC) instant as UTC wall-clock time."""
    return datetime.fromtimestamp(0, UTC) + timedelta(
        microseconds=(monotonic_ns + wall_offset_ns) / 1000
    )


def certificate(
    evidence: BirthEvidence,
    counters: BirthCounters,
    syscalls: Mapping[int, int],
    names: Mapping[int, str],
    wall_offset_ns: int,
    entrypoint_cgroup: str | None = None,
) -> ContainerBirth | None:
    """The certificate of one finished birth; None when no container cgroup was joined.

    entrypoint_cgroup: the path of the entrypoint's cgroup v2 id, used when no attach was
    seen (runtimes that clone straight into the cgroup with CLONE_INTO_CGROUP).
    """
    entrypoint = evidence.entrypoint
    if entrypoint is None:
        return None
    cgroup_path = container_cgroup(evidence.attaches)
    if cgroup_path is None and entrypoint_cgroup and entrypoint_cgroup.strip("/"):
        cgroup_path = entrypoint_cgroup
    if cgroup_path is None:
        return None
    created: set[NamespaceKind] = set()
    operations = 0
    for op, flags in evidence.namespace_ops:
        if is_namespace_operation(op, flags):
            operations += 1
            created.update(namespaces_created(op, flags))
    named: dict[str, int] = {}
    for nr, count in syscalls.items():
        name = names.get(nr, f"syscall_{nr}")
        named[name] = named.get(name, 0) + count
    start_ns = evidence.start_ns or counters.start_ns
    phases = timeline(counters, entrypoint)
    return ContainerBirth(
        container_id=container_id(cgroup_path),
        pod_uid=identify(cgroup_path).pod_uid,
        cgroup_path=cgroup_path,
        runtime=evidence.runtime,
        started_at=wall_time(start_ns, wall_offset_ns),
        duration_ms=ms_between(start_ns, entrypoint.exec_ns),
        total_syscalls=sum(phase.count for phase in phases),
        syscalls=dict(sorted(named.items(), key=lambda item: (-item[1], item[0]))),
        namespace_operations=operations,
        namespaces_created=[kind for kind in NAMESPACE_FLAGS if kind in created],
        mounts=counters.mounts,
        cgroup_writes=counters.cgroup_writes,
        execs=counters.execs,
        timeline=phases,
    )


@dataclass(frozen=True)
class PodBirth:
    """The births of one pod's containers, the sandbox (first born) first."""

    pod_uid: str
    containers: list[ContainerBirth]
    pod_cgroup_created_at: datetime | None
    started_at: datetime  # the first event: the pod cgroup's mkdir or a runtime's start
    finished_at: datetime  # the last container's entrypoint exec

    @property
    def duration_ms(self) -> float:
        return (self.finished_at - self.started_at).total_seconds() * 1000


def finished_at(birth: ContainerBirth) -> datetime:
    return birth.started_at + timedelta(milliseconds=birth.duration_ms)


def group_pods(
    births: Iterable[ContainerBirth], pod_cgroups_created: Mapping[str, datetime]
) -> list[PodBirth]:
    """Group container births by pod; births outside a pod are left out."""
    by_pod: dict[str, list[ContainerBirth]] = {}
    for birth in births:
        if birth.pod_uid is not None:
            by_pod.setdefault(birth.pod_uid, []).append(birth)
    pods = []
    for pod_uid, containers in by_pod.items():
        containers.sort(key=lambda birth: birth.started_at)
        created = pod_cgroups_created.get(pod_uid)
        starts = [containers[0].started_at] + ([created] if created else [])
        pods.append(
            PodBirth(
                pod_uid=pod_uid,
                containers=containers,
                pod_cgroup_created_at=created,
                started_at=min(starts),
                finished_at=max(finished_at(birth) for birth in containers),
            )
        )
    return sorted(pods, key=lambda pod: pod.started_at)
