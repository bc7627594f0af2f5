"""Running a scenario's load: locust's own command line, headless, in a child process (its
gevent monkey-patching stays out of this one), with the shape and users of locustfile.py
and, for kind `locust`, the spec's own locustfile. Its stats come back as locust's CSV."""

import csv
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kernel_gossip.errors import UserError
from kernel_gossip.scenarios.expectations import LoadStats

LOCUSTFILE = Path(__file__).with_name("locustfile.py")
USER_CLASSES = {"http": "HttpLoad", "pods": "PodCreator", "webhook": "WebhookSignals"}
STOP_GRACE_SECONDS = 60.0


@dataclass(frozen=True)
class LoadRun:
    """Where one load run keeps its files."""

    folder: Path

    @property
    def settings(self) -> Path:
        return self.folder / "load-settings.json"

    @property
    def ledger(self) -> Path:
        return self.folder / "load-ledger.jsonl"

    @property
    def csv_prefix(self) -> Path:
        return self.folder / "locust"

    @property
    def stats_csv(self) -> Path:
        return self.folder / "locust_stats.csv"

    @property
    def log(self) -> Path:
        return self.folder / "locust.log"

    def entries(self) -> list[dict[str, Any]]:
        if not self.ledger.exists():
            return []
        return [json.loads(line) for line in self.ledger.read_text().splitlines() if line]


def command(
    kind: str, host: str | None, locustfile: Path | None, user_class: str | None, run: LoadRun
) -> list[str]:
    """locust headless: the shape ends the run (tick() -> None); failures do not change
    the exit code (the expectations judge them)."""
    files = [str(LOCUSTFILE)] + ([str(locustfile)] if locustfile else [])
    chosen = user_class if kind == "locust" else USER_CLASSES[kind]
    argv = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        ",".join(files),
        "--headless",
        "--only-summary",
        "--csv",
        str(run.csv_prefix),
        "--exit-code-on-error",
        "0",
        "--stop-timeout",
        "5",
        "--loglevel",
        "WARNING",
    ]
    if host:
        argv += ["--host", host]
    return [*argv, str(chosen)]


def run_load(
    argv: list[str],
    settings: dict[str, Any],
    run: LoadRun,
    tick: Callable[[float], None],
    timeout: float,
) -> LoadStats:
    """Start locust, call tick(elapsed) about every second while it runs, then read its
    aggregated stats. A locust that fails to start is a UserError with its log's tail."""
    run.folder.mkdir(parents=True, exist_ok=True)
    settings = {**settings, "ledger": str(run.ledger)}
    run.settings.write_text(json.dumps(settings, allow_nan=False))
    run.ledger.unlink(missing_ok=True)
    env = {**os.environ, "KERNEL_GOSSIP_SCENARIO_LOAD": str(run.settings)}
    started = time.monotonic()
    with run.log.open("w") as log:
        process = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, env=env, stdin=subprocess.DEVNULL
        )
        try:
            while process.poll() is None:
                elapsed = time.monotonic() - started
                if elapsed > timeout:
                    process.terminate()
                    process.wait(STOP_GRACE_SECONDS)
                    raise UserError(f"locust ran past {timeout:.0f} s (log {run.log})")
                tick(elapsed)
                time.sleep(1.0)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    if process.returncode != 0 or not run.stats_csv.exists():
        tail = " | ".join(run.log.read_text(errors="replace").splitlines()[-3:])
        raise UserError(f"locust failed (exit {process.returncode}): {tail or 'no output'}")
    return read_stats(run.stats_csv)


def read_stats(path: Path) -> LoadStats:
    """The Aggregated row of locust's stats CSV."""
    with path.open() as stats:
        rows = list(csv.DictReader(stats))
    total = next((row for row in rows if row["Name"] == "Aggregated"), None)
    if total is None:
        return LoadStats(0, 0, None)
    requests = int(total["Request Count"])
    p99 = total.get("99%", "N/A")
    return LoadStats(
        requests=requests,
        failures=int(total["Failure Count"]),
        p99_ms=float(p99) if requests and p99 not in ("N/A", "") else None,
    )
