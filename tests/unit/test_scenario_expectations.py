"""The scenarios' truth over a reading's window: cpu.stat known between the samples around
each edge, and a CR compared with that range."""

import pytest

from kernel_gossip.scenarios.expectations import (
    CpuSample,
    Evidence,
    distance,
    evaluate_hpa,
    kernel_throttled_range,
)
from kernel_gossip.scenarios.spec import HpaExpectation


def sample(at: float, periods: int, throttled: int) -> CpuSample:
    return CpuSample(at, periods, throttled, throttled_seconds=0.0, usage_seconds=0.0)


# 10 periods a second; the reads at 1.0 and 1.5 leave a gap in which 3 periods ran, 2 of
# them throttled.
SAMPLES = [
    sample(0.0, 0, 0),
    sample(1.0, 10, 5),
    sample(1.5, 13, 7),
    sample(5.0, 50, 25),
    sample(6.0, 60, 30),
]


def test_edges_read_exactly_give_one_figure() -> None:
    assert kernel_throttled_range(SAMPLES, 1.0, 5.0) == (50.0, 50.0)


def test_an_edge_between_two_reads_spans_what_they_allow() -> None:
    low, high = kernel_throttled_range(SAMPLES, 1.2, 5.0) or (0, 0)
    assert low == pytest.approx(100 * 18 / 37)  # the edge at 1.5: 18 of 37 periods
    assert high == pytest.approx(50.0)  # the edge at 1.0: 20 of 40


def test_a_window_outside_the_samples_has_no_truth() -> None:
    assert kernel_throttled_range(SAMPLES, -1.0, 5.0) is None
    assert kernel_throttled_range(SAMPLES, 1.0, 7.0) is None
    assert kernel_throttled_range([], 1.0, 2.0) is None


def test_no_period_ran_is_zero_percent() -> None:
    idle = [sample(0.0, 7, 3), sample(9.0, 7, 3)]
    assert kernel_throttled_range(idle, 1.0, 2.0) == (0.0, 0.0)


def test_distance_is_zero_inside_and_the_gap_outside() -> None:
    assert distance(49.0, (48.6, 50.0)) == 0.0
    assert distance(52.9, (48.6, 50.0)) == pytest.approx(2.9)
    assert distance(45.0, (48.6, 50.0)) == pytest.approx(3.6)


def hpa_outcomes(replicas: list[int], **bounds: int) -> list[tuple[str, str, bool]]:
    evidence = Evidence(load_started=0.0, load_ended=10.0)
    evidence.hpa_replicas[("default", "web")] = [(float(i), n) for i, n in enumerate(replicas)]
    expectation = HpaExpectation.model_validate({"hpa": {"name": "web"}, **bounds})
    return [(o.measured, o.bound, o.holds) for o in evaluate_hpa(expectation, evidence)]


def test_hpa_replicas_are_held_to_each_bound_by_the_most_seen() -> None:
    assert hpa_outcomes([2, 2], replicasAtMost=2) == [("2", "<= 2", True)]
    assert hpa_outcomes([2, 3, 2], replicasAtMost=2) == [("3", "<= 2", False)]
    assert hpa_outcomes([2, 4], replicasAtLeast=4, replicasAtMost=5) == [
        ("4", "<= 5", True),
        ("4", ">= 4", True),
    ]
    assert hpa_outcomes([2, 3], replicasAtLeast=4) == [("3", ">= 4", False)]


def test_an_hpa_never_read_holds_no_bound() -> None:
    assert hpa_outcomes([], replicasAtMost=9) == [("never read", "<= 9", False)]
