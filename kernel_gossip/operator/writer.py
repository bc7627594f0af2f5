"""Turning a validated signal into its custom resource: spec (the evidence and insights),
then status (what the operator concludes), as one idempotent upsert.

Optimistic concurrency throughout: the spec is replaced and the status written with the
resourceVersion last seen, and a 409 (or a 404: deleted meanwhile) starts the round again
from a fresh read, so two writers (two operator replicas, kopf's own annotations, a user's
kubectl) never lose a throttle reading. The resource as this writer last stored it is
remembered, so a pod's next signal needs no read: two writes, not a read and two writes.
"""

import asyncio
import logging
import random
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import TypeAdapter, ValidationError

from kernel_gossip.kube.client import ApiError
from kernel_gossip.operator import podfacts
from kernel_gossip.operator.analysis import (
    PodFacts,
    Thresholds,
    birth_summary,
    insights,
    one_line,
    usage_report,
    whisper_status,
)
from kernel_gossip.operator.events import EventRecorder
from kernel_gossip.operator.kube import JsonObject, KubeClient, group_path
from kernel_gossip.operator.naming import certificate_name, whisper_name
from kernel_gossip.schema.crds import KERNEL_WHISPER, POD_BIRTH_CERTIFICATE, CustomResource
from kernel_gossip.schema.resources import (
    API_VERSION,
    KernelWhisperSpec,
    KernelWhisperStatus,
    PodBirthCertificateStatus,
    ThrottleReading,
)
from kernel_gossip.schema.signal import (
    CpuThrottlePayload,
    PodCreationPayload,
    birth_certificate_spec,
    kernel_truth,
)

log = logging.getLogger("kernel_gossip.operator")

WRITTEN_BY = "kernel-gossip.dev/written-by"
"""Marks resources the webhook owns: kopf's handlers leave their status to the webhook."""
MAX_ATTEMPTS = 8
BACKOFF_SECONDS = 0.005
"""The first wait after a conflict, doubled at each one (jittered): 8 conflicts wait at
most 1.3 s in all, well inside the webhook's budget per signal."""
REMEMBERED = 1024
"""Resources remembered as last stored (the most recently written): about 1024 pods'
worth of signals need no read; beyond that the oldest is read again when next written."""
HISTORY = TypeAdapter(list[ThrottleReading])

Operation = Literal["created", "updated"]
StatusFor = Callable[[JsonObject | None], JsonObject]


class PodMismatch(Exception):
    """The signal contradicts the cluster: its resource name records another pod, or the
    pod the API has runs on another node or has another UID than the sender says."""


def check_sender_facts(signal: CpuThrottlePayload | PodCreationPayload, pod: JsonObject) -> None:
    """A sender may only speak of the pod as it is: its node and its UID."""
    node = (pod.get("spec") or {}).get("nodeName")
    if signal.node is not None and node and node != signal.node:
        raise PodMismatch(f"pod {signal.pod_name} does not run on node {signal.node}")
    uid = (pod.get("metadata") or {}).get("uid")
    if signal.pod_uid is not None and uid and uid != signal.pod_uid:
        raise PodMismatch(f"pod {signal.pod_name} has another UID than {signal.pod_uid}")


class ConflictsExhausted(Exception):
    """Other writers kept changing the resource between our read and write."""


class Changed(Exception):
    """The resource is not as last seen (409), or is gone (404): read it again."""


@dataclass(frozen=True)
class Written:
    kind: CustomResource
    signal_type: str
    name: str
    operation: Operation


def dump(model: Any) -> JsonObject:
    """A model as the API wants it: camelCase JSON, absent fields left out."""
    document: JsonObject = model.model_dump(by_alias=True, mode="json", exclude_none=True)
    return document


def previous_history(status: JsonObject | None) -> list[ThrottleReading]:
    """The readings kept in a status; an unreadable history starts afresh (logged)."""
    try:
        return HISTORY.validate_python((status or {}).get("history") or [])
    except ValidationError as error:
        log.warning("ignoring an unreadable status.history: %s", error.errors()[0]["msg"])
        return []


def whisper_spec(
    signal: CpuThrottlePayload, facts: PodFacts, thresholds: Thresholds
) -> KernelWhisperSpec:
    truth = kernel_truth(signal)
    reported = usage_report(truth, signal.reported_cpu_usage, facts)
    return KernelWhisperSpec(
        signal_type="cpu_throttle",
        pod_name=signal.pod_name,
        pod_namespace=signal.namespace,
        container_name=signal.container_name,
        node=signal.node,
        observed_at=signal.timestamp,
        kernel_truth=truth,
        reported_cpu_usage_cores=signal.reported_cpu_usage,
        insights=insights(truth, reported, thresholds),
    )


async def announce_whisper(
    events: EventRecorder,
    name: str,
    spec: KernelWhisperSpec,
    status: KernelWhisperStatus,
    pod: JsonObject | None,
) -> None:
    """The conclusion in the operator's log, and as an Event on the pod when it exists."""
    for line in spec.insights:
        log.info("INSIGHT %s: %s", name, line)
    for advice in status.recommendations:
        log.info("RECOMMENDATION %s: %s", name, one_line(advice))
    if pod is not None:
        headline = spec.insights[0] if spec.insights else f"{status.severity} CPU throttling"
        await events.record(
            pod,
            "KernelThrottling",
            f"{headline}. {status.recommendation}",
            warning=status.severity != "info",
        )


@dataclass
class Writer:
    client: KubeClient
    namespace: str
    thresholds: Thresholds
    events: EventRecorder
    _locks: "weakref.WeakValueDictionary[str, asyncio.Lock]" = field(
        default_factory=weakref.WeakValueDictionary
    )
    _stored: "OrderedDict[str, JsonObject]" = field(default_factory=OrderedDict)

    async def whisper(self, signal: CpuThrottlePayload) -> Written:
        facts, pod = await podfacts.gather(
            self.client, signal.namespace, signal.pod_name, signal.container_name
        )
        if pod is not None:
            check_sender_facts(signal, pod)
        spec = whisper_spec(signal, facts, self.thresholds)
        concluded: list[KernelWhisperStatus] = []

        def status_for(previous: JsonObject | None) -> JsonObject:
            status = whisper_status(
                spec, facts, previous_history(previous), self.thresholds, datetime.now(UTC)
            )
            concluded.append(status)
            return dump(status)

        name = whisper_name(self.namespace, signal.namespace, signal.pod_name)
        written = await self._upsert(
            KERNEL_WHISPER, signal.type, name, signal.namespace, dump(spec), status_for
        )
        await announce_whisper(self.events, name, spec, concluded[-1], pod)
        return written

    async def certificate(self, signal: PodCreationPayload) -> Written:
        pod = await podfacts.find_pod(self.client, signal.namespace, signal.pod_name)
        if pod is not None:
            check_sender_facts(signal, pod)
        spec = birth_certificate_spec(signal)
        summary = birth_summary(spec)

        def status_for(_: JsonObject | None) -> JsonObject:
            return dump(PodBirthCertificateStatus(summary=summary, recorded_at=datetime.now(UTC)))

        name = certificate_name(self.namespace, signal.namespace, signal.pod_name)
        written = await self._upsert(
            POD_BIRTH_CERTIFICATE, signal.type, name, signal.namespace, dump(spec), status_for
        )
        log.info("BIRTH %s: %s", name, summary)
        if pod is not None:
            await self.events.record(pod, "PodBirthRecorded", summary, warning=False)
        return written

    async def _upsert(
        self,
        kind: CustomResource,
        signal_type: str,
        name: str,
        pod_namespace: str,
        spec: JsonObject,
        status_for: StatusFor,
    ) -> Written:
        key = f"{kind.plural}/{name}"
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            remembered = self._stored.pop(key, None)
            reads = 0  # a round from the remembered resource is not one of the attempts
            while reads < MAX_ATTEMPTS:
                reads += remembered is None
                try:
                    operation, stored = await self._attempt(
                        kind, name, pod_namespace, spec, status_for, remembered
                    )
                except Changed as change:
                    log.info("%s %s changed under us (%s): retrying", kind.kind, name, change)
                    if remembered is None and reads < MAX_ATTEMPTS:  # no writer starves
                        await asyncio.sleep(random.uniform(0.5, 1) * BACKOFF_SECONDS * 2**reads)
                    remembered = None
                    continue
                self._stored[key] = stored
                if len(self._stored) > REMEMBERED:
                    self._stored.popitem(last=False)
                return Written(kind, signal_type, name, operation)
        raise ConflictsExhausted(f"{kind.kind} {name} kept changing: gave up after {MAX_ATTEMPTS}")

    async def _replace(self, path: str, body: JsonObject) -> JsonObject:
        try:
            return await self.client.replace(path, body)
        except ApiError as error:
            if error.status in (404, 409):
                raise Changed(error.reason) from None
            raise

    async def _attempt(
        self,
        kind: CustomResource,
        name: str,
        pod_namespace: str,
        spec: JsonObject,
        status_for: StatusFor,
        remembered: JsonObject | None,
    ) -> tuple[Operation, JsonObject]:
        """One round from the resource as remembered (else as read): (what was done, the
        resource as stored)."""
        path = group_path(API_VERSION, self.namespace, kind.plural, name)
        current = remembered if remembered is not None else await self.client.get(path)
        operation: Operation
        if current is None:
            body: JsonObject = {
                "apiVersion": API_VERSION,
                "kind": kind.kind,
                "metadata": {"name": name, "annotations": {WRITTEN_BY: "webhook"}},
                "spec": spec,
            }
            collection = group_path(API_VERSION, self.namespace, kind.plural)
            try:
                stored = await self.client.create(collection, body)
            except ApiError as error:
                if error.status == 409:  # created meanwhile by another writer
                    raise Changed(error.reason) from None
                raise
            operation, previous = "created", None
        else:
            recorded = current.get("spec", {})
            if recorded.get("podNamespace") not in (None, pod_namespace) or recorded.get(
                "podName"
            ) not in (None, spec["podName"]):
                log.error(
                    "%s %s records pod %s/%s, not %s/%s: refused",
                    kind.kind,
                    name,
                    recorded.get("podNamespace"),
                    recorded.get("podName"),
                    pod_namespace,
                    spec["podName"],
                )
                raise PodMismatch(f"{kind.kind} {name} records another pod")
            metadata = current.get("metadata", {})
            annotations = {**(metadata.get("annotations") or {}), WRITTEN_BY: "webhook"}
            body = {**current, "metadata": {**metadata, "annotations": annotations}, "spec": spec}
            stored, operation = await self._replace(path, body), "updated"
            previous = current.get("status")
        status_path = group_path(API_VERSION, self.namespace, kind.plural, name, status=True)
        concluded = await self._replace(status_path, {**stored, "status": status_for(previous)})
        return operation, concluded
