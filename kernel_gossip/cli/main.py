"""The `kernel-gossip` command: subcommands register themselves from their modules."""

import argparse
import sys
from collections.abc import Callable, Sequence

from kernel_gossip import __version__
from kernel_gossip.cli import agent as agent_cli
from kernel_gossip.cli import births as births_cli
from kernel_gossip.cli import demo
from kernel_gossip.cli import lab as lab_cli
from kernel_gossip.cli import observe as observe_cli
from kernel_gossip.cli import operator as operator_cli
from kernel_gossip.cli import rehearse as rehearse_cli
from kernel_gossip.cli import scenario as scenario_cli
from kernel_gossip.cli.args import OneLineParser
from kernel_gossip.errors import EXIT_USER_ERROR, UserError

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(
        prog="kernel-gossip",
        description="What the Linux kernel knows about your containers, measured with eBPF.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)
    subcommands = (observe_cli, births_cli, demo, operator_cli, lab_cli, agent_cli)
    for module in (*subcommands, scenario_cli, rehearse_cli):
        module.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except UserError as error:
        print(f"kernel-gossip {args.command}: error: {error}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print(f"kernel-gossip {args.command}: interrupted", file=sys.stderr)
        return 130
