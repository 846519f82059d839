"""Namespace termination and owner-reference garbage collection.

A namespace being deleted empties itself, reports what is holding it up in
its conditions (as the namespace controller does: `NamespaceContentRemaining`,
`NamespaceFinalizersRemaining`) and disappears only when empty - so a stuck
finalizer is visible the way it is on a real cluster.

Its removal also takes the namespace controller's time (`namespace_finalize` on
the sim clock, about 5 s on a real cluster even for an empty namespace): until
then a GET shows it `Terminating` (the registry set the phase at DELETE) and
creating in it is refused, as a client of a real cluster sees between its DELETE
and the 404. At least `MIN_FINALIZE_SECONDS` of real time pass whatever the
time scale (except 0), so that window is observable by a client at all.
"""

from __future__ import annotations

import asyncio
import time

from ..api.kinds import KINDS
from .base import NAMESPACES, NODES, PODS, Controller, set_condition, terminating

NAMESPACED = [k for k in KINDS if k.namespaced]
OWNABLE = [k for k in KINDS if k.kind not in ("Namespace", "Event", "Node")]
# A client's GET right after its DELETE takes a few ms; this leaves it a wide margin
# while a run's namespace teardown stays quick.
MIN_FINALIZE_SECONDS = 0.1


class Lifecycle(Controller):
    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        # Namespaces (by uid) whose modelled finalize time has passed.
        self._finalizable: set[str] = set()

    def reconcile(self) -> None:
        live: set[str] = set()
        for ns in list(self.store.iter(NAMESPACES)):
            if terminating(ns):
                live.add(ns["metadata"]["uid"])
                self._terminate(ns)
        self._finalizable &= live
        self._collect_garbage()

    async def _finalize_time(self, uid: str) -> None:
        """The namespace controller's sync and requeue, then allow the removal."""
        started = time.monotonic()
        clock = self.cluster.clock
        await clock.spend("namespace_finalize")
        if clock.scale > 0:
            await asyncio.sleep(max(0.0, MIN_FINALIZE_SECONDS - (time.monotonic() - started)))
        self._finalizable.add(uid)

    def _terminate(self, ns: dict) -> None:
        name = ns["metadata"]["name"]
        remaining: dict[str, int] = {}
        finalizers: dict[str, int] = {}
        for kind in NAMESPACED:
            for obj in list(self.store.iter(kind, name)):
                remaining[kind.plural] = remaining.get(kind.plural, 0) + 1
                for f in obj["metadata"].get("finalizers") or []:
                    finalizers[f] = finalizers.get(f, 0) + 1
                if not terminating(obj):
                    graceful = kind is PODS and bool(obj["spec"].get("nodeName"))
                    self.store.delete(kind, name, obj["metadata"]["name"], graceful=graceful)
                elif kind.kind == "Event":
                    self.store.remove_now(kind, name, obj["metadata"]["name"])
        uid = ns["metadata"]["uid"]
        key = f"namespace-finalize/{uid}"
        if uid not in self._finalizable:
            self.manager.spawn(key, self._finalize_time(uid))  # once: a running key waits
        if not remaining:
            if uid in self._finalizable:
                self._finalizable.discard(uid)
                self.manager.tasks.pop(key, None)
                self.store.remove_now(NAMESPACES, None, name)
            return

        def status(o: dict) -> None:
            st = o.setdefault("status", {})
            st["phase"] = "Terminating"
            conds = st.setdefault("conditions", [])
            summary = ", ".join(f"{k} has {n} resource instances"
                                for k, n in sorted(remaining.items()))
            set_condition(conds, "NamespaceContentRemaining", "True", "SomeResourcesRemain",
                          f"Some resources are remaining: {summary}")
            if finalizers:
                fsum = ", ".join(f"{f} in {n} resource instances"
                                 for f, n in sorted(finalizers.items()))
                set_condition(conds, "NamespaceFinalizersRemaining", "True",
                              "SomeFinalizersRemain",
                              f"Some content in the namespace has finalizers remaining: {fsum}")
        self.store.mutate(NAMESPACES, None, name, status)

    def _collect_garbage(self) -> None:
        # Namespaces and nodes can own objects too (a cluster-scoped dependent may name a
        # cluster-scoped owner), though they are never collected here themselves.
        uids: set[str] = {o["metadata"]["uid"] for kind in (NAMESPACES, NODES)
                          for o in self.store.iter(kind)}
        foreground: list[tuple] = []
        for kind in OWNABLE:
            for obj in self.store.iter(kind):
                uids.add(obj["metadata"]["uid"])
                if terminating(obj) and "foregroundDeletion" in (
                        obj["metadata"].get("finalizers") or []):
                    foreground.append((kind, obj))
        waiting_on: set[str] = set()
        for kind in OWNABLE:
            for obj in list(self.store.iter(kind)):
                refs = obj["metadata"].get("ownerReferences") or []
                if not refs:
                    continue
                alive = [r for r in refs if r.get("uid") in uids]
                fg_owner = any(r.get("uid") == o["metadata"]["uid"]
                               for r in refs for _, o in foreground)
                if (not alive or fg_owner) and not terminating(obj):
                    graceful = kind is PODS and bool(obj["spec"].get("nodeName"))
                    self.store.delete(kind, obj["metadata"].get("namespace"),
                                      obj["metadata"]["name"], graceful=graceful)
                if fg_owner:
                    waiting_on.update(r["uid"] for r in refs)
        for kind, owner in foreground:
            if owner["metadata"]["uid"] in waiting_on:
                continue
            self.drop_finalizer(kind, owner["metadata"].get("namespace"),
                                owner["metadata"]["name"], "foregroundDeletion")
