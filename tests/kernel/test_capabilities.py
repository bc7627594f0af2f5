"""The probes need exactly CAP_BPF and CAP_PERFMON (the agent's DaemonSet grants those two):
with both they measure, with either alone they fail with one line naming what is missing."""

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from births_lab import (
    BirthsCli,
    assert_consistent,
    missing_tools,
    new_container,
    remove_pod_cgroups,
    run,
)

from conftest import Require
from kernel_gossip.host.bpf import refusal
from kernel_gossip.host.cgroupfs import CgroupFs
from kernel_gossip.host.workload import BUSY_LOOP, CgroupWorkload
from kernel_gossip.schema.report import BirthsReport

CLI = str(Path(sys.executable).with_name("kernel-gossip"))


def test_refusal_names_the_capabilities() -> None:
    message = refusal(
        "runqlat.c",
        "Need super-user privileges to run",
        ["bpf: Failed to load program: Operation not permitted", ""],
    )
    assert "Operation not permitted" in message
    assert "CAP_BPF and CAP_PERFMON" in message


def test_refusal_of_a_compile_error_points_at_set_up() -> None:
    message = refusal("x.c", "Failed to compile BPF module x.c", ["x.c:3:1: error: bad"])
    assert "x.c:3:1: error: bad" in message
    assert "setup.sh" in message


def setpriv(capabilities: str) -> list[str]:
    return ["setpriv", f"--bounding-set=-all,{capabilities}", "--inh-caps=-all"]


def with_capabilities(capabilities: str, *args: str) -> subprocess.CompletedProcess[str]:
    command = [*setpriv(capabilities), CLI, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def limited(kernel_prereqs: None, require: Require) -> Iterator[CgroupWorkload]:
    require(os.geteuid() == 0 and shutil.which("setpriv") is not None, "root and setpriv")
    # 0.05 cores: a busy loop overruns its quota in most periods even on a loaded host.
    with CgroupWorkload(CgroupFs.detect(), f"/kernel-gossip-caps-{os.getpid()}", 0.05) as work:
        work.start(BUSY_LOOP)
        yield work
    assert work.leftovers() == [], "the workload's cgroup stayed"


@pytest.mark.kernel
def test_bpf_and_perfmon_are_enough(limited: CgroupWorkload) -> None:
    observed = with_capabilities(
        "+bpf,+perfmon", "observe", "--cgroup", limited.path, "--duration", "1", "--json"
    )
    assert observed.returncode == 0, observed.stderr
    (container,) = json.loads(observed.stdout)["containers"]
    assert container["nrPeriods"] > 0
    assert container["throttledPercent"] > 50


@pytest.mark.kernel
def test_bpf_and_perfmon_are_enough_to_certify_a_birth(
    limited: CgroupWorkload, require: Require, tmp_path: Path
) -> None:
    missing = missing_tools()
    require(not missing, f"missing {', '.join(missing)}: run scripts/setup.sh")
    container = new_container(tmp_path, "runc")
    births = BirthsCli(["--json", "--runtime", "runc"], prefix=setpriv("+bpf,+perfmon"))
    try:
        births.wait_for("watching container births")
        run([container], traced=False)
        births.wait_for(f"born: runc {container.container_id[:12]}")
        births.process.send_signal(signal.SIGINT)
        stdout = births.finish()
    finally:
        if births.process.poll() is None:
            births.process.kill()
        remove_pod_cgroups([container.pod_uid])
    assert births.process.returncode == 0, births.stderr
    (birth,) = BirthsReport.model_validate_json(stdout).births
    assert_consistent(birth, container)


@pytest.mark.kernel
@pytest.mark.parametrize("capabilities", ["+bpf", "+perfmon"])
@pytest.mark.parametrize("command", [["observe", "--all"], ["births"]])
def test_one_capability_alone_is_not(
    limited: CgroupWorkload, capabilities: str, command: list[str]
) -> None:
    result = with_capabilities(capabilities, *command, "--duration", "1")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "CAP_BPF and CAP_PERFMON" in lines[0]
