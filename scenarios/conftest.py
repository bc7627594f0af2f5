"""`pytest scenarios/`: one test per spec in specs/, each run by the same runner as
`kernel-gossip scenario run`, on the local lab (default) or on kind.

Options: --provider local|kind, --report-dir DIR, --soak SECONDS (each load that long);
pytest-kind's own --kind-bin, --kind-kubectl-bin, --cluster-name and --keep-cluster for
kind (it never downloads here: the installed kind and kubectl are passed to it)."""

import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from kernel_gossip.scenarios.cluster import Cluster

Say = Callable[[str], None]


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("scenarios")
    group.addoption(
        "--provider",
        choices=("local", "kind"),
        default="local",
        help="local: this machine's lab (brought up if it is not); kind: a "
        "cluster made by lab.yml -e provider=kind, reached through pytest-kind",
    )
    group.addoption(
        "--report-dir",
        type=Path,
        default=None,
        metavar="DIR",
        help="write each scenario's report (stats CSV, resources, truth, PNG)",
    )
    group.addoption(
        "--soak",
        type=float,
        default=None,
        metavar="SECONDS",
        help="run each load this long instead of its durationSeconds",
    )


@pytest.fixture(scope="session")
def say(pytestconfig: pytest.Config) -> Say:
    """Progress and each expectation's line on the terminal, past pytest's capture."""
    capture = pytestconfig.pluginmanager.getplugin("capturemanager")

    def show(message: str) -> None:
        with capture.global_and_fixture_disabled():
            print(f"[scenario] {message}", file=sys.stderr, flush=True)

    return show


def _local(say: Say, require: Callable[[bool, str], None]) -> Iterator["Cluster"]:
    """The checkout's lab when it is up (left up); else a lab of the session's own,
    brought down at the end."""
    from kernel_gossip.errors import UserError
    from kernel_gossip.host.bpf import check_prerequisites
    from kernel_gossip.lab import stack
    from kernel_gossip.scenarios.cluster import LocalLab

    try:
        check_prerequisites()
    except UserError as error:
        require(False, str(error))
    if stack.status()["up"]:
        yield LocalLab.connect(say)
        return
    with pytest.MonkeyPatch.context() as patch:
        import tempfile

        with tempfile.TemporaryDirectory(prefix="kernel-gossip-scenarios-") as lab:
            patch.setenv("KERNEL_GOSSIP_LAB_DIR", lab)
            try:
                yield LocalLab.connect(say)
            finally:
                stack.down(Path(lab), say=lambda message: say(f"[lab] {message}"))


def _kind(
    config: pytest.Config, say: Say, require: Callable[[bool, str], None]
) -> Iterator["Cluster"]:
    from pytest_kind import KindCluster

    from kernel_gossip.scenarios.cluster import KindNode

    tools = {}
    for option, name in (("kind_bin", "kind"), ("kind_kubectl_bin", "kubectl")):
        given = config.getoption(option) or shutil.which(name)
        require(
            bool(given) and Path(str(given)).is_file(),
            f"provider kind needs {name} installed (or --{option.replace('_', '-')})",
        )
        tools[name] = Path(str(given)).resolve()  # absolute: pytest-kind never downloads
    require(shutil.which("docker") is not None, "provider kind needs docker")
    cluster = KindCluster(
        str(config.getoption("cluster_name")),
        kind_path=tools["kind"],
        kubectl_path=tools["kubectl"],
    )
    cluster.create()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("KUBECONFIG", str(Path(cluster.kubeconfig_path).resolve()))
        patch.setenv("KIND_CLUSTER_NAME", cluster.name)
        patch.setenv("KUBECTL", str(tools["kubectl"]))
        node = KindNode.connect(say)
        try:
            yield node
        finally:
            node.close()
            if not config.getoption("keep_cluster"):
                cluster.delete()


@pytest.fixture(scope="session")
def cluster(
    pytestconfig: pytest.Config, say: Say, require: Callable[[bool, str], None]
) -> Iterator["Cluster"]:
    if pytestconfig.getoption("provider") == "kind":
        yield from _kind(pytestconfig, say, require)
    else:
        yield from _local(say, require)
