"""`kernel-gossip births` as a user runs it: one-line errors, JSON until Ctrl-C checked
against strace, and the certificates of a --duration window for the runtimes asked for."""

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from births_lab import (
    BIRTHS_CLI,
    CONTRACT_KEYS,
    BirthsCli,
    assert_consistent,
    assert_matches_strace,
    missing_tools,
    new_container,
    remove_pod_cgroups,
    run,
)

from conftest import Require
from kernel_gossip.schema.report import BirthsReport

CLI = BIRTHS_CLI


@pytest.mark.parametrize(
    ("arguments", "complaint"),
    [
        (["--duration", "0"], "must be within"),
        (["--duration", "soon"], "not a number of seconds"),
        (["--runtime"], "expected at least one argument"),
        (["--runtime", "/usr/sbin/runc"], "bad runtime name"),
        (["--runtime", "containerd-shim-runc-v2"], "longer than 15 characters"),
        (["--frobnicate"], "unrecognized arguments"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(arguments: list[str], complaint: str) -> None:
    result = subprocess.run(CLI + arguments, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert complaint in lines[0]
    assert "Traceback" not in result.stderr


@pytest.fixture
def cli_prereqs(kernel_prereqs: None, require: Require) -> None:
    missing = missing_tools()
    require(not missing, f"missing {', '.join(missing)}: run scripts/setup.sh")


@pytest.fixture
def pods() -> Iterator[list[str]]:
    created: list[str] = []
    yield created
    remove_pod_cgroups(created)


@pytest.mark.kernel
@pytest.mark.slow
def test_json_until_ctrl_c_matches_strace(
    cli_prereqs: None, pods: list[str], tmp_path: Path
) -> None:
    traced = new_container(tmp_path, "runc")
    untraced = new_container(tmp_path, "crun")
    pods.extend([traced.pod_uid, untraced.pod_uid])
    cli = BirthsCli(["--json"])
    try:
        cli.wait_for("watching container births")
        run([traced], traced=True)
        run([untraced], traced=False)
        cli.wait_for(f"born: runc {traced.container_id[:12]}")
        cli.wait_for(f"born: crun {untraced.container_id[:12]}")
        cli.process.send_signal(signal.SIGINT)
        stdout = cli.finish()
    finally:
        if cli.process.poll() is None:
            cli.process.kill()
    assert cli.process.returncode == 0
    document = json.loads(stdout)
    assert set(document) == {"births"}
    assert all(set(birth) == CONTRACT_KEYS for birth in document["births"])
    report = BirthsReport.model_validate(document)
    by_id = {birth.container_id: birth for birth in report.births}
    for container in (traced, untraced):
        assert_consistent(by_id[container.container_id], container)
    assert_matches_strace(by_id[traced.container_id], traced)


WINDOW_SECONDS = 60
"""Long enough for two container starts on a loaded host (0.8 s each when idle)."""


@pytest.mark.kernel
@pytest.mark.slow
def test_duration_window_certifies_only_the_runtimes_asked_for(
    cli_prereqs: None, pods: list[str], tmp_path: Path
) -> None:
    mine = new_container(tmp_path, "runc")
    other = new_container(tmp_path, "crun", pod_uid=mine.pod_uid)
    pods.append(mine.pod_uid)
    cli = BirthsCli(["--duration", str(WINDOW_SECONDS), "--runtime", "runc"])
    try:
        cli.wait_for(f"watching container births by runc for {WINDOW_SECONDS} s")
        watching_since = time.monotonic()
        run([mine, other], traced=False)
        started_in = time.monotonic() - watching_since
        stdout = cli.finish(timeout=WINDOW_SECONDS + 120)
    finally:
        if cli.process.poll() is None:
            cli.process.kill()
    assert cli.process.returncode == 0
    # Not a timing claim: a window the starts outlasted cannot hold their certificates.
    assert started_in < WINDOW_SECONDS, f"the starts took {started_in:.0f} s: host overloaded"
    assert f"Birth certificate: runc {mine.container_id[:12]}" in stdout
    assert mine.container_id in stdout
    assert "entrypoint-exec" in stdout
    assert other.container_id[:12] not in stdout  # crun was not asked for
    assert "Pods born" in stdout
    assert mine.pod_uid in stdout
