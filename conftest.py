"""Suite-wide fixtures. In CI (CI=true) a missing prerequisite FAILS a test instead of
skipping it: a skipped kernel test is a lie of omission. Elsewhere it skips with a reason."""

import os
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import pytest
from hypothesis import settings

if TYPE_CHECKING:
    from kernel_gossip.lab.apiserver import LabApi
    from kernel_gossip.lab.containerd import LabContainerd
    from kernel_gossip.lab.stack import LabNode

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

Require = Callable[[bool, str], None]

# Hypothesis: in CI the examples are derived from each test's name (derandomized), so a
# failure found there comes back on every run and on any machine; elsewhere the local
# database replays it. Both print the blob that reproduces a failure (@reproduce_failure).
# No deadline: timings belong in benchmarks/, and the machine is shared.
settings.register_profile("ci", derandomize=True, database=None, print_blob=True, deadline=None)
settings.register_profile("dev", print_blob=True, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if IN_CI else "dev"))


def require_prerequisite(present: bool, reason: str) -> None:
    if present:
        return
    if IN_CI:
        pytest.fail(f"prerequisite missing in CI: {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def require() -> Require:
    return require_prerequisite


@pytest.fixture(scope="session")
def kernel_prereqs() -> None:
    """Root, BCC, kernel headers and tracefs, as every BPF probe needs them."""
    from kernel_gossip.errors import UserError
    from kernel_gossip.host.bpf import check_prerequisites

    try:
        check_prerequisites()
    except UserError as error:
        require_prerequisite(False, str(error))


@pytest.fixture(scope="session")
def lab_api(
    tmp_path_factory: pytest.TempPathFactory, pytestconfig: pytest.Config
) -> Iterator["LabApi"]:
    """A real Kubernetes API server (lab/apiserver) with our CRDs, started once per session
    in a directory of its own and stopped at the end. Its progress (a cold build takes
    minutes) goes to the terminal, past pytest's capture."""
    from lab_sessions import lab_api_session

    capture = pytestconfig.pluginmanager.getplugin("capturemanager")

    def progress(message: str) -> None:
        with capture.global_and_fixture_disabled():
            print(f"[lab api] {message}", file=sys.stderr, flush=True)

    directory = tmp_path_factory.mktemp("lab-api")
    yield from lab_api_session(directory, require_prerequisite, progress)


@pytest.fixture(scope="session")
def lab_containerd(tmp_path_factory: pytest.TempPathFactory) -> Iterator["LabContainerd"]:
    """The lab's containerd (CRI, runc, CNI bridge) with its own root, socket and pod
    network, started once per session and stopped, with every pod, at the end."""
    from lab_sessions import lab_containerd_session

    yield from lab_containerd_session(tmp_path_factory.mktemp("lab"), require_prerequisite)


@pytest.fixture(scope="session")
def lab_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator["LabNode"]:
    """A lab node of its own (API server, containerd, the lab's kubelet) for the session,
    brought down with `lab down` at the end: pods go through the API as with kubectl."""
    from lab_sessions import lab_node_session

    yield from lab_node_session(tmp_path_factory.mktemp("node"), require_prerequisite)
