"""CLI of `kernel-gossip births`: watch the host, print one birth certificate per container."""

import argparse
import time
from typing import Any

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table

from kernel_gossip.cli.args import positive_seconds
from kernel_gossip.cli.console import wide_console
from kernel_gossip.core.births import PodBirth
from kernel_gossip.probes.births import DEFAULT_RUNTIMES, BirthWatch
from kernel_gossip.schema.report import BirthsReport, ContainerBirth

POLL_SECONDS = 0.2
TOP_SYSCALLS = 12
PIPED_WIDTH = 200


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "births",
        help="birth certificates: the syscalls, namespaces, mounts and cgroup writes of "
        "every container start",
        description="Watch the host and certify every container born meanwhile: the work of "
        "its OCI runtime invocation and all its descendants, from the runtime's exec to the "
        "entrypoint's exec, as the kernel saw it.",
    )
    parser.add_argument(
        "--duration",
        type=positive_seconds,
        default=None,
        metavar="SECONDS",
        help="how long to watch (default: until Ctrl-C)",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    parser.add_argument(
        "--runtime",
        action="extend",
        nargs="+",
        default=None,
        metavar="NAME",
        help=f"OCI runtime program names (default: {' '.join(DEFAULT_RUNTIMES)})",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    runtimes = args.runtime or list(DEFAULT_RUNTIMES)
    console = Console(stderr=True)
    with console.status("compiling and attaching the births probe"):
        watch = BirthWatch(runtimes)
    with watch:
        births, pods = _watch(watch, args.duration, console)
    if args.json:
        print(BirthsReport(births=births).model_dump_json(by_alias=True))
    else:
        out = wide_console(PIPED_WIDTH)  # files and pipes get whole IDs and paths on one line
        for birth in births:
            out.print(certificate_panel(birth))
        if pods:
            out.print(pods_table(pods))
        if not births:
            out.print("no container was born while watching")
    return 0


def _watch(
    watch: BirthWatch, duration: float | None, console: Console
) -> tuple[list[ContainerBirth], list[PodBirth]]:
    """Poll until the duration is over or Ctrl-C; progress goes to stderr."""
    window = f"for {duration:g} s" if duration else "until Ctrl-C"
    console.print(f"watching container births by {', '.join(watch.runtimes)} {window}")
    started = time.monotonic()
    deadline = started + duration if duration else None
    try:
        with console.status("") as status:
            while deadline is None or time.monotonic() < deadline:
                left = POLL_SECONDS if deadline is None else deadline - time.monotonic()
                for birth in watch.poll(max(min(POLL_SECONDS, left), 0)):
                    console.print(_born_line(birth))
                status.update(
                    f"{len(watch.births)} born, {time.monotonic() - started:.0f} s "
                    + (f"of {duration:g} s" if duration else "(Ctrl-C to stop)")
                )
    except KeyboardInterrupt:
        console.print("stopped")
    for birth in watch.finish():
        console.print(_born_line(birth))
    return watch.births, watch.pod_births()


def _born_line(birth: ContainerBirth) -> str:
    return (
        f"born: {birth.runtime} {birth.container_id[:12]} in {birth.duration_ms:.1f} ms, "
        f"{birth.total_syscalls} syscalls"
    )


def certificate_panel(birth: ContainerBirth) -> Panel:
    facts = Table.grid(padding=(0, 2))
    facts.add_column(style="bold")
    facts.add_column(overflow="fold")
    facts.add_row("container", birth.container_id)
    facts.add_row("pod", birth.pod_uid or "-")
    facts.add_row("cgroup", birth.cgroup_path)
    facts.add_row("runtime", birth.runtime)
    facts.add_row("started", birth.started_at.isoformat())
    facts.add_row("duration", f"{birth.duration_ms:.1f} ms")
    facts.add_row("syscalls", str(birth.total_syscalls))
    facts.add_row(
        "namespaces",
        f"{birth.namespace_operations} operations, created: "
        + (", ".join(birth.namespaces_created) or "none"),
    )
    facts.add_row("mounts", str(birth.mounts))
    facts.add_row("cgroup writes", str(birth.cgroup_writes))
    facts.add_row("execs", str(birth.execs))

    timeline = Table(title="timeline", title_justify="left")
    timeline.add_column("phase")
    timeline.add_column("at", justify="right")
    timeline.add_column("syscalls", justify="right")
    for phase in birth.timeline:
        timeline.add_row(phase.phase, f"+{phase.offset_ms:.1f} ms", str(phase.count))

    top = Table(title="most frequent syscalls", title_justify="left")
    top.add_column("syscall")
    top.add_column("count", justify="right")
    for name, count in list(birth.syscalls.items())[:TOP_SYSCALLS]:
        top.add_row(name, str(count))

    title = f"Birth certificate: {birth.runtime} {birth.container_id[:12]}"
    return Panel(Group(facts, timeline, top), title=title, title_align="left")


def pods_table(pods: list[PodBirth]) -> Table:
    table = Table(title="Pods born")
    for column in ("pod", "containers", "sandbox", "pod cgroup", "duration"):
        table.add_column(
            column, justify="right" if column == "duration" else "left", overflow="fold"
        )
    for pod in pods:
        created = pod.pod_cgroup_created_at
        table.add_row(
            pod.pod_uid,
            str(len(pod.containers)),
            pod.containers[0].container_id[:12],
            "created in window" if created else "existed before",
            f"{pod.duration_ms:.1f} ms",
        )
    return table
