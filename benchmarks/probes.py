"""The agent's two probes (births.c and runqlat.c) loaded in the benchmark's process, with
their programs detached and re-attached between rounds: on/off rounds can then alternate
without compiling again (a compile takes seconds)."""

import threading
import time
from dataclasses import dataclass
from typing import Any

from kernel_gossip.core.cgroups import CgroupMode
from kernel_gossip.host.cgroupfs import CgroupFs
from kernel_gossip.probes.births import DEFAULT_RUNTIMES, BirthWatch
from kernel_gossip.probes.runqlat import KeyMode, RunqueueProbe
from kernel_gossip.schema.report import ContainerBirth


class Attachments:
    """The tracepoints a BCC object attached itself to, detachable and re-attachable."""

    def __init__(self, bpf: Any) -> None:
        self.bpf = bpf
        self.tracepoints = list(bpf.tracepoint_fds)
        self.raw_tracepoints = list(bpf.raw_tracepoint_fds)

    def detach(self) -> None:
        for tp in self.tracepoints:
            if tp in self.bpf.tracepoint_fds:
                self.bpf.detach_tracepoint(tp=tp)
        for tp in self.raw_tracepoints:
            if tp in self.bpf.raw_tracepoint_fds:
                self.bpf.detach_raw_tracepoint(tp=tp)

    def attach(self) -> None:
        for tp in self.tracepoints:
            if tp not in self.bpf.tracepoint_fds:
                name = b"tracepoint__" + tp.replace(b":", b"__")
                self.bpf.attach_tracepoint(tp=tp, fn_name=name)
        for tp in self.raw_tracepoints:
            if tp not in self.bpf.raw_tracepoint_fds:
                self.bpf.attach_raw_tracepoint(tp=tp, fn_name=b"raw_tracepoint__" + tp)


class EmptySysEnter:
    """A program on the raw sys_enter tracepoint that returns at once: what any probe that
    keeps sys_enter attached costs at the least (the slow path, the tracepoint's call)."""

    def __init__(self) -> None:
        from bcc import BPF

        self.bpf = BPF(text=b"RAW_TRACEPOINT_PROBE(sys_enter) { return 0; }")
        self.part = Attachments(self.bpf)

    def attached(self, on: bool) -> None:
        self.part.attach() if on else self.part.detach()

    def close(self) -> None:
        self.bpf.cleanup()


@dataclass(frozen=True)
class Certified:
    """A certificate as it came out of BirthWatch, and when (monotonic and wall clock)."""

    monotonic: float
    wall: float
    birth: ContainerBirth


class AgentProbes:
    """Both probes, as the agent loads them, with births polled by a thread (as the agent
    does); `attached(False)` leaves the node untraced."""

    def __init__(self, runqueue: bool = True, births: bool = True) -> None:
        self.load_seconds: dict[str, float] = {}
        self.parts: list[Attachments] = []
        self.runqueue: RunqueueProbe | None = None
        self.watch: BirthWatch | None = None
        if births:
            began = time.monotonic()
            self.watch = BirthWatch(DEFAULT_RUNTIMES)
            self.load_seconds["births.c"] = time.monotonic() - began
            self.parts.append(Attachments(self.watch.probe.bpf))
        if runqueue:
            fs = CgroupFs.detect()
            mode = KeyMode.TGID if fs.mode is CgroupMode.V1 else KeyMode.CGROUP_ID
            began = time.monotonic()
            self.runqueue = RunqueueProbe(mode)
            self.load_seconds["runqlat.c"] = time.monotonic() - began
            self.parts.append(Attachments(self.runqueue.bpf))
        self.certificates: list[Certified] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._poller = threading.Thread(target=self._poll, daemon=True)
        self._poller.start()

    def _poll(self) -> None:
        while not self._stop.is_set():
            if self.watch is None:
                return
            with self._lock:
                born = self.watch.poll(0.05)
            now, wall = time.monotonic(), time.time()
            self.certificates.extend(Certified(now, wall, birth) for birth in born)
            if not born:
                time.sleep(0.01)

    def attached(self, on: bool) -> None:
        with self._lock:
            for part in self.parts:
                part.attach() if on else part.detach()

    def close(self) -> None:
        self._stop.set()
        self._poller.join()
        if self.watch is not None:
            self.watch.close()
        if self.runqueue is not None:
            self.runqueue.close()
