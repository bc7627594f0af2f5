"""Log2 histograms as BCC's bpf_log2l() fills them, and percentiles read from them.

Slot 0 holds the value 0; slot s >= 1 holds values in [2**(s-1), 2**s). A percentile is
placed inside its slot by linear interpolation on the rank, so it is an estimate whose
error is bounded by the slot's width (never more than a factor of 2).
"""

from collections.abc import Mapping


def slot_bounds(slot: int) -> tuple[float, float]:
    if slot < 0:
        raise ValueError("a slot is never negative")
    return (0.0, 1.0) if slot == 0 else (float(2 ** (slot - 1)), float(2**slot))


def percentile(counts: Mapping[int, int], fraction: float) -> float | None:
    """The value below which `fraction` of the samples fall; None without samples."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError("fraction must be within [0, 1]")
    total = sum(counts.values())
    if total == 0:
        return None
    rank = fraction * total
    seen = 0
    for slot in sorted(counts):
        count = counts[slot]
        if count <= 0:
            continue
        if seen + count >= rank:
            low, high = slot_bounds(slot)
            return low + (high - low) * ((rank - seen) / count)
        seen += count
    return slot_bounds(max(counts))[1]


def subtract(after: Mapping[int, int], before: Mapping[int, int]) -> dict[int, int]:
    """Counts that arrived between two snapshots of the same histogram."""
    return {
        slot: after[slot] - before.get(slot, 0)
        for slot in after
        if after[slot] - before.get(slot, 0) > 0
    }
