"""nginx (the lab image's nginx-light, run chrooted in the host's network namespace on
127.0.0.1) under keep-alive HTTP load from httpload.c, agent probes attached vs detached."""

import json
import statistics
import subprocess
import tarfile
import time
from pathlib import Path

from agent_costs import free_port
from kernel_costs import interleaved
from native import Tools
from probes import AgentProbes
from stats import Figure, ratios

from kernel_gossip.lab import images

CONF = """daemon off;
worker_processes 1;
pid /run/nginx-bench.pid;
error_log stderr warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    keepalive_requests 100000000;
    include /etc/nginx/mime.types;
    server {{
        listen 127.0.0.1:{port};
        root /usr/share/nginx/html;
        index index.html index.nginx-debian.html;
    }}
}}
"""


def rootfs(folder: Path) -> Path:
    """The lab's nginx image (built once, cached) unpacked into folder."""
    archive = images.ensure_archive(images.NGINX, lambda line: print(f"[bench]   {line}"))
    target = folder / "nginx-rootfs"
    target.mkdir()
    with tarfile.open(archive) as outer:
        manifest_file = outer.extractfile("manifest.json")
        assert manifest_file is not None
        for layer in json.load(manifest_file)[0]["Layers"]:
            with tarfile.open(fileobj=outer.extractfile(layer)) as inner:
                inner.extractall(target)  # our own image, built on this machine
    for folder_name in ("dev", "run"):
        (target / folder_name).mkdir(exist_ok=True)
    subprocess.run(["mknod", "-m", "666", str(target / "dev" / "null"), "c", "1", "3"], check=True)
    return target


def figures(
    folder: Path, tools: Tools, probes: AgentProbes, rounds: int, seconds: float
) -> list[Figure]:
    root = rootfs(folder)
    port = free_port()
    (root / "etc" / "nginx" / "bench.conf").write_text(CONF.format(port=port))
    server = subprocess.Popen(
        ["chroot", str(root), "/usr/sbin/nginx", "-c", "/etc/nginx/bench.conf"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    p99: dict[bool, list[float]] = {True: [], False: []}
    state = {"on": True}
    try:
        time.sleep(1)
        if server.poll() is not None:
            raise RuntimeError(
                f"nginx did not start: {server.stderr.read().decode() if server.stderr else ''}"
            )

        def switch(on: bool) -> None:
            state["on"] = on
            probes.attached(on)

        def sample() -> float:
            output = subprocess.run(
                [tools.path("httpload"), "127.0.0.1", str(port), "4", str(seconds)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
            requests, elapsed, _p50, p99_us, errors = output
            if int(errors):
                raise RuntimeError(f"httpload: {errors} failed requests")
            p99[state["on"]].append(float(p99_us))
            return int(requests) / float(elapsed)

        on, off = interleaved(rounds, switch, sample)
    finally:
        server.terminate()
        server.wait(10)
    how = (
        f"nginx-light 1 worker (lab image, chroot, 127.0.0.1), httpload.c 4 keep-alive "
        f"connections x {seconds:g} s per round, agent probes attached vs detached, "
        f"{rounds} interleaved pairs"
    )
    return [
        Figure("nginx_rps_off", "nginx req/s, no probe", f"{statistics.median(off):.0f}", how),
        Figure("nginx_rps_ratio", "nginx req/s ratio on/off", ratios(on, off).text(), how),
        Figure(
            "nginx_p99_us",
            "nginx p99 latency on / off",
            f"{statistics.median(p99[True]):.0f} / {statistics.median(p99[False]):.0f} us",
            how,
        ),
    ]
