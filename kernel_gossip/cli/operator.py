"""CLI of `kernel-gossip operator`: the kopf operator and its webhook, in the foreground."""

import argparse
import asyncio
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from kernel_gossip.cli.args import port_number
from kernel_gossip.errors import UserError
from kernel_gossip.operator.analysis import Thresholds
from kernel_gossip.schema.signal import NamespaceName

NAMESPACE_NAME = TypeAdapter[str](NamespaceName)


def register(commands: Any) -> None:
    parser = commands.add_parser(
        "operator",
        help="run the operator: webhook in, KernelWhispers and PodBirthCertificates out",
        description="Receive kernel signals on a webhook (POST /webhook/ebpf or "
        "/webhook/pixie with 'Authorization: Bearer TOKEN'), write them as custom resources "
        "with severity, insights and recommendations, until interrupted.",
    )
    parser.add_argument("--kubeconfig", metavar="PATH", help="default: in-cluster, $KUBECONFIG")
    parser.add_argument(
        "--namespace",
        type=namespace_name,
        default="kernel-gossip",
        metavar="NS",
        help="where the resources go (created if missing; default kernel-gossip)",
    )
    parser.add_argument("--webhook-host", default="0.0.0.0", metavar="H", help="default 0.0.0.0")
    parser.add_argument(
        "--webhook-port", type=port_number, default=8080, metavar="P", help="default 8080"
    )
    auth = parser.add_mutually_exclusive_group()
    auth.add_argument(
        "--token-file",
        type=Path,
        metavar="F",
        help="file holding the bearer token senders must present "
        "(default: Secret kernel-gossip-webhook, key token, in the namespace)",
    )
    auth.add_argument(
        "--insecure-webhook",
        action="store_true",
        help="accept signals without a token (logs a warning; for a talk demo only)",
    )
    parser.add_argument(
        "--tls-cert-file",
        type=Path,
        metavar="F",
        help="serve the webhook over HTTPS with this certificate (PEM, chain first)",
    )
    parser.add_argument(
        "--tls-key-file", type=Path, metavar="F", help="the certificate's private key (PEM)"
    )
    parser.add_argument(
        "--warning-percent",
        type=float,
        default=Thresholds.warning_percent,
        metavar="PCT",
        help="periods throttled for a warning (default 25, kubernetes-mixin CPUThrottlingHigh)",
    )
    parser.add_argument(
        "--critical-percent",
        type=float,
        default=Thresholds.critical_percent,
        metavar="PCT",
        help="periods throttled for critical (default 50)",
    )
    parser.add_argument(
        "--target-percent",
        type=float,
        default=Thresholds.target_percent,
        metavar="PCT",
        help="throttling a suggested limit aims to stay under (default 10)",
    )
    parser.add_argument(
        "--history",
        type=int,
        default=Thresholds.history_length,
        metavar="N",
        help="throttle readings kept in status.history (default 10)",
    )
    parser.add_argument("--verbose", action="store_true", help="debug logs (kopf's too)")
    parser.set_defaults(handler=run)


def namespace_name(text: str) -> str:
    """The payload model's own rule (whole string: no trailing newline slips through)."""
    try:
        return NAMESPACE_NAME.validate_python(text)
    except ValidationError:
        raise argparse.ArgumentTypeError(f"not a namespace name (DNS label): {text!r}") from None


def run(args: argparse.Namespace) -> int:
    import kopf  # kopf and aiohttp load only for this command

    from kernel_gossip.operator.service import OperatorConfig, serve

    try:
        thresholds = Thresholds(
            warning_percent=args.warning_percent,
            critical_percent=args.critical_percent,
            target_percent=args.target_percent,
            history_length=args.history,
        )
    except ValueError as error:
        raise UserError(str(error)) from None
    if (args.tls_cert_file is None) != (args.tls_key_file is None):
        raise UserError("--tls-cert-file and --tls-key-file go together")
    config = OperatorConfig(
        kubeconfig=args.kubeconfig,
        namespace=args.namespace,
        host=args.webhook_host,
        port=args.webhook_port,
        token_file=args.token_file,
        insecure_webhook=args.insecure_webhook,
        thresholds=thresholds,
        tls=(args.tls_cert_file, args.tls_key_file) if args.tls_cert_file else None,
    )
    kopf.configure(verbose=args.verbose)
    asyncio.run(serve(config))
    return 0
