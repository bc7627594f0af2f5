"""Pure parts of the births work: namespace flag decoding, the event ledger, attribution,
phase assembly, certificates, pod grouping, probe constants, bundle config, strace counting."""

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from births_lab import CONTRACT_KEYS
from births_truth import count_birth
from hypothesis import given
from hypothesis import strategies as st

from conftest import Require
from kernel_gossip.cli import births as births_cli
from kernel_gossip.cli.main import build_parser
from kernel_gossip.core.births import (
    CSIGNAL,
    ENTRYPOINT_EXEC,
    NAMESPACE_FLAGS,
    BirthCounters,
    BirthEvidence,
    BirthLedger,
    Entrypoint,
    EventKind,
    NamespaceOp,
    Phase,
    ProbeEvent,
    certificate,
    container_cgroup,
    container_id,
    group_pods,
    is_namespace_operation,
    namespaces_created,
    timeline,
    wall_time,
)
from kernel_gossip.errors import UserError
from kernel_gossip.host import ocibundle
from kernel_gossip.probes.births import check_runtime_names, probe_defines
from kernel_gossip.schema.report import NAMESPACE_KINDS

NEWNS, NEWPID, NEWNET = 0x00020000, 0x20000000, 0x40000000
NEWUSER, NEWTIME, SIGCHLD, CLONE_VM = 0x10000000, 0x80, 17, 0x100
UID = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0"
CID = "ab" * 32
POD_PATH = f"/kubepods/besteffort/pod{UID}"
CONTAINER_PATH = f"{POD_PATH}/{CID}"
MS = 1_000_000


# --- namespace flags -------------------------------------------------------------------


def test_flag_values_are_the_kernel_headers(require: Require) -> None:
    header = Path("/usr/include/linux/sched.h")
    require(header.is_file(), f"{header} is missing: install linux-libc-dev")
    defined = dict(re.findall(r"#define\s+(CLONE_NEW\w+)\s+(0x[0-9a-fA-F]+)", header.read_text()))
    names = {kind: f"CLONE_NEW{kind.upper()}" for kind in NAMESPACE_FLAGS}
    names["mnt"] = "CLONE_NEWNS"
    for kind, bit in NAMESPACE_FLAGS.items():
        assert int(defined[names[kind]], 16) == bit, kind


def test_every_namespace_kind_has_its_flag_in_the_certificates_order() -> None:
    assert tuple(NAMESPACE_FLAGS) == NAMESPACE_KINDS


def test_clone_decodes_namespaces_and_ignores_its_exit_signal() -> None:
    assert namespaces_created(NamespaceOp.CLONE, NEWNS | NEWPID | NEWNET | SIGCHLD) == [
        "mnt",
        "pid",
        "net",
    ]
    # 0x80 in clone()'s low byte is part of the exit signal, not CLONE_NEWTIME.
    assert namespaces_created(NamespaceOp.CLONE, 0x80 | SIGCHLD) == []
    assert not is_namespace_operation(NamespaceOp.CLONE, 0x80 | SIGCHLD)
    assert not is_namespace_operation(NamespaceOp.CLONE, CLONE_VM | SIGCHLD)


def test_clone3_and_unshare_can_create_time_namespaces() -> None:
    assert namespaces_created(NamespaceOp.CLONE3, NEWTIME) == ["time"]
    assert namespaces_created(NamespaceOp.UNSHARE, NEWUSER | NEWTIME) == ["user", "time"]
    assert is_namespace_operation(NamespaceOp.UNSHARE, NEWTIME)


def test_setns_joins_but_creates_nothing() -> None:
    assert namespaces_created(NamespaceOp.SETNS, NEWNET) == []
    assert is_namespace_operation(NamespaceOp.SETNS, 0)
    assert is_namespace_operation(NamespaceOp.SETNS, NEWNET)


@given(st.integers(min_value=0, max_value=2**64 - 1))
def test_decoding_is_the_flag_bits_in_canonical_order(flags: int) -> None:
    expected = [kind for kind, bit in NAMESPACE_FLAGS.items() if flags & bit]
    assert namespaces_created(NamespaceOp.CLONE3, flags) == expected
    assert namespaces_created(NamespaceOp.UNSHARE, flags) == expected
    assert namespaces_created(NamespaceOp.CLONE, flags) == namespaces_created(
        NamespaceOp.CLONE, flags & ~CSIGNAL
    )
    assert is_namespace_operation(NamespaceOp.CLONE3, flags) == bool(expected)


# --- ledger and attribution ------------------------------------------------------------


def event(kind: EventKind, serial: int = 7, **fields: int | str) -> ProbeEvent:
    values: dict[str, int | str] = {"pid": 100, "ts_ns": 1000 * MS} | fields
    return ProbeEvent(kind=kind, serial=serial, **values)  # type: ignore[arg-type]


def test_ledger_gathers_one_birth_until_its_entrypoint() -> None:
    ledger = BirthLedger()
    assert ledger.record(event(EventKind.START, text="runc", pid=100)) is None
    assert ledger.record(event(EventKind.ATTACH, text=CONTAINER_PATH, aux=3)) is None
    assert ledger.record(event(EventKind.NAMESPACE, aux=NamespaceOp.UNSHARE, arg=NEWNS)) is None
    assert ledger.record(event(EventKind.START, serial=8, text="crun")) is None
    done = ledger.record(
        event(EventKind.ENTRYPOINT, pid=104, ts_ns=1050 * MS, arg=1049 * MS, aux=4, arg2=99)
    )
    assert done is not None
    assert (done.serial, done.runtime, done.root_pid, done.start_ns) == (7, "runc", 100, 1000 * MS)
    assert done.attaches == [CONTAINER_PATH]
    assert done.namespace_ops == [(NamespaceOp.UNSHARE, NEWNS)]
    assert done.entrypoint == Entrypoint(104, 1050 * MS, 1049 * MS, Phase.ROOTFS, 99)
    assert set(ledger.open) == {8}  # the other birth goes on
    ledger.forget([8, 12345])  # a serial never seen is no error
    assert ledger.open == {}


def test_an_entrypoint_in_an_unknown_phase_counts_from_the_start() -> None:
    ledger = BirthLedger()
    ledger.record(event(EventKind.START, text="runc", pid=100))
    ledger.record(event(EventKind.ATTACH, text=CONTAINER_PATH, aux=3))
    done = ledger.record(event(EventKind.ENTRYPOINT, pid=104, aux=len(Phase)))
    assert done is not None
    assert done.entrypoint is not None
    assert done.entrypoint.entered_phase is Phase.RUNTIME_START


def test_ledger_accepts_an_attach_seen_before_the_start() -> None:
    ledger = BirthLedger()
    ledger.record(event(EventKind.ATTACH, text=CONTAINER_PATH))
    ledger.record(event(EventKind.START, text="crun"))
    assert ledger.open[7].attaches == [CONTAINER_PATH]
    assert ledger.open[7].runtime == "crun"


def test_ledger_remembers_the_first_mkdir_of_pod_cgroups_only() -> None:
    ledger = BirthLedger()
    ledger.record(event(EventKind.MKDIR, serial=0, text="/kubepods", ts_ns=1))
    ledger.record(event(EventKind.MKDIR, serial=0, text=POD_PATH, ts_ns=5))
    ledger.record(event(EventKind.MKDIR, serial=0, text=POD_PATH, ts_ns=6))  # next hierarchy
    ledger.record(event(EventKind.MKDIR, serial=0, text=CONTAINER_PATH, ts_ns=7))
    assert ledger.pod_cgroups_created_ns == {UID: 5}
    assert ledger.open == {}
    ledger.forget_pod_cgroups_before(5)
    assert ledger.pod_cgroups_created_ns == {UID: 5}
    ledger.forget_pod_cgroups_before(6)
    assert ledger.pod_cgroups_created_ns == {}


def test_the_container_cgroup_is_the_last_attach_naming_a_container() -> None:
    assert container_cgroup(["/", CONTAINER_PATH, CONTAINER_PATH]) == CONTAINER_PATH
    assert container_cgroup([CONTAINER_PATH, "/system.slice/foo.service"]) == CONTAINER_PATH
    assert container_cgroup(["/mine", "/"]) == "/mine"
    assert container_cgroup(["/"]) is None
    assert container_cgroup([]) is None


def test_any_cgroup_below_the_root_counts_whatever_its_name() -> None:
    assert container_cgroup(["/", "/X", "/"]) == "/X"


def test_container_id_falls_back_to_the_cgroup_name() -> None:
    assert container_id(CONTAINER_PATH) == CID
    assert container_id("/system.slice/docker-" + CID + ".scope") == CID
    assert container_id("/mycontainer") == "mycontainer"


# --- timeline and certificates ---------------------------------------------------------


def counters(**overrides: object) -> BirthCounters:
    values: dict[str, object] = {
        "start_ns": 1000 * MS,
        "end_ns": 1050 * MS,
        "milestones_ns": {
            Phase.RUNTIME_START: 1000 * MS,
            Phase.CGROUP_LIMITS: 1010 * MS,
            Phase.NAMESPACES: 1020 * MS,
            Phase.MOUNTS: 1021 * MS,
            Phase.ROOTFS: 1040 * MS,
        },
        "phase_syscalls": {
            Phase.RUNTIME_START: 100,
            Phase.CGROUP_LIMITS: 20,
            Phase.NAMESPACES: 3,
            Phase.MOUNTS: 40,
            Phase.ROOTFS: 7,
        },
        "mounts": 41,
        "cgroup_writes": 9,
        "execs": 3,
    } | overrides
    return BirthCounters(**values)  # type: ignore[arg-type]


ENTRY = Entrypoint(
    pid=104, exec_ns=1050 * MS, entered_ns=1049 * MS, entered_phase=Phase.ROOTFS, cgroup_id=5
)


def test_timeline_orders_phases_by_time_and_moves_the_entrypoint_exec() -> None:
    phases = timeline(counters(), ENTRY)
    assert [(p.phase, p.offset_ms, p.count) for p in phases] == [
        ("runtime-start", 0.0, 100),
        ("cgroup-limits", 10.0, 20),
        ("namespaces", 20.0, 3),
        ("mounts", 21.0, 40),
        ("rootfs", 40.0, 6),
        (ENTRYPOINT_EXEC, 49.0, 1),
    ]


def test_timeline_follows_the_order_phases_happened_in() -> None:
    # crun: namespaces (clone) come before the cgroup writes; phases never reached are left out.
    milestones = {Phase.RUNTIME_START: 1000 * MS, Phase.NAMESPACES: 1005 * MS}
    milestones[Phase.CGROUP_LIMITS] = 1010 * MS
    phases = timeline(counters(milestones_ns=milestones), ENTRY)
    assert [p.phase for p in phases] == [
        "runtime-start",
        "namespaces",
        "cgroup-limits",
        ENTRYPOINT_EXEC,
    ]
    # Reached at the same instant: listed in Phase order.
    same = {Phase.RUNTIME_START: 1000 * MS, Phase.ROOTFS: 1001 * MS, Phase.MOUNTS: 1001 * MS}
    assert [p.phase for p in timeline(counters(milestones_ns=same), ENTRY)][1:3] == [
        "mounts",
        "rootfs",
    ]


def test_without_milestones_the_entrypoint_is_all_there_is() -> None:
    at_start = Entrypoint(104, 1000 * MS, 1000 * MS, Phase.RUNTIME_START, 5)
    phases = timeline(counters(milestones_ns={}, phase_syscalls={}), at_start)
    assert [(p.phase, p.offset_ms, p.count) for p in phases] == [(ENTRYPOINT_EXEC, 0.0, 1)]


def test_the_entrypoint_never_precedes_the_last_phase() -> None:
    early = Entrypoint(104, 1050 * MS, 1030 * MS, Phase.NAMESPACES, 5)
    phases = timeline(counters(), early)
    assert phases[-1].offset_ms == 40.0
    assert phases[2].count == 2  # moved out of the phase the exec was entered in


@given(
    st.dictionaries(st.sampled_from(list(Phase)), st.integers(0, 10_000), min_size=1),
    st.sampled_from(list(Phase)),
)
def test_timeline_counts_add_up(counts: dict[Phase, int], entered: Phase) -> None:
    milestones = {phase: 1000 * MS + int(phase) * MS for phase in Phase}
    phases = timeline(
        counters(milestones_ns=milestones, phase_syscalls=counts),
        Entrypoint(1, 1100 * MS, 1090 * MS, entered, 0),
    )
    total = sum(counts.values())
    assert sum(p.count for p in phases) == (total if counts.get(entered, 0) else total + 1)
    offsets = [p.offset_ms for p in phases]
    assert offsets == sorted(offsets)


def evidence(**overrides: object) -> BirthEvidence:
    values: dict[str, object] = {
        "serial": 7,
        "runtime": "runc",
        "root_pid": 100,
        "start_ns": 1000 * MS,
        "attaches": [CONTAINER_PATH] * 3,
        "namespace_ops": [
            (NamespaceOp.CLONE, CLONE_VM | SIGCHLD),  # a thread: no namespace
            (NamespaceOp.UNSHARE, NEWNS | NEWPID | NEWNET),
            (NamespaceOp.CLONE3, NEWUSER | NEWNS),
            (NamespaceOp.SETNS, NEWNET),
        ],
        "entrypoint": ENTRY,
    } | overrides
    return BirthEvidence(**values)  # type: ignore[arg-type]


NAMES = {0: "read", 1: "write", 59: "execve", 165: "mount"}
COUNTS = {0: 70, 1: 30, 59: 3, 165: 41, 999: 26}


def test_certificate_assembles_the_contract() -> None:
    wall_offset = 1_700_000_000 * 10**9
    cert = certificate(evidence(), counters(), COUNTS, NAMES, wall_offset)
    assert cert is not None
    as_json = json.loads(cert.model_dump_json(by_alias=True))
    assert set(as_json) == CONTRACT_KEYS
    assert all(set(phase) == {"phase", "offsetMs", "count"} for phase in as_json["timeline"])
    assert as_json["containerId"] == CID
    assert as_json["podUid"] == UID
    assert as_json["cgroupPath"] == CONTAINER_PATH
    assert as_json["runtime"] == "runc"
    assert datetime.fromisoformat(as_json["startedAt"]) == datetime(
        2023, 11, 14, 22, 13, 21, tzinfo=UTC
    )
    assert as_json["durationMs"] == 50.0
    assert as_json["totalSyscalls"] == 170
    assert list(as_json["syscalls"].items()) == [
        ("read", 70),
        ("mount", 41),
        ("write", 30),
        ("syscall_999", 26),
        ("execve", 3),
    ]
    assert as_json["namespaceOperations"] == 3
    assert as_json["namespacesCreated"] == ["mnt", "pid", "net", "user"]
    assert (as_json["mounts"], as_json["cgroupWrites"], as_json["execs"]) == (41, 9, 3)


def test_certificate_total_is_the_timeline_even_when_a_name_count_is_short() -> None:
    """A count by name can trail the phase counts (a syscall entered as user space read
    the names, a full map): the total is the timeline's, the names never exceed it."""
    short = COUNTS | {0: 69}
    cert = certificate(evidence(), counters(), short, NAMES, 0)
    assert cert is not None
    assert cert.total_syscalls == sum(phase.count for phase in cert.timeline) == 170
    assert sum(cert.syscalls.values()) == 169


def test_certificate_reads_clone_exit_signals_as_no_namespace() -> None:
    ops = [(NamespaceOp.CLONE, 0x80 | SIGCHLD), (NamespaceOp.CLONE, NEWNS | 0x80 | SIGCHLD)]
    cert = certificate(evidence(namespace_ops=ops), counters(), COUNTS, NAMES, 0)
    assert cert is not None
    assert (cert.namespace_operations, cert.namespaces_created) == (1, ["mnt"])


def test_certificate_adds_numbers_of_one_name_and_breaks_ties_by_name() -> None:
    names = {0: "read", 1: "write", 17: "read"}  # pread64 named read: one entry
    cert = certificate(evidence(), counters(), {1: 5, 0: 3, 17: 2}, names, 0)
    assert cert is not None
    assert list(cert.syscalls.items()) == [("read", 5), ("write", 5)]


def test_certificate_starts_at_the_runtimes_own_start() -> None:
    wall_offset = 1_700_000_000 * 10**9
    cert = certificate(evidence(start_ns=990 * MS), counters(), COUNTS, NAMES, wall_offset)
    assert cert is not None
    assert cert.started_at == datetime(2023, 11, 14, 22, 13, 20, 990_000, tzinfo=UTC)


def test_certificate_needs_an_entrypoint_and_a_container_cgroup() -> None:
    assert certificate(evidence(entrypoint=None), counters(), COUNTS, NAMES, 0) is None
    assert certificate(evidence(attaches=["/"]), counters(), COUNTS, NAMES, 0) is None
    assert certificate(evidence(attaches=[]), counters(), COUNTS, NAMES, 0, "/") is None


def test_certificate_falls_back_to_the_entrypoint_cgroup() -> None:
    cert = certificate(evidence(attaches=[]), counters(), COUNTS, NAMES, 0, CONTAINER_PATH)
    assert cert is not None
    assert (cert.cgroup_path, cert.container_id, cert.pod_uid) == (CONTAINER_PATH, CID, UID)
    plain = certificate(evidence(attaches=["/runc-test"]), counters(), COUNTS, NAMES, 0)
    assert plain is not None
    assert (plain.container_id, plain.pod_uid) == ("runc-test", None)
    named_x = certificate(evidence(attaches=[]), counters(), COUNTS, NAMES, 0, "/X")
    assert named_x is not None
    assert named_x.cgroup_path == "/X"


def test_wall_time_adds_the_clock_offset() -> None:
    assert wall_time(2 * 10**9, 10**9) == datetime(1970, 1, 1, 0, 0, 3, tzinfo=UTC)


def test_pods_group_their_containers_sandbox_first() -> None:
    def born(cid: str, pod: str | None, start_ms: int, duration_ms: float) -> object:
        path = f"/kubepods/besteffort/pod{pod}/{cid}" if pod else f"/docker/{cid}"
        cert = certificate(
            evidence(attaches=[path], start_ns=start_ms * MS),
            counters(start_ns=start_ms * MS),
            COUNTS,
            NAMES,
            0,
        )
        assert cert is not None
        return cert.model_copy(update={"duration_ms": duration_ms})

    other = "11111111-2222-3333-4444-555555555555"
    app = born("cd" * 32, UID, 2000, 30.0)
    sandbox = born("ef" * 32, UID, 1000, 20.0)
    lonely = born("12" * 32, other, 5000, 10.0)
    outside = born("34" * 32, None, 100, 10.0)
    created = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=900)
    pods = group_pods([app, sandbox, lonely, outside], {UID: created})  # type: ignore[list-item]
    assert [pod.pod_uid for pod in pods] == [UID, other]
    first = pods[0]
    assert first.containers == [sandbox, app]
    assert first.pod_cgroup_created_at == created
    assert first.started_at == created
    assert first.duration_ms == pytest.approx(2030.0 - 900.0)
    assert pods[1].pod_cgroup_created_at is None
    assert pods[1].duration_ms == pytest.approx(10.0)


# --- probe constants -------------------------------------------------------------------


def test_runtime_names_are_what_the_kernel_calls_programs() -> None:
    assert check_runtime_names(["runc", "crun", "runc"]) == ["runc", "crun"]
    assert check_runtime_names(["a" * 15]) == ["a" * 15]
    for bad in ("", "/usr/bin/runc", "run c ", "a" * 16, "bad\tname"):
        with pytest.raises(UserError):
            check_runtime_names([bad])


def test_probe_defines_follow_the_architecture_and_the_kernel() -> None:
    x86 = probe_defines("x86_64", 32768)
    arm = probe_defines("arm64", 4194304)
    assert (x86["NR_OPENAT"], x86["NR_OPEN"], x86["NR_EXECVE"], x86["NR_CLOSE"]) == (257, 2, 59, 3)
    assert (arm["NR_OPENAT"], arm["NR_OPEN"], arm["NR_EXECVE"], arm["NR_CLOSE"]) == (
        56,
        -1,
        221,
        57,
    )
    assert (x86["NR_CLONE3"], x86["NR_PIVOT_ROOT"], x86["NR_UMOUNT2"]) == (435, 155, 166)
    assert (arm["NR_CLONE"], arm["NR_CHROOT"], arm["NR_MOUNT_SETATTR"]) == (220, 51, 442)
    assert (x86["PID_MAX"], arm["PID_MAX"]) == (32768, 4194304)
    # Pinned figures: bpf/births.c sizes its per-phase arrays and codes its events by these.
    assert (x86["N_PHASES"], x86["PHASE_RUNTIME_START"], x86["PHASE_ROOTFS"]) == (5, 0, 4)
    assert (x86["EVENT_START"], x86["EVENT_ENTRYPOINT"], x86["EVENT_MKDIR"]) == (1, 4, 5)
    assert (x86["OP_CLONE"], x86["OP_SETNS"]) == (0, 3)


# --- OCI bundle ------------------------------------------------------------------------

BASE_SPEC = {
    "ociVersion": "1.0.2-dev",
    "process": {"terminal": True, "args": ["sh"], "oomScoreAdj": -998},
    "root": {"path": "rootfs", "readonly": True},
    "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
    "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}]},
}


def test_bundle_config_starts_a_limited_container_in_its_pod_cgroup() -> None:
    spec = ocibundle.ContainerSpec(
        container_id=CID,
        cgroups_path=ocibundle.pod_cgroups_path(UID, CID),
        args=("/bin/true",),
        extra_tmpfs_mounts=2,
    )
    config = ocibundle.configure(BASE_SPEC, spec, Path("/cache/rootfs"))
    assert config["process"]["terminal"] is False
    assert config["process"]["args"] == ["/bin/true"]
    assert "oomScoreAdj" not in config["process"]
    assert config["root"] == {"path": "/cache/rootfs", "readonly": True}
    assert config["linux"]["cgroupsPath"] == CONTAINER_PATH
    assert [ns["type"] for ns in config["linux"]["namespaces"]] == ["pid", "mount", "cgroup"]
    assert [m["destination"] for m in config["mounts"]] == ["/proc", "/mnt/0", "/mnt/1"]
    assert config["linux"]["resources"]["cpu"]["quota"] == 50_000
    assert config["linux"]["resources"]["memory"]["limit"] == 64 * 1024 * 1024
    assert BASE_SPEC["process"]["args"] == ["sh"]  # the base is left alone
    again = ocibundle.configure(config, spec, Path("/cache/rootfs"))
    assert [ns["type"] for ns in again["linux"]["namespaces"]].count("cgroup") == 1
    with pytest.raises(ValueError, match="extra_tmpfs_mounts"):
        ocibundle.configure(BASE_SPEC, spec.__class__(CID, "/x", extra_tmpfs_mounts=17), Path("/r"))


HYBRID = """\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
"""
UNIFIED_ONLY = "41 31 0:38 / /sys/fs/cgroup rw,relatime - cgroup2 cgroup2 rw\n"


def test_crun_needs_a_v1_view_only_on_hybrid_hosts_with_cgroup2_controllers() -> None:
    assert ocibundle.crun_needs_v1_view(HYBRID, "hugetlb\n")
    assert not ocibundle.crun_needs_v1_view(HYBRID, "\n")
    assert not ocibundle.crun_needs_v1_view(HYBRID, None)
    assert not ocibundle.crun_needs_v1_view(UNIFIED_ONLY, "cpu memory\n")
    assert not ocibundle.crun_needs_v1_view("", "cpu\n")


# --- strace ground truth ---------------------------------------------------------------

STRACE_LOG = """\
10 execve("/usr/sbin/runc", ["runc", "run"], 0x7ffc /* 35 vars */) = 0
10 clone3({flags=CLONE_VM|CLONE_FS|CLONE_THREAD, exit_signal=0}, 88) = 11
11 futex(0x1, FUTEX_WAIT_PRIVATE, 0, NULL <unfinished ...>
10 openat2(3</sys/fs/cgroup>, "cpu/x/cpu.shares", {flags=O_WRONLY}, 24) = 5</sys/fs/cgroup/cpu/x>
10 write(5</sys/fs/cgroup/cpu/x/cpu.shares>, "256", 3) = 3
10 write(1</dev/null>, "x", 1) = 1
11 <... futex resumed>) = 0
10 --- SIGCHLD {si_signo=SIGCHLD, si_code=CLD_EXITED} ---
12 unshare(CLONE_NEWNS|CLONE_NEWUTS|CLONE_NEWPID) = 0
12 clone(child_stack=NULL, flags=CLONE_PARENT|SIGCHLD) = 13
13 setns(7</proc/1/ns/net>, CLONE_NEWNET) = 0
13 mount("proc", "/proc", "proc", 0, NULL) = 0
13 pivot_root(".", ".") = 0
14 exit_group(0) = ?
14 +++ exited with 0 +++
13 execve("/bin/false", ["/bin/false"], 0xc0 /* 3 vars */) = -1 ENOENT (No such file)
13 execve("/bin/true", ["/bin/true"], 0xc0 /* 3 vars */ <unfinished ...>
10 read(3</dev/null>, "", 8) = 0
13 <... execve resumed>) = 0
13 exit_group(0) = ?
"""


def test_strace_counts_entries_up_to_the_entrypoint_exec() -> None:
    truth = count_birth(STRACE_LOG, "/bin/true")
    assert truth.total == 15
    assert truth.total_at_exec_entry == 14  # the read logged before the exec's return
    assert truth.syscalls["execve"] == 3
    assert truth.execs == 3
    assert truth.mounts == 2
    assert truth.cgroup_writes == 1
    assert truth.namespace_operations == 2  # unshare and setns; the thread's clone3 is none
    assert truth.namespaces_created == {"mnt", "uts", "pid"}
    assert "exit_group" in truth.syscalls  # the one before the cut, never returning
    with pytest.raises(ValueError, match="no successful execve"):
        count_birth(STRACE_LOG, "/bin/sh")


# --- CLI arguments ---------------------------------------------------------------------


def test_runtime_names_can_be_listed_or_repeated() -> None:
    parser = build_parser()
    args = parser.parse_args(["births", "--runtime", "runc", "crun", "--runtime", "youki"])
    assert args.runtime == ["runc", "crun", "youki"]
    assert args.handler is births_cli.run
    defaults = parser.parse_args(["births"])
    assert (defaults.runtime, defaults.duration, defaults.json) == (None, None, False)
    assert parser.parse_args(["births", "--duration", "2.5", "--json"]).duration == 2.5
