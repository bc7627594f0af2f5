"""`kernel-gossip lab up|down|status`: the whole single-node lab on this machine.

Up, in order: the lab API server (with the CRDs), containerd with CNI, the lab's kubelet
(this host as a Node, running the Pods the API server holds), the lab's controller-manager
(Deployments, ReplicaSets, garbage collection, HPAs), the operator (webhook on 127.0.0.1,
a token of its own), the agent (watching this node, reporting to that webhook) and the
metrics-server stand-in (the Metrics API, `kubectl top`). Each step is idempotent: what
runs already is kept. Down stops them in the reverse order and, being a teardown, removes
every pod at once (in parallel, no grace period) and their Pod objects; it leaves no
process, cgroup, netns or bridge behind. Kubelet, controller-manager, operator, agent and
metrics-server run detached, with pid and log files in the lab dir.
"""

import json
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kernel_gossip import Say, paths
from kernel_gossip.core import podmetrics, podstatus
from kernel_gossip.errors import UserError
from kernel_gossip.kube.client import ApiError, KubeClient, pod_path
from kernel_gossip.lab import apiserver, containerd, processes

OPERATOR_NAMESPACE = "kernel-gossip"
AGENT_INTERVAL_SECONDS = 5.0
START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 20.0
KERNEL_GOSSIP = str(Path(sys.executable).with_name("kernel-gossip"))


@dataclass(frozen=True)
class StackLayout:
    lab: Path

    @property
    def token(self) -> Path:
        return self.lab / "webhook-token"

    @property
    def ports(self) -> Path:
        return self.lab / "stack-ports.json"

    @property
    def spool(self) -> Path:
        return self.lab / "agent-spool"

    def pid_file(self, name: str) -> Path:
        return self.lab / f"{name}.pid"

    def log(self, name: str) -> Path:
        return self.lab / f"{name}.log"


def stack_layout(lab: Path | None = None) -> StackLayout:
    return StackLayout((lab or paths.lab_dir()).resolve())


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _ports(where: StackLayout) -> dict[str, int]:
    """The operator's and agent's ports, kept across runs so URLs stay the same."""
    try:
        known: dict[str, int] = json.loads(where.ports.read_text())
    except (FileNotFoundError, ValueError):
        known = {}
    for name in (
        "operator",
        "agentMetrics",
        "kubeletHealthz",
        "metricsServer",
        "controllerManagerHealthz",
    ):
        known.setdefault(name, _free_port())
    where.ports.write_text(json.dumps(known, allow_nan=False) + "\n")
    return known


def running_pid(where: StackLayout, name: str) -> int | None:
    """The pid in <name>.pid when that process is alive and is ours (it names the lab dir)."""
    return processes.running_pid(where.pid_file(name), str(where.lab))


def _spawn(where: StackLayout, name: str, command: list[str]) -> subprocess.Popen[bytes]:
    """Detached: it outlives `lab up`, and `lab down` stops it by pid."""
    return processes.spawn_detached(command, where.log(name), where.pid_file(name))


def _http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def _wait(
    where: StackLayout,
    name: str,
    process: subprocess.Popen[bytes],
    url: str,
    healthy: Callable[[int | None], bool],
) -> None:
    """Until `url` answers as `healthy`; fails with the log's tail if the process exits."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline and process.poll() is None:
        if healthy(_http_status(url)):
            return
        time.sleep(0.2)
    if process.poll() is None:
        process.terminate()
    log = where.log(name)
    tail = log.read_text(errors="replace").splitlines()[-5:] if log.exists() else []
    raise UserError(f"the lab's {name} did not come up ({url}): {' | '.join(tail) or 'no log'}")


def _ensure_running(
    where: StackLayout,
    name: str,
    url: str,
    command: list[str],
    healthy: Callable[[int | None], bool],
    say: Say,
    announce: str,
) -> str:
    """Start `name` unless it runs already, and wait until `url`/healthz answers healthy."""
    if running_pid(where, name) is None:
        say(announce)
        process = _spawn(where, name, command)
        _wait(where, name, process, f"{url}/healthz", healthy)
    return url


def _start_operator(where: StackLayout, kubeconfig: Path, port: int, say: Say) -> str:
    url = f"http://127.0.0.1:{port}"
    command = [
        KERNEL_GOSSIP,
        "operator",
        "--kubeconfig",
        str(kubeconfig),
        "--namespace",
        OPERATOR_NAMESPACE,
        "--webhook-host",
        "127.0.0.1",
        "--webhook-port",
        str(port),
        "--token-file",
        str(where.token),
    ]
    announce = f"starting the operator (webhook {url}, namespace {OPERATOR_NAMESPACE})"
    return _ensure_running(
        where, "operator", url, command, lambda status: status == 200, say, announce
    )


def _start_agent(
    where: StackLayout, operator_url: str, cri_socket: Path, port: int, say: Say
) -> str:
    url = f"http://127.0.0.1:{port}"
    command = [
        KERNEL_GOSSIP,
        "agent",
        "--operator-url",
        operator_url,
        "--token-file",
        str(where.token),
        "--interval",
        str(AGENT_INTERVAL_SECONDS),
        "--node",
        node_name(),
        "--spool-dir",
        str(where.spool),
        "--cri-socket",
        str(cri_socket),
        "--metrics-address",
        f"127.0.0.1:{port}",
    ]
    announce = f"starting the agent (every {AGENT_INTERVAL_SECONDS:g} s, metrics {url})"
    # /healthz answers 503 until the first window completes; any answer means it serves.
    return _ensure_running(
        where, "agent", url, command, lambda status: status is not None, say, announce
    )


def _start_kubelet(
    where: StackLayout, api: apiserver.LabApi, cri_socket: Path, port: int, say: Say
) -> str:
    url = f"http://127.0.0.1:{port}"
    command = [
        KERNEL_GOSSIP,
        "lab",
        "kubelet",
        "--kubeconfig",
        str(api.kubeconfig),
        "--cri-socket",
        str(cri_socket),
        "--pod-log-root",
        str(api.pod_log_root),  # where the API server reads pods/log from
        "--healthz-address",
        f"127.0.0.1:{port}",
        "--lab-dir",
        str(where.lab),
    ]
    announce = f"starting the kubelet (node {node_name()}, healthz {url})"
    return _ensure_running(
        where, "kubelet", url, command, lambda status: status == 200, say, announce
    )


def _start_controller_manager(where: StackLayout, kubeconfig: Path, port: int, say: Say) -> str:
    url = f"http://127.0.0.1:{port}"
    command = [
        KERNEL_GOSSIP,
        "lab",
        "controller-manager",
        "--kubeconfig",
        str(kubeconfig),
        "--healthz-address",
        f"127.0.0.1:{port}",
    ]
    announce = f"starting the controller-manager (healthz {url})"
    return _ensure_running(
        where, "controller-manager", url, command, lambda status: status == 200, say, announce
    )


def _start_metrics_server(
    where: StackLayout,
    kubeconfig: Path,
    cri_socket: Path,
    port: int,
    resolution_ns: int,
    say: Say,
) -> str:
    url = f"http://127.0.0.1:{port}"
    resolution = podmetrics.go_duration(resolution_ns)
    command = [
        KERNEL_GOSSIP,
        "lab",
        "metrics-server",
        "--kubeconfig",
        str(kubeconfig),
        "--cri-socket",
        str(cri_socket),
        "--node",
        node_name(),
        "--metric-resolution",
        resolution,
        "--health-address",
        f"127.0.0.1:{port}",
    ]
    announce = f"starting the metrics-server (every {resolution}, health {url})"
    # /healthz answers 503 until the first cycle completes; any answer means it serves.
    return _ensure_running(
        where, "metrics-server", url, command, lambda status: status is not None, say, announce
    )


def node_name() -> str:
    return podstatus.node_name(socket.gethostname())


def up_node(lab: Path | None = None, say: Say = print) -> tuple[Path, Path]:
    """The node and its control plane: API server, containerd, kubelet and controller-manager;
    (kubeconfig, CRI socket)."""
    where = stack_layout(lab)
    where.lab.mkdir(parents=True, exist_ok=True)
    ports = _ports(where)
    api = apiserver.start(api_dir(where), progress=say)
    socket_path = containerd.start_containerd(where.lab, say)
    _start_kubelet(where, api, socket_path, ports["kubeletHealthz"], say)
    _start_controller_manager(where, api.kubeconfig, ports["controllerManagerHealthz"], say)
    return api.kubeconfig, socket_path


def up(
    lab: Path | None = None,
    say: Say = print,
    metric_resolution_ns: int = podmetrics.DEFAULT_METRIC_RESOLUTION_NS,
) -> dict[str, Any]:
    """Bring every part up (what runs is kept); returns status()."""
    where = stack_layout(lab)
    where.lab.mkdir(parents=True, exist_ok=True)
    if not where.token.exists():
        where.token.write_text(secrets.token_urlsafe(32) + "\n")
        where.token.chmod(0o600)
    kubeconfig, socket_path = up_node(lab, say)
    ports = _ports(where)
    operator_url = _start_operator(where, kubeconfig, ports["operator"], say)
    _start_agent(where, operator_url, socket_path, ports["agentMetrics"], say)
    _start_metrics_server(
        where, kubeconfig, socket_path, ports["metricsServer"], metric_resolution_ns, say
    )
    return status(lab)


def api_dir(where: StackLayout) -> Path:
    return where.lab / "api"


def _stop(where: StackLayout, name: str, say: Say) -> None:
    pid = running_pid(where, name)
    if pid is not None:
        say(f"stopping the {name} (pid {pid})")
        if not processes.terminate(pid, STOP_TIMEOUT_SECONDS):
            raise UserError(f"the lab's {name} (pid {pid}) survived SIGKILL")
    where.pid_file(name).unlink(missing_ok=True)


def down(lab: Path | None = None, say: Say = print) -> None:
    """Stop everything and remove the lab's pods and Pod objects at once (a teardown: no
    grace period, in parallel); idempotent. Data (etcd, images, spool) stays for the next
    `lab up`."""
    where = stack_layout(lab)
    for name in ("metrics-server", "agent", "operator", "controller-manager", "kubelet"):
        _stop(where, name, say)
    if apiserver.running_server(api_dir(where)):
        _delete_pod_objects(KubeClient(api_dir(where) / "kubeconfig"), say)
    containerd.stop_containerd(where.lab, say)
    apiserver.stop(api_dir(where))


def _delete_pod_objects(client: KubeClient, say: Say) -> None:
    """Every Pod object of the lab's node (or of none), deleted with gracePeriodSeconds 0:
    the kubelet is stopped, so nothing would finish a graceful deletion."""
    listed = client.request("GET", "/api/v1/pods").get("items", [])
    ours = [p for p in listed if p.get("spec", {}).get("nodeName", "") in ("", node_name())]
    if ours:
        say(f"deleting {len(ours)} Pod object(s)")
    body = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0}
    for item in ours:
        meta = item["metadata"]
        try:
            client.request("DELETE", pod_path(meta["namespace"], meta["name"]), body)
        except ApiError as error:
            if error.status != 404:
                raise


@dataclass(frozen=True)
class LabNode:
    """A running node (API server, containerd, kubelet) as tests reach it."""

    lab: Path
    kubeconfig: Path
    socket: Path

    @property
    def kubectl(self) -> Path:
        return api_dir(stack_layout(self.lab)) / "bin" / "kubectl"


def status(lab: Path | None = None) -> dict[str, Any]:
    """Where each part is reached (null: not running), `up` when all run, and the parts."""
    where = stack_layout(lab)
    ports = json.loads(where.ports.read_text()) if where.ports.exists() else {}
    api = api_dir(where)
    server = apiserver.running_server(api)
    cri_layout = containerd.layout(where.lab)
    running = {
        "apiserver": server is not None,
        "containerd": containerd.running_pid(cri_layout) is not None,
        "kubelet": running_pid(where, "kubelet") is not None,
        "controller-manager": running_pid(where, "controller-manager") is not None,
        "operator": running_pid(where, "operator") is not None,
        "agent": running_pid(where, "agent") is not None,
        "metrics-server": running_pid(where, "metrics-server") is not None,
    }
    return {
        "up": all(running.values()),
        "kubeconfig": str(api / "kubeconfig") if running["apiserver"] else None,
        "apiServer": server,
        "containerdSocket": str(cri_layout.socket) if running["containerd"] else None,
        "nodeName": node_name() if running["kubelet"] else None,
        "kubeletHealthzUrl": (
            f"http://127.0.0.1:{ports['kubeletHealthz']}/healthz" if running["kubelet"] else None
        ),
        "controllerManagerHealthzUrl": (
            f"http://127.0.0.1:{ports['controllerManagerHealthz']}/healthz"
            if running["controller-manager"]
            else None
        ),
        "operatorUrl": f"http://127.0.0.1:{ports['operator']}" if running["operator"] else None,
        "agentMetricsUrl": (
            f"http://127.0.0.1:{ports['agentMetrics']}" if running["agent"] else None
        ),
        "metricsServerUrl": (
            f"http://127.0.0.1:{ports['metricsServer']}" if running["metrics-server"] else None
        ),
        "webhookTokenFile": str(where.token) if where.token.exists() else None,
        "labDir": str(where.lab),
        "components": [{"name": name, "running": up} for name, up in running.items()],
    }
