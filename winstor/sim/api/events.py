"""Events as real components record them: aggregated, with counts.

Waits in the suite decide from event reasons and messages whether something
has failed for good, so reasons and wording follow the real kubelet,
scheduler, attach-detach controller and external-provisioner.

Each event also carries `eventTime` (MicroTime, as the events.k8s.io recorder
sets it) and, once repeated, `series.lastObservedTime`: the second-resolution
timestamps cannot time a wait that notices a failure within milliseconds, and
the benchmarks measure exactly that.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

from .kinds import kind_of
from .store import Store, now_iso

EVENT = kind_of("v1", "Event")
NAMESPACE = kind_of("v1", "Namespace")


class Recorder:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._index: dict[tuple[str, str, str], tuple[str, str]] = {}

    def record(self, obj: dict, type_: str, reason: str, message: str, component: str,
               host: str | None = None) -> None:
        meta = obj["metadata"]
        namespace = meta.get("namespace") or "default"
        ns = self.store.peek(NAMESPACE, None, namespace)
        if ns is None or ns["metadata"].get("deletionTimestamp"):
            return  # NamespaceLifecycle rejects events there too
        key = (meta["uid"], reason, message)
        now = now_iso()
        micro = _micro_now()
        existing = self._index.get(key)
        if existing and self.store.peek(EVENT, *existing) is not None:
            def bump(ev: dict) -> None:
                ev["count"] = ev.get("count", 1) + 1
                ev["lastTimestamp"] = now
                ev["series"] = {"count": ev["count"], "lastObservedTime": micro}
            self.store.mutate(EVENT, existing[0], existing[1], bump)
            return
        name = f"{meta['name']}.{uuid.uuid4().hex[:16]}"
        source = {"component": component}
        if host:
            source["host"] = host
        self.store.create(EVENT, {
            "metadata": {"name": name, "namespace": namespace},
            "involvedObject": {"kind": obj["kind"], "apiVersion": obj["apiVersion"],
                               "name": meta["name"], "namespace": meta.get("namespace"),
                               "uid": meta["uid"],
                               "resourceVersion": meta.get("resourceVersion")},
            "reason": reason, "message": message, "type": type_, "count": 1,
            "source": source, "firstTimestamp": now, "lastTimestamp": now,
            "eventTime": micro,
            "reportingComponent": component, "reportingInstance": host or "",
        })
        self._index[key] = (namespace, name)


def _micro_now() -> str:
    """A Kubernetes MicroTime: RFC 3339 with six fractional digits, UTC."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
