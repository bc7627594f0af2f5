"""The Python side of bpf/runqlat.c: load it, tell it the targets, read its maps."""

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from kernel_gossip.core.histogram import subtract
from kernel_gossip.host import bpf as bpfsupport

MAX_TARGETS = 256
MAX_KEYS = 16384


class KeyMode(StrEnum):
    CGROUP_ID = "cgroup-id"  # v2 id of the task's cgroup (v2, hybrid with cgroup2 mirrors)
    TGID = "tgid"  # process id, mapped to containers in user space (pure v1)


@dataclass
class TargetSample:
    """Cumulative run-queue figures of one target since the probe was attached."""

    latency_slots: dict[int, int] = field(default_factory=dict)  # log2(us) slot -> count
    wait_ns: int = 0
    involuntary_switches: int = 0

    def since(self, earlier: "TargetSample") -> "TargetSample":
        return TargetSample(
            latency_slots=subtract(self.latency_slots, earlier.latency_slots),
            wait_ns=self.wait_ns - earlier.wait_ns,
            involuntary_switches=self.involuntary_switches - earlier.involuntary_switches,
        )


class RunqueueProbe:
    """Run-queue latency histograms and involuntary switches per target index."""

    def __init__(self, mode: KeyMode) -> None:
        defines: dict[str, int | None] = {"MAX_TARGETS": MAX_TARGETS, "MAX_KEYS": MAX_KEYS}
        if mode is KeyMode.TGID:
            defines["KEY_BY_TGID"] = None
        self.mode = mode
        self._bpf: Any = bpfsupport.load("runqlat.c", defines)

    @property
    def bpf(self) -> Any:
        """The loaded BCC object (benchmarks detach and re-attach its programs)."""
        return self._bpf

    def set_targets(self, keys: dict[int, int]) -> None:
        """Key (cgroup id or tgid) -> target index; replaces the previous set."""
        table = self._bpf[b"targets"]
        for key in list(table.keys()):
            if key.value not in keys:
                del table[key]
        for key_value, index in keys.items():
            table[table.Key(key_value)] = table.Leaf(index)

    def seed_tasks(self, tids: dict[int, int]) -> None:
        """Threads already in a target, so their first wait is attributed too."""
        table = self._bpf[b"task_target"]
        for tid, index in tids.items():
            table[table.Key(tid)] = table.Leaf(index)

    def sample(self) -> dict[int, TargetSample]:
        samples: dict[int, TargetSample] = {}
        for key, count in self._bpf[b"latency_us"].items():
            target = samples.setdefault(key.target, TargetSample())
            target.latency_slots[key.slot] = count.value
        for table_name in (b"wait_ns", b"involuntary"):
            for key, value in self._bpf[table_name].items():
                if value.value == 0:
                    continue
                target = samples.setdefault(key.value, TargetSample())
                if table_name == b"wait_ns":
                    target.wait_ns = value.value
                else:
                    target.involuntary_switches = value.value
        return samples

    def close(self) -> None:
        self._bpf.cleanup()
