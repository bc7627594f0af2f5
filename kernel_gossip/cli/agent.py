"""CLI of `kernel-gossip agent`."""

import argparse
import logging
import signal
import socket
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from kernel_gossip.agent.bundles import BundleDirectory
from kernel_gossip.agent.daemon import Agent, AgentConfig
from kernel_gossip.agent.delivery import Endpoint
from kernel_gossip.agent.directory import CriDirectory
from kernel_gossip.cli.args import positive_seconds
from kernel_gossip.errors import UserError
from kernel_gossip.host.bpf import check_prerequisites
from kernel_gossip.host.tokens import TokenFile
from kernel_gossip.probes.births import DEFAULT_RUNTIMES
from kernel_gossip.schema.signal import NodeName

NODE_NAME = TypeAdapter[str](NodeName)

DEFAULT_CRI_SOCKET = Path("/run/containerd/containerd.sock")
DEFAULT_SPOOL = Path("/var/lib/kernel-gossip/spool")


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "agent",
        help="run the node agent: measure continuously, report to the operator",
        description="Measure every container's CPU truth and every pod birth on this node "
        "and deliver them to the operator's webhook (spooled on disk while it is down).",
    )
    parser.add_argument("--operator-url", default="http://127.0.0.1:8080", metavar="URL")
    parser.add_argument(
        "--token-file",
        type=Path,
        metavar="F",
        help="bearer token for the webhook (re-read when it changes and on a 401)",
    )
    parser.add_argument(
        "--ca-file",
        type=Path,
        metavar="F",
        help="CA bundle (PEM) that signed the operator's certificate, for an https URL",
    )
    parser.add_argument(
        "--interval", type=positive_seconds, default=10.0, metavar="SECONDS", help="default 10"
    )
    parser.add_argument("--node", default=socket.gethostname(), metavar="NAME")
    parser.add_argument("--spool-dir", type=Path, default=DEFAULT_SPOOL, metavar="DIR")
    parser.add_argument("--cri-socket", type=Path, default=DEFAULT_CRI_SOCKET, metavar="PATH")
    parser.add_argument(
        "--bundle-dir",
        type=Path,
        metavar="DIR",
        help="map containers to pods from containerd's OCI bundles in DIR (read-only, no "
        "socket), e.g. /run/containerd/io.containerd.runtime.v2.task/k8s.io",
    )
    parser.add_argument(
        "--threshold",
        type=float,
        default=25.0,
        metavar="PERCENT",
        help="report containers with at least this share of periods throttled (default 25)",
    )
    parser.add_argument(
        "--runtime",
        action="append",
        metavar="NAME",
        help="OCI runtime whose births are watched; repeatable "
        f"(default {' and '.join(DEFAULT_RUNTIMES)})",
    )
    parser.add_argument(
        "--metrics-address",
        default="127.0.0.1:9101",
        metavar="HOST:PORT",
        help="where /metrics and /healthz are served (default 127.0.0.1:9101)",
    )
    parser.set_defaults(handler=run)


def node_name(text: str) -> str:
    """The node's name as the kubelet derives it from the hostname (trimmed, lowercased);
    refused unless it is a valid Node name (a DNS subdomain), so no signal fails on it."""
    name = text.strip().lower()
    try:
        return NODE_NAME.validate_python(name)
    except ValidationError:
        raise UserError(
            f"--node {text!r} is not a valid Kubernetes node name (lowercase DNS subdomain): "
            "pass --node NAME (the DaemonSet passes spec.nodeName)"
        ) from None


def parse_address(text: str, flag: str = "--metrics-address") -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise UserError(f"{flag} must be HOST:PORT, not {text!r}")
    return host, int(port)


def run(args: argparse.Namespace) -> int:
    try:
        Endpoint.parse(args.operator_url)
    except ValueError as error:
        raise UserError(f"--operator-url: {error}") from None
    if not 0 < args.threshold <= 100:
        raise UserError("--threshold is a percentage within (0, 100]")
    host, port = parse_address(args.metrics_address)
    node = node_name(args.node)
    if args.ca_file is not None and not args.ca_file.is_file():
        raise UserError(f"--ca-file {args.ca_file} is not a readable file")
    check_prerequisites()
    config = AgentConfig(
        operator_url=args.operator_url,
        token=TokenFile(args.token_file) if args.token_file else None,
        ca_file=args.ca_file,
        interval=args.interval,
        node=node,
        spool_dir=args.spool_dir,
        threshold_percent=args.threshold,
        runtimes=tuple(args.runtime or DEFAULT_RUNTIMES),
        metrics_host=host,
        metrics_port=port,
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    try:
        directory = (
            BundleDirectory(args.bundle_dir) if args.bundle_dir else CriDirectory(args.cri_socket)
        )
        agent = Agent(config, directory)
    except OSError as error:
        raise UserError(
            f"cannot serve metrics on {args.metrics_address}: {error.strerror}"
        ) from None
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: agent.stop.set())
    logging.getLogger("kernel_gossip.agent").info(
        "agent on %s: reporting to %s every %.0f s; metrics at %s",
        config.node,
        config.operator_url,
        config.interval,
        agent.metrics_url,
    )
    agent.run()
    return 1 if agent.failed else 0
