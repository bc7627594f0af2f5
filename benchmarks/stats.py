"""Pure statistics and reporting of the benchmarks: ratios of interleaved rounds,
percentiles, the RESULTS.md table. No I/O here."""

import statistics
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Spread:
    """Median of paired on/off ratios and their range: a noisy machine's honest figure."""

    median: float
    low: float
    high: float
    rounds: int

    def text(self, digits: int = 3) -> str:
        low, high = f"{self.low:.{digits}f}", f"{self.high:.{digits}f}"
        return f"{self.median:.{digits}f} ({low} to {high}, n={self.rounds})"


def ratios(on: Sequence[float], off: Sequence[float]) -> Spread:
    """Round i of `on` over round i of `off` (the rounds were interleaved in pairs)."""
    if not on or len(on) != len(off):
        raise ValueError("ratios need as many on rounds as off rounds, at least one")
    paired = [a / b for a, b in zip(on, off, strict=True)]
    return Spread(statistics.median(paired), min(paired), max(paired), len(paired))


def differences(on: Sequence[float], off: Sequence[float]) -> Spread:
    """Round i of `on` minus round i of `off`: e.g. ns added per syscall."""
    if not on or len(on) != len(off):
        raise ValueError("differences need as many on rounds as off rounds, at least one")
    paired = [a - b for a, b in zip(on, off, strict=True)]
    return Spread(statistics.median(paired), min(paired), max(paired), len(paired))


def percentile(values: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile (fraction in (0, 1]) of a non-empty sample."""
    if not values:
        raise ValueError("no values")
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * fraction // 1))  # ceil without floats drifting
    return ordered[int(rank) - 1]


@dataclass(frozen=True)
class Figure:
    """One row of RESULTS.md: what, the value as text, and what it was measured on."""

    key: str
    name: str
    value: str
    detail: str


def results_markdown(figures: Sequence[Figure], machine: str, command: str, notes: str) -> str:
    rows = "\n".join(f"| {f.name} | {f.value} | {f.detail} |" for f in figures)
    keys = ", ".join(f.key for f in figures)
    return (
        "# kernel-gossip benchmarks\n\n"
        f"Machine: {machine}\n\n"
        f"Reproduce: `{command}`\n\n"
        f"{notes}\n\n"
        "| figure | value | how it was measured |\n"
        "| --- | --- | --- |\n"
        f"{rows}\n\n"
        f"<!-- figure keys: {keys} -->\n"
    )
