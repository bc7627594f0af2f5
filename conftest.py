"""Suite-wide fixtures. In CI (CI=true) a missing prerequisite FAILS a test instead of
skipping it: a skipped kernel test is a lie of omission. Elsewhere it skips with a reason."""

import os
from collections.abc import Callable

import pytest

IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

Require = Callable[[bool, str], None]


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
    from kernel_gossip.bpfsupport import check_prerequisites
    from kernel_gossip.errors import UserError

    try:
        check_prerequisites()
    except UserError as error:
        require_prerequisite(False, str(error))
