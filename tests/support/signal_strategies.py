"""Hypothesis strategies for webhook bodies: valid signals and distinct ways to be wrong.

Shared by the payload unit tests and the end-to-end webhook tests.
"""

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from hypothesis import strategies as st

from kernel_gossip.schema.report import MAX_CORES, MIN_CPU_LIMIT_CORES

TALK_CURL_BODY = (
    '{"type":"cpu_throttle","pod_name":"live-demo","namespace":"kernel-gossip",'
    '"container_name":"app","throttle_percentage":78.5,"actual_cpu_usage":1.5,'
    '"reported_cpu_usage":0.6,"period_seconds":60,"timestamp":"2025-08-25T11:00:00Z"}'
)
"""The talk's own curl body ("The Third Wow Moment"), byte for byte."""

ONE_MIB = 1024 * 1024

THROTTLE_FULL: dict[str, Any] = {
    "type": "cpu_throttle",
    "pod_name": "web-7d4b9c",
    "namespace": "shop",
    "container_name": "nginx",
    "throttle_percentage": 40.0,
    "actual_cpu_usage": 0.48,
    "reported_cpu_usage": 0.31,
    "period_seconds": 15.0,
    "timestamp": "2025-08-25T11:00:00Z",
    "pod_uid": "1f0c6a2e-7b1d-4c7e-9a53-3d2b7f1e9c10",
    "node": "worker-1",
    "nr_periods": 150,
    "nr_throttled": 60,
    "throttled_seconds": 3.2,
    "cpu_limit_cores": 0.5,
    "runqueue_latency_p50_us": 40.0,
    "runqueue_latency_p99_us": 5200.0,
    "involuntary_switches": 1234,
}

BIRTH: dict[str, Any] = {
    "type": "pod_creation",
    "pod_name": "nginx-demo",
    "namespace": "kernel-gossip",
    "pod_uid": "6a1d0c9e-2f4b-4f0e-8a5c-0b9e7d3c2a11",
    "total_syscalls": 1812,
    "syscalls": {"openat": 402, "mmap": 233, "clone3": 12, "execve": 3, "mount": 23},
    "namespace_ops": 6,
    "namespaces_created": ["mnt", "uts", "ipc", "pid", "net"],
    "mounts": 23,
    "cgroup_writes": 42,
    "execs": 3,
    "duration_ms": 2512.4,
    "timeline": [
        {"phase": "runtime-start", "offset_ms": 0.0, "count": 150},
        {"phase": "namespaces", "offset_ms": 150.5, "count": 12},
        {"phase": "mounts", "offset_ms": 800.25, "count": 230},
        {"phase": "exec", "offset_ms": 1200.0, "count": 3},
    ],
    "timestamp": "2025-08-25T10:30:00Z",
}

REQUIRED = {
    "cpu_throttle": [
        "type",
        "pod_name",
        "namespace",
        "container_name",
        "throttle_percentage",
        "actual_cpu_usage",
        "reported_cpu_usage",
        "period_seconds",
        "timestamp",
    ],
    "pod_creation": [k for k in BIRTH if k != "node"],
}
NON_NEGATIVE = {
    "cpu_throttle": [
        "throttle_percentage",
        "actual_cpu_usage",
        "reported_cpu_usage",
        "nr_periods",
        "nr_throttled",
        "throttled_seconds",
        "cpu_limit_cores",
        "runqueue_latency_p50_us",
        "runqueue_latency_p99_us",
        "involuntary_switches",
    ],
    "pod_creation": [
        "total_syscalls",
        "namespace_ops",
        "mounts",
        "cgroup_writes",
        "execs",
        "duration_ms",
    ],
}
NAMES = ["pod_name", "namespace"]
BASES = {"cpu_throttle": THROTTLE_FULL, "pod_creation": BIRTH}


@dataclass(frozen=True)
class BadRequest:
    """A body the webhook must refuse with a 4xx, and why."""

    why: str
    body: bytes
    content_type: str = "application/json"


def _encode(document: Any) -> bytes:
    return json.dumps(document).encode()


kinds = st.sampled_from(sorted(BASES))

SUBNORMAL_LIMIT = BadRequest(
    "cpu_throttle.cpu_limit_cores = 2.2e-313 (made 100 * cores / limit infinite)",
    _encode({**THROTTLE_FULL, "cpu_limit_cores": 2.2e-313}),
)
"""The draw that once made the operator write `Infinity` into a status."""
LARGEST_PERCENT_OF_LIMIT: dict[str, Any] = {
    **THROTTLE_FULL,
    "actual_cpu_usage": MAX_CORES,
    "reported_cpu_usage": MAX_CORES,
    "cpu_limit_cores": MIN_CPU_LIMIT_CORES,
}
"""The largest usage over the smallest limit: the largest percent of limit, still finite."""


@st.composite
def unknown_type(draw: st.DrawFn) -> BadRequest:
    kind = draw(st.text(min_size=0, max_size=20).filter(lambda t: t not in BASES))
    return BadRequest(f"unknown type {kind!r}", _encode({**THROTTLE_FULL, "type": kind}))


@st.composite
def missing_field(draw: st.DrawFn) -> BadRequest:
    kind = draw(kinds)
    field = draw(st.sampled_from(REQUIRED[kind]))
    others = draw(st.sets(st.sampled_from(sorted(BASES[kind])), max_size=3))
    document = {k: v for k, v in BASES[kind].items() if k != field and k not in others}
    return BadRequest(f"{kind} without {field}", _encode(document))


def _wrong_values_for(value: Any) -> st.SearchStrategy[Any]:
    """JSON values of another type than `value` (a bool is not a number here, and an empty
    list or a small dict could be right for a list or dict field, so none are offered)."""
    candidates: list[st.SearchStrategy[Any]] = [st.booleans()]
    if not isinstance(value, list):
        candidates.append(st.lists(st.integers(), max_size=2))
    if not isinstance(value, dict):
        candidates.append(st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
    if isinstance(value, str):
        candidates.append(st.integers() | st.floats(allow_nan=False, allow_infinity=False))
    else:
        candidates.append(st.text(max_size=10))
    return st.one_of(candidates)


@st.composite
def wrong_type(draw: st.DrawFn) -> BadRequest:
    kind = draw(kinds)
    base = BASES[kind]
    field = draw(st.sampled_from(sorted(k for k in base if k != "type")))
    value = draw(_wrong_values_for(base[field]))
    return BadRequest(f"{kind}.{field} = {value!r}", _encode({**base, field: value}))


@st.composite
def out_of_range(draw: st.DrawFn) -> BadRequest:
    kind = draw(kinds)
    base = BASES[kind]
    choices = [(f, draw(st.floats(max_value=-1e-9, min_value=-1e12))) for f in NON_NEGATIVE[kind]]
    if kind == "cpu_throttle":
        choices += [
            ("throttle_percentage", draw(st.floats(min_value=100.001, max_value=1e9))),
            ("period_seconds", draw(st.floats(min_value=-1e6, max_value=0))),
            ("period_seconds", draw(st.floats(min_value=86_400.5, max_value=1e12))),
            ("actual_cpu_usage", draw(st.floats(min_value=100_000.5, max_value=1e300))),
            ("cpu_limit_cores", draw(below_the_smallest_limit)),
            ("nr_throttled", draw(st.integers(min_value=151, max_value=10**6))),
            ("nr_periods", draw(st.integers(min_value=2**63, max_value=2**70))),
        ]
    field, value = draw(st.sampled_from(choices))
    if isinstance(base[field], int) and not isinstance(value, int):
        value = -draw(st.integers(min_value=1, max_value=10**9))
    return BadRequest(f"{kind}.{field} = {value!r}", _encode({**base, field: value}))


@st.composite
def bad_name(draw: st.DrawFn) -> BadRequest:
    kind = draw(kinds)
    field = draw(st.sampled_from(NAMES))
    value = draw(
        st.one_of(
            st.just(""),
            st.text(min_size=1, max_size=30).filter(lambda t: not t.isascii() or t != t.lower()),
            st.from_regex(r"\A-[a-z]{1,10}\Z"),
            st.from_regex(r"\A[a-z]{1,10}_[a-z]{1,10}\Z"),
            st.integers(min_value=254, max_value=400).map(lambda n: "a" * n),
        )
    )
    return BadRequest(f"{kind}.{field} = {value!r}", _encode({**BASES[kind], field: value}))


@st.composite
def extra_field(draw: st.DrawFn) -> BadRequest:
    kind = draw(kinds)
    base = BASES[kind]
    field = draw(st.text(min_size=1, max_size=15).filter(lambda k: k not in base))
    return BadRequest(f"{kind} with extra {field!r}", _encode({**base, field: 1}))


@st.composite
def bad_timestamp(draw: st.DrawFn) -> BadRequest:
    kind = draw(kinds)
    value = draw(
        st.one_of(
            st.datetimes().map(lambda d: d.replace(tzinfo=None).isoformat()),
            st.integers(min_value=1, max_value=1969).map(lambda y: f"{y:04d}-06-01T00:00:00Z"),
            st.text(max_size=20).filter(lambda t: not t[:1].isdigit()),
        )
    )
    return BadRequest(f"{kind}.timestamp = {value!r}", _encode({**BASES[kind], "timestamp": value}))


@st.composite
def bad_json(draw: st.DrawFn) -> BadRequest:
    text = json.dumps(BASES[draw(kinds)])
    cut = draw(st.integers(min_value=0, max_value=len(text) - 1))
    body = draw(
        st.one_of(
            st.just(text[:cut].encode()),
            st.binary(min_size=1, max_size=40).filter(lambda b: b[:1] not in b'{["-0123456789tfn'),
            st.just(b"\xff\xfe" + text.encode()),
        )
    )
    return BadRequest(f"not JSON: {body[:30]!r}", body)


@st.composite
def not_an_object(draw: st.DrawFn) -> BadRequest:
    value = draw(st.one_of(st.lists(st.integers(), max_size=3), st.integers(), st.text(max_size=8)))
    return BadRequest(f"JSON {value!r}", _encode(value))


@st.composite
def wrong_content_type(draw: st.DrawFn) -> BadRequest:
    content_type = draw(
        st.sampled_from(
            [
                "text/plain",
                "application/x-www-form-urlencoded",
                "application/xml",
                "",
                "multipart/form-data",
            ]
        )
    )
    body = _encode(BASES[draw(kinds)])
    return BadRequest(f"content type {content_type!r}", body, content_type)


@st.composite
def too_large(draw: st.DrawFn) -> BadRequest:
    extra = draw(st.integers(min_value=1, max_value=4096))
    padding = "x" * (ONE_MIB + extra)
    return BadRequest(f"body over 1 MiB by {extra}", _encode({**THROTTLE_FULL, "pod_uid": padding}))


BODY_ERRORS = [
    unknown_type(),
    missing_field(),
    wrong_type(),
    out_of_range(),
    bad_name(),
    extra_field(),
    bad_timestamp(),
    bad_json(),
    not_an_object(),
]
"""Refused by the payload models themselves."""

bad_bodies = st.one_of(BODY_ERRORS)
bad_requests = st.one_of([*BODY_ERRORS, wrong_content_type(), too_large()])


# Valid signals: any of these must be written, never refused or answered with a 5xx. ------

dns_labels = st.from_regex(r"\A[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?\Z")
pod_names = dns_labels | st.builds(
    lambda head, tail: f"{head}.{tail}"[:253].rstrip(".-") or "x",
    dns_labels,
    st.from_regex(r"\A[a-z0-9]{200,252}\Z"),
)
moments = st.datetimes(
    min_value=datetime(1971, 1, 1), max_value=datetime(8999, 1, 1), timezones=st.just(UTC)
)
cores = st.floats(min_value=0, max_value=MAX_CORES)
limits = st.floats(min_value=MIN_CPU_LIMIT_CORES, max_value=MAX_CORES)
below_the_smallest_limit = st.floats(
    min_value=0, max_value=MIN_CPU_LIMIT_CORES, exclude_max=True, allow_subnormal=True
)
"""0, subnormals (2.2e-313 made 100 * cores / limit infinite) and slivers under 1 ms/s."""


@st.composite
def throttle_signals(draw: st.DrawFn) -> dict[str, Any]:
    document: dict[str, Any] = {
        "type": "cpu_throttle",
        "pod_name": draw(pod_names),
        "namespace": draw(dns_labels),
        "container_name": draw(dns_labels),
        "throttle_percentage": draw(st.floats(0, 100)),
        "actual_cpu_usage": draw(cores),
        "reported_cpu_usage": draw(cores),
        "period_seconds": (window := draw(st.floats(min_value=0.001, max_value=86_400))),
        "timestamp": draw(moments).isoformat(),
    }
    if draw(st.booleans()):
        periods = draw(st.integers(1, 2**63 - 1))
        throttled = draw(st.integers(0, periods))
        p50 = draw(st.floats(0, 1e12))
        document |= {
            "throttle_percentage": 100 * throttled / periods,
            "nr_periods": periods,
            "nr_throttled": throttled,
            # summed over CPUs: at most the window times the most cores a machine has
            "throttled_seconds": draw(st.floats(0, min(1e9, window * 100_000))),
            "cpu_limit_cores": draw(limits),
            "runqueue_latency_p50_us": p50,
            "runqueue_latency_p99_us": draw(st.floats(p50, 1e12)),
            "involuntary_switches": draw(st.integers(0, 2**63 - 1)),
            "pod_uid": draw(st.uuids()).hex,
            "node": draw(dns_labels),
        }
    return document
