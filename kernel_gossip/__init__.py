"""kernel-gossip: what the Linux kernel knows about your pods, measured with eBPF."""

from collections.abc import Callable

__version__ = "0.1.0"

Say = Callable[[str], None]
"""The progress callback every long step takes: print, a prefixed stderr line, or quiet."""


def quiet(_: str) -> None:
    """A Say that says nothing."""
