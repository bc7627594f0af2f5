"""`kernel-gossip lab controller-manager`: the lab's controllers (`lab up` starts it)."""

import argparse
from pathlib import Path
from typing import Any

from kernel_gossip.cli.console import progress_to_stderr
from kernel_gossip.core import autoscaling
from kernel_gossip.lab import apiserver, controllers


def _duration_seconds(text: str) -> float:
    """argparse type: a Go duration ("15s", "1m"), as kube-controller-manager's flags take."""
    try:
        seconds = controllers.parse_go_duration(text).total_seconds()
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"must be positive: {text}")
    return seconds


def register_lab(groups: Any) -> None:
    parser = groups.add_parser(
        "controller-manager",
        help="the lab's Deployment, ReplicaSet, garbage-collector and HPA controllers",
        description="Reconcile Deployments into ReplicaSets and Pods (rollouts, status, "
        "conditions), delete the dependents of deleted owners, and scale the targets of "
        "HorizontalPodAutoscalers from the Metrics API, as kube-controller-manager does. "
        "Runs until SIGTERM. `lab up` starts it.",
    )
    parser.add_argument(
        "--kubeconfig", type=Path, default=None, help="default: the lab API server's"
    )
    parser.add_argument("--healthz-address", default="127.0.0.1:10257", metavar="HOST:PORT")
    parser.add_argument(
        "--horizontal-pod-autoscaler-sync-period",
        type=_duration_seconds,
        default=autoscaling.SYNC_PERIOD_SECONDS,
        metavar="DURATION",
        help="how often HPAs are synced (default 15s)",
    )
    parser.set_defaults(handler=run_controller_manager)


_say = progress_to_stderr("lab controller-manager")


def run_controller_manager(args: argparse.Namespace) -> int:
    return controllers.main(
        args.kubeconfig or apiserver.default_dir() / "kubeconfig",
        args.healthz_address,
        args.horizontal_pod_autoscaler_sync_period,
        _say,
    )
