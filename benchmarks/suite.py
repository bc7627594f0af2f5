"""benchmarks/run [--quick] [--output FILE] [--only NAME ...]: every figure of issue 17
in one run, written to benchmarks/RESULTS.md. --quick runs each measurement for a few
seconds (the test command does, so the benchmarks cannot rot); the full run is for
RESULTS.md. A measurement that fails is named on stderr and the exit code is 1."""

import argparse
import os
import platform
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path

import agent_costs
import kernel_costs
import nginx
import storm
import webhook
from containers import Fleet
from native import Tools
from probes import AgentProbes
from stats import Figure, results_markdown

HERE = Path(__file__).resolve().parent
MEASUREMENTS = ("load", "syscall", "ctxswitch", "nginx", "births", "agent", "webhook")


def machine() -> str:
    memory = next(
        line.split()[1]
        for line in Path("/proc/meminfo").read_text().splitlines()
        if line.startswith("MemTotal:")
    )
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.machine(),
    )
    return (
        f"{os.cpu_count()} CPUs ({model}), {int(memory) // 1024**2} GiB, kernel "
        f"{platform.release()}, {platform.platform(terse=True)}"
    )


def load_note(before: tuple[float, ...], after: tuple[float, ...]) -> str:
    cores = os.cpu_count() or 1
    text = (
        f"Load average (1/5/15 min) at start {before[0]:.2f}/{before[1]:.2f}/{before[2]:.2f}, "
        f"at end {after[0]:.2f}/{after[1]:.2f}/{after[2]:.2f}, on {cores} CPUs."
    )
    # The end figure carries the benchmark's own load (nginx, containers, the storm): only
    # the start tells whether other work shared the machine.
    if before[0] > 0.5 * cores:
        text += (
            " **This run was made on a shared, busy machine** (other work ran alongside): "
            "absolute times are noisy; the on/off ratios and differences of interleaved "
            "rounds are the figures to read."
        )
    return text


def main() -> int:
    parser = argparse.ArgumentParser(prog="benchmarks/run", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a few seconds per measurement")
    parser.add_argument("--output", type=Path, default=HERE / "RESULTS.md")
    parser.add_argument("--only", action="append", choices=MEASUREMENTS, metavar="NAME")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("benchmarks/run: needs root (BPF, runc, cgroups)", file=sys.stderr)
        return 2
    chosen = set(args.only or MEASUREMENTS)
    quick = args.quick
    plan = kernel_costs.QUICK if quick else kernel_costs.FULL
    before = os.getloadavg()
    figures: list[Figure] = []
    failed: list[str] = []

    def measure(name: str, run: Callable[[], list[Figure]]) -> None:
        if name not in chosen:
            return
        print(f"[bench] {name}", flush=True)
        began = time.monotonic()
        try:
            found = run()
        except Exception as error:
            traceback.print_exc()
            print(f"benchmarks/run: {name} failed: {error}", file=sys.stderr)
            failed.append(name)
            return
        for figure in found:
            print(f"[bench]   {figure.name}: {figure.value}", flush=True)
        print(f"[bench]   ({time.monotonic() - began:.0f} s)", flush=True)
        figures.extend(found)

    with tempfile.TemporaryDirectory(prefix="kg-bench-") as scratch:
        folder = Path(scratch)
        tools = Tools(folder)
        in_process = chosen & {"load", "syscall", "ctxswitch", "nginx", "births"}
        probes = AgentProbes() if in_process else None
        try:
            if probes is not None:
                fleet_folder = folder / "fleet"
                measure("load", lambda: kernel_costs.load_figures(probes))

                def syscalls() -> list[Figure]:
                    fleet = Fleet(fleet_folder)
                    try:
                        return kernel_costs.syscall_figures(plan, tools, probes, fleet)
                    finally:
                        fleet.close()

                measure("syscall", syscalls)
                measure(
                    "ctxswitch", lambda: kernel_costs.context_switch_figures(plan, tools, probes)
                )
                measure(
                    "nginx",
                    lambda: nginx.figures(
                        folder, tools, probes, 2 if quick else 10, 2 if quick else 8
                    ),
                )
                measure("births", lambda: storm.figures(folder, probes, 5 if quick else 50))
        finally:
            if probes is not None:
                probes.close()
        counts = (("low", 2), ("high", 4)) if quick else (("low", 10), ("high", 100))
        measure(
            "agent",
            lambda: agent_costs.figures(folder, counts, 3 if quick else 20, 2 if quick else 5),
        )
        measure(
            "webhook",
            lambda: webhook.figures(folder, *((10, 3, 5) if quick else (100, 10, 20))),
        )
    command = "sudo benchmarks/run" + (" --quick" if quick else "")
    notes = load_note(before, os.getloadavg())
    if quick:
        notes += (
            " Quick mode: a few seconds per measurement, for the test only; not figures to quote."
        )
    args.output.write_text(results_markdown(figures, machine(), command, notes))
    print(f"[bench] wrote {args.output}")
    if failed:
        print(f"benchmarks/run: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
