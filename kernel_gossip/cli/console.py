"""What every subcommand prints through: progress lines on stderr, and tables as wide as
the terminal, or wide enough for whole IDs and paths when piped."""

import sys

from rich.console import Console

from kernel_gossip import Say

PIPED_WIDTH = 1000


def progress_to_stderr(prefix: str) -> Say:
    """A Say that prints `[prefix] message` on stderr, at once."""

    def say(message: str) -> None:
        print(f"[{prefix}] {message}", file=sys.stderr, flush=True)

    return say


def wide_console(piped_width: int = PIPED_WIDTH) -> Console:
    """The terminal's width, or `piped_width` when stdout is a file or a pipe."""
    console = Console()
    return console if console.is_terminal else Console(width=piped_width)
