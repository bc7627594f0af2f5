"""`kernel-gossip lab up|down|status`."""

import argparse
import json
import sys
from typing import Any

from kernel_gossip.lab import stack


def register_lab(groups: Any) -> None:
    """The lab directory is paths.lab_dir() (KERNEL_GOSSIP_LAB_DIR), as for `lab pods`."""
    up = groups.add_parser(
        "up",
        help="the whole lab: API server, containerd, operator, agent",
        description="Bring the single-node lab up (what runs already is kept) and print its "
        "status as one JSON line. The first run builds the API server and the images "
        "(minutes, with progress); later ones take seconds.",
    )
    down = groups.add_parser(
        "down",
        help="stop the lab and remove its pods (idempotent)",
        description="Stop the agent, the operator, the lab's pods, containerd and the API "
        "server. Data (etcd, images, the agent's spool) stays for the next `lab up`.",
    )
    status = groups.add_parser(
        "status",
        help="where each part of the lab is reached, and whether it runs",
        description="Where each part of the lab is reached: kubeconfig, apiServer, "
        "containerdSocket, operatorUrl, agentMetricsUrl, webhookTokenFile, labDir "
        "(null: not running).",
    )
    status.add_argument("--json", action="store_true", help="one JSON object")
    for parser, handler in ((up, run_up), (down, run_down), (status, run_status)):
        parser.set_defaults(handler=handler)


def _say(message: str) -> None:
    print(f"[lab] {message}", file=sys.stderr, flush=True)


def run_up(args: argparse.Namespace) -> int:
    print(json.dumps(stack.up(say=_say)))
    return 0


def run_down(args: argparse.Namespace) -> int:
    stack.down(say=_say)
    _say("down")
    return 0


def run_status(args: argparse.Namespace) -> int:
    state = stack.status()
    if args.json:
        print(json.dumps(state))
    else:
        width = max(len(key) for key in state)
        for key, value in state.items():
            print(f"{key:<{width}}  {value if value is not None else '(not running)'}")
    return 0
