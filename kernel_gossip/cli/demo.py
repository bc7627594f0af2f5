"""`kernel-gossip demo`: the talk's "metrics lie" moment on this host, measured for real.

Starts a bursty, CPU-limited workload in a cgroup of its own, observes it for 15 seconds
(the resolution of what metrics-server, and so `kubectl top`, reports) and prints the
average usage such a dashboard shows next to what the kernel's counters and our run-queue
probe say about the same window. Then removes the workload.
"""

import argparse
import os
from typing import Any

from kernel_gossip.cli.console import wide_console
from kernel_gossip.cli.observe import observe_with_progress, report_table
from kernel_gossip.errors import UserError
from kernel_gossip.host.cgroupfs import CgroupFs
from kernel_gossip.host.workload import CgroupWorkload, bursty_loop
from kernel_gossip.schema.report import ContainerCpuTruth

METRICS_WINDOW_SECONDS = 15.0
DEMO_CGROUP = "/kernel-gossip-demo/bursty"
# Bursts of 4 workers x 40 ms every ~400 ms: an average well under the limit, while
# each burst wants more CPU than one CFS period's quota allows.
BUSY_MS, IDLE_MS = 40, 360


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "demo",
        help="start a CPU-limited bursty workload, show dashboard average vs kernel truth",
        description=__doc__,
    )
    parser.add_argument("--limit", type=float, default=0.5, metavar="CORES", help="default 0.5")
    parser.add_argument("--workers", type=int, default=4, help="bursty processes (default 4)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        raise UserError("the demo creates cgroups and loads BPF: run it as root")
    if not 0 < args.limit <= (os.cpu_count() or 1) or not 1 <= args.workers <= 64:
        raise UserError("--limit must be within (0, CPUs] cores and --workers within [1, 64]")
    console = wide_console()
    fs = CgroupFs.detect()
    console.print(
        f"Starting {args.workers} bursty workers ({BUSY_MS} ms busy, {IDLE_MS} ms idle) in "
        f"{DEMO_CGROUP} "
        f"with a CPU limit of {args.limit} cores; observing {METRICS_WINDOW_SECONDS:.0f} s."
    )
    with CgroupWorkload(fs, DEMO_CGROUP, limit_cores=args.limit) as workload:
        workload.start(bursty_loop(busy_ms=BUSY_MS, idle_ms=IDLE_MS), count=args.workers)
        report = observe_with_progress([DEMO_CGROUP], False, METRICS_WINDOW_SECONDS)
    console.print(report_table(report))
    console.print(contrast(report.containers[0]))
    if left := workload.leftovers():
        raise UserError(f"the workload stopped but its cgroup is still there: {left[0]}")
    console.print("Workload stopped and its cgroup removed.")
    return 0


def contrast(truth: ContainerCpuTruth) -> str:
    """The dashboard's average next to the kernel's view, each figure as measured."""
    limit = truth.cpu_limit_cores
    share = (
        f" = {100 * truth.cpu_usage_cores / limit:.0f}% of its {limit:g}-core limit"
        if limit
        else ""
    )
    p99 = truth.runqueue_latency_p99_us
    wait = f", run-queue wait p99 {p99 / 1000:.1f} ms" if p99 is not None else ""
    return (
        f"What `kubectl top` would show (average over the window): "
        f"{truth.cpu_usage_cores * 1000:.0f}m CPU{share}.\n"
        f"What the kernel knows: {truth.throttled_percent:.1f}% of CFS periods throttled "
        f"({truth.nr_throttled}/{truth.nr_periods}), {truth.throttled_seconds:.2f} s throttled"
        f"{wait}, {truth.involuntary_switches} involuntary context switches."
    )
