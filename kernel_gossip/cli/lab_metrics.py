"""`kernel-gossip lab metrics-server`: the Metrics API stand-in (`lab up` starts it)."""

import argparse
import logging
import signal
import socket
from pathlib import Path
from typing import Any

from kernel_gossip.cli.agent import parse_address
from kernel_gossip.core import podmetrics, podstatus
from kernel_gossip.errors import UserError
from kernel_gossip.lab.metrics_server import MetricsServer


def metric_resolution(text: str) -> int:
    """argparse type: a Go duration of at least 10 s (metrics-server's own floor), in ns."""
    try:
        value = podmetrics.parse_go_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    if value < podmetrics.MIN_METRIC_RESOLUTION_NS:
        raise argparse.ArgumentTypeError(f"must be at least 10s, as metrics-server's: {text}")
    return value


def register_lab(groups: Any) -> None:
    parser = groups.add_parser(
        "metrics-server",
        help="serve metrics.k8s.io PodMetrics/NodeMetrics from the lab's cgroups",
        description="Every metric resolution, scrape each running lab container's cumulative "
        "CPU and memory working set (and the node's) and write the PodMetrics and NodeMetrics "
        "metrics-server would serve into the lab API server: the CPU rate between the two "
        "latest scrapes, with its timestamp and window. `kubectl top` reads them.",
    )
    parser.add_argument("--kubeconfig", type=Path, required=True, metavar="PATH")
    parser.add_argument("--cri-socket", type=Path, required=True, metavar="PATH")
    parser.add_argument(
        "--node",
        default=podstatus.node_name(socket.gethostname()),
        metavar="NAME",
        help="the Node this host is (default: the hostname, lower case, as the kubelet's)",
    )
    parser.add_argument(
        "--metric-resolution",
        type=metric_resolution,
        default=podmetrics.DEFAULT_METRIC_RESOLUTION_NS,
        metavar="DURATION",
        help="scrape interval, a Go duration >= 10s (default "
        f"{podmetrics.go_duration(podmetrics.DEFAULT_METRIC_RESOLUTION_NS)})",
    )
    parser.add_argument(
        "--health-address",
        default="127.0.0.1:0",
        metavar="HOST:PORT",
        help="where /healthz is served (default: a free port on 127.0.0.1)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    address = parse_address(args.health_address, "--health-address")
    if not args.kubeconfig.is_file():
        raise UserError(f"--kubeconfig {args.kubeconfig}: no such file")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        server = MetricsServer(
            args.kubeconfig, args.cri_socket, args.node, args.metric_resolution, address
        )
    except OSError as error:
        raise UserError(f"cannot serve on {args.health_address}: {error.strerror}") from None
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: server.stop.set())
    logging.getLogger("kernel_gossip.metrics_server").info(
        "metrics-server for node %s: every %s, health at %s",
        args.node,
        podmetrics.go_duration(args.metric_resolution),
        server.url,
    )
    server.run()
    return 0
