"""Percentiles of BCC log2 histograms."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from kernel_gossip.core.histogram import percentile, slot_bounds, subtract


def bcc_log2l(value: int) -> int:
    """What bpf_log2l() returns: 0 for 0, else floor(log2(v)) + 1."""
    return 0 if value == 0 else value.bit_length()


def test_slot_bounds_match_bcc_log2l() -> None:
    for value in [0, 1, 2, 3, 4, 7, 8, 1000, 65535, 65536, 10**9]:
        low, high = slot_bounds(bcc_log2l(value))
        assert low <= value < high


def test_no_samples_no_percentile() -> None:
    assert percentile({}, 0.5) is None
    assert percentile({3: 0}, 0.99) is None


def test_single_slot_interpolates_inside_it() -> None:
    counts = {5: 100}  # values in [16, 32)
    assert percentile(counts, 0.5) == pytest.approx(24.0)
    assert percentile(counts, 1.0) == pytest.approx(32.0)
    assert percentile(counts, 0.0) == pytest.approx(16.0)


def test_p99_lands_in_the_tail_slot() -> None:
    counts = {4: 98, 17: 2}  # mostly [8,16) us, 2% in [65536, 131072) us
    p50 = percentile(counts, 0.5)
    p99 = percentile(counts, 0.99)
    assert p50 is not None
    assert 8 <= p50 < 16
    assert p99 is not None
    assert 65536 <= p99 <= 131072


def test_bad_fraction() -> None:
    with pytest.raises(ValueError, match="fraction"):
        percentile({1: 1}, 1.5)


def test_subtract_keeps_only_new_counts() -> None:
    assert subtract({1: 5, 2: 7, 3: 1}, {1: 5, 2: 3}) == {2: 4, 3: 1}


@given(st.lists(st.integers(min_value=0, max_value=2**30), min_size=1, max_size=300))
def test_percentile_is_within_a_factor_of_two_of_the_exact_value(values: list[int]) -> None:
    counts: dict[int, int] = {}
    for value in values:
        counts[bcc_log2l(value)] = counts.get(bcc_log2l(value), 0) + 1
    ordered = sorted(values)
    for fraction in (0.5, 0.9, 0.99):
        exact = ordered[max(math.ceil(fraction * len(ordered)) - 1, 0)]
        estimate = percentile(counts, fraction)
        assert estimate is not None
        low, high = slot_bounds(bcc_log2l(exact))
        assert low <= estimate <= high


@given(
    st.dictionaries(st.integers(0, 40), st.integers(1, 1000), min_size=1),
    st.floats(0, 1),
    st.floats(0, 1),
)
def test_percentile_is_monotonic(counts: dict[int, int], a: float, b: float) -> None:
    low, high = sorted((a, b))
    p_low, p_high = percentile(counts, low), percentile(counts, high)
    assert p_low is not None
    assert p_high is not None
    assert p_low <= p_high


def test_slot_zero_holds_only_the_value_zero() -> None:
    assert slot_bounds(0) == (0.0, 1.0)
    assert slot_bounds(1) == (1.0, 2.0)
    assert percentile({0: 4}, 0.5) == pytest.approx(0.5)


def test_negative_slot_and_fraction_are_refused_with_their_reason() -> None:
    with pytest.raises(ValueError, match=r"^a slot is never negative$"):
        slot_bounds(-1)
    with pytest.raises(ValueError, match=r"^fraction must be within \[0, 1\]$"):
        percentile({1: 1}, -0.1)


def test_empty_slots_before_the_samples_are_skipped() -> None:
    """A slot whose count dropped to 0 holds no sample: rank 0 is the first real slot."""
    counts = {3: 0, 5: 10}  # all samples in [16, 32)
    assert percentile(counts, 0.0) == pytest.approx(16.0)
    assert percentile(counts, 0.5) == pytest.approx(24.0)
