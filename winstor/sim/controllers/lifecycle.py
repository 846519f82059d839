"""Namespace termination and owner-reference garbage collection.

A namespace being deleted empties itself, reports what is holding it up in
its conditions (as the namespace controller does: `NamespaceContentRemaining`,
`NamespaceFinalizersRemaining`) and disappears only when empty - so a stuck
finalizer is visible the way it is on a real cluster.
"""

from __future__ import annotations

from ..api.kinds import KINDS
from .base import NAMESPACES, NODES, PODS, Controller, set_condition, terminating

NAMESPACED = [k for k in KINDS if k.namespaced]
OWNABLE = [k for k in KINDS if k.kind not in ("Namespace", "Event", "Node")]


class Lifecycle(Controller):
    def reconcile(self) -> None:
        for ns in list(self.store.iter(NAMESPACES)):
            if terminating(ns):
                self._terminate(ns)
        self._collect_garbage()

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
        if not remaining:
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

            def drop(o: dict) -> None:
                o["metadata"]["finalizers"] = [f for f in o["metadata"].get("finalizers", [])
                                               if f != "foregroundDeletion"]
            self.store.mutate(kind, owner["metadata"].get("namespace"),
                              owner["metadata"]["name"], drop)
