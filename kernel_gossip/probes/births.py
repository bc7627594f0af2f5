"""The I/O side of births.py: load bpf/births.c, feed its events to a BirthLedger, read the
counts of finished births, resolve cgroups and clocks, and free what the kernel holds."""

import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kernel_gossip.core import syscalls as syscall_names
from kernel_gossip.core.births import (
    BirthCounters,
    BirthEvidence,
    BirthLedger,
    EventKind,
    NamespaceOp,
    Phase,
    PodBirth,
    ProbeEvent,
    certificate,
    group_pods,
    wall_time,
)
from kernel_gossip.errors import UserError
from kernel_gossip.host import bpf as bpfsupport
from kernel_gossip.host.cgroupfs import CgroupFs
from kernel_gossip.schema.report import ContainerBirth

DEFAULT_RUNTIMES = ("runc", "crun")
COMM_LEN = 16  # the kernel keeps 15 characters of a program's name
PATH_LEN = 256
MAX_TASKS = 65536
MAX_BIRTHS = 4096
MAX_COUNTS = 65536
SETTLE_NS = 100_000_000  # counts of a finished birth are read this long after its end
SWEEP_NS = 2_000_000_000  # how often births whose tasks all left are freed
POD_CGROUP_MEMORY_NS = 3600 * 10**9  # a pod's containers may wait that long for images
PID_MAX = Path("/proc/sys/kernel/pid_max")
# The syscalls births.c recognises by number in its one sys_enter program.
NUMBERED_SYSCALLS = (
    "execve",
    "execveat",
    "close",
    "write",
    "pwrite64",
    "writev",
    "pwritev",
    "pwritev2",
    "openat",
    "openat2",
    "open",
    "clone",
    "clone3",
    "unshare",
    "setns",
    "mount",
    "umount2",
    "pivot_root",
    "move_mount",
    "fsopen",
    "fsmount",
    "open_tree",
    "open_tree_attr",
    "mount_setattr",
    "chroot",
)


def check_runtime_names(names: Sequence[str]) -> list[str]:
    """Runtime program names as the kernel reports them (comm), or a UserError."""
    checked = []
    for name in names:
        if not name or "/" in name or not name.isprintable() or name.strip() != name:
            raise UserError(f"bad runtime name {name!r}: give a program name such as runc")
        if len(name.encode()) >= COMM_LEN:
            raise UserError(
                f"runtime name {name!r} is longer than {COMM_LEN - 1} characters: the kernel "
                f"knows a program by its first {COMM_LEN - 1} ({name[: COMM_LEN - 1]!r})"
            )
        checked.append(name)
    return list(dict.fromkeys(checked))


def probe_defines(arch: str, pid_max: int) -> dict[str, int | None]:
    """The constants bpf/births.c is compiled with, for this architecture and kernel."""
    defines: dict[str, int | None] = {
        "MAX_TASKS": MAX_TASKS,
        "MAX_BIRTHS": MAX_BIRTHS,
        "MAX_COUNTS": MAX_COUNTS,
        "PATH_LEN": PATH_LEN,
        "PID_MAX": pid_max,
        "N_PHASES": len(Phase),
    }
    defines.update({f"PHASE_{phase.name}": phase.value for phase in Phase})
    defines.update({f"EVENT_{kind.name}": kind.value for kind in EventKind})
    defines.update({f"OP_{op.name}": op.value for op in NamespaceOp})
    for syscall in NUMBERED_SYSCALLS:
        nr = syscall_names.number(syscall, arch)
        defines[f"NR_{syscall.upper()}"] = -1 if nr is None else nr
    return defines


class BirthProbe:
    """bpf/births.c attached: lifecycle events out of its ring buffer, counts out of maps."""

    def __init__(self, runtimes: Sequence[str]) -> None:
        self.arch = syscall_names.machine_arch()
        pid_max = int(PID_MAX.read_text())  # thread ids are below it
        self._bpf: Any = bpfsupport.load("births.c", probe_defines(self.arch, pid_max))
        self._events: list[ProbeEvent] = []
        table = self._bpf[b"runtimes"]
        for name in runtimes:
            key = table.Key()
            key.name = name.encode()
            table[key] = table.Leaf(1)
        self._bpf[b"events"].open_ring_buffer(self._on_event)

    @property
    def bpf(self) -> Any:
        """The loaded BCC object (benchmarks detach and re-attach its programs)."""
        return self._bpf

    def _on_event(self, _ctx: Any, data: Any, _size: int) -> None:
        raw = self._bpf[b"events"].event(data)
        self._events.append(
            ProbeEvent(
                kind=EventKind(raw.kind),
                serial=raw.serial,
                pid=raw.pid,
                ts_ns=raw.ts,
                arg=raw.arg,
                arg2=raw.arg2,
                aux=raw.aux,
                text=raw.text.decode(errors="replace"),
            )
        )

    def poll(self, timeout_ms: int) -> list[ProbeEvent]:
        self._bpf.ring_buffer_poll(timeout_ms)
        events, self._events = self._events, []
        return events

    def counters(self) -> dict[int, BirthCounters]:
        """Every birth in the kernel's map, by serial."""
        found = {}
        for key, leaf in self._bpf[b"births"].items():
            milestones = {p: int(leaf.milestone_ns[p]) for p in Phase if leaf.milestone_ns[p]}
            found[key.value] = BirthCounters(
                start_ns=leaf.start_ns,
                end_ns=leaf.end_ns,
                milestones_ns=milestones,
                phase_syscalls={p: int(leaf.phase_syscalls[p]) for p in Phase},
                mounts=leaf.mounts,
                cgroup_writes=leaf.cgroup_writes,
                execs=leaf.execs,
                done=bool(leaf.done),
            )
        return found

    def syscall_counts(self) -> dict[int, dict[int, int]]:
        """serial -> syscall number -> count."""
        counts: dict[int, dict[int, int]] = {}
        for key, value in self._bpf[b"syscall_counts"].items():
            counts.setdefault(key.serial, {})[key.nr] = value.value
        return counts

    def live(self) -> set[int]:
        """Serials that still have tasks."""
        return {leaf.serial for leaf in self._bpf[b"tracked"].values()}

    def forget(self, serials: set[int]) -> None:
        """Free what the kernel keeps for these births."""
        if not serials:
            return
        births = self._bpf[b"births"]
        for serial in serials:
            births.pop(births.Key(serial), None)
        counts = self._bpf[b"syscall_counts"]
        for key in [key for key in counts if key.serial in serials]:
            counts.pop(key, None)
        fds = self._bpf[b"cgroup_fds"]
        for key in [key for key, file in fds.items() if file.serial in serials]:
            fds.pop(key, None)

    def close(self) -> None:
        self._bpf.cleanup()


@dataclass
class _Finished:
    due_ns: int
    evidence: BirthEvidence


class BirthWatch:
    """Certificates of the containers born while the probe is attached."""

    def __init__(self, runtimes: Sequence[str], fs: CgroupFs | None = None) -> None:
        self.runtimes = check_runtime_names(runtimes)
        if not self.runtimes:
            raise UserError("no runtime to watch: name one with --runtime NAME")
        self.fs = fs or CgroupFs.detect()
        self._probe = BirthProbe(self.runtimes)
        self._names = syscall_names.table(self._probe.arch)
        self._ledger = BirthLedger()
        self._finished: list[_Finished] = []
        self._next_sweep_ns = time.monotonic_ns() + SWEEP_NS
        self._done_at_last_sweep: set[int] = set()
        self.wall_offset_ns = time.time_ns() - time.monotonic_ns()
        self.births: list[ContainerBirth] = []

    @property
    def probe(self) -> BirthProbe:
        return self._probe

    def poll(self, timeout_s: float) -> list[ContainerBirth]:
        """Wait up to timeout_s for events; returns the certificates completed meanwhile."""
        for event in self._probe.poll(max(int(timeout_s * 1000), 0)):
            evidence = self._ledger.record(event)
            if evidence is not None:
                self._finished.append(_Finished(time.monotonic_ns() + SETTLE_NS, evidence))
        now = time.monotonic_ns()
        born = self._certify([f.evidence for f in self._finished if f.due_ns <= now])
        self._finished = [f for f in self._finished if f.due_ns > now]
        if now >= self._next_sweep_ns:
            self._sweep()
            self._next_sweep_ns = now + SWEEP_NS
        return born

    def finish(self) -> list[ContainerBirth]:
        """Certify the births that just ended; returns them."""
        born = self.poll(0)
        while self._finished:
            born += self.poll(SETTLE_NS / 1e9)
        return born

    def _certify(self, finished: list[BirthEvidence]) -> list[ContainerBirth]:
        if not finished:
            return []
        counts = self._probe.syscall_counts()  # before the counters: see births.c
        counters = self._probe.counters()
        born = []
        for evidence in finished:
            birth_counters = counters.get(evidence.serial)
            if birth_counters is None or evidence.entrypoint is None:
                continue
            fallback = None
            if not evidence.attaches:
                fallback = self.fs.v2_path(evidence.entrypoint.cgroup_id)
            cert = certificate(
                evidence,
                birth_counters,
                counts.get(evidence.serial, {}),
                self._names,
                self.wall_offset_ns,
                fallback,
            )
            if cert is not None:
                born.append(cert)
        self._probe.forget({evidence.serial for evidence in finished})
        self.births.extend(born)
        return born

    def _sweep(self) -> None:
        """Free births whose tasks all left before an entrypoint ran (runc list, ...), and
        finished ones whose end event the ring buffer lost (done at two sweeps in a row: the
        event of a birth that just ended may still be in the buffer)."""
        pending = {f.evidence.serial for f in self._finished}
        known = self._probe.counters()  # before live(): a birth starting now is live then
        live = self._probe.live()
        done = {serial for serial, counters in known.items() if counters.done}
        gone = {
            serial
            for serial in known
            if serial not in pending
            and (serial in done & self._done_at_last_sweep or serial not in live | done)
        }
        self._done_at_last_sweep = done
        self._probe.forget(gone)
        self._ledger.forget(gone | (set(self._ledger.open) - set(known)))
        self._ledger.forget_pod_cgroups_before(time.monotonic_ns() - POD_CGROUP_MEMORY_NS)

    def pod_births(self) -> list[PodBirth]:
        created = {
            uid: wall_time(ns, self.wall_offset_ns)
            for uid, ns in self._ledger.pod_cgroups_created_ns.items()
        }
        return group_pods(self.births, created)

    def close(self) -> None:
        self._probe.close()

    def __enter__(self) -> "BirthWatch":
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
