"""`kernel-gossip lab kubelet`: the lab's kubelet process (`lab up` starts it)."""

import argparse
from pathlib import Path
from typing import Any

from kernel_gossip import paths
from kernel_gossip.cli.console import progress_to_stderr
from kernel_gossip.lab import apiserver, containerd
from kernel_gossip.lab import kubelet as kubelet_daemon


def register_lab(groups: Any) -> None:
    parser = groups.add_parser(
        "kubelet",
        help="the lab's kubelet: runs this node's pods from the API server through the CRI",
        description="Register this host as a Node, bind pods without a node to it, run them "
        "on the lab's containerd as a kubelet does, write their status, honour graceful "
        "deletion. Runs until SIGTERM, leaving its pods running. `lab up` starts it.",
    )
    parser.add_argument(
        "--kubeconfig", type=Path, default=None, help="default: the lab API server's"
    )
    parser.add_argument("--cri-socket", type=Path, default=None, help="default: the lab's")
    parser.add_argument(
        "--pod-log-root",
        type=Path,
        default=None,
        help="where container logs go (default: the lab API server's pod log root, "
        "<lab dir>/pod-logs)",
    )
    parser.add_argument("--healthz-address", default="127.0.0.1:10248", metavar="HOST:PORT")
    parser.add_argument(
        "--lab-dir",
        type=Path,
        default=None,
        help=f"the lab's state: pod records, created cgroups (default: {paths.lab_dir()})",
    )
    parser.set_defaults(handler=run_kubelet)


_say = progress_to_stderr("lab kubelet")


def run_kubelet(args: argparse.Namespace) -> int:
    lab = (args.lab_dir or paths.lab_dir()).resolve()
    lab.mkdir(parents=True, exist_ok=True)
    return kubelet_daemon.main(
        args.kubeconfig or apiserver.default_dir() / "kubeconfig",
        args.cri_socket or containerd.layout(lab).socket,
        lab,
        args.pod_log_root or apiserver.default_pod_log_root(apiserver.default_dir()),
        args.healthz_address,
        _say,
    )
