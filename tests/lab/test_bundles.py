"""The agent's socketless pod directory against a real lab containerd's bundles: the same
answers as the CRI's List calls, without the socket."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kernel_gossip.agent.bundles import BundleDirectory
from kernel_gossip.agent.directory import CriDirectory
from kernel_gossip.lab.containerd import layout
from kernel_gossip.lab.stack import LabNode

KERNEL_GOSSIP = str(Path(sys.executable).with_name("kernel-gossip"))
BUSY = """apiVersion: v1
kind: Pod
metadata:
  name: bundle-probe
spec:
  terminationGracePeriodSeconds: 1
  containers:
    - name: sleeper
      image: localhost/kernel-gossip/busybox:1
      command: [sleep, "3600"]
"""


@pytest.mark.slow
def test_bundles_name_every_container_as_the_cri_does(lab_node: LabNode, tmp_path: Path) -> None:
    manifest = tmp_path / "pod.yaml"
    manifest.write_text(BUSY)
    env_lab = {"KERNEL_GOSSIP_LAB_DIR": str(lab_node.lab)}

    def pods(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [KERNEL_GOSSIP, "lab", "pods", *args],
            capture_output=True,
            text=True,
            env=os.environ | env_lab,
            check=False,
        )

    applied = pods("apply", "-f", str(manifest), "--kubeconfig", str(lab_node.kubeconfig), "--json")
    assert applied.returncode == 0, applied.stderr
    try:
        (pod,) = json.loads(applied.stdout)
        task_dir = layout(lab_node.lab).state / "io.containerd.runtime.v2.task"
        bundles = task_dir / "k8s.io"
        by_bundles = BundleDirectory(bundles)
        by_cri = CriDirectory(lab_node.socket)
        (container,) = pod["containers"]
        cid = container["containerID"]
        cgroup = f"/kubepods/besteffort/pod{pod['uid']}/{cid}"
        assert by_bundles.container(cid, cgroup) == by_cri.container(cid, cgroup)
        assert by_bundles.pod(pod["uid"]) == by_cri.pod(pod["uid"])
        assert by_bundles.problem() is None
    finally:
        deleted = pods("delete", "-f", str(manifest), "--kubeconfig", str(lab_node.kubeconfig))
        assert deleted.returncode == 0, deleted.stderr


def test_unreadable_bundles_are_a_health_problem(tmp_path: Path) -> None:
    directory = BundleDirectory(tmp_path / "missing")
    directory.check()
    assert directory.problem() is not None
    assert directory.container("c" * 64, "/kubepods/pod1/" + "c" * 64) is None
