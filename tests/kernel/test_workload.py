"""A workload's close leaves no cgroup behind, even when its processes forked children
that outlive them (the bursty loop's background `sleep`)."""

import os

import pytest

from kernel_gossip.host.cgroupfs import CgroupFs
from kernel_gossip.host.workload import CgroupWorkload

# The shell forks a sleep that outlives it by far more than rmdir's retry: when the
# shell is killed, the sleep alone keeps the cgroup populated.
FORKS_A_LONG_SLEEP = ["/bin/sh", "-c", "sleep 300 & wait"]


@pytest.mark.kernel
@pytest.mark.usefixtures("kernel_prereqs")
def test_close_removes_the_cgroup_its_processes_children_still_hold() -> None:
    fs = CgroupFs.detect()
    path = f"/kernel-gossip-workload-{os.getpid()}"
    with CgroupWorkload(fs, path, limit_cores=0.5) as workload:
        workload.start(FORKS_A_LONG_SLEEP, count=2)
        procs = fs.dir(path) / "cgroup.procs"
        while len(procs.read_text().split()) < 4:  # two shells, two sleeps
            pass
    assert workload.leftovers() == []
    assert not fs.dir(path).exists()
