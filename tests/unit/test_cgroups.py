"""The pure cgroup model: host layouts, real-world container paths, controller files."""

import pytest

from kernel_gossip.core.cgroups import (
    CgroupIdentity,
    CgroupMode,
    CpuCounters,
    CpuQuota,
    QosClass,
    counters_v1,
    counters_v2,
    cpu_delta,
    identify,
    parse_flat_keyed,
    parse_mountinfo,
    parse_proc_cgroup,
    parse_v1_quota,
    parse_v2_cpu_max,
)

# Lines as /proc/self/mountinfo prints them (this machine's hybrid layout first).
HYBRID = """\
24 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
30 24 0:26 / /sys/fs/cgroup rw,relatime shared:9 - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/cpu rw,relatime shared:10 - cgroup cgroup rw,cpu
32 30 0:28 / /sys/fs/cgroup/cpuacct rw,relatime shared:11 - cgroup cgroup rw,cpuacct
33 30 0:29 / /sys/fs/cgroup/memory rw,relatime shared:12 - cgroup cgroup rw,memory
34 30 0:30 / /sys/fs/cgroup/systemd rw,relatime shared:13 - cgroup cgroup rw,name=systemd
35 30 0:31 / /sys/fs/cgroup/unified rw,relatime shared:14 - cgroup2 cgroup2 rw
"""
PURE_V2 = """\
24 1 254:0 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
29 24 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 \
rw,nsdelegate,memory_recursiveprot
"""
PURE_V1_COMOUNTED = """\
24 1 254:0 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 24 0:26 / /sys/fs/cgroup ro,nosuid shared:9 - tmpfs tmpfs ro,mode=755
32 30 0:28 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:11 - cgroup cgroup rw,cpu,cpuacct
33 30 0:29 / /sys/fs/cgroup/pids rw,nosuid shared:12 - cgroup cgroup rw,pids
"""


def test_hybrid_layout_of_this_kind_of_host() -> None:
    mounts = parse_mountinfo(HYBRID)
    assert mounts.mode is CgroupMode.HYBRID
    assert mounts.v1["cpu"] == "/sys/fs/cgroup/cpu"
    assert mounts.v1["cpuacct"] == "/sys/fs/cgroup/cpuacct"
    assert "name=systemd" not in mounts.v1
    assert mounts.unified == "/sys/fs/cgroup/unified"


def test_pure_v2() -> None:
    mounts = parse_mountinfo(PURE_V2)
    assert mounts.mode is CgroupMode.V2
    assert mounts.unified == "/sys/fs/cgroup"
    assert mounts.v1 == {}


def test_pure_v1_with_comounted_cpu_and_cpuacct() -> None:
    mounts = parse_mountinfo(PURE_V1_COMOUNTED)
    assert mounts.mode is CgroupMode.V1
    assert mounts.v1["cpu"] == mounts.v1["cpuacct"] == "/sys/fs/cgroup/cpu,cpuacct"
    assert mounts.unified is None
    assert mounts.hierarchies == ("/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/pids")


def test_every_hierarchy_is_listed_named_ones_too_never_the_tmpfs() -> None:
    """runc makes a container's cgroup in each: the lab's pod parents go in each."""
    assert parse_mountinfo(HYBRID).hierarchies == (
        "/sys/fs/cgroup/cpu",
        "/sys/fs/cgroup/cpuacct",
        "/sys/fs/cgroup/memory",
        "/sys/fs/cgroup/systemd",
        "/sys/fs/cgroup/unified",
    )
    assert parse_mountinfo(PURE_V2).hierarchies == ("/sys/fs/cgroup",)


def test_no_cgroups_mounted_is_an_error() -> None:
    with pytest.raises(ValueError, match="no cgroup"):
        parse_mountinfo("24 1 254:0 / / rw - ext4 /dev/sda1 rw\n")


UID = "0d6f2c4e-8a1b-4c3d-9e5f-7a8b9c0d1e2f"
UID_US = UID.replace("-", "_")
CID = "4f1d2c3b5a6978e0d1c2b3a4f5e6d7c8b9a0f1e2d3c4b5a69788796a5b4c3d2e"

REAL_WORLD_PATHS = [
    # cgroupfs driver (containerd, docker shim): Burstable, BestEffort, Guaranteed
    (
        f"/kubepods/burstable/pod{UID}/{CID}",
        CgroupIdentity(UID, CID, None, QosClass.BURSTABLE),
    ),
    (
        f"/kubepods/besteffort/pod{UID}/{CID}",
        CgroupIdentity(UID, CID, None, QosClass.BEST_EFFORT),
    ),
    (f"/kubepods/pod{UID}/{CID}", CgroupIdentity(UID, CID, None, QosClass.GUARANTEED)),
    # cgroupfs driver, CRI-O names its leaves crio-<id>
    (
        f"/kubepods/burstable/pod{UID}/crio-{CID}",
        CgroupIdentity(UID, CID, "cri-o", QosClass.BURSTABLE),
    ),
    # the pod cgroup itself, no container
    (f"/kubepods/burstable/pod{UID}", CgroupIdentity(UID, None, None, QosClass.BURSTABLE)),
    (f"/kubepods/pod{UID}", CgroupIdentity(UID, None, None, QosClass.GUARANTEED)),
    # systemd driver
    (
        f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_US}.slice/"
        f"cri-containerd-{CID}.scope",
        CgroupIdentity(UID, CID, "containerd", QosClass.BURSTABLE),
    ),
    (
        f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_US}.slice/"
        f"crio-{CID}.scope",
        CgroupIdentity(UID, CID, "cri-o", QosClass.BEST_EFFORT),
    ),
    (
        f"/kubepods.slice/kubepods-pod{UID_US}.slice/docker-{CID}.scope",
        CgroupIdentity(UID, CID, "docker", QosClass.GUARANTEED),
    ),
    # kind nests the node's kubelet cgroups under kubelet.slice
    (
        f"/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-burstable.slice/"
        f"kubelet-kubepods-burstable-pod{UID_US}.slice/cri-containerd-{CID}.scope",
        CgroupIdentity(UID, CID, "containerd", QosClass.BURSTABLE),
    ),
    (
        f"/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-pod{UID_US}.slice/"
        f"cri-containerd-{CID}.scope",
        CgroupIdentity(UID, CID, "containerd", QosClass.GUARANTEED),
    ),
    # kind node container with the cgroupfs driver inside docker
    (
        f"/docker/{CID}/kubepods/besteffort/pod{UID}/{CID[::-1]}",
        CgroupIdentity(UID, CID[::-1], None, QosClass.BEST_EFFORT),
    ),
    # plain docker and podman, no Kubernetes
    (f"/docker/{CID}", CgroupIdentity(None, CID, "docker", None)),
    (f"/system.slice/docker-{CID}.scope", CgroupIdentity(None, CID, "docker", None)),
    (f"/machine.slice/libpod-{CID}.scope", CgroupIdentity(None, CID, "podman", None)),
    (f"/libpod_parent/libpod-{CID}", CgroupIdentity(None, CID, "podman", None)),
    # plain cgroups
    ("/", CgroupIdentity()),
    ("/demo/c1", CgroupIdentity()),
    ("/system.slice/ssh.service", CgroupIdentity()),
    ("/user.slice/user-1000.slice/session-2.scope", CgroupIdentity()),
    ("/docker", CgroupIdentity()),
    ("/docker/not-an-id", CgroupIdentity()),
    ("/kubepods", CgroupIdentity()),
    ("/kubepods/burstable", CgroupIdentity()),
    ("/kubepods.slice/kubepods-burstable.slice", CgroupIdentity()),
    # a "pod" directory outside kubepods is not a pod
    (f"/demo/pod{UID}/{CID}", CgroupIdentity()),
]


@pytest.mark.parametrize(("path", "expected"), REAL_WORLD_PATHS)
def test_identify_real_world_paths(path: str, expected: CgroupIdentity) -> None:
    assert identify(path) == expected


def test_identify_normalises_uid_case_and_trailing_slash() -> None:
    identity = identify(f"/kubepods/burstable/pod{UID.upper()}/{CID}/")
    assert identity.pod_uid == UID
    assert identity.container_id == CID


def test_flat_keyed_skips_malformed_lines() -> None:
    text = "nr_periods 12\nnr_throttled 3\nbogus\nthrottled_time 5000\nx y z\n"
    assert parse_flat_keyed(text) == {"nr_periods": 12, "nr_throttled": 3, "throttled_time": 5000}


def test_v1_quota() -> None:
    assert parse_v1_quota("-1\n", "100000\n") is None
    quota = parse_v1_quota("20000\n", "100000\n")
    assert quota == CpuQuota(20000, 100000)
    assert quota is not None
    assert quota.cores == pytest.approx(0.2)


def test_v2_cpu_max() -> None:
    assert parse_v2_cpu_max("max 100000\n") is None
    assert parse_v2_cpu_max("50000 100000\n") == CpuQuota(50000, 100000)
    assert parse_v2_cpu_max("150000 50000") == CpuQuota(150000, 50000)


def test_counters_v1_units() -> None:
    counters = counters_v1(
        "nr_periods 10\nnr_throttled 4\nthrottled_time 123456789\n",
        "50000",
        "100000",
        "987654321\n",
    )
    assert counters == CpuCounters(10, 4, 123456789, 987654321, CpuQuota(50000, 100000))


def test_counters_v2_units_are_normalised_to_ns() -> None:
    stat = (
        "usage_usec 2500\nuser_usec 2000\nsystem_usec 500\nnr_periods 7\n"
        "nr_throttled 2\nthrottled_usec 1500\nnr_bursts 0\nburst_usec 0\n"
    )
    counters = counters_v2(stat, "max 100000")
    assert counters == CpuCounters(7, 2, 1_500_000, 2_500_000, None)


def test_counters_v2_without_cpu_controller() -> None:
    counters = counters_v2("usage_usec 10\nuser_usec 5\nsystem_usec 5\n", None)
    assert (counters.nr_periods, counters.nr_throttled, counters.quota) == (0, 0, None)


def test_cpu_delta() -> None:
    before = CpuCounters(100, 40, 2_000_000_000, 10_000_000_000, CpuQuota(20000, 100000))
    after = CpuCounters(150, 90, 4_500_000_000, 11_000_000_000, CpuQuota(20000, 100000))
    delta = cpu_delta(before, after, 5.0)
    assert delta.nr_periods == 50
    assert delta.nr_throttled == 50
    assert delta.throttled_percent == 100.0
    assert delta.throttled_seconds == pytest.approx(2.5)
    assert delta.usage_cores == pytest.approx(0.2)
    assert delta.limit_cores == pytest.approx(0.2)


def test_cpu_delta_of_a_bursty_window() -> None:
    """30 of 150 periods throttled is 20%, not all or nothing, and never the inverse."""
    before = CpuCounters(1000, 400, 7_000_000_000, 20_000_000_000, CpuQuota(50000, 100000))
    after = CpuCounters(1150, 430, 7_600_000_000, 26_000_000_000, CpuQuota(50000, 100000))
    delta = cpu_delta(before, after, 15.0)
    assert (delta.nr_periods, delta.nr_throttled) == (150, 30)
    assert delta.throttled_percent == pytest.approx(20.0)
    assert delta.throttled_seconds == pytest.approx(0.6)
    assert delta.usage_cores == pytest.approx(0.4)
    assert delta.limit_cores == pytest.approx(0.5)


def test_cpu_delta_without_periods_is_not_throttled() -> None:
    counters = CpuCounters(0, 0, 0, 0, None)
    delta = cpu_delta(counters, counters, 1.0)
    assert delta.throttled_percent == 0.0
    assert delta.limit_cores is None


def test_cpu_delta_rejects_empty_window() -> None:
    counters = CpuCounters(0, 0, 0, 0, None)
    with pytest.raises(ValueError, match="window"):
        cpu_delta(counters, counters, 0.0)


def test_proc_cgroup_hybrid() -> None:
    text = "12:pids:/demo/c1\n11:cpuacct:/demo/c1\n10:cpu:/demo/c1\n1:name=systemd:/\n0::/demo/c1\n"
    paths = parse_proc_cgroup(text)
    assert paths["cpu"] == paths["cpuacct"] == paths["unified"] == "/demo/c1"
    assert paths["name=systemd"] == "/"


def test_proc_cgroup_comounted_controllers() -> None:
    paths = parse_proc_cgroup("4:cpu,cpuacct:/kubepods/x\n0::/\n")
    assert paths["cpu"] == paths["cpuacct"] == "/kubepods/x"
    assert paths["unified"] == "/"


# Edges that mutation testing (scripts/mutation.sh) showed were unpinned ---------------

UID = "1f0c6a2e-7b1d-4c7e-9a53-3d2b7f1e9c10"
UID_UNDERSCORED = UID.replace("-", "_")
CID = "a" * 64


def test_mountinfo_skips_malformed_lines_wherever_they_are() -> None:
    text = (
        "no separator here\n"
        "1 2 3 - cgroup2 cgroup2 rw\n"  # too few fields before the separator
        "31 23 0:28 / /x - cgroup\n"  # too few after it
        "40 31 0:40 / /sys/fs/cgroup/unified - cgroup2 none rw\n"  # 5 fields, source none
        "41 31 0:41 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n"
    )
    mounts = parse_mountinfo(text)
    assert mounts.mode is CgroupMode.HYBRID
    assert mounts.unified == "/sys/fs/cgroup/unified"
    assert mounts.v1 == {"cpu": "/sys/fs/cgroup/cpu"}
    with pytest.raises(ValueError, match=r"^no cgroup file system is mounted$"):
        parse_mountinfo("")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        (f"/pod{UID}/kubepods", CgroupIdentity()),  # a pod-like name at the root
        (f"/kubepods/other/pod{UID}", CgroupIdentity()),  # not a QoS class
        (f"/burstable/pod{UID}", CgroupIdentity()),  # a QoS name outside kubepods
        (f"/burstable/pod{UID}/kubepods", CgroupIdentity()),
        (f"/libpod-{CID}", CgroupIdentity()),  # libpod- outside libpod_parent
        (
            f"/kubepods/burstable/pod{UID_UNDERSCORED}",
            CgroupIdentity(pod_uid=UID, qos_class=QosClass.BURSTABLE),
        ),
        (
            f"/kubepods.slice/kubepods-burstable.slice/pod{UID}",
            CgroupIdentity(pod_uid=UID, qos_class=QosClass.BURSTABLE),
        ),
        (
            f"/kubelet.slice/kubelet-kubepods-besteffort.slice/pod{UID}",
            CgroupIdentity(pod_uid=UID, qos_class=QosClass.BEST_EFFORT),
        ),
    ],
)
def test_identify_edges(path: str, expected: CgroupIdentity) -> None:
    assert identify(path) == expected


def test_flat_keyed_reads_negative_values() -> None:
    assert parse_flat_keyed("delta -5\nodd X5\n") == {"delta": -5}


def test_v2_cpu_max_without_period_takes_the_default() -> None:
    assert parse_v2_cpu_max("50000") == CpuQuota(50000, 100000)


def test_counters_default_to_zero_when_a_file_lacks_a_key() -> None:
    assert counters_v1("", "-1", "100000", "5\n") == CpuCounters(0, 0, 0, 5, None)
    assert counters_v2("nr_periods 3\n", "50000 100000") == CpuCounters(
        3, 0, 0, 0, CpuQuota(50000, 100000)
    )


def test_cpu_delta_is_exact_in_seconds_and_keeps_its_window() -> None:
    before = CpuCounters(0, 0, 0, 0, None)
    after = CpuCounters(10, 5, 2_500_000_000, 1_000_000_000, None)
    delta = cpu_delta(before, after, 5.0)
    assert (delta.window_seconds, delta.throttled_seconds, delta.usage_cores) == (5.0, 2.5, 0.2)
    with pytest.raises(ValueError, match=r"^the window must be longer than zero seconds$"):
        cpu_delta(before, after, -1.0)


def test_proc_cgroup_paths_may_hold_colons_and_bad_lines_are_skipped() -> None:
    paths = parse_proc_cgroup("garbage\n1:name=systemd:/a:b\n0::/c:d\n")
    assert paths == {"name=systemd": "/a:b", "unified": "/c:d"}
