"""Ground truth for birth certificates: count an `strace -f -y` log of one runtime invocation
from its start up to the entrypoint's successful execve, independently of kernel_gossip.

strace writes one line per syscall entered: complete (`name(args) = ret`), or split in two
when another task's event came in between (`name(args <unfinished ...>` now, `<... name
resumed>) = ret` later). Syscalls that never return (exit_group) end in `= ?`. Signal and
exit lines (`--- SIG...`, `+++ exited ...`) are no syscalls. So the count is the number of
`name(` lines, the runtime's own execve (strace's first line) and the entrypoint's included,
up to the line where the entrypoint's execve returns 0.
"""

import re
from collections import Counter
from dataclasses import dataclass, field

LINE = re.compile(r"^(\d+)\s+(.*)$")
CALL = re.compile(r"^([a-z_0-9]+)\((.*)$")
RESUMED = re.compile(r"^<\.\.\. ([a-z_0-9]+) resumed>(.*)$")
CGROUP_FD = re.compile(r"^\d+</sys/fs/cgroup[/>]")
MEMBERSHIP_FD = re.compile(r"^\d+</sys/fs/cgroup/[^>]*/(cgroup\.procs|tasks)>")
MOUNT_FAMILY = frozenset(
    {
        "mount",
        "umount2",
        "pivot_root",
        "move_mount",
        "fsopen",
        "fsmount",
        "open_tree",
        "open_tree_attr",
        "mount_setattr",
    }
)
WRITES = frozenset({"write", "pwrite64", "writev", "pwritev", "pwritev2"})
# strace's names of the CLONE_NEW* flags.
NAMESPACE_FLAG_NAMES = {
    "CLONE_NEWNS": "mnt",
    "CLONE_NEWUTS": "uts",
    "CLONE_NEWIPC": "ipc",
    "CLONE_NEWPID": "pid",
    "CLONE_NEWNET": "net",
    "CLONE_NEWCGROUP": "cgroup",
    "CLONE_NEWUSER": "user",
    "CLONE_NEWTIME": "time",
}
FLAG_WORD = re.compile(r"CLONE_NEW[A-Z]+")


@dataclass
class StraceTruth:
    syscalls: Counter[str] = field(default_factory=Counter)
    namespace_operations: int = 0
    namespaces_created: set[str] = field(default_factory=set)
    cgroup_writes: int = 0
    # Phase -> syscalls entered before its first syscall (the timeline's phase starts).
    phase_starts: dict[str, int] = field(default_factory=dict)
    # Syscalls entered up to the entrypoint's execve line, that execve included. The exec
    # succeeds somewhere between its entry and its return, and strace reports the return
    # late when it is busy: other tasks' syscalls logged in between may come before or
    # after the kernel's exec, so the truth is a range, total_at_exec_entry to total.
    total_at_exec_entry: int = 0

    @property
    def total(self) -> int:
        return sum(self.syscalls.values())

    @property
    def mounts(self) -> int:
        return sum(self.syscalls[name] for name in MOUNT_FAMILY)

    @property
    def execs(self) -> int:
        return self.syscalls["execve"] + self.syscalls["execveat"]


def _namespace_call(truth: StraceTruth, name: str, args: str) -> bool:
    """Namespace operations as strace decoded their flags; True for one."""
    if name == "setns":
        truth.namespace_operations += 1
        return True
    if name not in {"clone", "clone3", "unshare"}:
        return False
    if name in {"clone", "clone3"}:
        flags = re.search(r"flags=([A-Z_0-9|]+)", args)
        words = FLAG_WORD.findall(flags.group(1)) if flags else []
    else:
        words = FLAG_WORD.findall(args.split(")")[0])
    kinds = {NAMESPACE_FLAG_NAMES[word] for word in words if word in NAMESPACE_FLAG_NAMES}
    if kinds:
        truth.namespace_operations += 1
        truth.namespaces_created |= kinds
    return bool(kinds)


def _phase(name: str, args: str, namespace_op: bool) -> str | None:
    """The timeline phase this syscall starts when it is the first of its kind."""
    if namespace_op:
        return "namespaces"
    if name in {"pivot_root", "chroot"}:
        return "rootfs"
    if name in MOUNT_FAMILY:
        return "mounts"
    if name in WRITES and CGROUP_FD.match(args) and not MEMBERSHIP_FD.match(args):
        return "cgroup-limits"
    return None


def count_birth(log: str, entrypoint: str) -> StraceTruth:
    """Count the log up to the successful execve of `entrypoint` (its path as exec'd)."""
    truth = StraceTruth()
    unfinished_execs: dict[str, tuple[str, int]] = {}  # pid -> (args, total at its entry)
    quoted = f'"{entrypoint}"'
    for line in log.splitlines():
        match = LINE.match(line)
        if not match:
            continue
        pid, body = match.groups()
        call = CALL.match(body)
        if call:
            name, args = call.groups()
            phase = _phase(name, args, _namespace_call(truth, name, args))
            if phase is not None:
                truth.phase_starts.setdefault(phase, truth.total)
            if name == "pivot_root":  # also the first of the mount family
                truth.phase_starts.setdefault("mounts", truth.total)
            truth.syscalls[name] += 1
            if name in WRITES and CGROUP_FD.match(args):
                truth.cgroup_writes += 1
            if name in {"execve", "execveat"}:
                if args.endswith("<unfinished ...>"):
                    unfinished_execs[pid] = (args, truth.total)
                elif args.startswith(quoted) and args.rstrip().endswith("= 0"):
                    truth.total_at_exec_entry = truth.total
                    return truth
            continue
        resumed = RESUMED.match(body)
        if resumed and resumed.group(1) in {"execve", "execveat"} and pid in unfinished_execs:
            args, at_entry = unfinished_execs.pop(pid)
            if args.startswith(quoted) and resumed.group(2).rstrip().endswith("= 0"):
                truth.total_at_exec_entry = at_entry
                return truth
    raise ValueError(f"the log has no successful execve of {entrypoint}")
