"""The session fixtures' bodies (conftest.py registers them): a lab API server, a lab
containerd and a lab node, each in a directory of its own, stopped at the end. A part
that cannot start is reported to missing(False, reason): a failure in CI, a skip elsewhere."""

import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from kernel_gossip import Say
from kernel_gossip.errors import UserError
from kernel_gossip.lab import apibuild, apiserver, containerd, stack
from kernel_gossip.lab.apiserver import LabApi
from kernel_gossip.lab.containerd import LabContainerd
from kernel_gossip.lab.stack import LabNode

Missing = Callable[[bool, str], None]


def _to_terminal(prefix: str) -> Say:
    """cli.console.progress_to_stderr, but on the real stderr: past pytest's capture."""

    def say(message: str) -> None:
        print(f"[{prefix}] {message}", file=sys.__stderr__, flush=True)

    return say


def lab_api_session(directory: Path, missing: Missing, progress: Say) -> Iterator[LabApi]:
    try:
        # A cold build takes minutes once per machine: pytest-timeout's alarm, if set, is
        # paused meanwhile so it does not count against the first test (steps have a cap).
        remaining, _ = signal.setitimer(signal.ITIMER_REAL, 0)
        try:
            apibuild.ensure_binary(progress)
            apibuild.kubectl_path(progress)
        finally:
            if remaining:
                signal.setitimer(signal.ITIMER_REAL, remaining)
        api = apiserver.start(directory, progress=progress)
    except UserError as error:
        missing(False, f"the lab API server did not start: {error}")
        raise
    try:
        yield api
    finally:
        apiserver.stop(directory)


def lab_containerd_session(lab: Path, missing: Missing) -> Iterator[LabContainerd]:
    """Its own bridge and subnet; every pod goes with it."""
    progress = _to_terminal("lab containerd")
    try:
        socket = containerd.start_containerd(lab, progress)
    except UserError as error:
        missing(False, f"the lab's containerd did not start: {error}")
        raise
    try:
        yield LabContainerd(lab, socket)
    finally:
        containerd.stop_containerd(lab, progress)


def lab_node_session(lab: Path, missing: Missing) -> Iterator[LabNode]:
    """Brought down (`lab down`) at the end."""
    progress = _to_terminal("lab node")
    try:
        kubeconfig, socket_path = stack.up_node(lab, progress)
    except UserError as error:
        stack.down(lab, progress)
        missing(False, f"the lab's node did not come up: {error}")
        raise
    try:
        yield LabNode(lab.resolve(), kubeconfig, socket_path)
    finally:
        stack.down(lab, progress)
