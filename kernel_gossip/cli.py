"""The `kernel-gossip` command: subcommands register themselves from their modules."""

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from kernel_gossip import __version__
from kernel_gossip.errors import EXIT_USER_ERROR, UserError

Handler = Callable[[argparse.Namespace], int]


class OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line naming the fix (the usage is one --help away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from kernel_gossip import births_cli, demo, observe_cli
    from kernel_gossip.agent import cli as agent_cli
    from kernel_gossip.lab import cli as lab_cli
    from kernel_gossip.operator import cli as operator_cli
    from kernel_gossip.rehearse import cli as rehearse_cli
    from kernel_gossip.scenarios import cli as scenario_cli

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


def positive_seconds(text: str) -> float:
    """argparse type for durations: a number of seconds above zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value <= 86400:
        raise argparse.ArgumentTypeError(f"must be within (0, 86400] seconds: {text}")
    return value
