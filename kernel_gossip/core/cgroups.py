"""Pure model of Linux cgroups: the host's layout, who a cgroup belongs to, and its CPU files.

Nothing here touches the file system; cgroupfs.py feeds it file contents. Paths are
"relative to the cgroup root": they start with "/" and are the same in every hierarchy
(e.g. "/kubepods/burstable/pod<uid>/<cid>"), as /proc/PID/cgroup prints them.
"""

import re
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import PurePosixPath


class CgroupMode(StrEnum):
    V1 = "v1"
    V2 = "v2"
    HYBRID = "hybrid"  # v1 controllers plus an (often empty) cgroup2 at .../unified


V1_CONTROLLERS = frozenset(
    {
        "cpu",
        "cpuacct",
        "cpuset",
        "memory",
        "devices",
        "freezer",
        "net_cls",
        "net_prio",
        "blkio",
        "perf_event",
        "hugetlb",
        "pids",
        "rdma",
        "misc",
    }
)


@dataclass(frozen=True)
class CgroupMounts:
    """Where each hierarchy is mounted: v1 controller name -> mount point, and cgroup2;
    `hierarchies` lists every cgroup mount point (named ones like name=systemd too), in
    mount order: runc makes a container's cgroup in each."""

    mode: CgroupMode
    v1: dict[str, str] = field(default_factory=dict)
    unified: str | None = None
    hierarchies: tuple[str, ...] = ()


def parse_mountinfo(text: str) -> CgroupMounts:
    """Read /proc/self/mountinfo and tell v1, v2 or hybrid, with the mount points."""
    v1: dict[str, str] = {}
    unified: str | None = None
    hierarchies: list[str] = []
    for line in text.splitlines():
        pre, sep, post = line.partition(" - ")
        if not sep:
            continue
        fields, post_fields = pre.split(), post.split()
        if len(fields) < 5 or len(post_fields) < 3:
            continue
        mount_point, fstype, super_options = fields[4], post_fields[0], post_fields[2]
        if fstype in ("cgroup", "cgroup2"):
            hierarchies.append(mount_point)
        if fstype == "cgroup2":
            unified = unified or mount_point
        elif fstype == "cgroup":
            for option in super_options.split(","):
                if option in V1_CONTROLLERS:
                    v1.setdefault(option, mount_point)
    if v1 and unified:
        mode = CgroupMode.HYBRID
    elif unified:
        mode = CgroupMode.V2
    elif v1:
        mode = CgroupMode.V1
    else:
        raise ValueError("no cgroup file system is mounted")
    return CgroupMounts(mode=mode, v1=v1, unified=unified, hierarchies=tuple(hierarchies))


class QosClass(StrEnum):
    GUARANTEED = "Guaranteed"
    BURSTABLE = "Burstable"
    BEST_EFFORT = "BestEffort"


@dataclass(frozen=True)
class CgroupIdentity:
    """Who a cgroup belongs to. All None: a plain cgroup, no pod and no container."""

    pod_uid: str | None = None
    container_id: str | None = None
    runtime: str | None = None
    qos_class: QosClass | None = None


_QOS_BY_NAME = {"burstable": QosClass.BURSTABLE, "besteffort": QosClass.BEST_EFFORT}
_UID = r"[0-9a-fA-F]{8}[-_][0-9a-fA-F]{4}[-_][0-9a-fA-F]{4}[-_][0-9a-fA-F]{4}[-_][0-9a-fA-F]{12}"
_ID = r"[0-9a-f]{12,64}"
# systemd driver: kubepods[-<qos>]-pod<uid with underscores>.slice, possibly prefixed by
# kind's "kubelet-" nesting.
_SYSTEMD_POD = re.compile(rf"^(?:[\w-]*-)?kubepods(?:-(burstable|besteffort))?-pod({_UID})\.slice$")
_SYSTEMD_QOS = re.compile(r"^(?:[\w-]*-)?kubepods-(burstable|besteffort)\.slice$")
_CGROUPFS_POD = re.compile(rf"^pod({_UID})$")
# Container leaves. Scopes name their runtime; a cgroupfs-driver leaf is a bare ID
# (containerd, docker) or crio-<id>.
_SCOPE = re.compile(rf"^(cri-containerd|crio|docker|libpod)-({_ID})\.scope$")
_CRIO_LEAF = re.compile(rf"^crio-({_ID})$")
_BARE_ID = re.compile(rf"^({_ID})$")
_DOCKER_FULL_ID = re.compile(r"^[0-9a-f]{64}$")
_RUNTIME_BY_PREFIX = {
    "cri-containerd": "containerd",
    "crio": "cri-o",
    "docker": "docker",
    "libpod": "podman",
}


def identify(path: str) -> CgroupIdentity:
    """Resolve a cgroup path to its pod UID, container ID, runtime and QoS class."""
    parts = [p for p in PurePosixPath(path).parts if p != "/"]
    pod = _find_pod(parts)
    if pod is not None:
        return pod
    return _find_plain_container(parts)


def _find_pod(parts: list[str]) -> CgroupIdentity | None:
    """Kubernetes pods, cgroupfs or systemd driver, at any nesting (kind, docker-in-docker)."""
    for index, part in enumerate(parts):
        qos: QosClass | None = None
        pod_uid: str | None = None
        systemd = _SYSTEMD_POD.match(part)
        if systemd:
            qos = _QOS_BY_NAME.get(systemd.group(1) or "", QosClass.GUARANTEED)
            pod_uid = systemd.group(2).replace("_", "-")
        else:
            cgroupfs = _CGROUPFS_POD.match(part)
            if cgroupfs and index > 0:
                parent = parts[index - 1]
                if parent == "kubepods":
                    qos = QosClass.GUARANTEED
                elif parent in _QOS_BY_NAME and index > 1 and parts[index - 2] == "kubepods":
                    qos = _QOS_BY_NAME[parent]
                elif _SYSTEMD_QOS.match(parent):
                    qos = _QOS_BY_NAME[parent.split("-")[-1].removesuffix(".slice")]
                if qos is not None:
                    pod_uid = cgroupfs.group(1).replace("_", "-")
        if pod_uid is None or qos is None:
            continue
        pod_uid = pod_uid.lower()
        leaf = parts[index + 1] if index + 1 < len(parts) else None
        if leaf is None:
            return CgroupIdentity(pod_uid=pod_uid, qos_class=qos)
        container_id, runtime = _container_leaf(leaf)
        return CgroupIdentity(
            pod_uid=pod_uid, container_id=container_id, runtime=runtime, qos_class=qos
        )
    return None


def _container_leaf(leaf: str) -> tuple[str | None, str | None]:
    scope = _SCOPE.match(leaf)
    if scope:
        return scope.group(2), _RUNTIME_BY_PREFIX[scope.group(1)]
    crio = _CRIO_LEAF.match(leaf)
    if crio:
        return crio.group(1), "cri-o"
    bare = _BARE_ID.match(leaf)
    if bare:
        return bare.group(1), None  # cgroupfs driver: containerd and docker look alike
    return None, None


def _find_plain_container(parts: list[str]) -> CgroupIdentity:
    """docker/podman outside Kubernetes: docker/<id>, *-<id>.scope, libpod_parent/libpod-<id>."""
    if not parts:
        return CgroupIdentity()
    leaf = parts[-1]
    scope = _SCOPE.match(leaf)
    if scope:
        return CgroupIdentity(
            container_id=scope.group(2), runtime=_RUNTIME_BY_PREFIX[scope.group(1)]
        )
    if len(parts) >= 2 and parts[-2] == "docker" and _DOCKER_FULL_ID.match(leaf):
        return CgroupIdentity(container_id=leaf, runtime="docker")
    if len(parts) >= 2 and parts[-2] == "libpod_parent" and leaf.startswith("libpod-"):
        cid = leaf.removeprefix("libpod-")
        if _DOCKER_FULL_ID.match(cid):
            return CgroupIdentity(container_id=cid, runtime="podman")
    return CgroupIdentity()


def parse_flat_keyed(text: str) -> dict[str, int]:
    """Parse 'key value' lines (cpu.stat and friends); lines that are not that are skipped."""
    values: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[1].lstrip("-").isdigit():
            values[parts[0]] = int(parts[1])
    return values


@dataclass(frozen=True)
class CpuQuota:
    quota_us: int
    period_us: int

    @property
    def cores(self) -> float:
        return self.quota_us / self.period_us


def parse_v1_quota(quota_text: str, period_text: str) -> CpuQuota | None:
    """cpu.cfs_quota_us (-1: unlimited) and cpu.cfs_period_us."""
    quota = int(quota_text.strip())
    return None if quota < 0 else CpuQuota(quota, int(period_text.strip()))


def parse_v2_cpu_max(text: str) -> CpuQuota | None:
    """cpu.max: '<quota|max> <period>'."""
    quota, _, period = text.strip().partition(" ")
    return None if quota == "max" else CpuQuota(int(quota), int(period or 100000))


@dataclass(frozen=True)
class CpuCounters:
    """One reading of a cgroup's CPU files, in the kernel's units normalised to ns."""

    nr_periods: int
    nr_throttled: int
    throttled_ns: int
    usage_ns: int
    quota: CpuQuota | None


def counters_v1(cpu_stat: str, quota_us: str, period_us: str, cpuacct_usage: str) -> CpuCounters:
    stat = parse_flat_keyed(cpu_stat)
    return CpuCounters(
        nr_periods=stat.get("nr_periods", 0),
        nr_throttled=stat.get("nr_throttled", 0),
        throttled_ns=stat.get("throttled_time", 0),
        usage_ns=int(cpuacct_usage.strip()),
        quota=parse_v1_quota(quota_us, period_us),
    )


def counters_v2(cpu_stat: str, cpu_max: str | None) -> CpuCounters:
    """cgroup2 cpu.stat; cpu.max is absent where the cpu controller is not enabled."""
    stat = parse_flat_keyed(cpu_stat)
    return CpuCounters(
        nr_periods=stat.get("nr_periods", 0),
        nr_throttled=stat.get("nr_throttled", 0),
        throttled_ns=stat.get("throttled_usec", 0) * 1000,
        usage_ns=stat.get("usage_usec", 0) * 1000,
        quota=parse_v2_cpu_max(cpu_max) if cpu_max is not None else None,
    )


@dataclass(frozen=True)
class CpuDelta:
    """What the kernel's counters say about a window: the throttling and usage figures."""

    window_seconds: float
    nr_periods: int
    nr_throttled: int
    throttled_seconds: float
    usage_cores: float
    limit_cores: float | None

    @property
    def throttled_percent(self) -> float:
        return 100.0 * self.nr_throttled / self.nr_periods if self.nr_periods else 0.0


def cpu_delta(before: CpuCounters, after: CpuCounters, window_seconds: float) -> CpuDelta:
    if window_seconds <= 0:
        raise ValueError("the window must be longer than zero seconds")
    return CpuDelta(
        window_seconds=window_seconds,
        nr_periods=after.nr_periods - before.nr_periods,
        nr_throttled=after.nr_throttled - before.nr_throttled,
        throttled_seconds=(after.throttled_ns - before.throttled_ns) / 1e9,
        usage_cores=(after.usage_ns - before.usage_ns) / 1e9 / window_seconds,
        limit_cores=after.quota.cores if after.quota else None,
    )


@dataclass(frozen=True)
class MemoryCounters:
    """A cgroup's memory usage and the part of it that is inactive page cache."""

    usage_bytes: int
    inactive_file_bytes: int

    @property
    def working_set_bytes(self) -> int:
        """usage - inactive_file, floored at 0: the kubelet's working set (cAdvisor's
        setMemoryStats), what `kubectl top` shows and what the OOM killer acts on."""
        return max(self.usage_bytes - self.inactive_file_bytes, 0)


def memory_v1(usage_in_bytes: str, memory_stat: str) -> MemoryCounters:
    """memory.usage_in_bytes and memory.stat's hierarchical total_inactive_file."""
    stat = parse_flat_keyed(memory_stat)
    return MemoryCounters(int(usage_in_bytes.strip()), stat.get("total_inactive_file", 0))


def memory_v2(memory_current: str | None, memory_stat: str) -> MemoryCounters:
    """memory.current and memory.stat's inactive_file. The root cgroup has no memory.current
    (None): usage is anon + file of its memory.stat, as runc's fs2 reports it for cAdvisor."""
    stat = parse_flat_keyed(memory_stat)
    if memory_current is None:
        usage = stat.get("anon", 0) + stat.get("file", 0)
    else:
        usage = int(memory_current.strip())
    return MemoryCounters(usage, stat.get("inactive_file", 0))


def parse_proc_cgroup(text: str) -> dict[str, str]:
    """/proc/PID/cgroup -> {controller or 'unified' or 'name=...': path}."""
    paths: dict[str, str] = {}
    for line in text.splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        if not controllers:
            paths["unified"] = path
        for controller in controllers.split(","):
            if controller:
                paths[controller] = path
    return paths
