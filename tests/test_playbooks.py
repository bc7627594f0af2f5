"""lab.yml: syntax-check for every provider and state, ansible-lint's production profile,
and, on this host, the local provider end to end (up, idempotent, torn down clean)."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import Require

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
LINTED = ["lab.yml", "playbooks/"]
PROVIDERS = ["local", "kind", "gke"]
DEMO_PODS = {"nginx-monitored", "cpu-stress"}


def run(command: list[str], cwd: Path = REPO, timeout: float = 300, **env: str) -> Any:
    return subprocess.run(
        command,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
        env={**os.environ, **env},
    )


@pytest.mark.parametrize("state", ["present", "absent"])
@pytest.mark.parametrize("provider", PROVIDERS)
def test_playbook_passes_syntax_check(provider: str, state: str) -> None:
    """The roles are imported statically, so their tasks are parsed too."""
    result = run(
        [
            str(BIN / "ansible-playbook"),
            "--syntax-check",
            "lab.yml",
            "-e",
            f"provider={provider}",
            "-e",
            f"state={state}",
        ]
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_syntax_check_reads_the_roles_tasks(tmp_path: Path) -> None:
    tree = copy_playbooks(tmp_path)
    tasks = tree / "playbooks" / "roles" / "demo" / "tasks" / "main.yml"
    tasks.write_text(tasks.read_text() + "\n- name: Broken\n  not_a_keyword: true\n")
    result = run([str(BIN / "ansible-playbook"), "--syntax-check", "lab.yml"], cwd=tree)
    assert result.returncode != 0


def lint(cwd: Path) -> Any:
    return run([str(BIN / "ansible-lint"), *LINTED], cwd=cwd, NO_COLOR="1")


def test_ansible_lint_production_profile_passes() -> None:
    """Profile and offline mode come from .ansible-lint."""
    result = lint(REPO)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Profile 'production' was required, and it passed" in result.stdout + result.stderr


def copy_playbooks(tmp_path: Path) -> Path:
    tree = tmp_path / "repo"
    tree.mkdir()
    for name in ("lab.yml", "ansible.cfg", ".ansible-lint", "pyproject.toml"):
        shutil.copy2(REPO / name, tree / name)
    shutil.copytree(REPO / "playbooks", tree / "playbooks")
    return tree


def test_ansible_lint_refuses_a_command_that_always_reports_changed(tmp_path: Path) -> None:
    tree = copy_playbooks(tmp_path)
    tasks = tree / "playbooks" / "roles" / "lab" / "tasks" / "main.yml"
    tasks.write_text(
        tasks.read_text() + "\n- name: Say hello\n  ansible.builtin.command: echo hello\n"
    )
    result = lint(tree)
    assert result.returncode != 0
    assert "no-changed-when" in result.stdout + result.stderr


# --- the local provider, end to end ---------------------------------------------------


def playbook(*extra: str) -> dict[str, Any]:
    """One run of lab.yml with the json callback: every task's result, and the stats."""
    result = run(
        [str(BIN / "ansible-playbook"), "lab.yml", *extra],
        timeout=1800,
        ANSIBLE_STDOUT_CALLBACK="ansible.posix.json",
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    report: dict[str, Any] = json.loads(result.stdout)
    return report


def shown(report: dict[str, Any], task_name: str) -> dict[str, Any]:
    for play in report["plays"]:
        for task in play["tasks"]:
            if task["task"]["name"] == f"demo : {task_name}":
                message: dict[str, Any] = task["hosts"]["localhost"]["msg"]
                return message
    raise AssertionError(f"task {task_name!r} did not run")


def host_traces() -> dict[str, set[str]]:
    """What a lab leaves on a host: processes, cgroups, mounts (network namespaces are
    nsfs mounts), network interfaces (bridges, veths)."""
    processes = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            if any(
                word in cmdline
                for word in (
                    "containerd",
                    "etcd",
                    "apiserver",
                    "kernel-gossip",
                    "nginx",
                    "pause",
                    "while :",
                )
            ):
                processes.add(f"{proc.name} {cmdline.strip()}")
    cgroups = {
        str(path)
        for controller in Path("/sys/fs/cgroup").iterdir()
        for path in controller.rglob("*")
        if path.is_dir()
    }
    mounts = {line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()}
    interfaces = {path.name for path in Path("/sys/class/net").iterdir()}
    return {"processes": processes, "cgroups": cgroups, "mounts": mounts, "interfaces": interfaces}


def throttled_share(cgroup_path: str, seconds: float = 2.0) -> float:
    """Ground truth: the share of CFS periods the kernel throttled in a window (cpu.stat)."""
    stat = Path("/sys/fs/cgroup/cpu") / cgroup_path.lstrip("/") / "cpu.stat"

    def read() -> dict[str, int]:
        return {k: int(v) for k, v in (line.split() for line in stat.read_text().splitlines())}

    before = read()
    time.sleep(seconds)
    after = read()
    periods = after["nr_periods"] - before["nr_periods"]
    assert periods > 0, f"no CFS period elapsed in {stat}"
    return (after["nr_throttled"] - before["nr_throttled"]) / periods


@pytest.mark.slow
@pytest.mark.kernel
def test_local_lab_comes_up_idempotent_and_goes_away_clean(
    require: Require, kernel_prereqs: None
) -> None:
    require(os.geteuid() == 0, "the local lab runs as root")
    playbook("-e", "state=absent")
    before = host_traces()

    first = playbook()
    whisper = shown(first, "Show the KernelWhisper")
    certificate = shown(first, "Show the PodBirthCertificate")
    assert whisper["kind"] == "KernelWhisper"
    assert whisper["spec"]["podName"] in DEMO_PODS
    truth = whisper["spec"]["kernelTruth"]
    assert truth["nrPeriods"] > 0
    if whisper["spec"]["podName"] == "cpu-stress":
        # two busy loops under 200m: the kernel throttles most periods, then and now
        assert truth["throttledPercent"] > 50
        assert throttled_share(truth["cgroupPath"]) > 0.5
    assert whisper["status"]["severity"] in {"info", "warning", "critical"}
    assert certificate["kind"] == "PodBirthCertificate"
    assert certificate["spec"]["podName"] in DEMO_PODS
    assert certificate["spec"]["totalSyscalls"] > 0

    second = playbook()
    assert second["stats"]["localhost"]["changed"] == 0, "a second run changed something"

    playbook("-e", "state=absent")
    after = host_traces()
    for kind, traces in after.items():
        assert traces <= before[kind], f"{kind} left behind: {sorted(traces - before[kind])}"
