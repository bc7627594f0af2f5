"""`kernel-gossip lab up|down|status`."""

import argparse
import json
from typing import Any

from kernel_gossip.cli.console import progress_to_stderr
from kernel_gossip.cli.lab_metrics import metric_resolution
from kernel_gossip.core import podmetrics
from kernel_gossip.lab import stack


def register_lab(groups: Any) -> None:
    """The lab directory is paths.lab_dir() (KERNEL_GOSSIP_LAB_DIR), as for `lab pods`."""
    up = groups.add_parser(
        "up",
        help="the whole lab: API server, containerd, kubelet, operator, agent, metrics-server",
        description="Bring the single-node lab up (what runs already is kept) and print its "
        "status as one JSON line. The first run builds the API server and the images "
        "(minutes, with progress); later ones take seconds.",
    )
    up.add_argument(
        "--metric-resolution",
        type=metric_resolution,
        default=podmetrics.DEFAULT_METRIC_RESOLUTION_NS,
        metavar="DURATION",
        help="the metrics-server's scrape interval, a Go duration >= 10s (default "
        f"{podmetrics.go_duration(podmetrics.DEFAULT_METRIC_RESOLUTION_NS)}); kept while it runs",
    )
    down = groups.add_parser(
        "down",
        help="stop the lab and remove its pods (idempotent)",
        description="Stop the metrics-server, the agent, the operator and the kubelet, remove "
        "every pod at once (in parallel, no grace period: a teardown) with its Pod object, then "
        "stop containerd and the API server. Data (etcd, images, the agent's spool) stays for "
        "the next `lab up`.",
    )
    status = groups.add_parser(
        "status",
        help="where each part of the lab is reached, and whether it runs",
        description="Where each part of the lab is reached: kubeconfig, apiServer, "
        "containerdSocket, nodeName, kubeletHealthzUrl, operatorUrl, agentMetricsUrl, "
        "metricsServerUrl, webhookTokenFile, labDir (null: not running), and components (each "
        "part, running).",
    )
    status.add_argument("--json", action="store_true", help="one JSON object")
    for parser, handler in ((up, run_up), (down, run_down), (status, run_status)):
        parser.set_defaults(handler=handler)


_say = progress_to_stderr("lab")


def run_up(args: argparse.Namespace) -> int:
    print(
        json.dumps(stack.up(say=_say, metric_resolution_ns=args.metric_resolution), allow_nan=False)
    )
    return 0


def run_down(args: argparse.Namespace) -> int:
    stack.down(say=_say)
    _say("down")
    return 0


def run_status(args: argparse.Namespace) -> int:
    state = stack.status()
    if args.json:
        print(json.dumps(state, allow_nan=False))
    else:
        width = max(len(key) for key in state)
        for key, value in state.items():
            print(f"{key:<{width}}  {value if value is not None else '(not running)'}")
    return 0
