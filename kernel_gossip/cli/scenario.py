"""`kernel-gossip scenario run SPEC... | list`: exit 0 when every expectation holds, 1 when
one fails (one line each: what, measured, bound), 2 for a bad spec or a missing
prerequisite (one line)."""

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from kernel_gossip import paths
from kernel_gossip.cli.args import positive_seconds
from kernel_gossip.cli.console import progress_to_stderr
from kernel_gossip.scenarios.spec import load_spec

SPECS_DIR = paths.REPO_DIR / "scenarios" / "specs"


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "scenario",
        help="run scenario specs: locust load, and the resources checked against the kernel",
        description="Scenarios (YAML specs, scenarios/specs/): a workload, a load driven by "
        "locust, and expectations comparing kernel-gossip's resources with the kernel's own "
        "counters sampled beside the load.",
    )
    actions = parser.add_subparsers(dest="scenario_action", required=True, metavar="ACTION")
    run = actions.add_parser(
        "run",
        help="run specs; exit 0 all hold, 1 one fails, 2 bad spec or missing prerequisite",
        description="Run each SPEC in turn and print every expectation's measured value and bound.",
    )
    run.add_argument("specs", nargs="+", type=Path, metavar="SPEC")
    run.add_argument(
        "--provider",
        choices=("local", "kind"),
        default="local",
        help="local: this machine's lab, brought up if it is not (default); "
        "kind: the cluster of $KUBECONFIG made by lab.yml -e provider=kind",
    )
    run.add_argument(
        "--report",
        type=Path,
        metavar="DIR",
        help="write per scenario: locust stats CSV, resources YAML, truth CSV, PNG",
    )
    run.add_argument(
        "--soak",
        type=positive_seconds,
        metavar="SECONDS",
        help="run each load this long instead of its durationSeconds",
    )
    run.add_argument("--json", action="store_true", help="the results as one JSON object")
    run.set_defaults(handler=run_specs)
    listing = actions.add_parser("list", help=f"the specs in {SPECS_DIR}")
    listing.add_argument("--json", action="store_true", help="one JSON list")
    listing.set_defaults(handler=list_specs)


_say = progress_to_stderr("scenario")


def run_specs(args: argparse.Namespace) -> int:
    from kernel_gossip.scenarios.cluster import connect
    from kernel_gossip.scenarios.runner import run_scenario

    loaded = [load_spec(path) for path in args.specs]  # every spec valid before any runs
    cluster = connect(args.provider, _say)
    results = []
    try:
        for spec in loaded:
            _say(f"scenario {spec.scenario.name}: {spec.scenario.description}")
            result = run_scenario(spec, cluster, _say, args.report, args.soak)
            results.append(result)
            for outcome in result.outcomes:
                stream = sys.stdout if outcome.holds or args.json else sys.stderr
                if not args.json:
                    print(f"{result.scenario}: {outcome.line()}", file=stream, flush=True)
    finally:
        cluster.close()
    if args.json:
        print(json.dumps({"results": [result.as_json() for result in results]}, allow_nan=False))
    return 0 if all(result.holds for result in results) else 1


def list_specs(args: argparse.Namespace) -> int:
    specs = [load_spec(path) for path in sorted(SPECS_DIR.glob("*.yaml"))]
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "name": s.scenario.name,
                        "description": s.scenario.description,
                        "path": str(s.path),
                        "requires": s.scenario.requires,
                    }
                    for s in specs
                ],
                allow_nan=False,
            )
        )
    else:
        for spec in specs:
            needs = (
                f" (requires {', '.join(spec.scenario.requires)})" if spec.scenario.requires else ""
            )
            print(f"{spec.scenario.name:<20} {spec.scenario.description}{needs}")
    return 0
