"""A run's report folder: locust's stats CSV (written there by locust), the resources as
YAML, the sampled truth as CSV and a PNG of kernel throttling against the Metrics API."""

import csv
from pathlib import Path
from typing import Any

import yaml

from kernel_gossip.scenarios.expectations import Evidence, Outcome, throttled_series


def write_truth_csv(path: Path, evidence: Evidence) -> None:
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(
            [
                "time",
                "namespace",
                "pod",
                "source",
                "nr_periods",
                "nr_throttled",
                "throttled_seconds",
                "usage_seconds",
                "metrics_timestamp",
                "metrics_window_seconds",
                "metrics_usage_cores",
                "limit_cores",
            ]
        )
        for (namespace, pod), samples in sorted(evidence.cpu.items()):
            for s in samples:
                writer.writerow(
                    [
                        f"{s.time:.3f}",
                        namespace,
                        pod,
                        "cpu.stat",
                        s.nr_periods,
                        s.nr_throttled,
                        f"{s.throttled_seconds:.6f}",
                        f"{s.usage_seconds:.6f}",
                        "",
                        "",
                        "",
                        "",
                    ]
                )
        for (namespace, pod), metrics in sorted(evidence.metrics.items()):
            for m in metrics:
                writer.writerow(
                    [
                        f"{m.time:.3f}",
                        namespace,
                        pod,
                        "metrics-api",
                        "",
                        "",
                        "",
                        "",
                        f"{m.timestamp:.3f}",
                        f"{m.window_seconds:g}",
                        f"{m.usage_cores:.6f}",
                        m.limit_cores or "",
                    ]
                )


def write_resources(path: Path, resources: list[dict[str, Any]]) -> None:
    path.write_text(yaml.safe_dump_all(resources, sort_keys=False))


def write_outcomes(path: Path, outcomes: list[Outcome]) -> None:
    path.write_text("".join(outcome.line() + "\n" for outcome in outcomes))


def plot(path: Path, title: str, evidence: Evidence) -> None:
    """Per sampled pod: the kernel's throttled % (1 s steps), the Metrics API's usage as %
    of the limit, and each KernelWhisper reading as a bar over its own window."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    origin = evidence.load_started
    figure, axes = pyplot.subplots(figsize=(11, 4.5))
    axes.axvspan(0, evidence.load_ended - origin, color="0.92", label="load running")
    for (namespace, pod), samples in sorted(evidence.cpu.items()):
        series = throttled_series(samples)
        axes.plot(
            [t - origin for t, _ in series],
            [p for _, p in series],
            lw=1.2,
            label=f"{pod}: kernel throttled % (cpu.stat)",
        )
        metrics = [
            m for m in evidence.metrics.get((namespace, pod), []) if m.percent_of_limit is not None
        ]
        if metrics:
            axes.step(
                [m.time - origin for m in metrics],
                [m.percent_of_limit or 0 for m in metrics],
                where="post",
                lw=1.2,
                label=f"{pod}: Metrics API usage % of limit",
            )
        readings = evidence.readings.get((namespace, pod), [])
        for index, reading in enumerate(readings):
            end = reading.observed_at - origin
            axes.hlines(
                reading.throttled_percent,
                end - reading.window_seconds,
                end,
                colors="crimson",
                lw=3,
                label=f"{pod}-kw readings (its window)" if index == 0 else "_nolegend_",
            )
            axes.plot([end], [reading.throttled_percent], "o", color="crimson", ms=4)
    axes.set_xlabel("seconds since the load started")
    axes.set_ylabel("percent")
    axes.set_ylim(0, 105)
    axes.set_title(title)
    axes.legend(loc="upper right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    pyplot.close(figure)
