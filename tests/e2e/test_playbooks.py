"""lab.yml: syntax-check for every provider and state, ansible-lint's production profile,
and, on this host, the local provider end to end (up, idempotent, torn down clean)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from cpu_stat_sampler import whisper_over_sampled_window
from lab_workloads import BURSTY_CONTAINER, bursty_pod

from conftest import Require

REPO = Path(__file__).resolve().parents[2]
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
    output = result.stdout + result.stderr
    assert "unexpected parameter type in action" in output, output  # the task, not the play
    assert "playbooks/roles/demo/tasks/main.yml" in output, output


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
    cgroups = {  # os.walk skips a cgroup removed while it walks (rglob raises)
        directory
        for controller in Path("/sys/fs/cgroup").iterdir()
        for directory, _, _ in os.walk(controller)
        if directory != str(controller)
    }
    mounts = {line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()}
    interfaces = {path.name for path in Path("/sys/class/net").iterdir()}
    return {"processes": processes, "cgroups": cgroups, "mounts": mounts, "interfaces": interfaces}


def lab_cli(*args: str) -> Any:
    """The playbook's lab (the default lab folder, as the local provider uses it)."""
    result = run([str(BIN / "kernel-gossip"), *args], timeout=600)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout) if "--json" in args else result.stdout


def read_whisper(name: str) -> dict[str, Any] | None:
    status = lab_cli("lab", "status", "--json")
    kubectl = Path(status["kubeconfig"]).parent / "bin" / "kubectl"
    result = run(
        [
            *(str(kubectl), "--kubeconfig", status["kubeconfig"], "get", "kernelwhispers", name),
            *("--namespace", "kernel-gossip", "--output", "json", "--ignore-not-found"),
        ]
    )
    assert result.returncode == 0, result.stderr
    whisper: dict[str, Any] | None = json.loads(result.stdout) if result.stdout.strip() else None
    return whisper


def container_cgroup(pod_name: str, container: str | None = None) -> str:
    """The cgroup of the pod's container of that name (or of its only container)."""
    pods = lab_cli("lab", "pods", "get", "--namespace", "kernel-gossip", "--json")
    containers = next(p for p in pods if p["name"] == pod_name)["containers"]
    (found,) = [c for c in containers if container in (None, c["name"])]
    cgroup: str = found["cgroup"]
    return cgroup


def assert_matches_cpu_stat(pod_name: str, container: str | None = None) -> dict[str, Any]:
    """The pod's next KernelWhisper against cpu.stat sampled over that whisper's window."""
    whisper, expected = whisper_over_sampled_window(
        container_cgroup(pod_name, container), lambda: read_whisper(f"{pod_name}-kw")
    )
    truth = whisper["spec"]["kernelTruth"]
    assert abs(truth["throttledPercent"] - expected.throttled_percent) <= 2.0, (truth, expected)
    assert truth["cpuUsageCores"] == pytest.approx(expected.usage_cores, rel=0.03, abs=0.005)
    return whisper


def apply_bursty_pod(folder: Path) -> str:
    manifest = folder / "bursty.yaml"
    manifest.write_text(yaml.safe_dump(bursty_pod("bursty", "kernel-gossip")))
    lab_cli("lab", "pods", "apply", "-f", str(manifest))
    return "bursty"


@pytest.mark.slow
@pytest.mark.kernel
def test_local_lab_comes_up_idempotent_and_goes_away_clean(
    require: Require, kernel_prereqs: None, tmp_path: Path
) -> None:
    require(os.geteuid() == 0, "the local lab runs as root")
    playbook("-e", "state=absent")
    before = host_traces()

    first = playbook()
    whisper = shown(first, "Show the KernelWhisper")
    certificate = shown(first, "Show the PodBirthCertificate")
    assert whisper["kind"] == "KernelWhisper"
    assert whisper["spec"]["podName"] in DEMO_PODS
    # The shown whisper is a past window; the next ones of cpu-stress (throttled while it
    # runs: an idle nginx-monitored is reported only when it is) and of a bursty pod are
    # compared with cpu.stat sampled over their own windows.
    assert_matches_cpu_stat("cpu-stress")
    bursty = assert_matches_cpu_stat(apply_bursty_pod(tmp_path), BURSTY_CONTAINER)
    throttled = bursty["spec"]["kernelTruth"]["throttledPercent"]
    assert 30 <= throttled <= 70, f"not bursty: {throttled:.1f}% of periods throttled"
    assert certificate["kind"] == "PodBirthCertificate"
    spec = certificate["spec"]
    assert spec["podName"] in DEMO_PODS
    assert spec["totalSyscalls"] == sum(step["count"] for step in spec["syscallTimeline"])
    assert spec["totalSyscalls"] >= sum(spec["syscalls"].values()) > 0
    assert {"mnt", "uts", "ipc", "pid"} <= set(spec["namespacesCreated"])  # runc, per pod spec
    assert spec["execs"] >= 2  # the sandbox's pause and the container's entrypoint
    assert any(step["name"].endswith("entrypoint-exec") for step in spec["syscallTimeline"])
    assert spec["mounts"] > 0
    assert spec["cgroupWrites"] > 0
    assert 0 < spec["durationMs"] < 60_000
    pods = lab_cli("lab", "pods", "get", "--namespace", "kernel-gossip", "--json")
    assert spec["podUid"] == next(p["uid"] for p in pods if p["name"] == spec["podName"])

    second = playbook()
    assert second["stats"]["localhost"]["changed"] == 0, "a second run changed something"

    playbook("-e", "state=absent")
    after = host_traces()
    for kind, traces in after.items():
        assert traces <= before[kind], f"{kind} left behind: {sorted(traces - before[kind])}"
