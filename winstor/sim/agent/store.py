"""`RemoteStore`: the sim's `Store` interface over the real API server.

The sim's kubelet, node models and event recorder read the cluster with `peek`/`iter`
and write it with `mutate`/`create`/`remove_now`, expecting to see their own writes at
once. Here the reads come from informer-style caches - one LIST then WATCH per kind, in
a thread of its own, re-listing after `410 Gone` - and the writes go to the API server
synchronously over REST: a write returns only once the server stored it, and its answer
goes straight into the cache, so the next `peek` sees it even before the watch event
arrives.

The cache is a `Store`'s own buckets (the base class's `peek`, `get`, `iter`, `list` and
listeners serve it unchanged). Every cache change happens on the agent's event loop:
watch threads hand their events over with `call_soon_threadsafe`, and writes run on the
loop. So, as in the sim, nothing needs a lock.

Ordering: a watch event can arrive after the answer of a later write of ours. Each
object keeps the highest resourceVersion seen (etcd revisions, which only grow), and an
event older than what the cache holds is dropped; a deleted object leaves a tombstone
with its last version so that a late MODIFIED cannot bring it back.

`mutate` is the kubelet's read-modify-write: the function is applied to the cached
object and the result PUT with its resourceVersion; on `409 Conflict` the object is
read again and the function applied again (as client-go's `RetryOnConflict`). A
function that changes nothing writes nothing, as the sim's store does.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from ..api.errors import ApiError
from ..api.kinds import Kind, kind_of
from ..api.selectors import Predicate
from ..api.store import Store, Watcher
from .kube import Kube, KubeUnreachable

log = logging.getLogger("winstor.sim.agent.store")

PODS = kind_of("v1", "Pod")
CONFLICT_RETRIES = 10
UNREACHABLE_RETRIES = 5


def _rv(obj: dict) -> int:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:  # not an etcd revision: never newer than what we hold
        return 0


class RemoteStore(Store):
    """A `Store` whose contents mirror the API server; see the module docstring."""

    def __init__(self, kube: Kube, watched: Iterable[Kind]) -> None:
        super().__init__(history=1)
        self.kube = kube
        self.watched: tuple[Kind, ...] = tuple(watched)
        self._tombstones: dict[tuple[str, tuple[str, str]], int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._synced: dict[str, asyncio.Event] = {}
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        # Called (synchronously, on the loop) before a pod is finally deleted by
        # `remove_now`: the kubelet's last words about it (volumesInUse).
        self.before_pod_removed: list[Callable[[dict], None]] = []
        self.writes = 0

    # -- informers --------------------------------------------------------------------
    async def start(self, timeout: float = 60.0) -> None:
        """Start one informer per watched kind; return once each has listed."""
        self._loop = asyncio.get_running_loop()
        for kind in self.watched:
            self._synced[self._bucket_name(kind)] = asyncio.Event()
            thread = threading.Thread(target=self._inform, args=(kind,), daemon=True,
                                      name=f"informer-{kind.plural}")
            self._threads.append(thread)
            thread.start()
        await asyncio.wait_for(asyncio.gather(*(e.wait() for e in self._synced.values())),
                               timeout)

    def stop(self) -> None:
        """Stop the informers (their threads are daemons; an open watch just ends with us)."""
        self._stop.set()

    @staticmethod
    def _bucket_name(kind: Kind) -> str:
        return kind.plural + "." + kind.group

    def _inform(self, kind: Kind) -> None:
        """LIST, then WATCH from the list's version, forever; re-list after 410 Gone or a
        broken connection (waiting 0.2 s doubling to 5 s between failures)."""
        rv: str | None = None
        pause = 0.2
        while not self._stop.is_set():
            try:
                if rv is None:
                    listed = self.kube.list(kind)
                    rv = str((listed.get("metadata") or {}).get("resourceVersion") or "")
                    items = listed.get("items") or []
                    for item in items:  # list items carry no apiVersion/kind of their own
                        item["apiVersion"], item["kind"] = kind.api_version, kind.kind
                    self._hand_over(self._replace_all, kind, items, int(rv or 0))
                for event in self.kube.watch(kind, rv):
                    if self._stop.is_set():
                        return
                    obj = event.get("object") or {}
                    rv = str((obj.get("metadata") or {}).get("resourceVersion") or rv)
                    if event.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                        self._hand_over(self._deliver, kind, str(event["type"]), obj)
                pause = 0.2
            except ApiError as err:
                if err.code == 410:
                    rv = None  # compacted away: list again
                    continue
                log.warning("watching %s: %s %s", kind.plural, err.code, err.message)
                rv = None
            except KubeUnreachable as err:
                if self._stop.is_set():
                    return
                log.info("watching %s: %s", kind.plural, err)
            except Exception:  # never let an informer die silently
                log.exception("informer of %s failed", kind.plural)
                rv = None
            if self._stop.wait(pause):
                return
            pause = min(pause * 2, 5.0)

    def _hand_over(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(fn, *args)

    def _replace_all(self, kind: Kind, items: list[dict], list_rv: int) -> None:
        bucket = self._bucket(kind)
        seen = set()
        for item in items:
            seen.add(self._key(kind, item["metadata"].get("namespace"), item["metadata"]["name"]))
            self._deliver(kind, "ADDED", item)
        for key, cur in list(bucket.items()):
            if key not in seen and _rv(cur) <= list_rv:
                self._deliver(kind, "DELETED", {**cur, "metadata": {
                    **cur["metadata"], "resourceVersion": str(list_rv)}})
        event = self._synced.get(self._bucket_name(kind))
        if event is not None:
            event.set()

    def _deliver(self, kind: Kind, type_: str, obj: dict) -> None:
        """Apply one change to the cache unless it is older than what the cache holds."""
        meta = obj.get("metadata") or {}
        if not meta.get("name"):
            return
        key = self._key(kind, meta.get("namespace"), meta["name"])
        bucket = self._bucket(kind)
        version = _rv(obj)
        cur = bucket.get(key)
        tomb_key = (self._bucket_name(kind), key)
        if type_ == "DELETED":
            if cur is not None and _rv(cur) > version:
                return
            self._tombstones[tomb_key] = max(version, self._tombstones.get(tomb_key, 0))
            if cur is None:
                return
            del bucket[key]
            self._emit(kind, "DELETED", obj)
            return
        if cur is not None and _rv(cur) >= version:
            return
        if cur is None and self._tombstones.get(tomb_key, -1) >= version:
            return
        obj.setdefault("apiVersion", kind.api_version)
        obj.setdefault("kind", kind.kind)
        self._tombstones.pop(tomb_key, None)
        bucket[key] = obj
        self._emit(kind, "ADDED" if cur is None else "MODIFIED", obj)

    def _emit(self, kind: Kind, type_: str, obj: dict) -> None:
        for fn in list(self._listeners):
            try:
                fn(kind, type_, obj)
            except Exception:
                log.exception("store listener failed")

    # -- writes -----------------------------------------------------------------------
    def _call(self, method: str, path: str, body: Any = None,
              query: dict[str, str] | None = None) -> dict:
        """One write, retried while the API server cannot be reached (it does not go away
        under a healthy control plane; a hiccup must not lose a pod's status)."""
        for attempt in range(UNREACHABLE_RETRIES):
            try:
                self.writes += 1
                return self.kube.request(method, path, body, query=query)
            except KubeUnreachable:
                if attempt == UNREACHABLE_RETRIES - 1:
                    raise
                time.sleep(0.2 * 2 ** attempt)
        raise AssertionError("unreachable")

    def create(self, kind: Kind, obj: dict) -> dict:
        obj = copy.deepcopy(obj)
        obj["apiVersion"], obj["kind"] = kind.api_version, kind.kind
        namespace = (obj.get("metadata") or {}).get("namespace") if kind.namespaced else None
        stored = self._call("POST", self.kube.path(kind, namespace), obj)
        self._deliver(kind, "ADDED", copy.deepcopy(stored))
        return stored

    def replace(self, kind: Kind, obj: dict, *, subresource: str | None = None,
                check_rv: bool = True) -> dict:
        meta = obj.get("metadata") or {}
        body = copy.deepcopy(obj)
        if not check_rv:
            body["metadata"].pop("resourceVersion", None)
        stored = self._call("PUT", self.kube.path(kind, meta.get("namespace"), meta["name"],
                                                  subresource), body)
        self._deliver(kind, "MODIFIED", copy.deepcopy(stored))
        return stored

    def fetch(self, kind: Kind, namespace: str | None, name: str) -> dict:
        """The server's current object (into the cache too)."""
        fresh = self.kube.get(kind, namespace, name)
        fresh["apiVersion"], fresh["kind"] = kind.api_version, kind.kind
        self._deliver(kind, "MODIFIED", copy.deepcopy(fresh))
        return fresh

    def mutate(self, kind: Kind, namespace: str | None, name: str,
               fn: Callable[[dict], None], *, subresource: str | None = None) -> dict:
        cur = self.peek(kind, namespace, name)
        if cur is None:
            cur = self.fetch(kind, namespace, name)
        for _ in range(CONFLICT_RETRIES):
            new = copy.deepcopy(cur)
            fn(new)
            if new == cur:
                return copy.deepcopy(cur)
            try:
                return self.replace(kind, new, subresource=subresource)
            except ApiError as err:
                if err.code != 409:
                    raise
            cur = self.fetch(kind, namespace, name)
        raise ApiError.conflict(kind.plural, name, f"still conflicting after "
                                f"{CONFLICT_RETRIES} attempts", kind.group)

    def delete(self, kind: Kind, namespace: str | None, name: str, *,
               uid: str | None = None, rv: str | None = None,
               graceful: bool = False, grace_seconds: int | None = None) -> dict:
        body: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions"}
        preconditions = {k: v for k, v in (("uid", uid), ("resourceVersion", rv)) if v}
        if preconditions:
            body["preconditions"] = preconditions
        if grace_seconds is not None:
            body["gracePeriodSeconds"] = grace_seconds
        answer = self._call("DELETE", self.kube.path(kind, namespace, name), body)
        if answer.get("kind") == kind.kind and (answer.get("metadata") or {}).get(
                "deletionTimestamp") and (answer["metadata"].get("finalizers") or graceful):
            self._deliver(kind, "MODIFIED", copy.deepcopy(answer))
        else:
            gone = self.peek(kind, namespace, name)
            if gone is not None:
                self._deliver(kind, "DELETED", {**gone, "metadata": {
                    **gone["metadata"], "resourceVersion": str(max(_rv(gone), _rv(answer)))}})
        return answer

    def remove_now(self, kind: Kind, namespace: str | None, name: str) -> None:
        """The kubelet's final word on a pod (a delete with grace 0, for the pod it
        stopped: its uid as precondition); anything else is an immediate delete."""
        cur = self.peek(kind, namespace, name)
        if kind is PODS and cur is not None:
            for hook in list(self.before_pod_removed):
                try:
                    hook(cur)
                except Exception:
                    log.exception("before removing pod %s/%s", namespace, name)
        try:
            self.delete(kind, namespace, name, uid=(cur or {}).get("metadata", {}).get("uid"),
                        grace_seconds=0)
        except ApiError as err:
            if err.code not in (404, 409):  # gone already, or a new pod of that name
                raise

    # -- what the local store's watch machinery would do: nothing here ----------------
    def watch(self, kind: Kind, namespace: str | None, match: Predicate,
              resource_version: str | None) -> Watcher:
        raise NotImplementedError("clients watch the real API server, not the agent")
