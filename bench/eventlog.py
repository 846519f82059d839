"""Every event a cluster records during a run, kept after its namespace is gone.

The run deletes its namespaces (and with them their events) before the
benchmark could list them, so the fault-detection benchmark watches events
in all namespaces from the start and keeps the first sighting of each. The
sim stamps events with a microsecond `eventTime`; a cluster that does not
gets the second-resolution `firstTimestamp`, and the entry says so.
"""

from __future__ import annotations

import contextlib
import threading
from datetime import datetime
from typing import Any

from winstor.cluster.kube import EVENTS, Api


def event_time(ev: dict) -> tuple[float | None, str]:
    """(seconds since the epoch, which field) of the event's first occurrence."""
    for key in ("eventTime", "firstTimestamp", "lastTimestamp"):
        raw = ev.get(key)
        if raw:
            with contextlib.suppress(ValueError):
                return datetime.fromisoformat(str(raw).replace("Z", "+00:00")).timestamp(), key
    return None, ""


class EventLog(threading.Thread):
    def __init__(self, api: Api) -> None:
        super().__init__(daemon=True, name="bench-eventlog")
        self.api = api
        self.events: dict[str, dict] = {}  # uid -> first sighting
        self._halt = threading.Event()
        self._stream: Any = None
        self._ready = threading.Event()
        self.error: str | None = None

    def start_and_wait(self) -> None:
        self.start()
        self._ready.wait(10)

    def stop(self) -> None:
        self._halt.set()
        if self._stream is not None:
            with contextlib.suppress(Exception):
                self._stream.close()
        self.join(5)

    def _keep(self, ev: dict) -> None:
        uid = (ev.get("metadata") or {}).get("uid") or (ev.get("metadata") or {}).get("name")
        if uid and uid not in self.events:
            self.events[uid] = ev

    def run(self) -> None:
        try:
            listed = self.api.list(EVENTS)
            for ev in listed.get("items") or []:
                self._keep(ev)
            rv = listed["metadata"]["resourceVersion"]
            self._ready.set()
            while not self._halt.is_set():
                self._stream = self.api.watch(EVENTS, None, rv, timeout_seconds=30)
                for change in self._stream:
                    obj = change.get("object") or {}
                    if change.get("type") == "ERROR":
                        listed = self.api.list(EVENTS)
                        for ev in listed.get("items") or []:
                            self._keep(ev)
                        rv = listed["metadata"]["resourceVersion"]
                        break
                    rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                    if change.get("type") in ("ADDED", "MODIFIED"):
                        self._keep(obj)
        except Exception as exc:  # reported with the fault table, never raised in a thread
            if not self._halt.is_set():
                self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self._ready.set()

    def sorted(self) -> list[dict[str, Any]]:
        out = []
        for ev in self.events.values():
            at, source = event_time(ev)
            inv = ev.get("involvedObject") or {}
            out.append({"time": at, "time_source": source, "type": ev.get("type", ""),
                        "reason": ev.get("reason", ""), "message": ev.get("message", ""),
                        "object": f"{inv.get('kind', '').lower()}/{inv.get('name', '')}",
                        "namespace": inv.get("namespace") or ""})
        return sorted(out, key=lambda e: e["time"] or 0.0)
