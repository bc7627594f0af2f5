"""`kernel-gossip lab`: the local lab, one subgroup per part (`lab api start|stop`, ...).

This module owns the `lab` group; a module adding a subgroup exposes
`register_lab(groups)` and is listed in _subgroups() below.
"""

import argparse
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kernel_gossip.cli import lab_controllers as controllers_cli
from kernel_gossip.cli import lab_kubelet as kubelet_cli
from kernel_gossip.cli import lab_metrics as metrics_cli
from kernel_gossip.cli import lab_pods as pods_cli
from kernel_gossip.cli import lab_stack as stack_cli
from kernel_gossip.cli.args import port_number
from kernel_gossip.cli.console import progress_to_stderr
from kernel_gossip.lab import apiserver


def _subgroups() -> tuple[Callable[[Any], None], ...]:
    """The `lab <group>` registrars, each called with the lab's subparsers."""
    return (
        register_lab,
        pods_cli.register_lab,
        stack_cli.register_lab,
        kubelet_cli.register_lab,
        metrics_cli.register_lab,
        controllers_cli.register_lab,
    )


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "lab",
        help="the local lab: a real Kubernetes API server, pods, the agent",
        description="Run kernel-gossip's lab on this machine.",
    )
    groups = parser.add_subparsers(dest="lab_group", required=True, metavar="GROUP")
    for register_group in _subgroups():
        register_group(groups)


def register_lab(groups: Any) -> None:
    """`lab api start|stop`."""
    api = groups.add_parser(
        "api",
        help="a real Kubernetes API server (apiextensions-apiserver on etcd) on 127.0.0.1",
        description="A lab Kubernetes API server built from Kubernetes' own API machinery "
        "(Debian sid's Go sources) on Debian's etcd, with the kernel-gossip CRDs. Every "
        "request is an admin: it listens on 127.0.0.1 only, never expose it.",
    )
    actions = api.add_subparsers(dest="lab_action", required=True, metavar="ACTION")
    default = apiserver.default_dir()
    start = actions.add_parser(
        "start",
        help="build if needed, start etcd and the server, install the CRDs, write a kubeconfig",
        description="Build the server if needed (the first time: minutes, with progress), "
        "start etcd and the server in the background, wait until ready, install the CRDs, "
        'write DIR/kubeconfig and print {"kubeconfig": ..., "server": ...} as one JSON line. '
        "Already running: prints the running one's.",
    )
    start.add_argument("--dir", type=Path, default=default, help=f"state (default {default})")
    start.add_argument("--port", type=port_number, help="API server port (default: a free one)")
    start.add_argument(
        "--etcd-port", type=port_number, help="etcd client port (default: a free one)"
    )
    start.add_argument(
        "--pod-log-root",
        type=Path,
        help="the lab kubelet's CRI pod log files, read by pods/log (default DIR/../pod-logs)",
    )
    start.set_defaults(handler=run_start)
    stop = actions.add_parser(
        "stop",
        help="stop the server and etcd of DIR (idempotent)",
        description="Stop the API server and etcd started with --dir DIR, by their pids. "
        "Their data stays in DIR for the next start.",
    )
    stop.add_argument("--dir", type=Path, default=default, help=f"state (default {default})")
    stop.set_defaults(handler=run_stop)


_progress = progress_to_stderr("lab api")


def run_start(args: argparse.Namespace) -> int:
    api = apiserver.start(
        args.dir, args.port, args.etcd_port, progress=_progress, pod_log_root=args.pod_log_root
    )
    _progress(f"kubectl: {api.kubectl} --kubeconfig {api.kubeconfig}")
    print(json.dumps({"kubeconfig": str(api.kubeconfig), "server": api.server}, allow_nan=False))
    return 0


def run_stop(args: argparse.Namespace) -> int:
    stopped = apiserver.stop(args.dir)
    print(json.dumps({"stopped": stopped}, allow_nan=False))
    return 0
