"""Birth certificates of real runc and crun starts against strace -f of the same starts.

Each start runs under `strace -f -y` while the probe watches the host, so both observe the
very same runtime process tree; births_truth.py counts strace's log up to the entrypoint's
execve. Noise processes (not runtimes) do namespaces, mounts, cgroup writes and execs
meanwhile: anything of theirs that leaked into a certificate would break the exact figures.
"""

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from births_lab import (
    NOISE_CONTAINER_ID,
    NOISE_POD_UID,
    RUNTIMES,
    Container,
    assert_consistent,
    assert_matches_strace,
    assert_no_noise,
    missing_tools,
    new_container,
    noise,
    run,
)
from births_lab import remove_pod_cgroups as cleanup_pods

from conftest import IN_CI, Require
from kernel_gossip.probes.births import BirthWatch
from kernel_gossip.schema.report import ContainerBirth

pytestmark = [pytest.mark.kernel, pytest.mark.slow]


@pytest.fixture(scope="module")
def watch(kernel_prereqs: None, require: Require) -> Iterator[BirthWatch]:
    missing = missing_tools()
    require(not missing, f"missing {', '.join(missing)}: run scripts/setup.sh")
    with BirthWatch(list(RUNTIMES)) as probe:
        probe.poll(0)
        yield probe


@pytest.fixture
def pods() -> Iterator[list[str]]:
    created: list[str] = []
    yield created
    cleanup_pods(created)


def collect(
    watch: BirthWatch, containers: list[Container], timeout: float = 60
) -> dict[str, ContainerBirth]:
    """The certificates of these containers, by container ID."""
    wanted = {c.container_id for c in containers}
    found: dict[str, ContainerBirth] = {}
    deadline = time.monotonic() + timeout
    while not wanted <= found.keys() and time.monotonic() < deadline:
        for birth in watch.poll(0.2):
            found.setdefault(birth.container_id, birth)
    for birth in watch.finish():
        found.setdefault(birth.container_id, birth)
    return found


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_birth_matches_strace_of_the_same_start(
    watch: BirthWatch, pods: list[str], tmp_path: Path, runtime: str
) -> None:
    container = new_container(tmp_path, runtime, extra_mounts=1)
    pods.append(container.pod_uid)
    with noise(tmp_path):
        run([container], traced=True)
        births = collect(watch, [container])
    assert_no_noise(list(births.values()))
    birth = births[container.container_id]
    assert_consistent(birth, container)
    assert_matches_strace(birth, container)
    assert {"mnt", "uts", "ipc", "pid", "net", "cgroup"} <= set(birth.namespaces_created)


def test_ten_concurrent_containers_get_their_own_certificates(
    watch: BirthWatch, pods: list[str], tmp_path: Path
) -> None:
    # Alternating runtimes, each container with its own number of extra mounts.
    containers = [
        new_container(tmp_path, RUNTIMES[index % 2], extra_mounts=index) for index in range(10)
    ]
    pods.extend(c.pod_uid for c in containers)
    run(containers, traced=True)
    births = collect(watch, containers)
    assert sorted(births) == sorted(c.container_id for c in containers)
    for container in containers:
        birth = births[container.container_id]
        assert_consistent(birth, container)
        assert_matches_strace(birth, container)
    # The extra mounts show: each runtime's mounts grow with the container's index.
    for runtime in RUNTIMES:
        mine = sorted(
            (c.extra_mounts, births[c.container_id].mounts)
            for c in containers
            if c.runtime == runtime
        )
        assert [mounts for _, mounts in mine] == sorted({mounts for _, mounts in mine})


def test_untraced_starts_and_a_pod_of_two(
    watch: BirthWatch, pods: list[str], tmp_path: Path
) -> None:
    """Without strace too; two containers of one pod group into one pod birth."""
    sandbox = new_container(tmp_path, "runc")
    app = new_container(tmp_path, "crun", pod_uid=sandbox.pod_uid)
    pods.append(sandbox.pod_uid)
    run([sandbox], traced=False)
    run([app], traced=False)
    births = collect(watch, [sandbox, app])
    for container in (sandbox, app):
        assert_consistent(births[container.container_id], container)
    pod = next(p for p in watch.pod_births() if p.pod_uid == sandbox.pod_uid)
    assert [b.container_id for b in pod.containers] == [sandbox.container_id, app.container_id]
    # runc made the pod's cgroup (no kubelet here): its mkdir is the pod's first event.
    assert pod.pod_cgroup_created_at is not None
    assert pod.started_at <= pod.containers[0].started_at
    assert pod.finished_at > pod.containers[1].started_at


def test_processes_that_are_not_runtimes_add_nothing(watch: BirthWatch, tmp_path: Path) -> None:
    watch.finish()
    births: list[ContainerBirth] = []
    with noise(tmp_path):
        # Runtime invocations that create no container are no births either.
        for argv in (["runc", "--root", str(tmp_path / "r"), "list"], ["crun", "--version"]):
            subprocess.run(argv, check=True, capture_output=True)
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            births += watch.poll(0.2)
    births += watch.finish()
    assert_no_noise(births)
    # Only other sessions' runtimes could be born here; CI runs alone.
    if IN_CI:
        assert births == []


def test_the_noise_would_be_certified_if_unshare_were_a_runtime(
    kernel_prereqs: None, tmp_path: Path
) -> None:
    """The noise is container-like enough that only the runtime names keep it out."""
    with BirthWatch(["unshare"]) as wrong, noise(tmp_path):
        births: list[ContainerBirth] = []
        deadline = time.monotonic() + 30
        while not births and time.monotonic() < deadline:
            births += wrong.poll(0.2)
    assert births, "the noise never looked like a container start"
    assert births[0].pod_uid == NOISE_POD_UID
    assert births[0].container_id == NOISE_CONTAINER_ID
    assert births[0].runtime == "unshare"
