"""The real `kernel-gossip agent` process next to N running containers: its resident
memory and CPU share over a window once both probes are attached and it is healthy."""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from containers import Fleet
from stats import Figure

KERNEL_GOSSIP = str(Path(sys.executable).with_name("kernel-gossip"))
TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime: all threads


def memory_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def probes_running(port: int) -> bool:
    """/healthz lists no stale loop: both probes attached and beating. The agent runs with no
    CRI here (the containers are plain runc ones), so /healthz answers 503 naming the CRI;
    that is the only problem accepted."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as reply:
            body = reply.read()
    except urllib.error.HTTPError as error:
        body = error.read()
    except OSError:
        return False
    try:
        health = json.loads(body)
    except ValueError:
        return False
    return isinstance(health, dict) and health.get("stale") == []


def measure(folder: Path, count: int, window: float, interval: float) -> tuple[str, float]:
    """(RSS as text, CPU % of one core) with `count` containers running."""
    fleet = Fleet(folder / f"fleet-{count}")
    metrics = free_port()
    agent = None
    try:
        fleet.run_detached(count, ["/bin/sleep", "3600"])
        command = [
            KERNEL_GOSSIP,
            "agent",
            "--operator-url",
            f"http://127.0.0.1:{free_port()}",  # nobody listens: signals wait in the spool
            "--spool-dir",
            str(folder / f"spool-{count}"),
            "--cri-socket",
            str(folder / "no-cri.sock"),
            "--metrics-address",
            f"127.0.0.1:{metrics}",
            "--interval",
            str(interval),
        ]
        with (folder / f"agent-{count}.log").open("wb") as log:
            agent = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 300
        while not probes_running(metrics):
            if agent.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the agent's probes did not start (see {log.name})")
            time.sleep(0.5)
        used = cpu_seconds(agent.pid)
        began = time.monotonic()
        time.sleep(window)
        share = 100 * (cpu_seconds(agent.pid) - used) / (time.monotonic() - began)
        rss = (
            f"{memory_kib(agent.pid, 'VmRSS') / 1024:.0f} MiB (anonymous "
            f"{memory_kib(agent.pid, 'RssAnon') / 1024:.0f}, file-backed "
            f"{memory_kib(agent.pid, 'RssFile') / 1024:.0f}; peak "
            f"{memory_kib(agent.pid, 'VmHWM') / 1024:.0f})"
        )
        return rss, share
    finally:
        if agent is not None:
            agent.terminate()
            try:
                agent.wait(30)
            except subprocess.TimeoutExpired:
                agent.kill()
                agent.wait()
        fleet.close()


def figures(
    folder: Path, counts: tuple[tuple[str, int], ...], window: float, interval: float
) -> list[Figure]:
    found = []
    for label, count in counts:
        rss, cpu = measure(folder, count, window, interval)
        how = (
            f"`kernel-gossip agent --interval {interval:g}` (both probes) with {count} runc "
            f"busybox containers running, /proc/PID/status and /proc/PID/stat over {window:g} s "
            "once /healthz lists no stale loop"
        )
        found.append(
            Figure(
                f"agent_rss_{label}",
                f"agent RSS, {count} containers",
                rss,
                how,
            )
        )
        found.append(
            Figure(
                f"agent_cpu_{label}", f"agent CPU, {count} containers", f"{cpu:.1f}% of a core", how
            )
        )
    return found
