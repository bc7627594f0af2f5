"""Ground truth over any window: a cgroup's cpu.stat (and cpuacct.usage), read every 20 ms
in a thread with the wall-clock time of each read, so a figure the product reports for a
window it chose can be compared with the kernel's counters over that same window."""

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

V1_CPU = Path("/sys/fs/cgroup/cpu")
V1_CPUACCT = Path("/sys/fs/cgroup/cpuacct")


@dataclass(frozen=True)
class Sample:
    at: float
    nr_periods: int
    nr_throttled: int
    usage_ns: int


def percent(first: Sample, last: Sample) -> float:
    """Percent of the CFS periods between two samples that were throttled."""
    periods = last.nr_periods - first.nr_periods
    assert periods > 0, "no CFS period elapsed between the samples"
    return 100.0 * (last.nr_throttled - first.nr_throttled) / periods


@dataclass
class CpuStatSampler:
    """Samples the v1 cgroup at `cgroup` (relative to the cgroup root) while it exists;
    reads before it is made or after it is removed are skipped."""

    cgroup: str
    samples: list[Sample] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _read(self) -> Sample | None:
        relative = self.cgroup.lstrip("/")
        try:
            text = (V1_CPU / relative / "cpu.stat").read_text()
            usage = int((V1_CPUACCT / relative / "cpuacct.usage").read_text())
        except (FileNotFoundError, ValueError):
            return None
        stat = dict(line.split() for line in text.splitlines())
        return Sample(time.time(), int(stat["nr_periods"]), int(stat["nr_throttled"]), usage)

    def _run(self) -> None:
        while not self._stop.is_set():
            sample = self._read()
            if sample is not None:
                self.samples.append(sample)
            time.sleep(0.02)

    def __enter__(self) -> "CpuStatSampler":
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def at(self, moment: float) -> Sample:
        return min(self.samples, key=lambda sample: abs(sample.at - moment))

    def between(self, start: float, end: float) -> tuple[Sample, Sample]:
        first, last = self.at(start), self.at(end)
        assert abs(first.at - start) < 0.1, f"no sample near the window's start ({start})"
        assert abs(last.at - end) < 0.1, f"no sample near the window's end ({end})"
        return first, last

    def windows(self, seconds: float) -> list[tuple[Sample, Sample]]:
        """Every pair of samples `seconds` apart (within a sampling step)."""
        pairs = []
        for first in self.samples:
            last = self.at(first.at + seconds)
            if abs(last.at - first.at - seconds) <= 0.03:
                pairs.append((first, last))
        return pairs


Whisper = dict[str, Any]


@dataclass(frozen=True)
class WindowTruth:
    """What the kernel's counters say over one window."""

    throttled_percent: float
    usage_cores: float


def whisper_over_sampled_window(
    cgroup: str, read_whisper: Callable[[], Whisper | None], timeout: float = 90
) -> tuple[Whisper, WindowTruth]:
    """The first KernelWhisper (as `read_whisper` fetches it) whose whole window cpu.stat
    was sampled in, and what cpu.stat and cpuacct.usage counted in that window."""

    def window(whisper: Whisper) -> tuple[float, float]:
        end = datetime.fromisoformat(whisper["spec"]["observedAt"]).timestamp()
        return end - whisper["spec"]["kernelTruth"]["windowSeconds"], end

    with CpuStatSampler(cgroup) as sampler:
        since = time.time() + 0.1
        deadline = time.monotonic() + timeout
        while True:
            whisper = read_whisper()
            if whisper is not None and window(whisper)[0] > since:
                break
            assert time.monotonic() < deadline, (
                f"no KernelWhisper over a window sampled after {since}"
            )
            time.sleep(0.5)
    first, last = sampler.between(*window(whisper))
    usage = (last.usage_ns - first.usage_ns) / 1e9 / (last.at - first.at)
    return whisper, WindowTruth(percent(first, last), usage)
