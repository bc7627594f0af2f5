"""A births storm: N `runc run` container starts at once while births.c watches; how many
certificates came out and how long after each start."""

import time
from pathlib import Path

from containers import Fleet
from probes import AgentProbes, Certified
from stats import Figure, percentile


def figures(folder: Path, probes: AgentProbes, count: int) -> list[Figure]:
    fleet = Fleet(folder / "storm")
    try:
        containers = [fleet.add(["/bin/true"]) for _ in range(count)]
        started: dict[str, float] = {}
        running = []
        for container in containers:
            started[container.container_id] = time.monotonic()
            running.append(fleet.start(container))
        failed = 0
        for process in running:
            process.communicate(timeout=300)
            failed += process.returncode != 0
        deadline = time.monotonic() + 60
        certified: dict[str, Certified] = {}
        while time.monotonic() < deadline:
            certified = {
                c.birth.container_id: c
                for c in probes.certificates
                if c.birth.container_id in started
            }
            if len(certified) == count:
                break
            time.sleep(0.1)
    finally:
        fleet.close()
    delays = [(c.monotonic - started[cid]) * 1000 for cid, c in certified.items()]
    # The agent's own part: from the entrypoint's exec (the birth's end) to the certificate.
    lags = [
        (c.wall - c.birth.started_at.timestamp()) * 1000 - c.birth.duration_ms
        for c in certified.values()
    ]
    how = (
        f"{count} `runc run` of busybox /bin/true started at once (pod-shaped cgroups), "
        f"births.c in the benchmark's process; {failed} runs failed"
    )
    return [
        Figure("births_captured", "births storm: certificates", f"{len(certified)}/{count}", how),
        Figure("births_latency_ms", "births storm: start -> certificate", spread(delays), how),
        Figure(
            "births_lag_ms",
            "births storm: entrypoint exec -> certificate",
            spread(lags),
            f"{how}; the birth's end (startedAt + durationMs) to the certificate in user space",
        ),
    ]


def spread(values: list[float]) -> str:
    if not values:
        return "none"
    return f"p50 {percentile(values, 0.5):.0f} ms, p99 {percentile(values, 0.99):.0f} ms"
