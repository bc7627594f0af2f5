"""The load of a scenario, run by locust in a process of its own (`load.py` starts it):
locust monkey-patches with gevent at import, which must stay out of pytest, kopf and BCC.
Never imported by the runner. The settings come as JSON in the file named by
KERNEL_GOSSIP_SCENARIO_LOAD (see load.py); every webhook call and every pod created is
also written to its ledger, one JSON object a line, for the runner's checks.
"""

import itertools
import json
import os
import random
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from locust import FastHttpUser, LoadTestShape, User, constant, task
from locust.exception import StopUser

SETTINGS: dict[str, Any] = json.loads(Path(os.environ["KERNEL_GOSSIP_SCENARIO_LOAD"]).read_text())


def _ledger(entry: dict[str, Any]) -> None:
    with open(SETTINGS["ledger"], "a") as ledger:
        ledger.write(json.dumps(entry, allow_nan=False) + "\n")


class ScenarioShape(LoadTestShape):
    """constant, bursts (users on, then none) and steps (each count for stepSeconds, the
    last held), until durationSeconds: then tick() returns None and headless locust ends."""

    def tick(self) -> tuple[int, float] | None:
        elapsed: float = self.get_run_time()  # type: ignore[no-untyped-call]
        if elapsed >= SETTINGS["durationSeconds"]:
            return None
        shape = SETTINGS["shape"]
        users, rate = int(SETTINGS["users"]), float(SETTINGS["spawnRate"])
        if shape["kind"] == "bursts":
            cycle = shape["onSeconds"] + shape["offSeconds"]
            return (users if elapsed % cycle < shape["onSeconds"] else 0), rate
        if shape["kind"] == "steps":
            steps = shape["users"]
            return steps[min(int(elapsed // shape["stepSeconds"]), len(steps) - 1)], rate
        return users, rate


class HttpLoad(FastHttpUser):
    """GET the target path as fast as the server answers."""

    wait_time = constant(0)

    @task
    def get(self) -> None:
        path = SETTINGS.get("path", "/")
        self.client.get(path, name=path, headers={"Accept-Encoding": "gzip"})


_pod_numbers = itertools.count()


class PodCreator(User):
    """Creates `count` pods from the template through the Kubernetes API (names
    <template name>-<n>), one POST per task; locust's stats get each call."""

    wait_time = constant(0)

    def on_start(self) -> None:
        from kubernetes import client, config

        self.api = client.CoreV1Api(config.new_client_from_config(SETTINGS["kubeconfig"]))  # type: ignore[no-untyped-call]

    @task
    def create(self) -> None:
        number = next(_pod_numbers)
        if number >= SETTINGS["count"]:
            raise StopUser()
        body = json.loads(json.dumps(SETTINGS["template"], allow_nan=False))
        body["metadata"]["name"] = f"{SETTINGS['template']['metadata']['name']}-{number}"
        body["metadata"]["namespace"] = SETTINGS["namespace"]
        started = time.perf_counter()
        error: Exception | None = None
        uid = None
        try:
            created = self.api.create_namespaced_pod(SETTINGS["namespace"], body)
            uid = created.metadata.uid if created.metadata else None
        except Exception as failure:  # every failure is a failed request in the stats
            error = failure
        self.environment.events.request.fire(
            request_type="POST",
            name="create pod",
            response_time=(time.perf_counter() - started) * 1000,
            response_length=0,
            exception=error,
            context={},
        )
        _ledger({"pod": body["metadata"]["name"], "uid": uid, "error": str(error or "")})


_signal_numbers = itertools.count()

BAD_BODIES: list[tuple[str, Any]] = [
    ("as is", "{not json"),
    ("as is", {"type": "cpu_throttle"}),
    ("over a valid one", {"type": "memory_pressure"}),
    ("over a valid one", {"throttle_percentage": 150.0}),
    ("over a valid one", {"actual_cpu_usage": "1.5"}),
]
"""Refused by the webhook's validation: not JSON, fields missing, an unknown type, a
percentage over 100, a number sent as a string."""


class WebhookSignals(FastHttpUser):
    """cpu_throttle signals for distinct pods (202 expected) and, badFraction of the time,
    a bad body (4xx expected, nothing written)."""

    wait_time = constant(0)

    def _valid(self, pod: str) -> dict[str, Any]:
        return {
            "type": "cpu_throttle",
            "pod_name": pod,
            "namespace": SETTINGS["namespace"],
            "container_name": "app",
            "throttle_percentage": 40.0,
            "actual_cpu_usage": 0.5,
            "reported_cpu_usage": 0.2,
            "period_seconds": 5.0,
            "timestamp": datetime.now(UTC).isoformat(),
        }

    @task
    def signal(self) -> None:
        number = next(_signal_numbers)
        valid = random.random() >= SETTINGS["badFraction"]
        pod = f"{SETTINGS['podPrefix']}-{'ok' if valid else 'bad'}-{number}"
        if valid:
            body: Any = self._valid(pod)
        else:
            how, bad = BAD_BODIES[number % len(BAD_BODIES)]
            body = bad if how == "as is" else {**self._valid(pod), **bad}
        data = body if isinstance(body, str) else json.dumps(body, allow_nan=False)
        headers = {
            "Authorization": f"Bearer {SETTINGS['token']}",
            "Content-Type": "application/json",
        }
        name = "valid signal" if valid else "bad signal"
        with self.client.post(
            "/webhook/ebpf", data=data, headers=headers, name=name, catch_response=True
        ) as response:
            status = int(response.status_code or 0)
            expected = status == 202 if valid else 400 <= status < 500
            if expected:
                response.success()
            else:
                response.failure(f"{name}: HTTP {status}")
        _ledger({"valid": valid, "pod": pod, "status": status})
