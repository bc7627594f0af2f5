"""One test per spec file in specs/: the runner of `kernel-gossip scenario run`, every
expectation's measured value and bound printed, the test failing on any that fails."""

from collections.abc import Callable
from pathlib import Path

import pytest

from kernel_gossip.scenarios.cluster import Cluster
from kernel_gossip.scenarios.runner import MissingPrerequisite, run_scenario
from kernel_gossip.scenarios.spec import load_spec

SPECS = sorted((Path(__file__).parent / "specs").glob("*.yaml"))

pytestmark = [pytest.mark.slow, pytest.mark.kernel]


@pytest.mark.parametrize("spec", SPECS, ids=[path.stem for path in SPECS])
def test_scenario(
    spec: Path,
    cluster: Cluster,
    say: Callable[[str], None],
    require: Callable[[bool, str], None],
    pytestconfig: pytest.Config,
) -> None:
    loaded = load_spec(spec)
    say(f"scenario {loaded.scenario.name}: {loaded.scenario.description}")
    try:
        result = run_scenario(
            loaded,
            cluster,
            say,
            pytestconfig.getoption("report_dir"),
            pytestconfig.getoption("soak"),
        )
    except MissingPrerequisite as missing:
        require(False, str(missing))
        return
    for outcome in result.outcomes:
        say(f"{loaded.scenario.name}: {outcome.line()}")
    failed = [outcome.line() for outcome in result.outcomes if not outcome.holds]
    assert not failed, "\n".join(failed)
