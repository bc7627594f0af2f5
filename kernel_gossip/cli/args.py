"""Argument types and the parser class every subcommand shares (imported by the
subcommands, never importing them: no cycle with main)."""

import argparse
from typing import NoReturn

from kernel_gossip.errors import EXIT_USER_ERROR
from kernel_gossip.schema.signal import MAX_WINDOW_SECONDS


class OneLineParser(argparse.ArgumentParser):
    """Argument errors as one line naming the fix (the usage is one --help away)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USER_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def positive_seconds(text: str) -> float:
    """argparse type for durations: a number of seconds above zero."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value <= MAX_WINDOW_SECONDS:
        raise argparse.ArgumentTypeError(
            f"must be within (0, {MAX_WINDOW_SECONDS:g}] seconds: {text}"
        )
    return value


def port_number(text: str) -> int:
    """argparse type: a TCP port number."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be within [1, 65535]: {text}")
    return value
