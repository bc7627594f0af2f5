"""The rehearsal's report: every command and its output (the talk's "screenshots of all
outputs" backup), each verdict against the talk's claim, and pictures at slide size.
report.json holds the same figures for tools (and the tests that hold them to the cluster)."""

import base64
import html
import itertools
import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from kernel_gossip.rehearse import moments
from kernel_gossip.rehearse.demos import DemoResult
from kernel_gossip.rehearse.terminal import Step

SLIDE_INCHES = (12.8, 7.2)
DPI = 100
"""1280 x 720 pixels: readable on a slide."""


def write_report(
    directory: Path, results: dict[str, DemoResult], steps: Sequence[Step], where: str
) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    pictures = draw_pictures(directory, results)
    data = {
        "measuredOn": where,
        "verdicts": {
            name: {"ok": r.verdict.ok, "line": r.verdict.line, "figures": r.verdict.figures}
            for name, r in results.items()
        },
        "claims": {name: moments.CLAIMS[name] for name in results},
        "evidence": {name: r.evidence for name, r in results.items()},
        "steps": [step.as_json() for step in steps],
        "pictures": [p.name for p in pictures],
    }
    (directory / "report.json").write_text(json.dumps(data, indent=2, allow_nan=False) + "\n")
    (directory / "report.md").write_text(markdown(data))
    (directory / "report.html").write_text(html_page(data, directory))
    return [directory / "report.json", directory / "report.md", directory / "report.html"]


def draw_pictures(directory: Path, results: dict[str, DemoResult]) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    drawn = []
    if "lie" in results and results["lie"].evidence.get("whisper"):
        drawn.append(_lie_picture(directory / "metrics-lie.png", results["lie"].evidence))
    certificate = results["birth"].evidence.get("certificate") if "birth" in results else None
    if certificate:
        drawn.append(_timeline_picture(directory / "birth-timeline.png", certificate))
        drawn.append(_syscalls_picture(directory / "birth-syscalls.png", certificate))
    return drawn


def _lie_picture(path: Path, evidence: dict[str, Any]) -> Path:
    import matplotlib.pyplot as plt

    whisper = evidence["whisper"]
    limit = whisper["spec"]["kernelTruth"].get("cpuLimitCores") or 0
    kernel = throttled_per_second(evidence.get("kernelSamples", []))
    figure, axes = plt.subplots(figsize=SLIDE_INCHES, dpi=DPI)
    starts = [t for t, _ in kernel] + [
        _epoch(m["timestamp"]) - moments.window_seconds(m["window"])
        for m in evidence.get("metricsSamples", [])
    ]
    start = min(starts or [0.0])
    if kernel:
        axes.plot([t - start for t, _ in kernel], [p for _, p in kernel], color="#c0392b",
                  label="kernel: % of CFS periods throttled (cpu.stat, per second)")  # fmt: skip
    metrics = evidence.get("metricsSamples", [])
    if metrics and limit:
        for index, item in enumerate(metrics):
            end = _epoch(item["timestamp"]) - start
            label = "Metrics API: usage % of limit (each item over its window)"
            begin = end - moments.window_seconds(item["window"])
            axes.hlines(100 * item["cores"] / limit, begin, end, color="#2980b9", linewidth=4,
                        label=label if index == 0 else "_nolegend_")  # fmt: skip
    readings = whisper.get("status", {}).get("history", [])
    if readings:
        axes.scatter([_epoch(r["observedAt"]) - start for r in readings],
                     [r["throttledPercent"] for r in readings], marker="D", s=80,
                     color="#8e44ad", zorder=3, label="KernelWhisper readings")  # fmt: skip
    axes.set_ylim(0, 105)
    axes.set_xlabel("seconds")
    axes.set_ylabel("%")
    axes.set_title(f"The metrics lie: {whisper['spec']['podName']} under a {limit} core limit")
    axes.legend(loc="lower left", fontsize=12)
    axes.grid(alpha=0.3)
    return _saved(figure, path)


def _saved(figure: Any, path: Path) -> Path:
    """A slide-sized picture written and its figure freed (pyplot keeps every open one)."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def _timeline_picture(path: Path, certificate: dict[str, Any]) -> Path:
    import matplotlib.pyplot as plt

    bars = moments.birth_bars(certificate)
    spec = certificate["spec"]
    figure, axes = plt.subplots(figsize=SLIDE_INCHES, dpi=DPI)
    rows = sorted(
        {(bar.container, bar.phase) for bar in bars}, key=lambda r: (r[0], _first(bars, r))
    )
    for row, (container, phase) in enumerate(rows):
        for bar in bars:
            if (bar.container, bar.phase) == (container, phase):
                axes.barh(row, max(bar.end_ms - bar.start_ms, spec["durationMs"] / 200),
                          left=bar.start_ms,
                          color=f"C{int(container[1:]) % 10}")  # fmt: skip
                axes.text(bar.end_ms, row, f" {bar.count} syscalls", va="center", fontsize=11)
    axes.set_yticks(range(len(rows)), [f"{c} {p}" for c, p in rows], fontsize=12)
    axes.invert_yaxis()
    axes.set_xlabel("milliseconds since the pod's first kernel event")
    births = moments.births_in(certificate)
    axes.set_title(f"Birth of {spec['podName']}: {spec['totalSyscalls']} syscalls in "
                   f"{spec['durationMs']:.0f} ms, {births} container births"
                   + (" (c0 = the sandbox)" if births > 1 else ""))  # fmt: skip
    axes.grid(axis="x", alpha=0.3)
    return _saved(figure, path)


def _syscalls_picture(path: Path, certificate: dict[str, Any]) -> Path:
    import matplotlib.pyplot as plt

    top = moments.top_syscalls(certificate)
    figure, axes = plt.subplots(figsize=SLIDE_INCHES, dpi=DPI)
    axes.barh([name for name, _ in top], [count for _, count in top], color="#16a085")
    axes.invert_yaxis()
    axes.tick_params(labelsize=13)
    axes.set_xlabel("calls during the birth")
    axes.set_title(f"Top syscalls of {certificate['spec']['podName']}'s birth")
    return _saved(figure, path)


def throttled_per_second(samples: Sequence[dict[str, float]]) -> list[tuple[float, float]]:
    """% of periods throttled between consecutive cpu.stat samples (periods elapsed)."""
    points = []
    for before, after in itertools.pairwise(samples):
        periods = after["nrPeriods"] - before["nrPeriods"]
        if periods > 0:
            points.append(
                (after["t"], 100 * (after["nrThrottled"] - before["nrThrottled"]) / periods)
            )
    return points


def markdown(data: dict[str, Any]) -> str:
    lines = ["# Kernel Gossip: rehearsal report", "", f"Measured on: {data['measuredOn']}", ""]
    lines += ["| moment | verdict | measured | the talk's claim |", "| --- | --- | --- | --- |"]
    for name, verdict in data["verdicts"].items():
        mark = "ok" if verdict["ok"] else "FAILED"
        lines.append(f"| {name} | {mark} | {verdict['line']} | {data['claims'][name]} |")
    lines.append("")
    lines += [f"![{picture}]({picture})" for picture in data["pictures"]]
    lines += ["", "## Every command, as typed", ""]
    for step in data["steps"]:
        lines += [f"### {step['moment']}: `{step['typed']}`", "",
                  f"exit {step['returncode']}, {step['seconds']:.2f} s, at {step['startedAt']}",
                  "", "```", step["output"], "```", ""]  # fmt: skip
    return "\n".join(lines)


def html_page(data: dict[str, Any], directory: Path) -> str:
    rows = "".join(
        f"<tr><td>{html.escape(n)}</td><td>{'ok' if v['ok'] else 'FAILED'}</td>"
        f"<td>{html.escape(v['line'])}</td><td>{html.escape(data['claims'][n])}</td></tr>"
        for n, v in data["verdicts"].items()
    )
    images = "".join(
        f'<p><img alt="{p}" src="data:image/png;base64,'
        f'{base64.b64encode((directory / p).read_bytes()).decode()}"></p>'
        for p in data["pictures"]
    )
    steps = "".join(
        f"<h3>{html.escape(s['moment'])}: <code>{html.escape(s['typed'])}</code></h3>"
        f"<p>exit {s['returncode']}, {s['seconds']:.2f} s</p><pre>{html.escape(s['output'])}</pre>"
        for s in data["steps"]
    )
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Kernel Gossip rehearsal"
        "</title><style>body{font-family:sans-serif;max-width:1300px;margin:auto}"
        "pre{background:#111;color:#eee;padding:1em;overflow-x:auto}"
        "td,th{border:1px solid #ccc;padding:4px}img{max-width:100%}</style></head><body>"
        f"<h1>Kernel Gossip: rehearsal report</h1><p>Measured on: "
        f"{html.escape(data['measuredOn'])}</p><table><tr><th>moment</th><th>verdict</th>"
        f"<th>measured</th><th>the talk's claim</th></tr>{rows}</table>{images}"
        f"<h2>Every command, as typed</h2>{steps}</body></html>\n"
    )


def _epoch(timestamp: str) -> float:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def _first(bars: Sequence[moments.PhaseBar], row: tuple[str, str]) -> float:
    return min(bar.start_ms for bar in bars if (bar.container, bar.phase) == row)
