"""The lab's kubelet on a real node (API server, containerd, kubelet), driven by kubectl as a
user drives a cluster. Ground truth is the host (cgroups, /proc, HTTP from the pod IP,
/proc/meminfo) and the runtime's own records, not the statuses the kubelet writes.
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from timestamps import parse_time

from kernel_gossip.cri import CriClient
from kernel_gossip.kube.client import KubeClient
from kernel_gossip.lab import containerd, stack
from kernel_gossip.lab.stack import LabNode

pytestmark = [pytest.mark.slow]

CLI = str(Path(sys.executable).with_name("kernel-gossip"))
CPU = Path("/sys/fs/cgroup/cpu")


def kubectl(node: LabNode, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(node.kubectl), "--kubeconfig", str(node.kubeconfig), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    return result.stdout


def pod(node: LabNode, name: str, namespace: str = "default") -> dict[str, Any] | None:
    result = kubectl(node, "get", "pod", name, "-n", namespace, "-o", "json")
    if result.returncode != 0:
        assert "NotFound" in result.stderr, result.stderr
        return None
    found: dict[str, Any] = json.loads(result.stdout)
    return found


def wait_for(what: str, check: Callable[[], Any], timeout: float = 180.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.3)
    raise AssertionError(f"timed out waiting for {what}")


def running(node: LabNode, name: str, namespace: str = "default") -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        found = pod(node, name, namespace)
        statuses = (found or {}).get("status", {}).get("containerStatuses", [])
        ready = statuses and all(s["ready"] for s in statuses)
        return found if found and found["status"].get("phase") == "Running" and ready else None

    result: dict[str, Any] = wait_for(f"{namespace}/{name} running", check)
    return result


def pod_cgroups(uid: str) -> list[Path]:
    """The pod's cgroup in every hierarchy, at each QoS level (named, not walked: a
    recursive glob races with other pods' cgroups going away)."""
    return [
        path
        for hierarchy in Path("/sys/fs/cgroup").iterdir()
        for level in ("", "burstable/", "besteffort/")
        if (path := hierarchy / f"kubepods/{level}pod{uid}").is_dir()
    ]


def processes_of(uid: str) -> list[int]:
    """Live processes whose cgroup names the pod (zombies only wait for their parent)."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit() or uid not in (proc / "cgroup").read_text():
                continue
            if (proc / "stat").read_text().rpartition(")")[2].split()[0] != "Z":
                found.append(int(proc.name))
        except OSError:
            continue
    return found


def http_get(url: str, timeout: float = 30.0) -> tuple[int, str]:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, response.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def sandboxes_and_containers(node: LabNode) -> dict[str, list[str]]:
    """Per pod UID, the IDs of the containers the runtime holds (sandbox labels)."""
    with CriClient(node.socket) as cri:
        found: dict[str, list[str]] = {}
        for sandbox in cri.list_pod_sandboxes():
            found.setdefault(sandbox.uid, []).extend(c.id for c in cri.list_containers(sandbox.id))
    return found


# --- the Node -----------------------------------------------------------------------------


def test_the_node_is_registered_ready_with_the_hosts_capacity(lab_node: LabNode) -> None:
    name = stack.node_name()
    node = json.loads(ok(kubectl(lab_node, "get", "node", name, "-o", "json")))
    capacity = node["status"]["capacity"]
    assert capacity["cpu"] == str(os.cpu_count())
    mem_total_kib = next(
        line.split()[1]
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    assert capacity["memory"] == f"{mem_total_kib}Ki"
    assert node["status"]["allocatable"]["memory"] == f"{int(mem_total_kib) - 100 * 1024}Ki"
    ready = next(c for c in node["status"]["conditions"] if c["type"] == "Ready")
    assert (ready["status"], ready["reason"]) == ("True", "KubeletReady")
    info = node["status"]["nodeInfo"]
    assert info["kernelVersion"] == os.uname().release
    assert info["containerRuntimeVersion"].startswith("containerd://1.")
    assert info["bootID"] == Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    assert node["metadata"]["labels"]["kubernetes.io/hostname"] == name

    def fresher() -> bool:
        again = json.loads(ok(kubectl(lab_node, "get", "node", name, "-o", "json")))
        beat = next(c for c in again["status"]["conditions"] if c["type"] == "Ready")
        return parse_time(beat["lastHeartbeatTime"]) > parse_time(ready["lastHeartbeatTime"])

    wait_for("a newer heartbeat", fresher, timeout=60)
    listed = ok(kubectl(lab_node, "get", "nodes"))
    assert name in listed
    assert "Ready" in listed


# --- kubectl run / delete -----------------------------------------------------------------


def test_kubectl_run_nginx_runs_with_an_ip_answering_http(lab_node: LabNode) -> None:
    ok(kubectl(lab_node, "run", "web", "--image=nginx", "--restart=Always"))
    try:
        stored = running(lab_node, "web")
        uid, status = stored["metadata"]["uid"], stored["status"]
        assert stored["spec"]["nodeName"] == stack.node_name()  # bound by the kubelet
        status_code, body = http_get(f"http://{status['podIP']}/")
        assert (status_code, "Welcome to nginx!" in body) == (200, True)
        (container,) = status["containerStatuses"]
        container_id = container["containerID"].removeprefix("containerd://")
        assert container["containerID"] == f"containerd://{container_id}"
        assert container["image"] == "docker.io/library/nginx:latest"
        assert container["imageID"].startswith("sha256:")
        assert container["restartCount"] == 0
        assert status["qosClass"] == "BestEffort"
        conditions = {c["type"]: c["status"] for c in status["conditions"]}
        for kind in ("PodScheduled", "Initialized", "ContainersReady", "Ready"):
            assert conditions[kind] == "True", kind
        # The host's side: nginx runs in kubepods/besteffort/pod<uid>/<container id>.
        path = CPU / "kubepods" / "besteffort" / f"pod{uid}" / container_id
        pids = [int(p) for p in (path / "cgroup.procs").read_text().split()]
        assert any(Path(f"/proc/{p}/comm").read_text().strip() == "nginx" for p in pids)
        wide = ok(kubectl(lab_node, "get", "pods", "-o", "wide"))
        assert status["podIP"] in wide
        # The talk's client: curlimages/curl, its arguments handed to curl by its entrypoint.
        url = f"http://{status['podIP']}/"
        ok(
            kubectl(
                lab_node,
                "run",
                "fetch",
                "--image=curlimages/curl",
                "--restart=Never",
                "--",
                "-s",
                url,
            )
        )
        fetched = wait_for(
            "fetch Succeeded",
            lambda: (p := pod(lab_node, "fetch")) and p["status"].get("phase") == "Succeeded" and p,
            timeout=600,  # the first use builds the curl image (debootstrap)
        )
        assert _container(fetched)["image"] == "docker.io/curlimages/curl:latest"
        log_dir = lab_node.lab / "pod-logs" / f"default_fetch_{fetched['metadata']['uid']}"
        assert "Welcome to nginx!" in (log_dir / "fetch" / "0.log").read_text()
    finally:
        kubectl(lab_node, "delete", "pod", "fetch", "--wait=true")
        kubectl(lab_node, "delete", "pod", "web", "--wait=true")
    assert pod(lab_node, "web") is None
    assert pod_cgroups(uid) == []


IGNORES_SIGTERM = """\
apiVersion: v1
kind: Pod
metadata: {name: stubborn}
spec:
  terminationGracePeriodSeconds: 4
  containers:
    - name: sleeper
      image: busybox:1.36
      command: [sleep, "3600"]
"""


def test_kubectl_delete_waits_the_grace_then_kills_and_leaves_nothing(
    lab_node: LabNode, tmp_path: Path
) -> None:
    """PID 1 `sleep` ignores SIGTERM: only SIGKILL at the end of the grace stops it."""
    (tmp_path / "pod.yaml").write_text(IGNORES_SIGTERM)
    ok(kubectl(lab_node, "apply", "-f", str(tmp_path / "pod.yaml")))
    uid = running(lab_node, "stubborn")["metadata"]["uid"]
    assert processes_of(uid)
    started = time.monotonic()
    ok(kubectl(lab_node, "delete", "pod", "stubborn", "--wait=true", timeout=120))
    elapsed = time.monotonic() - started
    assert elapsed >= 4 - 0.5  # the grace was given, though SIGTERM did nothing
    assert pod(lab_node, "stubborn") is None
    assert pod_cgroups(uid) == []
    assert processes_of(uid) == []
    assert uid not in sandboxes_and_containers(lab_node)


# --- restart policies ---------------------------------------------------------------------

CRASHER = """\
apiVersion: v1
kind: Pod
metadata: {{name: {name}}}
spec:
  restartPolicy: {policy}
  terminationGracePeriodSeconds: 1
  containers:
    - name: crash
      image: busybox
      command: [sh, -c]
      args: ["echo $GREETING; exit 1"]
      env: [{{name: GREETING, value: started}}]
"""


def _container(stored: dict[str, Any] | None) -> dict[str, Any]:
    statuses = (stored or {}).get("status", {}).get("containerStatuses", [{}])
    return dict(statuses[0])


def test_exit_1_under_always_crash_loops_with_a_rising_restart_count(
    lab_node: LabNode, tmp_path: Path
) -> None:
    (tmp_path / "pod.yaml").write_text(CRASHER.format(name="crash-always", policy="Always"))
    ok(kubectl(lab_node, "apply", "-f", str(tmp_path / "pod.yaml")))
    try:

        def backing_off() -> dict[str, Any] | None:
            container = _container(pod(lab_node, "crash-always"))
            waiting = container.get("state", {}).get("waiting", {})
            return container if waiting.get("reason") == "CrashLoopBackOff" else None

        first = wait_for("CrashLoopBackOff", backing_off, timeout=120)
        assert (
            "back-off 10s restarting failed container=crash" in first["state"]["waiting"]["message"]
        )
        assert first["lastState"]["terminated"]["exitCode"] == 1
        assert first["lastState"]["terminated"]["reason"] == "Error"
        later = wait_for(
            "a restart after the back-off",
            lambda: (c := backing_off()) and c["restartCount"] > first["restartCount"] and c,
            timeout=120,
        )
        # The kubelet's back-off doubles from 10 s with each restart, capped at 5 minutes.
        doublings = later["restartCount"] - first["restartCount"]
        delay = min(10 * 2**doublings, 300)
        assert f"back-off {delay}s restarting" in later["state"]["waiting"]["message"], later
        assert pod(lab_node, "crash-always")["status"]["phase"] == "Running"  # type: ignore[index]
        # The runtime's truth: each start is a container of its own, numbered by restart.
        uid = pod(lab_node, "crash-always")["metadata"]["uid"]  # type: ignore[index]
        log_dir = lab_node.lab / "pod-logs" / f"default_crash-always_{uid}" / "crash"
        logs = sorted(int(p.stem) for p in log_dir.glob("*.log"))
        assert logs[-1] == later["restartCount"]
        assert "started" in (log_dir / f"{logs[-1]}.log").read_text()
        # The files sit where the API server serves pods/log from: kubectl logs reads them.
        assert ok(kubectl(lab_node, "logs", "crash-always")).strip() == "started"
        assert ok(kubectl(lab_node, "logs", "crash-always", "--previous")).strip() == "started"
    finally:
        ok(kubectl(lab_node, "delete", "pod", "crash-always", "--wait=true"))


def test_exit_1_under_never_is_failed_with_exit_code_1(lab_node: LabNode, tmp_path: Path) -> None:
    (tmp_path / "pod.yaml").write_text(CRASHER.format(name="crash-never", policy="Never"))
    ok(kubectl(lab_node, "apply", "-f", str(tmp_path / "pod.yaml")))
    try:
        stored = wait_for(
            "phase Failed",
            lambda: (
                (p := pod(lab_node, "crash-never")) and p["status"].get("phase") == "Failed" and p
            ),
        )
        container = _container(stored)
        assert container["state"]["terminated"]["exitCode"] == 1
        assert container["state"]["terminated"]["reason"] == "Error"
        assert container["restartCount"] == 0
        time.sleep(3)  # nothing restarts it
        assert _container(pod(lab_node, "crash-never"))["restartCount"] == 0
        uid = stored["metadata"]["uid"]
        assert len(sandboxes_and_containers(lab_node)[uid]) == 1
    finally:
        ok(kubectl(lab_node, "delete", "pod", "crash-never", "--wait=true"))


# --- images -----------------------------------------------------------------------------


def test_an_unknown_image_gets_err_image_pull_then_image_pull_backoff(lab_node: LabNode) -> None:
    """Every status the kubelet writes is seen through a watch (ErrImagePull lasts ~1 s)."""
    client = KubeClient(lab_node.kubeconfig)
    version = client.request("GET", "/api/v1/namespaces/default/pods")["metadata"][
        "resourceVersion"
    ]
    reasons: list[str] = []
    messages: dict[str, str] = {}

    def watch() -> None:
        for event in client.watch("/api/v1/namespaces/default/pods", version, 90):
            item = event["object"]
            if item.get("metadata", {}).get("name") != "cache":
                continue
            waiting = _container(item).get("state", {}).get("waiting", {})
            if waiting.get("reason") and waiting["reason"] not in reasons[-1:]:
                reasons.append(waiting["reason"])
                messages[waiting["reason"]] = waiting.get("message", "")
            if waiting.get("reason") == "ImagePullBackOff":
                return

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    ok(kubectl(lab_node, "run", "cache", "--image=redis:7"))
    try:
        watcher.join(timeout=90)
        assert reasons[-2:] == ["ErrImagePull", "ImagePullBackOff"], reasons
        pulled = messages["ErrImagePull"]
        assert "image 'redis:7' is not in the lab and cannot be pulled" in pulled
        assert "nginx" in pulled
        assert "curlimages/curl" in pulled
        assert (
            messages["ImagePullBackOff"]
            == f'Back-off pulling image "redis:7": ErrImagePull: {pulled}'
        )
        assert pod(lab_node, "cache")["status"]["phase"] == "Pending"  # type: ignore[index]
    finally:
        ok(kubectl(lab_node, "delete", "pod", "cache", "--wait=true"))


# --- a kubelet restart --------------------------------------------------------------------

SLEEPERS = "".join(
    f"""---
apiVersion: v1
kind: Pod
metadata: {{name: sleeper-{index}, namespace: restart}}
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: sleep
      image: busybox:1.36
      command: [sleep, "3600"]
"""
    for index in range(6)
)


def test_a_sigkilled_kubelet_restarts_without_losing_or_doubling_a_pod(
    lab_node: LabNode, tmp_path: Path
) -> None:
    ok(kubectl(lab_node, "create", "namespace", "restart"))
    documents = SLEEPERS.split("---\n")[1:]
    (tmp_path / "five.yaml").write_text("---\n".join(documents[:5]))
    (tmp_path / "sixth.yaml").write_text(documents[5])
    ok(kubectl(lab_node, "apply", "-f", str(tmp_path / "five.yaml")))
    try:
        before = {f"sleeper-{i}": running(lab_node, f"sleeper-{i}", "restart") for i in range(5)}
        uids = {name: p["metadata"]["uid"] for name, p in before.items()}
        runtime_before = sandboxes_and_containers(lab_node)
        for uid in uids.values():
            assert len(runtime_before[uid]) == 1

        where = stack.stack_layout(lab_node.lab)
        pid = stack.running_pid(where, "kubelet")
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        wait_for("the kubelet gone", lambda: stack.running_pid(where, "kubelet") is None)
        # While it is down: a new pod is created, and one container dies.
        ok(kubectl(lab_node, "apply", "-f", str(tmp_path / "sixth.yaml")))
        victim = before["sleeper-4"]["status"]["containerStatuses"][0]["containerID"]
        with CriClient(lab_node.socket) as cri:
            victim_pid = cri.container_status(victim.removeprefix("containerd://")).pid
        assert victim_pid is not None
        os.kill(victim_pid, signal.SIGKILL)

        stack.up_node(lab_node.lab, print)
        running(lab_node, "sleeper-5", "restart")
        restarted = wait_for(
            "sleeper-4 restarted",
            lambda: _container(pod(lab_node, "sleeper-4", "restart")).get("restartCount") == 1,
        )
        assert restarted
        time.sleep(5)  # several relists and resyncs: nothing more may start
        runtime_after = sandboxes_and_containers(lab_node)
        for i in range(4):
            after = running(lab_node, f"sleeper-{i}", "restart")
            assert after["metadata"]["uid"] == uids[f"sleeper-{i}"]
            assert (
                after["status"]["containerStatuses"]
                == before[f"sleeper-{i}"]["status"]["containerStatuses"]
            )
            assert runtime_after[uids[f"sleeper-{i}"]] == runtime_before[uids[f"sleeper-{i}"]]
        assert len(runtime_after[uids["sleeper-4"]]) == 2  # the dead one and its successor
        listed = json.loads(ok(kubectl(lab_node, "get", "pods", "-n", "restart", "-o", "json")))
        assert sorted(p["metadata"]["name"] for p in listed["items"]) == [
            f"sleeper-{i}" for i in range(6)
        ]
        assert len({p["metadata"]["uid"] for p in listed["items"]}) == 6
    finally:
        names = [f"sleeper-{i}" for i in range(6)]
        kubectl(lab_node, "delete", "pod", *names, "-n", "restart", "--wait=true")
        kubectl(lab_node, "delete", "namespace", "restart", "--wait=false")


# --- a fast teardown ----------------------------------------------------------------------

FIFTY = "".join(
    f"""---
apiVersion: v1
kind: Pod
metadata: {{name: idle-{index:02d}}}
spec:
  containers:
    - name: sleep
      image: busybox
      command: [sleep, "3600"]
"""
    for index in range(50)
)


def test_lab_down_with_50_pods_leaves_nothing(tmp_path: Path, require: Any) -> None:
    """A node of its own. The figure is printed (timings belong in benchmarks, not here)."""
    lab = tmp_path / "lab"
    env = {**os.environ, "KERNEL_GOSSIP_LAB_DIR": str(lab)}
    try:
        kubeconfig, socket = stack.up_node(lab, print)
    except Exception as error:
        stack.down(lab, print)
        require(False, f"the lab's node did not come up: {error}")
        raise
    node = LabNode(lab.resolve(), kubeconfig, socket)
    network = json.loads(containerd.layout(lab).network_file.read_text())
    try:
        (tmp_path / "fifty.yaml").write_text(FIFTY)
        ok(kubectl(node, "apply", "-f", str(tmp_path / "fifty.yaml")))
        for index in range(50):
            running(node, f"idle-{index:02d}")
        uids = list(sandboxes_and_containers(node))
        assert len(uids) == 50
        assert all(processes_of(uid) for uid in uids)
        assert all(pod_cgroups(uid) for uid in uids)
        records = {p.stem for p in (lab / "pods" / "records").glob("*.json")}
        assert records == set(uids)  # what the teardown works from, in this lab's own dir
    except BaseException:
        stack.down(lab, print)
        raise
    started = time.monotonic()
    down = subprocess.run(
        [CLI, "lab", "down"], capture_output=True, text=True, env=env, timeout=900
    )
    took = time.monotonic() - started
    print(f"lab down with 50 busybox `sleep 3600` pods: {took:.1f} s", file=sys.__stderr__)
    assert down.returncode == 0, down.stderr
    assert [uid for uid in uids if pod_cgroups(uid) or processes_of(uid)] == []
    mounts = Path("/proc/self/mountinfo").read_text()
    assert str(lab.resolve()) not in mounts
    assert not any(uid in mounts for uid in uids)
    netns = containerd.layout(lab).state / "io.containerd.grpc.v1.cri" / "netns"
    assert not netns.is_dir() or list(netns.iterdir()) == []
    assert not Path(f"/sys/class/net/{network['bridge']}").exists()
    for proc in Path("/proc").iterdir():
        try:
            command = (proc / "cmdline").read_bytes() if proc.name.isdigit() else b""
        except OSError:
            continue
        assert str(lab.resolve()).encode() not in command, command
    assert not list((lab / "pods" / "records").glob("*.json"))
    assert list((lab / "pod-logs").glob("*")) == []
