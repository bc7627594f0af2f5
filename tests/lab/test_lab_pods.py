"""Real pods on the lab's node (`lab pods` through the API server, run by the lab's
kubelet on its containerd), checked against the kernel and the host, not the CRI.

The cgroup files, /proc/PID/cgroup, HTTP from the pod's IP, mountinfo, /sys/class/net and
iptables are the ground truth; the CRI's own answers are only used to find things.
"""

import json
import os
import re
import signal
import subprocess
import sys
import time
import tomllib
import urllib.request
from pathlib import Path

import pytest

from kernel_gossip.core import podspec
from kernel_gossip.cri import CriClient
from kernel_gossip.lab import containerd, images, pods
from kernel_gossip.lab.containerd import LabContainerd
from kernel_gossip.lab.stack import LabNode
from kernel_gossip.paths import REPO_DIR

CGROUP = Path("/sys/fs/cgroup")
NGINX = REPO_DIR / "lab" / "pods" / "nginx-monitored.yaml"
BUSY_LOOP = REPO_DIR / "lab" / "pods" / "busy-loop.yaml"


def lab_pods(lab: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`kernel-gossip lab pods ...` on the lab in `lab` (as a user runs it; its API
    server is the lab's own, <lab>/api)."""
    env = os.environ | {"KERNEL_GOSSIP_LAB_DIR": str(lab)}
    return subprocess.run(
        [sys.executable, "-m", "kernel_gossip", "lab", "pods", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )


def renamed(manifest: Path, name: str, target: Path) -> Path:
    """The manifest with another pod name (tests sharing a containerd must not collide)."""
    text = manifest.read_text()
    old = podspec.parse_manifests(text, str(manifest))[0].metadata.name
    target.write_text(text.replace(f"name: {old}\n", f"name: {name}\n", 1))
    return target


def iptables_rules() -> str:
    """Every rule of every table, nft and legacy back ends, without counters."""
    rules = []
    for binary in ("iptables", "iptables-legacy"):
        for table in ("filter", "nat", "mangle", "raw"):
            result = subprocess.run(
                [binary, "-t", table, "-S"], capture_output=True, text=True, check=False
            )
            rules.append(f"{binary} {table}\n{result.stdout}")
    return "\n".join(rules)


def host_traces(lab: Path, uid: str, ids: list[str]) -> dict[str, list[str]]:
    """What a pod leaves on the host: cgroups naming its uid, processes in them, mounts
    and CNI results naming its sandbox or containers, network namespaces, veths, logs."""
    layout = containerd.layout(lab)
    network = json.loads(layout.network_file.read_text())
    netns_dir = layout.state / "io.containerd.grpc.v1.cri" / "netns"
    bridge_ports = Path(f"/sys/class/net/{network['bridge']}/brif")
    mountinfo = Path("/proc/self/mountinfo").read_text().splitlines()
    processes = []  # zombies excepted: dead, they only wait for their parent (or PID 1)
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit() or uid not in (proc / "cgroup").read_text():
                continue
            if (proc / "stat").read_text().rpartition(")")[2].split()[0] != "Z":
                processes.append(proc.name)
        except OSError:
            continue
    return {
        "cgroups": [
            str(path)
            for hierarchy in CGROUP.iterdir()
            for level in ("", "burstable/", "besteffort/")
            if (path := hierarchy / f"kubepods/{level}pod{uid}").is_dir()
        ],
        "processes": processes,
        "mounts": [line for line in mountinfo if any(i in line for i in ids)],
        "netns": [p.name for p in netns_dir.iterdir()] if netns_dir.is_dir() else [],
        "veths": [p.name for p in bridge_ports.iterdir()] if bridge_ports.is_dir() else [],
        "cni results": [p.name for p in Path("/var/lib/cni/results").glob("*") if ids[0] in p.name],
        "pod records and logs": [
            str(p)
            for folder in (lab / "pods" / "records", lab / "pod-logs")
            for p in folder.rglob("*")
            if uid in p.name
        ],
    }


def http_get(url: str, timeout: float = 30.0) -> tuple[int, str]:
    """GET, retried until the server listens (nginx may still be starting)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return response.status, response.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def cgroup_file(hierarchy: str, path: str, name: str) -> str:
    return (CGROUP / hierarchy / path.lstrip("/") / name).read_text().strip()


def proc_cgroup(pid: int, controller: str) -> str:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if controller in controllers.split(","):
            return path
    raise AssertionError(f"no {controller} line in /proc/{pid}/cgroup")


# --- pure: the rendered configuration -----------------------------------------------------


def test_containerd_config_is_toml_with_the_lab_paths_and_the_oom_setting(tmp_path: Path) -> None:
    where = containerd.layout(tmp_path)
    config = tomllib.loads(containerd.render_config(where, "localhost/kernel-gossip/pause:1"))
    assert config["root"] == str(tmp_path.resolve() / "containerd" / "root")
    assert config["state"] == str(where.state)
    assert config["grpc"]["address"] == str(where.socket)
    cri = config["plugins"]["io.containerd.grpc.v1.cri"]
    assert cri["restrict_oom_score_adj"] is True  # root lacks CAP_SYS_RESOURCE here
    assert cri["sandbox_image"] == "localhost/kernel-gossip/pause:1"
    assert cri["netns_mounts_under_state_dir"] is True
    assert cri["containerd"]["snapshotter"] == "overlayfs"
    assert cri["containerd"]["runtimes"]["runc"]["options"]["SystemdCgroup"] is False
    assert cri["cni"]["conf_dir"] == str(where.cni_conf_dir)


def test_cni_config_is_a_bridge_without_masquerade(tmp_path: Path) -> None:
    where = containerd.layout(tmp_path)
    network = containerd.PodNetwork("kg-12345678", "10.244.9.0/24")
    config = json.loads(containerd.render_cni(where, network))
    (bridge,) = config["plugins"]
    assert (bridge["type"], bridge["bridge"], bridge["ipMasq"]) == ("bridge", "kg-12345678", False)
    assert bridge["ipam"]["ranges"] == [[{"subnet": "10.244.9.0/24"}]]
    assert bridge["ipam"]["dataDir"] == str(where.ipam_dir)


ROUTES = """\
default via 192.0.2.1 dev eth0
10.244.77.0/24 dev kglab0 proto kernel scope link src 10.244.77.1 linkdown
192.0.2.0/24 dev eth0 proto kernel scope link src 192.0.2.2
"""


def test_routes_parse() -> None:
    assert containerd.parse_routes(ROUTES) == [
        ("default", "eth0"),
        ("10.244.77.0/24", "kglab0"),
        ("192.0.2.0/24", "eth0"),
    ]


def test_each_lab_directory_gets_its_own_stable_network() -> None:
    first = containerd.choose_network(Path("/a/.lab/containerd"), [])
    assert first == containerd.choose_network(Path("/a/.lab/containerd"), [])
    assert re.fullmatch(r"kg-[0-9a-f]{8}", first.bridge)
    assert re.fullmatch(r"10\.244\.\d+\.0/24", first.subnet)
    other = containerd.choose_network(Path("/b/.lab/containerd"), [])
    assert other.bridge != first.bridge


def test_a_subnet_routed_elsewhere_is_skipped_but_our_own_bridge_is_not() -> None:
    base = Path("/a/.lab/containerd")
    first = containerd.choose_network(base, [])
    taken = containerd.choose_network(base, [(first.subnet, "eth1")])
    assert taken.subnet != first.subnet
    assert containerd.choose_network(base, [(first.subnet, first.bridge)]) == first
    with pytest.raises(Exception, match="no room"):
        containerd.choose_network(base, [("10.0.0.0/8", "eth1")])


# --- the CLI's errors need no containerd ----------------------------------------------------


@pytest.mark.parametrize(
    ("manifest", "message"),
    [
        ("kind: Pod\n", "apiVersion: Field required"),
        (NGINX.read_text().replace("cpu: 500m", "cpu: lots"), "limits.cpu: not a quantity"),
        ("a: [\n", "not YAML"),
    ],
)
def test_apply_of_a_bad_manifest_is_one_line_and_exit_2(
    tmp_path: Path, manifest: str, message: str
) -> None:
    (tmp_path / "pod.yaml").write_text(manifest)
    result = lab_pods(tmp_path / "lab", "apply", "-f", str(tmp_path / "pod.yaml"))
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "lab").exists()  # nothing was started


def test_get_and_delete_without_a_running_lab(tmp_path: Path) -> None:
    listed = lab_pods(tmp_path, "get", "--json")
    assert (listed.returncode, json.loads(listed.stdout)) == (0, [])
    deleted = lab_pods(tmp_path, "delete", "web")
    assert deleted.returncode == 2
    assert "not running" in deleted.stderr
    assert len(deleted.stderr.strip().splitlines()) == 1
    unnamed = lab_pods(tmp_path, "delete")
    assert unnamed.returncode == 2
    assert "name the pods" in unnamed.stderr


# --- real pods ----------------------------------------------------------------------------


@pytest.mark.slow
def test_nginx_pod_runs_as_a_kubelet_runs_it_and_delete_leaves_nothing(
    lab_node: LabNode, tmp_path: Path
) -> None:
    lab = lab_node.lab
    rules_before = iptables_rules()
    manifest = renamed(NGINX, "nginx-acceptance", tmp_path / "nginx.yaml")

    applied = lab_pods(lab, "apply", "-f", str(manifest), "--json")
    assert applied.returncode == 0, applied.stderr
    (pod,) = json.loads(applied.stdout)
    uid, ip = pod["uid"], pod["podIP"]
    (container,) = pod["containers"]
    cid, pid = container["containerID"], container["pid"]
    pod_cgroup = f"/kubepods/burstable/pod{uid}"
    container_cgroup = f"{pod_cgroup}/{cid}"

    # The kernel's view: nginx runs in kubepods/burstable/pod<uid>/<cid> with 500m.
    assert Path(f"/proc/{pid}/comm").read_text().strip() == "nginx"
    assert proc_cgroup(pid, "cpu") == container_cgroup
    assert cgroup_file("cpu", container_cgroup, "cpu.cfs_quota_us") == "50000"
    assert cgroup_file("cpu", container_cgroup, "cpu.cfs_period_us") == "100000"
    assert cgroup_file("cpu", container_cgroup, "cpu.shares") == "512"
    assert cgroup_file("cpu", pod_cgroup, "cpu.cfs_quota_us") == "50000"  # the pod-level quota
    assert cgroup_file("cpu", pod_cgroup, "cpu.shares") == "512"
    assert Path(f"/proc/{pid}/oom_score_adj").read_text().strip() == "999"  # Burstable, no memory

    status, body = http_get(f"http://{ip}/")
    assert status == 200
    assert "Welcome to nginx!" in body

    # The CRI shows the kubelet's labels (what the agent maps containers with).
    with CriClient(lab_node.socket) as cri:
        (sandbox,) = cri.list_pod_sandboxes({podspec.POD_UID_LABEL: uid})
        (listed,) = cri.list_containers(sandbox.id)
    assert sandbox.labels == {
        "app": "nginx-monitored",
        "io.kubernetes.pod.name": "nginx-acceptance",
        "io.kubernetes.pod.namespace": "default",
        "io.kubernetes.pod.uid": uid,
    }
    assert listed.labels[podspec.CONTAINER_NAME_LABEL] == "nginx"
    assert listed.id == cid

    running = host_traces(lab, uid, [sandbox.id, cid])
    for kind in ("cgroups", "processes", "mounts", "netns", "veths", "cni results"):
        assert running[kind], f"a running pod should show {kind}: the check would be vacuous"

    deleted = lab_pods(lab, "delete", "nginx-acceptance")
    assert deleted.returncode == 0, deleted.stderr
    assert host_traces(lab, uid, [sandbox.id, cid]) == {kind: [] for kind in running}
    assert iptables_rules() == rules_before
    listed_after = lab_pods(lab, "get", "nginx-acceptance", "--json")
    assert listed_after.returncode == 2
    assert "no pod nginx-acceptance" in listed_after.stderr


@pytest.mark.slow
def test_busy_loop_is_held_to_its_200m_limit_by_the_kernel(
    lab_node: LabNode, tmp_path: Path
) -> None:
    manifest = renamed(BUSY_LOOP, "busy-loop-limit", tmp_path / "busy.yaml")
    applied = lab_pods(lab_node.lab, "apply", "-f", str(manifest), "--json")
    assert applied.returncode == 0, applied.stderr
    (view,) = json.loads(applied.stdout)
    try:
        (container,) = view["containers"]
        path = container["cgroup"]
        assert proc_cgroup(container["pid"], "cpu") == path
        assert cgroup_file("cpu", path, "cpu.cfs_quota_us") == "20000"
        assert cgroup_file("cpu", path, "cpu.shares") == "102"  # 100m requested
        assert cgroup_file("cpu", view["cgroupParent"], "cpu.cfs_quota_us") == "20000"

        def reading() -> tuple[dict[str, int], int]:
            stat = dict(
                (key, int(value))
                for key, value in (
                    line.split() for line in cgroup_file("cpu", path, "cpu.stat").splitlines()
                )
            )
            return stat, int(cgroup_file("cpuacct", path, "cpuacct.usage"))

        before, usage_before = reading()
        time.sleep(3)
        after, usage_after = reading()
        periods = after["nr_periods"] - before["nr_periods"]
        throttled = after["nr_throttled"] - before["nr_throttled"]
        assert periods > 0
        assert throttled > 0  # the loop wants a core and hits the quota
        # CFS never grants more than the quota per period (no burst configured).
        assert usage_after - usage_before <= (periods + 2) * 20_000 * 1000
    finally:
        deleted = lab_pods(lab_node.lab, "delete", "busy-loop-limit")
        assert deleted.returncode == 0, deleted.stderr


GUARANTEED = """\
apiVersion: v1
kind: Pod
metadata: {name: guaranteed-sleeper, namespace: lab-tests}
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: sleeper
      image: localhost/kernel-gossip/busybox:1
      command: [sleep, "3600"]
      resources: {limits: {cpu: 100m, memory: 32Mi}}
"""


@pytest.mark.slow
def test_guaranteed_pod_sits_under_kubepods_with_its_memory_limit(
    lab_node: LabNode, tmp_path: Path
) -> None:
    lab = lab_node.lab
    (tmp_path / "pod.yaml").write_text(GUARANTEED)
    created = subprocess.run(
        [
            str(lab_node.kubectl),
            "--kubeconfig",
            str(lab_node.kubeconfig),
            "create",
            "ns",
            "lab-tests",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert created.returncode == 0 or "AlreadyExists" in created.stderr, created.stderr
    applied = lab_pods(lab, "apply", "-f", str(tmp_path / "pod.yaml"), "--json")
    assert applied.returncode == 0, applied.stderr
    (pod,) = json.loads(applied.stdout)
    (container,) = pod["containers"]
    pod_cgroup = f"/kubepods/pod{pod['uid']}"
    path = f"{pod_cgroup}/{container['containerID']}"
    assert (pod["qosClass"], pod["cgroupParent"]) == ("Guaranteed", pod_cgroup)
    assert proc_cgroup(container["pid"], "memory") == path
    for level in (pod_cgroup, path):
        assert cgroup_file("memory", level, "memory.limit_in_bytes") == str(32 * 1024**2)
        assert cgroup_file("cpu", level, "cpu.cfs_quota_us") == "10000"
        assert cgroup_file("cpu", level, "cpu.shares") == "102"
    # The kubelet asks for -997; containerd, told to restrict, keeps it at its own (0 here).
    own = Path("/proc/self/oom_score_adj").read_text().strip()
    assert Path(f"/proc/{container['pid']}/oom_score_adj").read_text().strip() == own
    again = lab_pods(lab, "apply", "-f", str(tmp_path / "pod.yaml"))
    assert again.returncode == 2
    assert again.stderr.strip().endswith("already exists: delete it first")
    deleted = lab_pods(lab, "delete", "-f", str(tmp_path / "pod.yaml"))
    assert deleted.returncode == 0, deleted.stderr
    assert not list(CGROUP.glob(f"*{pod_cgroup}"))


@pytest.mark.slow
def test_an_image_the_lab_does_not_have_fails_apply_and_the_pod_is_removed(
    lab_node: LabNode, tmp_path: Path
) -> None:
    manifest = GUARANTEED.replace("localhost/kernel-gossip/busybox:1", "docker.io/library/redis:7")
    manifest = manifest.replace("namespace: lab-tests", "namespace: default")
    (tmp_path / "pod.yaml").write_text(manifest)
    result = lab_pods(lab_node.lab, "apply", "-f", str(tmp_path / "pod.yaml"))
    assert result.returncode == 2
    (line,) = [line for line in result.stderr.splitlines() if "error" in line]
    assert "ErrImagePull" in line or "ImagePullBackOff" in line
    assert "image 'docker.io/library/redis:7' is not in the lab and cannot be pulled" in line
    assert images.IMAGE_TABLE_SUMMARY in line
    listed = lab_pods(lab_node.lab, "get", "guaranteed-sleeper", "--json")
    assert listed.returncode == 2  # the pod that could not start was deleted again
    assert list((lab_node.lab / "pods" / "records").glob("*.json")) == [
        p
        for p in (lab_node.lab / "pods" / "records").glob("*.json")
        if "redis" not in p.read_text()
    ]


@pytest.mark.slow
@pytest.mark.parametrize("crash", [False, True], ids=["clean stop", "after a crash"])
def test_stopping_the_lab_containerd_leaves_nothing(
    lab_containerd: LabContainerd, tmp_path: Path, crash: bool
) -> None:
    """A second lab of its own (lab_containerd only vouches for the host): stopped with a
    pod still running, or after containerd was SIGKILLed, its shim, pause and container
    processes left orphaned."""
    lab = tmp_path / "lab"
    where = containerd.layout(lab)
    forward_before = Path("/proc/sys/net/ipv4/ip_forward").read_text()
    rules_before = iptables_rules()
    try:
        socket = containerd.start_containerd(lab, print)
        network = json.loads(where.network_file.read_text())
        manifest = renamed(BUSY_LOOP, "busy-stop", tmp_path / "busy.yaml")
        (pod,) = podspec.parse_manifests(manifest.read_text(), str(manifest))
        uid = "5f2c9d4e-1b3a-4c8d-9e7f-0a1b2c3d4e5f"
        with CriClient(socket) as cri:  # what the lab's kubelet does for one pod
            sandbox = pods.start_sandbox(pod, uid, cri, lab, lab / "pod-logs", 0)
            (container,) = pod.spec.containers
            image = pods.pull_image(container.image, cri, socket, print)
            container_id = pods.start_container(cri, pod, uid, sandbox, container, image, 0, lab)
        ids = [sandbox.record.sandbox_id or "", container_id]
        running = host_traces(lab, uid, ids)
        for kind in ("processes", "mounts", "veths", "netns"):
            assert running[kind], f"a running pod should show {kind}"
        if crash:
            os.kill(int(where.pid_file.read_text()), signal.SIGKILL)
    finally:
        containerd.stop_containerd(lab, print)
    assert containerd.running_pid(where) is None
    assert not [
        p
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and str(where.socket).encode() in _cmdline(p)
    ], "a shim of this lab survived"
    assert host_traces(lab, uid, ids) == {kind: [] for kind in running}
    mounts = Path("/proc/self/mountinfo").read_text().splitlines()
    assert [line for line in mounts if str(lab) in line] == []
    assert not Path(f"/sys/class/net/{network['bridge']}").exists()
    assert iptables_rules() == rules_before
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == forward_before


def _cmdline(proc: Path) -> bytes:
    try:
        return (proc / "cmdline").read_bytes()
    except OSError:
        return b""


@pytest.mark.slow
def test_pod_objects_are_what_the_kubelet_runs(lab_node: LabNode, tmp_path: Path) -> None:
    lab = lab_node.lab
    manifest = renamed(BUSY_LOOP, "busy-api", tmp_path / "busy.yaml")
    applied = lab_pods(lab, "apply", "-f", str(manifest), "--json")
    assert applied.returncode == 0, applied.stderr
    (pod,) = json.loads(applied.stdout)
    try:
        kubectl = [str(lab_node.kubectl), "--kubeconfig", str(lab_node.kubeconfig)]
        got = subprocess.run(
            [*kubectl, "get", "pod", "busy-api", "-o", "json"],
            capture_output=True,
            text=True,
            check=True,
        )
        stored = json.loads(got.stdout)
        # The API server gave the uid, and the pod's cgroup and CRI labels carry it.
        assert stored["metadata"]["uid"] == pod["uid"]
        assert pod["cgroupParent"] == f"/kubepods/burstable/pod{pod['uid']}"
        assert Path(CGROUP / "cpu" / pod["cgroupParent"].lstrip("/")).is_dir()
        with CriClient(lab_node.socket) as cri:
            (sandbox,) = cri.list_pod_sandboxes({podspec.POD_UID_LABEL: pod["uid"]})
            (listed,) = cri.list_containers(sandbox.id)
            detail = cri.pod_sandbox_status(sandbox.id)
        status = stored["status"]
        assert (status["phase"], status["podIP"], status["qosClass"]) == (
            "Running",
            detail.ip,
            "Burstable",
        )
        (container,) = status["containerStatuses"]
        assert container["containerID"] == f"containerd://{listed.id}"
        assert pod["containers"][0]["containerID"] == listed.id
        assert container["ready"] is True
        spec = stored["spec"]["containers"][0]
        assert spec["resources"] == {"limits": {"cpu": "200m"}, "requests": {"cpu": "100m"}}
    finally:
        deleted = lab_pods(lab, "delete", "busy-api")
    assert deleted.returncode == 0, deleted.stderr
    gone = lab_pods(lab, "get", "busy-api")
    assert gone.returncode == 2
    assert "no pod busy-api" in gone.stderr
