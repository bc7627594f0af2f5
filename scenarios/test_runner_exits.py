"""`kernel-gossip scenario run` exit codes: 2 and one line for a bad spec (no cluster is
touched), 1 with the measured figure for an expectation that cannot hold."""

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kernel_gossip.scenarios.cluster import Cluster

CLI = str(Path(sys.executable).with_name("kernel-gossip"))
HERE = Path(__file__).resolve().parent
MANIFESTS = HERE / "manifests"
# Both figures are percentages, so the kernel's throttled % cannot exceed the reported % of
# the limit by more than 100 points. (Agreement "within 0 points" is no such bound: a busy
# loop is throttled in every period, and the CR then equals cpu.stat exactly.)
IMPOSSIBLE_LIE_POINTS = 101


def spec(tmp_path: Path, body: dict[str, object]) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(body))
    return path


def good(manifests: list[str]) -> dict[str, object]:
    return {
        "name": "exits",
        "description": "exit codes",
        "workload": {
            "manifests": manifests,
            "ready": [{"pod": "busy-spin", "namespace": "kernel-gossip"}],
        },
        "load": {
            "kind": "webhook",
            "users": 1,
            "spawnRate": 1,
            "durationSeconds": 12,
            "settleSeconds": 8,
        },
        "expect": [
            {
                "kernelWhisper": {"pod": "busy-spin", "namespace": "kernel-gossip"},
                "liesBy": IMPOSSIBLE_LIE_POINTS,
            }
        ],
    }


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [CLI, "scenario", "run", *args], capture_output=True, text=True, timeout=900
    )


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda s: s["workload"].update(manifest=[]), r"workload\.manifest: unknown key"),
        (
            lambda s: s["workload"].update(manifests=["../nowhere.yaml"]),
            r"workload\.manifests\[0\]: no such file \.\./nowhere\.yaml",
        ),
        (lambda s: s["load"].update(kind="stampede"), r"load\.kind: unknown kind 'stampede'"),
        (
            lambda s: s["expect"][0].update(throttledPercentWithin="two"),
            r"expect\[0\]\.throttledPercentWithin: ",
        ),
    ],
    ids=["wrong-key", "missing-manifest", "unknown-load-kind", "bad-value"],
)
def test_bad_spec_exits_2_with_one_line_naming_the_key(
    tmp_path: Path, change: object, expected: str
) -> None:
    body = good([str(MANIFESTS / "busy-spin.yaml")])
    change(body)  # type: ignore[operator]
    result = run(str(spec(tmp_path, body)))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert re.search(expected, lines[0]), lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.slow
@pytest.mark.kernel
def test_impossible_expectation_exits_1_with_the_measured_figure(
    tmp_path: Path, cluster: Cluster
) -> None:
    """A lie of more than 100 points: the check runs on a real reading and cannot hold."""
    result = run(str(spec(tmp_path, good([str(MANIFESTS / "busy-spin.yaml")]))))
    assert result.returncode == 1, result.stderr[-2000:]
    (failure,) = [line for line in result.stderr.splitlines() if "FAIL" in line]
    assert re.search(
        r"kernel throttled % minus reported % of limit: measured -?\d+\.\d points "
        r"\(kernel \d+\.\d% throttled, (payload|metrics-api) \d+\.\d% of limit, at t=\+\d+\.\ds\)",
        failure,
    ), failure
    assert failure.endswith(f"bound >= {IMPOSSIBLE_LIE_POINTS} points")


@pytest.mark.slow
@pytest.mark.kernel
def test_a_lost_certificate_fails_with_the_count(
    tmp_path: Path, cluster: Cluster, require: object
) -> None:
    """count 51 for 50 pods: exit 1 naming how many certificates there were."""
    storm = yaml.safe_load((HERE / "specs" / "pod-storm.yaml").read_text())
    storm["load"]["template"] = str(MANIFESTS / "birth-pod.yaml")
    storm["load"]["count"] = 5
    storm["load"]["settleSeconds"] = 45
    storm["expect"] = [
        {"birthCertificates": {"namespace": "default", "namePrefix": "birth-"}, "count": 6}
    ]
    result = run(str(spec(tmp_path, storm)))
    if result.returncode == 2 and "requires kubelet" in result.stderr:
        require(False, result.stderr.strip().splitlines()[-1])  # type: ignore[operator]
    assert result.returncode == 1, result.stderr[-2000:]
    (failure,) = [line for line in result.stderr.splitlines() if "FAIL" in line]
    assert re.search(r"count: measured \d+ of 5 pods created, bound == 6", failure), failure
