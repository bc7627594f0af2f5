"""The agent's measuring window on the real kernel: a container that leaves between its
discovery and the window's first read of cpu.stat skips that window; it never stops the agent
(the lab's quick reset, deleting every pod at once, once did)."""

import uuid
from pathlib import Path

import pytest

from conftest import Require
from kernel_gossip.agent import daemon
from kernel_gossip.agent.daemon import Agent, AgentConfig
from kernel_gossip.agent.signals import PodRef, ThrottleTracker
from kernel_gossip.core.cgroups import CgroupMode
from kernel_gossip.host.cgroupfs import CgroupFs
from kernel_gossip.host.workload import CgroupWorkload
from kernel_gossip.probes.observe import Target
from kernel_gossip.probes.runqlat import KeyMode, RunqueueProbe

pytestmark = pytest.mark.kernel


class NoPods:
    """A node whose runtime knows no pod: this test is about windows, not signals."""

    def container(self, container_id: str, cgroup_path: str) -> PodRef | None:
        return None

    def pod(self, pod_uid: str) -> PodRef | None:
        return None

    def problem(self) -> str | None:
        return None

    def check(self) -> None:
        return None


def test_a_container_gone_before_the_first_read_skips_the_window(
    require: Require, kernel_prereqs: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fs = CgroupFs.detect()
    container_id = uuid.uuid4().hex + uuid.uuid4().hex
    path = f"/kubepods/besteffort/pod{uuid.uuid4()}/{container_id}"
    workload = CgroupWorkload(fs, path, limit_cores=0.5)
    workload.start(["sleep", "60"])
    discover = daemon.container_cgroups

    def discovered_then_gone(found_on: CgroupFs) -> list[Target]:
        targets = discover(found_on)
        workload.close()  # the container leaves right after the agent listed it
        return targets

    monkeypatch.setattr(daemon, "container_cgroups", discovered_then_gone)
    agent = Agent(
        AgentConfig(
            operator_url="http://127.0.0.1:9",
            token=None,
            interval=0.5,
            node="test-node",
            spool_dir=tmp_path / "spool",
            metrics_port=0,
        ),
        NoPods(),
    )
    mode = KeyMode.TGID if fs.mode is CgroupMode.V1 else KeyMode.CGROUP_ID
    probe = RunqueueProbe(mode)
    try:
        before = agent.metrics.windows._value.get()
        agent._one_window(probe, ThrottleTracker(25.0))
        assert agent.metrics.windows._value.get() == before  # skipped, not measured
        assert not any(d.exists() for d in workload._dirs)
    finally:
        probe.close()
        agent.server.server_close()
        workload.close()
