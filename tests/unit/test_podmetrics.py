"""The Metrics API's pure core (kernel_gossip/core/podmetrics.py): metrics-server's storage rules
with pinned figures, the wire formats, and the working set of cgroups.py."""

import pytest

from kernel_gossip.cli.main import main
from kernel_gossip.core.cgroups import memory_v1, memory_v2
from kernel_gossip.core.podmetrics import (
    MetricsBatch,
    MetricsPoint,
    MetricsStorage,
    ObjectRef,
    Usage,
    cpu_quantity,
    go_duration,
    memory_quantity,
    parse_go_duration,
    resource_usage,
    rfc3339,
    sync_plan,
)

S = 1_000_000_000
RESOLUTION = 15 * S
T0 = 1_796_200_000 * S  # a wall-clock time in ns
START = T0 - 3600 * S  # containers started an hour before the first scrape
POD = ObjectRef("web", "shop", {"app": "web"})
NODE = ObjectRef("lab-node", labels={"kubernetes.io/hostname": "lab-node"})


def point(at: int, cpu: int, memory: int = 4096, start: int = START) -> MetricsPoint:
    return MetricsPoint(start_ns=start, timestamp_ns=at, cumulative_cpu_ns=cpu, memory_bytes=memory)


def batch(containers: dict[str, MetricsPoint], pod: ObjectRef = POD) -> MetricsBatch:
    scraped = MetricsBatch()
    scraped.add_pod((pod.namespace, pod.name), containers)
    return scraped


def stored(*batches: MetricsBatch) -> MetricsStorage:
    storage = MetricsStorage(RESOLUTION)
    for scraped in batches:
        storage.store(scraped)
    return storage


# --- the rate between two points ---------------------------------------------------------


def test_rate_is_the_cumulative_delta_over_the_window() -> None:
    usage = resource_usage(point(T0 + 15 * S, 9 * S, 8192), point(T0, 4_500_000_000))
    assert usage == Usage(
        cpu_nanocores=300_000_000, memory_bytes=8192, timestamp_ns=T0 + 15 * S, window_ns=15 * S
    )


def test_rate_truncates_to_whole_nanocores_as_uint64() -> None:
    usage = resource_usage(point(T0 + 3 * S, 1_000_000_000), point(T0, 0))
    assert usage is not None
    assert usage.cpu_nanocores == 333_333_333


def test_window_is_exact_to_the_nanosecond() -> None:
    usage = resource_usage(point(T0 + 15_012_345_678, 2 * S), point(T0, S))
    assert usage is not None
    assert usage.window_ns == 15_012_345_678
    assert usage.cpu_nanocores == int(S / 15.012345678)


def test_counter_reset_is_skipped() -> None:
    assert resource_usage(point(T0 + 15 * S, 10), point(T0, 5000)) is None


def test_start_time_going_back_is_skipped() -> None:
    assert (
        resource_usage(point(T0 + 15 * S, 9 * S, start=START), point(T0, S, start=START + 1))
        is None
    )


def test_points_at_the_same_time_have_no_rate() -> None:
    assert resource_usage(point(T0, 2 * S), point(T0, S)) is None


def test_idle_container_has_zero_cpu() -> None:
    usage = resource_usage(point(T0 + 15 * S, 5 * S), point(T0, 5 * S))
    assert usage is not None
    assert usage.cpu_nanocores == 0


# --- pods in the storage -----------------------------------------------------------------


def test_single_scrape_gives_no_metrics() -> None:
    assert stored(batch({"app": point(T0, 5 * S)})).pod_metrics([POD]) == []


def test_two_scrapes_give_the_rate_timestamp_and_window() -> None:
    storage = stored(
        batch({"app": point(T0, 5 * S)}),
        batch({"app": point(T0 + 15_250_000_000, 5 * S + 4_575_000_000, 2 * 1024 * 1024)}),
    )
    (item,) = storage.pod_metrics([POD])
    assert item.timestamp_ns == T0 + 15_250_000_000
    assert item.window_ns == 15_250_000_000
    assert [(c.name, c.usage.cpu_nanocores) for c in item.containers] == [("app", 300_000_000)]
    assert item.as_object() == {
        "apiVersion": "metrics.k8s.io/v1beta1",
        "kind": "PodMetrics",
        "metadata": {"name": "web", "namespace": "shop", "labels": {"app": "web"}},
        "timestamp": rfc3339(T0 + 15 * S),
        "window": "15.25s",
        "containers": [{"name": "app", "usage": {"cpu": "300m", "memory": "2Mi"}}],
    }


def test_only_the_two_latest_scrapes_count() -> None:
    storage = stored(
        batch({"app": point(T0, 0 + S)}),
        batch({"app": point(T0 + 15 * S, 16 * S)}),  # a whole core
        batch({"app": point(T0 + 30 * S, 17_500_000_000)}),  # then a tenth
    )
    (item,) = storage.pod_metrics([POD])
    assert item.containers[0].usage.cpu_nanocores == 100_000_000
    assert (item.timestamp_ns, item.window_ns) == (T0 + 30 * S, 15 * S)


def test_pod_usage_is_per_container_and_the_item_takes_the_earliest_time() -> None:
    storage = stored(
        batch({"app": point(T0, S), "sidecar": point(T0 + 1 * S, S)}),
        batch({"app": point(T0 + 15 * S, 4 * S), "sidecar": point(T0 + 16 * S, 2_500_000_000)}),
    )
    (item,) = storage.pod_metrics([POD])
    assert [(c.name, c.usage.cpu_nanocores) for c in item.containers] == [
        ("app", 200_000_000),
        ("sidecar", 100_000_000),
    ]
    assert (item.timestamp_ns, item.window_ns) == (T0 + 15 * S, 15 * S)


def test_a_container_with_a_counter_reset_is_left_out_of_its_pod() -> None:
    storage = stored(
        batch({"app": point(T0, 9 * S), "sidecar": point(T0, S)}),
        batch({"app": point(T0 + 15 * S, S), "sidecar": point(T0 + 15 * S, 2_500_000_000)}),
    )
    (item,) = storage.pod_metrics([POD])
    assert [c.name for c in item.containers] == ["sidecar"]


def test_a_pod_whose_every_container_was_reset_has_an_empty_item() -> None:
    """metrics-server's zero time and window, with no containers."""
    storage = stored(batch({"app": point(T0, 9 * S)}), batch({"app": point(T0 + 15 * S, S)}))
    (item,) = storage.pod_metrics([POD])
    assert (item.timestamp_ns, item.window_ns, item.containers) == (None, 0, ())
    assert item.as_object()["timestamp"] is None
    assert item.as_object()["window"] == "0s"


def test_a_restarted_container_drops_its_pod_until_its_next_scrape() -> None:
    restarted = T0 + 7 * S  # 8 s before the scrape: too young for the fresh rule
    storage = stored(
        batch({"app": point(T0, 9 * S), "sidecar": point(T0, S)}),
        batch(
            {
                "app": point(T0 + 15 * S, 2 * S, start=restarted),
                "sidecar": point(T0 + 15 * S, 2 * S),
            }
        ),
    )
    assert storage.pod_metrics([POD]) == []
    storage.store(
        batch(
            {
                "app": point(T0 + 30 * S, 5 * S, start=restarted),
                "sidecar": point(T0 + 30 * S, 3 * S),
            }
        )
    )
    (item,) = storage.pod_metrics([POD])
    assert [(c.name, c.usage.cpu_nanocores) for c in item.containers] == [
        ("app", 200_000_000),
        ("sidecar", 66_666_666),
    ]


def test_a_new_container_in_a_known_pod_drops_the_pod() -> None:
    storage = stored(
        batch({"app": point(T0, S)}),
        batch({"app": point(T0 + 15 * S, 2 * S), "late": point(T0 + 15 * S, S, start=T0 - 60 * S)}),
    )
    assert storage.pod_metrics([POD]) == []


def test_a_fresh_container_is_rated_from_its_start() -> None:
    """Started 12 s before its first scrape (within a resolution, at least 10 s): metrics-
    server rates it from its start time with zero CPU."""
    started = T0 - 12 * S
    storage = stored(batch({"app": point(T0, 3 * S, start=started)}))
    (item,) = storage.pod_metrics([POD])
    assert (item.timestamp_ns, item.window_ns) == (T0, 12 * S)
    assert item.containers[0].usage.cpu_nanocores == 250_000_000


@pytest.mark.parametrize("age_seconds", [9, 15, 20])
def test_a_container_too_young_or_old_for_the_fresh_rule_needs_two_scrapes(
    age_seconds: int,
) -> None:
    storage = stored(batch({"app": point(T0, 3 * S, start=T0 - age_seconds * S)}))
    assert storage.pod_metrics([POD]) == []


def test_an_older_scrape_keeps_the_stored_previous_point() -> None:
    storage = stored(
        batch({"app": point(T0, S)}),
        batch({"app": point(T0 + 15 * S, 4 * S)}),
        batch({"app": point(T0 + 10 * S, 3 * S)}),  # older than the stored last
    )
    (item,) = storage.pod_metrics([POD])
    assert (item.timestamp_ns, item.window_ns) == (T0 + 10 * S, 10 * S)
    assert item.containers[0].usage.cpu_nanocores == 200_000_000


def test_only_pods_the_api_lists_get_items_with_their_labels() -> None:
    other = ObjectRef("other", "shop", {"tier": "db"})

    def both(at: int, cpu: int) -> MetricsBatch:
        scraped = batch({"app": point(at, cpu)})
        scraped.add_pod(("shop", "other"), {"db": point(at, cpu)})
        return scraped

    storage = stored(both(T0, S), both(T0 + 15 * S, 2 * S))
    (item,) = storage.pod_metrics([other])
    assert item.as_object()["metadata"] == {
        "name": "other",
        "namespace": "shop",
        "labels": {"tier": "db"},
    }
    assert storage.pod_metrics([ObjectRef("web", "elsewhere")]) == []


def test_a_pod_gone_from_the_scrape_is_forgotten() -> None:
    storage = stored(
        batch({"app": point(T0, S)}), batch({"app": point(T0 + 15 * S, 2 * S)}), MetricsBatch()
    )
    assert storage.pod_metrics([POD]) == []


@pytest.mark.parametrize("zero", ["cpu", "memory"])
def test_a_container_without_cpu_or_memory_drops_its_pod_from_the_batch(zero: str) -> None:
    empty = point(T0, 0 if zero == "cpu" else S, 0 if zero == "memory" else 4096)
    assert batch({"app": point(T0, S), "broken": empty}).pods == {}


# --- nodes -------------------------------------------------------------------------------


def nodes(at: int, cpu: int, memory: int = 1 << 30) -> MetricsBatch:
    scraped = MetricsBatch()
    scraped.add_node(NODE.name, MetricsPoint(T0 - 86400 * S, at, cpu, memory))
    return scraped


def test_node_metrics_need_two_scrapes() -> None:
    storage = stored(nodes(T0, 1000 * S))
    assert storage.node_metrics([NODE]) == []
    storage.store(nodes(T0 + 15 * S, 1021 * S))
    (item,) = storage.node_metrics([NODE])
    assert item.as_object() == {
        "apiVersion": "metrics.k8s.io/v1beta1",
        "kind": "NodeMetrics",
        "metadata": {"name": "lab-node", "labels": {"kubernetes.io/hostname": "lab-node"}},
        "timestamp": rfc3339(T0 + 15 * S),
        "window": "15s",
        "usage": {"cpu": "1400m", "memory": "1Gi"},
    }


def test_node_counter_reset_and_unknown_nodes_give_nothing() -> None:
    storage = stored(nodes(T0, 1000 * S), nodes(T0 + 15 * S, 10 * S))
    assert storage.node_metrics([NODE]) == []
    assert stored(nodes(T0, S), nodes(T0 + 15 * S, 2 * S)).node_metrics([ObjectRef("x")]) == []


def test_a_node_point_without_cpu_or_memory_is_dropped() -> None:
    assert nodes(T0, 0).nodes == {}
    assert nodes(T0, S, 0).nodes == {}


# --- syncing the stored objects ----------------------------------------------------------


def test_sync_creates_replaces_with_the_resource_version_and_deletes_the_rest() -> None:
    wanted = [
        {"metadata": {"name": "web", "namespace": "shop"}, "window": "15s"},
        {"metadata": {"name": "new", "namespace": "shop"}, "window": "15s"},
    ]
    plan = sync_plan({("shop", "web"): "41", ("shop", "gone"): "7", ("x", "old"): "9"}, wanted)
    assert plan.create == [wanted[1]]
    assert plan.replace == [
        {"metadata": {"name": "web", "namespace": "shop", "resourceVersion": "41"}, "window": "15s"}
    ]
    assert plan.delete == [("shop", "gone"), ("x", "old")]


def test_sync_of_cluster_scoped_objects_and_of_nothing() -> None:
    plan = sync_plan({("", "lab-node"): "3"}, [{"metadata": {"name": "lab-node"}}])
    assert (plan.create, [i["metadata"]["resourceVersion"] for i in plan.replace]) == ([], ["3"])
    assert sync_plan({("", "lab-node"): "3"}, []).delete == [("", "lab-node")]


# --- wire formats ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nanocores", "text"),
    [
        (0, "0"),
        (300_000_000, "300m"),
        (300_123_456, "300123456n"),
        (1_500_000, "1500u"),
        (2_000_000_000, "2"),
        (1_400_000_000, "1400m"),
        (7, "7n"),
        (3_000_000_000_000, "3k"),
    ],
)
def test_cpu_quantity_is_canonical(nanocores: int, text: str) -> None:
    assert cpu_quantity(nanocores) == text


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0"),
        (1000, "1000"),
        (1024, "1Ki"),
        (1536, "1536"),
        (2 * 1024 * 1024, "2Mi"),
        (5 * 1024 * 1024 + 4096, "5124Ki"),
        (12_345_678, "12345678"),
        (3 << 30, "3Gi"),
    ],
)
def test_memory_quantity_is_canonical(size: int, text: str) -> None:
    assert memory_quantity(size) == text


@pytest.mark.parametrize(
    ("ns", "text"),
    [
        (0, "0s"),
        (15 * S, "15s"),
        (15_002_000_000, "15.002s"),
        (15_000_000_001, "15.000000001s"),
        (60 * S, "1m0s"),
        (75_500_000_000, "1m15.5s"),
        (3600 * S, "1h0m0s"),
        (800_000_000, "800ms"),
        (1_500_000, "1.5ms"),
        (2500, "2.5µs"),
        (999, "999ns"),
        (-2 * S, "-2s"),
    ],
)
def test_go_duration(ns: int, text: str) -> None:
    assert go_duration(ns) == text


@pytest.mark.parametrize(
    ("text", "ns"),
    [("15s", 15 * S), ("1m30s", 90 * S), ("1.5m", 90 * S), ("500ms", S // 2), ("1h", 3600 * S)],
)
def test_parse_go_duration(text: str, ns: int) -> None:
    assert parse_go_duration(text) == ns


@pytest.mark.parametrize("text", ["", "15", "s", "15 s", "-15s", "15sec", "1d"])
def test_parse_go_duration_refuses_what_go_refuses(text: str) -> None:
    with pytest.raises(ValueError, match="not a duration"):
        parse_go_duration(text)


def test_timestamps_are_whole_utc_seconds_as_metav1_time() -> None:
    assert rfc3339(1_796_200_000 * S + 999_999_999) == "2026-12-02T08:26:40Z"


# --- the working set (cgroups.py) --------------------------------------------------------

V1_STAT = "cache 1000\nrss 4000\ninactive_file 300\ntotal_cache 9000\ntotal_inactive_file 2500\n"
V2_STAT = "anon 7000\nfile 3000\ninactive_file 1200\nactive_file 1800\n"


def test_working_set_v1_subtracts_the_hierarchical_inactive_file() -> None:
    counters = memory_v1("10000\n", V1_STAT)
    assert (counters.usage_bytes, counters.inactive_file_bytes) == (10000, 2500)
    assert counters.working_set_bytes == 7500


def test_working_set_v2_subtracts_inactive_file() -> None:
    assert memory_v2("9000\n", V2_STAT).working_set_bytes == 7800


def test_working_set_of_the_v2_root_is_anon_plus_file_minus_inactive_file() -> None:
    assert memory_v2(None, V2_STAT).working_set_bytes == 10000 - 1200


def test_working_set_never_goes_below_zero() -> None:
    assert memory_v1("100\n", "total_inactive_file 2500\n").working_set_bytes == 0


def test_working_set_without_inactive_file_is_the_usage() -> None:
    assert memory_v2("4096\n", "anon 4096\n").working_set_bytes == 4096


# --- the CLI's resolution flag -----------------------------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["lab", "up", "--metric-resolution", "5s"],
        ["lab", "up", "--metric-resolution", "15"],
        [
            "lab",
            "metrics-server",
            "--kubeconfig",
            "k",
            "--cri-socket",
            "s",
            "--metric-resolution",
            "soon",
        ],
    ],
)
def test_a_bad_metric_resolution_is_one_line_and_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1
    assert "--metric-resolution" in error[0]


def test_a_bad_health_address_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "lab",
        "metrics-server",
        "--kubeconfig",
        "k",
        "--cri-socket",
        "s",
        "--health-address",
        "x",
    ]
    assert main(argv) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "--health-address must be HOST:PORT" in line
