"""The operator's webhook as it is: `kernel-gossip operator` against the lab API server,
concurrent senders POSTing cpu_throttle signals for many pods; a watch on the
KernelWhisper collection notes when each reading first becomes readable."""

import http.client
import json
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

from agent_costs import KERNEL_GOSSIP, cpu_seconds, free_port
from stats import Figure, percentile

from kernel_gossip.lab import apiserver
from kernel_gossip.schema.resources import API_VERSION

NAMESPACE = "kg-bench"
TOKEN = "bench-token-5c1d"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def signal(pod: str, reading: int) -> bytes:
    moment = (T0 + timedelta(seconds=reading)).isoformat().replace("+00:00", "Z")
    return json.dumps(
        {
            "type": "cpu_throttle",
            "pod_name": pod,
            "namespace": NAMESPACE,
            "container_name": "app",
            "throttle_percentage": 40.0 + reading,
            "actual_cpu_usage": 1.5,
            "reported_cpu_usage": 0.6,
            "period_seconds": 10.0,
            "timestamp": moment,
        }
    ).encode()


def reading_of(observed_at: str) -> int:
    moment = datetime.fromisoformat(observed_at.replace("Z", "+00:00"))
    return int((moment - T0).total_seconds())


class Readable:
    """(pod, reading) -> when the watch first showed it in status.history."""

    def __init__(self, api: apiserver.LabApi, path: str, version: str) -> None:
        self.seen: dict[tuple[str, int], float] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, args=(api, path, version), daemon=True)
        self.thread.start()

    def _watch(self, api: apiserver.LabApi, path: str, version: str) -> None:
        while not self.stop.is_set():
            for event in api.watch(path, version, timeout_seconds=5):
                now = time.monotonic()
                whisper = event["object"]
                version = whisper["metadata"].get("resourceVersion", version)
                pod = whisper.get("spec", {}).get("podName", "")
                for entry in whisper.get("status", {}).get("history", []):
                    self.seen.setdefault((pod, reading_of(entry["observedAt"])), now)
                if self.stop.is_set():
                    return


def post(port: int, body: bytes) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    try:
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}
        connection.request("POST", "/webhook/ebpf", body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status
    finally:
        connection.close()


def figures(folder: Path, pods: int, readings: int, senders: int) -> list[Figure]:
    api_dir = folder / "api"
    api = apiserver.start(api_dir)
    operator = None
    try:
        namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NAMESPACE}}
        api.request("POST", "/api/v1/namespaces", namespace)
        token = folder / "token"
        token.write_text(TOKEN + "\n")
        port = free_port()
        command = [KERNEL_GOSSIP, "operator", "--kubeconfig", str(api.kubeconfig)]
        command += ["--namespace", NAMESPACE, "--webhook-host", "127.0.0.1"]
        command += ["--webhook-port", str(port), "--token-file", str(token)]
        with (folder / "operator.log").open("wb") as log:
            operator = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while True:
            try:
                connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
                connection.request("GET", "/healthz")
                if connection.getresponse().status == 200:
                    break
            except OSError:
                if operator.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the operator did not come up") from None
                time.sleep(0.2)
        path = f"/apis/{API_VERSION}/namespaces/{NAMESPACE}/kernelwhispers"
        listed = api.expect(200, "GET", path)
        readable = Readable(api, path, listed["metadata"]["resourceVersion"])
        names = [f"bench-{index:03d}" for index in range(pods)]
        sent: dict[tuple[str, int], float] = {}
        refused: list[int] = []

        def sender(mine: list[str]) -> None:
            for reading in range(readings):
                for pod in mine:
                    sent[(pod, reading)] = time.monotonic()
                    status = post(port, signal(pod, reading))
                    if status != 202:
                        refused.append(status)

        pids = {
            "API server": int((api.dir / "apiserver.pid").read_text()),
            "etcd": int((api.dir / "etcd.pid").read_text()),
            "operator": operator.pid,
        }
        cpu_before = {who: cpu_seconds(pid) for who, pid in pids.items()}
        began = time.monotonic()
        with ThreadPoolExecutor(senders) as pool:
            list(pool.map(sender, [names[i::senders] for i in range(senders)]))
        elapsed = time.monotonic() - began
        cpu_ms = {who: (cpu_seconds(pid) - cpu_before[who]) * 1000 for who, pid in pids.items()}
        wait_until = time.monotonic() + 30
        while len(readable.seen.keys() & sent.keys()) < len(sent) and time.monotonic() < wait_until:
            time.sleep(0.1)
        readable.stop.set()
        latencies = [(readable.seen[k] - t) * 1000 for k, t in sent.items() if k in readable.seen]
        stored = 0
        for item in api.expect(200, "GET", path)["items"]:
            stored += len(item.get("status", {}).get("history", []))
        lost = len(sent) - stored
    finally:
        if operator is not None:
            operator.terminate()
            operator.wait(30)
        apiserver.stop(api_dir)
    total = len(sent)
    how = (
        f"{total} valid cpu_throttle signals for {pods} pods ({readings} each) from {senders} "
        "concurrent senders to `kernel-gossip operator` (this checkout) and the lab API "
        "server on this machine; latency from POST sent to the reading seen by a watch"
    )
    return [
        Figure("webhook_signals_per_s", "webhook signals/s", f"{total / elapsed:.0f}", how),
        Figure(
            "webhook_latency_ms",
            "webhook POST -> CR readable",
            f"p50 {percentile(latencies, 0.5):.0f} ms, p99 {percentile(latencies, 0.99):.0f} ms",
            how,
        ),
        Figure(
            "webhook_cpu_per_signal",
            "webhook CPU per signal",
            ", ".join(f"{who} {ms / total:.1f} ms" for who, ms in cpu_ms.items()),
            f"{how}; CPU time (user + system, /proc/PID/stat) of each process while the "
            "signals were sent, divided by the signals",
        ),
        Figure(
            "webhook_lost",
            "webhook signals lost",
            f"{lost} of {total} ({len(refused)} not answered 202)",
            f"{how}; readings stored in status.history at the end",
        ),
    ]
