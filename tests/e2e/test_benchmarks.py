"""benchmarks/run --quick: every figure of the suite is produced (never a timing asserted:
timings belong to RESULTS.md), and the pure statistics behind the table."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks"))

from stats import Figure, differences, percentile, ratios, results_markdown  # noqa: E402

FIGURE_KEYS = {
    "bpf_load_births_s",
    "bpf_load_runqlat_s",
    "syscall_ns_bare",
    "syscall_ns_added_idle",
    "syscall_ns_added_idle_wall",
    "syscall_ns_floor",
    "syscall_ns_above_floor",
    "syscall_ratio_idle",
    "syscall_ns_added_births",
    "ctxswitch_ns_bare",
    "ctxswitch_ratio",
    "nginx_rps_off",
    "nginx_rps_ratio",
    "nginx_p99_us",
    "births_captured",
    "births_latency_ms",
    "births_lag_ms",
    "agent_rss_low",
    "agent_cpu_low",
    "agent_rss_high",
    "agent_cpu_high",
    "webhook_signals_per_s",
    "webhook_latency_ms",
    "webhook_cpu_per_signal",
    "webhook_lost",
}


def test_ratios_pair_rounds_in_order() -> None:
    spread = ratios([2.0, 3.0, 4.0], [1.0, 2.0, 2.0])
    assert (spread.median, spread.low, spread.high, spread.rounds) == (2.0, 1.5, 2.0, 3)
    assert differences([5.0, 7.0], [4.0, 4.0]).median == 2.0
    with pytest.raises(ValueError, match="as many"):
        ratios([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="at least one"):
        differences([], [])


def test_percentile_is_nearest_rank() -> None:
    values = list(range(1, 101))
    assert percentile(values, 0.5) == 50
    assert percentile(values, 0.99) == 99
    assert percentile(values, 1.0) == 100
    assert percentile([7.0], 0.99) == 7.0
    with pytest.raises(ValueError, match="no values"):
        percentile([], 0.5)


def test_results_table_lists_each_figure_and_its_key() -> None:
    text = results_markdown(
        [Figure("a_key", "a name", "1.0", "how a"), Figure("b_key", "b name", "2 ms", "how b")],
        "2 CPUs",
        "sudo benchmarks/run",
        "busy",
    )
    assert "| a name | 1.0 | how a |" in text
    assert "| b name | 2 ms | how b |" in text
    assert "figure keys: a_key, b_key" in text


@pytest.mark.slow
@pytest.mark.kernel
def test_quick_run_produces_every_figure(kernel_prereqs: None, tmp_path: Path) -> None:
    output = tmp_path / "RESULTS.md"
    result = subprocess.run(
        [str(REPO / "benchmarks" / "run"), "--quick", "--output", str(output)],
        capture_output=True,
        text=True,
        timeout=1200,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    text = output.read_text()
    keys = set(re.search(r"figure keys: (.*) -->", text).group(1).split(", "))  # type: ignore[union-attr]
    assert keys == FIGURE_KEYS
    rows = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) == len(FIGURE_KEYS) + 1  # and the header
    for row in rows[1:]:
        value = row.split(" | ")[1]
        assert re.search(r"\d", value), row  # a measured number in every row
    captured, wanted = re.search(r"births storm: certificates \| (\d+)/(\d+)", text).groups()  # type: ignore[union-attr]
    assert captured == wanted  # every birth of the storm got its certificate
    assert re.search(r"webhook signals lost \| 0 of", text)
