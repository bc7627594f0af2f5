"""CLI of `kernel-gossip observe`: arguments, progress, the table and the JSON."""

import argparse
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from kernel_gossip.cli.args import positive_seconds
from kernel_gossip.cli.console import wide_console
from kernel_gossip.probes.observe import observe
from kernel_gossip.schema.report import ContainerCpuTruth, ObserveReport


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "observe",
        help="per container: CFS throttling, run-queue latency, CPU usage and limit",
        description="Measure what the kernel knows about containers' CPU over a window.",
    )
    parser.add_argument(
        "--cgroup",
        action="append",
        default=[],
        metavar="PATH",
        help="cgroup relative to the cgroup root (/kubepods/...) or under /sys/fs/cgroup; "
        "repeatable",
    )
    parser.add_argument(
        "--all",
        action="store_true",
        help="every cgroup holding processes that is a container or has a CPU quota",
    )
    parser.add_argument(
        "--duration", type=positive_seconds, default=5.0, metavar="SECONDS", help="default 5"
    )
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    report = observe_with_progress(args.cgroup, args.all, args.duration)
    if args.json:
        print(report.model_dump_json(by_alias=True))
    else:
        wide_console().print(report_table(report))
    return 0


def observe_with_progress(paths: list[str], every: bool, duration: float) -> ObserveReport:
    """observe() with a progress bar on stderr when it is a terminal."""
    console = Console(stderr=True)
    if not console.is_terminal:
        return observe(paths, every, duration)
    with Progress(
        TextColumn("observing"),
        BarColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as progress:
        task = progress.add_task("observe", total=duration)
        return observe(paths, every, duration, lambda done: progress.update(task, completed=done))


def _cores(value: float | None) -> str:
    return "unlimited" if value is None else f"{value:.3f}"


def _micros(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1000:.1f} ms" if value >= 1000 else f"{value:.0f} us"


def _who(container: ContainerCpuTruth) -> str:
    if container.pod_uid:
        short = (container.container_id or "")[:12] or "(pod)"
        return f"pod {container.pod_uid[:8]} / {short}"
    if container.container_id:
        return f"{container.runtime or 'container'} {container.container_id[:12]}"
    return "-"


def report_table(report: ObserveReport) -> Table:
    table = Table(title=f"Kernel CPU truth over {report.window_seconds:.1f} s")
    for column in (
        "cgroup",
        "pod / container",
        "limit",
        "usage",
        "throttled",
        "throttled time",
        "run-queue p50",
        "run-queue p99",
        "involuntary",
    ):
        table.add_column(
            column, justify="left" if column.startswith(("cgroup", "pod")) else "right"
        )
    for c in report.containers:
        table.add_row(
            c.cgroup_path,
            _who(c),
            _cores(c.cpu_limit_cores),
            f"{c.cpu_usage_cores:.3f}",
            f"{c.throttled_percent:.1f}% ({c.nr_throttled}/{c.nr_periods})",
            f"{c.throttled_seconds:.2f} s",
            _micros(c.runqueue_latency_p50_us),
            _micros(c.runqueue_latency_p99_us),
            str(c.involuntary_switches),
        )
    return table
