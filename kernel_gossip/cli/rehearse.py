"""`kernel-gossip rehearse`: the talk's demos as the speaker types them, timed, with a
verdict per wow moment and, with --report, the backup material."""

import argparse
import shutil
import sys
from pathlib import Path
from typing import Any

from kernel_gossip.cli.console import progress_to_stderr
from kernel_gossip.errors import UserError
from kernel_gossip.lab import stack
from kernel_gossip.rehearse import demos, moments
from kernel_gossip.rehearse.demos import Cluster, DemoResult
from kernel_gossip.rehearse.report import write_report
from kernel_gossip.rehearse.terminal import Terminal

DEFAULT_NAMESPACE = "kernel-gossip"


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "rehearse",
        help="run the talk's demos as typed, timed, with verdicts and a report",
        description="Runs the Kernel Gossip talk's demos (pod birth, the metrics lie, the "
        "live webhook, autoscaling) through kubectl as a speaker types them, after the "
        "talk's quick reset, and says for each wow moment what was measured. On the lab by "
        "default (brought up if its API server is not running; a part that is stopped stays "
        "stopped and fails its demo); on any cluster with --kubeconfig. Exit 0 when every "
        "demo produced its evidence, 1 naming the one that did not.",
    )
    parser.add_argument("--kubeconfig", type=Path, help="a cluster's kubeconfig (default: the lab)")
    parser.add_argument("--namespace", default=DEFAULT_NAMESPACE, help="default kernel-gossip")
    parser.add_argument("--report", type=Path, metavar="DIR", help="write report.md/.html here")
    parser.add_argument("--only", choices=moments.MOMENTS, help="one demo")
    parser.add_argument("--check", action="store_true", help="the pre-talk checklist only")
    parser.add_argument("--reset", action="store_true", help="the talk's quick reset only")
    parser.set_defaults(handler=run)


def _echo(text: str) -> None:
    print(text, flush=True)


_say = progress_to_stderr("rehearse")


def connect(kubeconfig: Path | None, namespace: str) -> Cluster:
    if kubeconfig is None:
        state = stack.status()
        if state["kubeconfig"] is None:
            _say("bringing the lab up")
            stack.up(say=_say)
            state = stack.status()
        # A lab that runs is rehearsed as it is: a stopped part fails its demo, as it
        # would on stage, instead of being restarted behind the speaker's back.
        for component in state["components"]:
            if not component["running"]:
                _say(f"the lab's {component['name']} is not running (`kernel-gossip lab up`)")
        config = Path(state["kubeconfig"])
        kubectl = config.parent / "bin" / "kubectl"
        terminal = Terminal(kubectl, config, _echo)
        return Cluster(terminal, namespace, demos.lab_reader(config), state)
    if not kubeconfig.is_file():
        raise UserError(f"--kubeconfig {kubeconfig}: no such file")
    found = shutil.which("kubectl")
    if found is None:
        raise UserError("kubectl is not on PATH (needed for --kubeconfig)")
    terminal = Terminal(Path(found), kubeconfig.resolve(), _echo)
    return Cluster(terminal, namespace, demos.kubectl_reader(terminal))


def run(args: argparse.Namespace) -> int:
    cluster = connect(args.kubeconfig, args.namespace)
    if args.check:
        lines = demos.checklist(cluster)
        return 0 if all(line.ok for line in lines) else 1
    demos.reset(cluster)
    if args.reset:
        return 0
    chosen = [args.only] if args.only else list(moments.MOMENTS)
    results: dict[str, DemoResult] = {}
    for name in chosen:
        _echo(f"\n=== {name}: {moments.CLAIMS[name]}")
        results[name] = demos.DEMOS[name](cluster)
        _echo(results[name].verdict.render())
    if args.report is not None:
        where = (
            f"the lab on this host (node {cluster.lab.get('nodeName')})"
            if cluster.lab is not None
            else f"the cluster of {args.kubeconfig}"
        )
        written = write_report(args.report, results, cluster.terminal.steps, where)
        _say("report: " + ", ".join(str(path) for path in written))
    _echo("")
    for result in results.values():
        _echo(result.verdict.render())
    failed = [name for name, result in results.items() if not result.verdict.ok]
    if failed:
        print(f"kernel-gossip rehearse: failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0
