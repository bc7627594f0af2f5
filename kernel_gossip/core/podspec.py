"""What a kubelet derives from a v1 Pod before it calls the CRI. Pure: no I/O.

The lab's kubelet (kubelet_daemon.py) reads each Pod the API server stores into the model
below (pod_from_api: the fields it runs; a field it cannot honour rejects the pod), and
`lab pods apply` validates manifests with it before creating them: the API server's
defaulting of requests to limits, then classify the pod's QoS, name its cgroup
(cgroupfs driver), turn requests/limits into CFS shares/quota/period for the pod cgroup
and each container, and put the io.kubernetes.* labels and annotations on sandboxes and
containers that the CRI (and our agent) read back. The numbers follow the kubelet's
pkg/kubelet/cm/helpers_linux.go, kuberuntime_container_linux.go and qos/policy.go.
"""

import json
import math
import re
from dataclasses import dataclass
from fractions import Fraction
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BeforeValidator,
    Field,
    PlainSerializer,
    ValidationError,
    field_validator,
    model_validator,
)

from kernel_gossip.core.cgroups import QosClass
from kernel_gossip.schema.names import is_dns_label, is_dns_subdomain
from kernel_gossip.schema.report import CamelModel

# The kubelet's constants (pkg/kubelet/cm/helpers_linux.go).
MILLI_CPU_TO_CPU = 1000
SHARES_PER_CPU = 1024
MIN_SHARES = 2
MAX_SHARES = 262144
QUOTA_PERIOD_US = 100000
MIN_QUOTA_PERIOD_US = 1000
# pkg/kubelet/qos/policy.go
GUARANTEED_OOM_SCORE_ADJ = -997
BEST_EFFORT_OOM_SCORE_ADJ = 1000

# The labels the kubelet puts on sandboxes and containers (pkg/kubelet/types/labels.go,
# pkg/kubelet/kuberuntime/labels.go): what the CRI's clients map containers to pods with.
POD_NAME_LABEL = "io.kubernetes.pod.name"
POD_NAMESPACE_LABEL = "io.kubernetes.pod.namespace"
POD_UID_LABEL = "io.kubernetes.pod.uid"
CONTAINER_NAME_LABEL = "io.kubernetes.container.name"
CONTAINER_HASH_ANNOTATION = "io.kubernetes.container.hash"
CONTAINER_RESTART_COUNT_ANNOTATION = "io.kubernetes.container.restartCount"
TERMINATION_MESSAGE_PATH_ANNOTATION = "io.kubernetes.container.terminationMessagePath"
TERMINATION_MESSAGE_POLICY_ANNOTATION = "io.kubernetes.container.terminationMessagePolicy"
POD_TERMINATION_GRACE_PERIOD_ANNOTATION = "io.kubernetes.pod.terminationGracePeriod"
CONTAINER_PORTS_ANNOTATION = "io.kubernetes.container.ports"
DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"
# What the kubelet masks and makes read-only in /proc and /sys for the default procMount
# (pkg/securitycontext/util.go), sent explicitly in every container's security context.
DEFAULT_MASKED_PATHS = (
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
)
DEFAULT_READONLY_PATHS = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")

_QUANTITY = re.compile(
    r"^(?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+))"
    r"(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?\d+)?$"
)
_BINARY_SUFFIX = {"Ki": 1, "Mi": 2, "Gi": 3, "Ti": 4, "Pi": 5, "Ei": 6}
_DECIMAL_SUFFIX = {"n": -9, "u": -6, "m": -3, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}


def parse_quantity(text: str | int | float) -> Fraction:
    """A Kubernetes resource.Quantity ("500m", "0.5", "128Mi", "1e3") as an exact number."""
    if isinstance(text, bool):
        raise ValueError(f"not a quantity: {text!r}")
    match = _QUANTITY.match(str(text).strip())
    if match is None:
        raise ValueError(f"not a quantity: {text!r} (examples: 500m, 0.5, 2, 128Mi, 1G)")
    number = Fraction(match["number"])
    suffix = match["suffix"] or ""
    if suffix in _BINARY_SUFFIX:
        return number * (1 << (10 * _BINARY_SUFFIX[suffix]))
    if suffix in _DECIMAL_SUFFIX:
        return number * Fraction(10) ** _DECIMAL_SUFFIX[suffix]
    if suffix:
        return number * Fraction(10) ** int(suffix[1:])
    return number


def _non_negative(text: str | int | float) -> Fraction:
    amount = parse_quantity(text)
    if amount < 0:
        raise ValueError(f"must be greater than or equal to 0: {text!r}")
    return amount


def _to_milli_cpu(text: Any) -> int:
    """Quantity.MilliValue(): rounded up to a whole milli-CPU, as the kubelet reads CPU."""
    return math.ceil(_non_negative(text) * MILLI_CPU_TO_CPU)


def _to_bytes(text: Any) -> int:
    """Quantity.Value(): rounded up to a whole byte."""
    return math.ceil(_non_negative(text))


# Parsed on the way in, written back as canonical quantities ("500m", "134217728").
MilliCpu = Annotated[
    int, BeforeValidator(_to_milli_cpu), PlainSerializer(lambda m: f"{m}m", return_type=str)
]
Bytes = Annotated[int, BeforeValidator(_to_bytes), PlainSerializer(str, return_type=str)]


def milli_cpu_to_shares(milli_cpu: int) -> int:
    """cpu.shares for a CPU request (MilliCPUToShares): 1024 per core, within [2, 262144]."""
    if milli_cpu == 0:
        return MIN_SHARES
    shares = milli_cpu * SHARES_PER_CPU // MILLI_CPU_TO_CPU
    return max(MIN_SHARES, min(MAX_SHARES, shares))


def milli_cpu_to_quota(milli_cpu: int, period_us: int = QUOTA_PERIOD_US) -> int:
    """cfs_quota_us for a CPU limit (MilliCPUToQuota); 0 means no limit, floor 1000 us."""
    if milli_cpu == 0:
        return 0
    return max(MIN_QUOTA_PERIOD_US, milli_cpu * period_us // MILLI_CPU_TO_CPU)


class ResourceAmounts(CamelModel):
    """A v1 ResourceList restricted to what the lab enforces: cpu (milli-CPU), memory (bytes)."""

    cpu: MilliCpu | None = None
    memory: Bytes | None = None


class Resources(CamelModel):
    requests: ResourceAmounts = ResourceAmounts()
    limits: ResourceAmounts = ResourceAmounts()

    @model_validator(mode="after")
    def _requests_default_to_limits(self) -> "Resources":
        """The API server's defaulting: a resource with a limit and no request requests
        its limit. A request above its limit is refused, as the API server refuses it."""
        defaults = {}
        for name in ("cpu", "memory"):
            request, limit = getattr(self.requests, name), getattr(self.limits, name)
            if request is None and limit is not None:
                defaults[name] = limit
            elif request is not None and limit is not None and request > limit:
                raise ValueError(f"{name} request must be less than or equal to {name} limit")
        if not defaults:
            return self
        return self.model_copy(update={"requests": self.requests.model_copy(update=defaults)})


class EnvVar(CamelModel):
    name: str = Field(min_length=1)
    value: str = ""


class ContainerPort(CamelModel):
    container_port: int = Field(ge=1, le=65535)
    name: str | None = None
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"


class Container(CamelModel):
    name: str
    image: str = Field(min_length=1)
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = Field(
        default="IfNotPresent",
        description="The lab pulls from its image table (images.IMAGE_TABLE), not a registry.",
    )
    command: list[str] = Field(default_factory=list)
    args: list[str] = Field(default_factory=list)
    working_dir: str | None = None
    env: list[EnvVar] = Field(default_factory=list)
    ports: list[ContainerPort] = Field(default_factory=list)
    resources: Resources = Resources()

    @field_validator("name")
    @classmethod
    def _dns_label(cls, name: str) -> str:
        if not is_dns_label(name):
            raise ValueError(f"container name {name!r} is not a DNS-1123 label")
        return name


class ObjectMeta(CamelModel):
    name: str
    namespace: str = "default"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _dns_subdomain(cls, name: str) -> str:
        if not is_dns_subdomain(name):
            raise ValueError(f"pod name {name!r} is not a DNS-1123 subdomain")
        return name

    @field_validator("namespace")
    @classmethod
    def _namespace_label(cls, namespace: str) -> str:
        if not is_dns_label(namespace):
            raise ValueError(f"namespace {namespace!r} is not a DNS-1123 label")
        return namespace


RestartPolicy = Literal["Always", "OnFailure", "Never"]


class PodSpec(CamelModel):
    containers: list[Container] = Field(min_length=1)
    restart_policy: RestartPolicy = "Always"
    termination_grace_period_seconds: int = Field(default=30, ge=0)
    hostname: str | None = None

    @field_validator("containers")
    @classmethod
    def _unique_names(cls, containers: list[Container]) -> list[Container]:
        names = [container.name for container in containers]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"container names must be unique: {', '.join(duplicates)}")
        return containers


class Pod(CamelModel):
    """The part of a v1 Pod the lab runs; other fields are refused rather than ignored."""

    api_version: Literal["v1"]
    kind: Literal["Pod"]
    metadata: ObjectMeta
    spec: PodSpec

    @property
    def key(self) -> str:
        return f"{self.metadata.namespace}/{self.metadata.name}"


def qos_class(pod: Pod) -> QosClass:
    """v1qos.GetPodQOS on the defaulted pod: every container with equal, non-zero cpu and
    memory requests and limits is Guaranteed; nothing requested or limited is BestEffort."""
    requests: dict[str, int] = {}
    limits: dict[str, int] = {}
    guaranteed = True
    for container in pod.spec.containers:
        resources = container.resources
        for name in ("cpu", "memory"):
            request = getattr(resources.requests, name)
            if request:
                requests[name] = requests.get(name, 0) + request
        limited = set()
        for name in ("cpu", "memory"):
            limit = getattr(resources.limits, name)
            if limit:
                limited.add(name)
                limits[name] = limits.get(name, 0) + limit
        if limited != {"cpu", "memory"}:
            guaranteed = False
    if not requests and not limits:
        return QosClass.BEST_EFFORT
    if guaranteed and requests == limits:
        return QosClass.GUARANTEED
    return QosClass.BURSTABLE


def pod_cgroup_parent(qos: QosClass, uid: str) -> str:
    """The pod's cgroup with the cgroupfs driver, relative to the cgroup root."""
    if qos is QosClass.GUARANTEED:
        return f"/kubepods/pod{uid}"
    return f"/kubepods/{qos.value.lower()}/pod{uid}"


@dataclass(frozen=True)
class PodCgroupConfig:
    """What the kubelet writes to the pod cgroup (ResourceConfigForPod); None: left as is."""

    cpu_shares: int
    cpu_quota_us: int | None
    cpu_period_us: int | None
    memory_limit_bytes: int | None


def pod_cgroup_config(pod: Pod) -> PodCgroupConfig:
    """Shares from the summed requests; the summed limits as quota and memory limit only
    when every container declares that limit (else one container could exceed it)."""
    qos = qos_class(pod)
    if qos is QosClass.BEST_EFFORT:
        return PodCgroupConfig(MIN_SHARES, None, None, None)
    containers = pod.spec.containers
    cpu_requests = sum(c.resources.requests.cpu or 0 for c in containers)
    cpu_limits = sum(c.resources.limits.cpu or 0 for c in containers)
    memory_limits = sum(c.resources.limits.memory or 0 for c in containers)
    cpu_limited = qos is QosClass.GUARANTEED or all(c.resources.limits.cpu for c in containers)
    memory_limited = qos is QosClass.GUARANTEED or all(
        c.resources.limits.memory for c in containers
    )
    return PodCgroupConfig(
        cpu_shares=milli_cpu_to_shares(cpu_requests),
        cpu_quota_us=milli_cpu_to_quota(cpu_limits) if cpu_limited else None,
        cpu_period_us=QUOTA_PERIOD_US if cpu_limited else None,
        memory_limit_bytes=memory_limits if memory_limited else None,
    )


@dataclass(frozen=True)
class ContainerResources:
    """The CRI's LinuxContainerResources as the kubelet fills them (quota 0: no limit)."""

    cpu_shares: int
    cpu_quota_us: int
    cpu_period_us: int
    memory_limit_bytes: int
    oom_score_adj: int


def container_resources(pod: Pod, container: Container, memory_capacity: int) -> ContainerResources:
    """calculateLinuxResources plus the OOM score adjustment for the pod's QoS."""
    resources = container.resources
    return ContainerResources(
        cpu_shares=milli_cpu_to_shares(resources.requests.cpu or 0),
        cpu_quota_us=milli_cpu_to_quota(resources.limits.cpu or 0),
        cpu_period_us=QUOTA_PERIOD_US,
        memory_limit_bytes=resources.limits.memory or 0,
        oom_score_adj=oom_score_adj(
            qos_class(pod), resources.requests.memory or 0, memory_capacity
        ),
    )


def sandbox_resources(pod: Pod) -> ContainerResources:
    """calculateSandboxResources: the pod's summed requests and limits as one container's
    (a container without a limit adds nothing to the sum, unlike the pod cgroup's rule)."""
    containers = pod.spec.containers
    cpu_limits = sum(c.resources.limits.cpu or 0 for c in containers)
    return ContainerResources(
        cpu_shares=milli_cpu_to_shares(sum(c.resources.requests.cpu or 0 for c in containers)),
        cpu_quota_us=milli_cpu_to_quota(cpu_limits),
        cpu_period_us=QUOTA_PERIOD_US,
        memory_limit_bytes=sum(c.resources.limits.memory or 0 for c in containers),
        oom_score_adj=0,
    )


def oom_score_adj(qos: QosClass, memory_request: int, memory_capacity: int) -> int:
    """GetContainerOOMScoreAdjust: Burstable containers rank by their share of the node's
    memory, kept strictly between Guaranteed (-997 -> 3) and BestEffort (1000)."""
    if memory_capacity <= 0:
        raise ValueError("the node's memory capacity must be above zero")
    if qos is QosClass.GUARANTEED:
        return GUARANTEED_OOM_SCORE_ADJ
    if qos is QosClass.BEST_EFFORT:
        return BEST_EFFORT_OOM_SCORE_ADJ
    adjust = 1000 - (1000 * memory_request) // memory_capacity
    if adjust < 1000 + GUARANTEED_OOM_SCORE_ADJ:
        return 1000 + GUARANTEED_OOM_SCORE_ADJ
    if adjust == BEST_EFFORT_OOM_SCORE_ADJ:
        return adjust - 1
    return adjust


def sandbox_labels(pod: Pod, uid: str) -> dict[str, str]:
    """newPodLabels: the pod's labels, then the kubelet's own (which win)."""
    return {
        **pod.metadata.labels,
        POD_NAME_LABEL: pod.metadata.name,
        POD_NAMESPACE_LABEL: pod.metadata.namespace,
        POD_UID_LABEL: uid,
    }


def sandbox_annotations(pod: Pod) -> dict[str, str]:
    """newPodAnnotations: the pod's annotations as they are."""
    return dict(pod.metadata.annotations)


def container_labels(pod: Pod, uid: str, container: Container) -> dict[str, str]:
    """newContainerLabels: container and pod identity only (pod labels are not copied)."""
    return {
        CONTAINER_NAME_LABEL: container.name,
        POD_NAME_LABEL: pod.metadata.name,
        POD_NAMESPACE_LABEL: pod.metadata.namespace,
        POD_UID_LABEL: uid,
    }


def container_annotations(pod: Pod, container: Container, restart_count: int = 0) -> dict[str, str]:
    """newContainerAnnotations: the restart count is what the kubelet reads back after a
    restart of its own (it keeps no state but the runtime's)."""
    annotations = {
        CONTAINER_HASH_ANNOTATION: container_hash(container),
        CONTAINER_RESTART_COUNT_ANNOTATION: str(restart_count),
        TERMINATION_MESSAGE_PATH_ANNOTATION: DEFAULT_TERMINATION_MESSAGE_PATH,
        TERMINATION_MESSAGE_POLICY_ANNOTATION: "File",
        POD_TERMINATION_GRACE_PERIOD_ANNOTATION: str(pod.spec.termination_grace_period_seconds),
    }
    if container.ports:
        ports = [port.model_dump(by_alias=True, exclude_none=True) for port in container.ports]
        annotations[CONTAINER_PORTS_ANNOTATION] = json.dumps(
            ports, separators=(",", ":"), allow_nan=False
        )
    return annotations


def container_hash(container: Container) -> str:
    """FNV-1a 32 of the container's spec, in hex: changes whenever the spec does, like the
    kubelet's hash (which spew-prints the Go struct, so the values themselves differ)."""
    digest = 0x811C9DC5
    for byte in container.model_dump_json(by_alias=True).encode():
        digest = ((digest ^ byte) * 0x01000193) & 0xFFFFFFFF
    return f"{digest:x}"


def parse_manifests(text: str, source: str) -> list[Pod]:
    """Every Pod in a YAML stream (documents separated by ---), or one ValueError line
    naming the document and the field."""
    try:
        documents = [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as error:
        raise ValueError(f"{source}: not YAML: {' '.join(str(error).split())}") from None
    if not documents:
        raise ValueError(f"{source}: no Pod manifest in it")
    pods = []
    for number, document in enumerate(documents, start=1):
        where = f"{source}" if len(documents) == 1 else f"{source} (document {number})"
        if not isinstance(document, dict):
            raise ValueError(f"{where}: a Pod manifest is a mapping, not {type(document).__name__}")
        try:
            pods.append(Pod.model_validate(document))
        except ValidationError as error:
            first = error.errors()[0]
            field = ".".join(str(part) for part in first["loc"]) or "(top level)"
            message = first["msg"].removeprefix("Value error, ")
            raise ValueError(f"{where}: {field}: {message}") from None
    keys = [pod.key for pod in pods]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise ValueError(f"{source}: the same pod twice: {', '.join(duplicates)}")
    return pods


def log_directory_name(pod: Pod, uid: str) -> str:
    """The kubelet's per-pod log folder name: <namespace>_<name>_<uid>."""
    return f"{pod.metadata.namespace}_{pod.metadata.name}_{uid}"


def container_log_path(container: Container, restart_count: int = 0) -> str:
    """Relative to the pod's log folder: <container>/<restart count>.log."""
    return f"{container.name}/{restart_count}.log"


# What the API server sets or defaults on every Pod that the lab's kubelet does not act on
# (no cluster DNS, one scheduler, no service links, no priority, no service accounts):
# left out when it reads a stored Pod. Any other field it does not run rejects the pod.
SERVER_SET_POD_FIELDS = frozenset(
    {
        "dnsPolicy",
        "schedulerName",
        "securityContext",
        "enableServiceLinks",
        "priority",
        "preemptionPolicy",
        "nodeName",
        "tolerations",
        "serviceAccountName",
        "serviceAccount",
    }
)
SERVER_SET_CONTAINER_FIELDS = frozenset({"terminationMessagePath", "terminationMessagePolicy"})


def pod_from_api(stored: dict[str, Any]) -> Pod:
    """The model of a Pod as the API server stores it (defaulted, with status); ValueError
    names the first field the lab's kubelet cannot honour."""
    metadata = stored.get("metadata", {})
    spec = {k: v for k, v in stored.get("spec", {}).items() if k not in SERVER_SET_POD_FIELDS}
    spec["containers"] = [
        {k: v for k, v in container.items() if k not in SERVER_SET_CONTAINER_FIELDS}
        for container in spec.get("containers", [])
    ]
    document = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            key: metadata[key]
            for key in ("name", "namespace", "labels", "annotations")
            if key in metadata
        },
        "spec": spec,
    }
    try:
        return Pod.model_validate(document)
    except ValidationError as error:
        first = error.errors()[0]
        field = ".".join(str(part) for part in first["loc"]) or "(top level)"
        raise ValueError(f"{field}: {first['msg'].removeprefix('Value error, ')}") from None
