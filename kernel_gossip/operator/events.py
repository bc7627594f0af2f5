"""Events on a pod, aggregated the way the kubelet's EventCorrelator does it.

A throttled container gets a signal every window; one Event per window would be hundreds
an hour. Like client-go's event correlator, an Event of the same pod, reason and type seen
again within AGGREGATION_SECONDS is the same Event with `count` incremented and
`lastTimestamp` (and the latest message) updated, not a new object.
"""

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from kernel_gossip.kube.client import ApiError
from kernel_gossip.operator.kube import JsonObject, KubeClient, core_path
from kernel_gossip.operator.podfacts import EVENT_MESSAGE_LIMIT, pod_event

log = logging.getLogger("kernel_gossip.operator")

AGGREGATION_SECONDS = 600.0
"""client-go's default: similar events within 10 minutes are one series."""
MAX_TRACKED = 4096

Key = tuple[str, str, str, str]  # namespace, pod uid, reason, type


@dataclass
class EventRecorder:
    client: KubeClient
    _recent: dict[Key, tuple[float, JsonObject]] = field(default_factory=dict)

    async def record(self, pod: JsonObject, reason: str, message: str, *, warning: bool) -> None:
        """Post the event, or bump the one already posted; a refusal is logged, never fatal
        to the signal."""
        meta = pod.get("metadata", {})
        namespace = str(meta.get("namespace"))
        key = (namespace, str(meta.get("uid")), reason, "Warning" if warning else "Normal")
        now = time.monotonic()
        seen = self._recent.get(key)
        try:
            if seen is not None and now - seen[0] < AGGREGATION_SECONDS:
                stored = await self._bump(namespace, seen[1], message)
            else:
                stored = await self.client.create(
                    core_path(namespace, "events"), pod_event(pod, reason, message, warning)
                )
        except ApiError as error:
            self._recent.pop(key, None)
            log.warning("cannot record event %s on pod %s: %s", reason, namespace, error)
            return
        first_seen = seen[0] if seen is not None and now - seen[0] < AGGREGATION_SECONDS else now
        self._recent[key] = (first_seen, stored)
        if len(self._recent) > MAX_TRACKED:
            oldest = min(self._recent, key=lambda k: self._recent[k][0])
            del self._recent[oldest]

    async def _bump(self, namespace: str, event: JsonObject, message: str) -> JsonObject:
        """The same Event, one more time: count + 1, lastTimestamp now (a 404 or 409, the
        Event expired or changed, starts a new one via the caller's error path)."""
        name = str(event.get("metadata", {}).get("name"))
        bumped = {
            **event,
            "count": int(event.get("count") or 1) + 1,
            "lastTimestamp": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
            "message": message[:EVENT_MESSAGE_LIMIT],
        }
        return await self.client.replace(core_path(namespace, "events", name), bumped)
