"""The object store behind one emulated cluster: etcd plus the watch cache.

Every write gets the next cluster-wide resourceVersion and lands in a bounded
history, so a watch can resume from any version still in the window and gets
`410 Expired` for one that was compacted away - the behaviour informers and
`kubectl get -w` rely on. All access happens on the server's event loop, so
there is no locking.
"""

from __future__ import annotations

import asyncio
import copy
import marshal
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

from .errors import ApiError
from .kinds import Kind
from .selectors import Predicate

Listener = Callable[[Kind, str, dict], None]


def clone(obj: dict) -> dict:
    """A deep copy of a stored object, for a caller that may change it. Stored objects
    are JSON-like (dicts, lists, strings, numbers, booleans, None), which marshal copies
    about three times faster than `copy.deepcopy`; the store copies what each read and
    write of its controllers gets back. Anything marshal refuses is deep-copied."""
    try:
        return marshal.loads(marshal.dumps(obj))  # type: ignore[no-any-return]
    except ValueError:
        return copy.deepcopy(obj)


def now_iso() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Change:
    rv: int
    kind: Kind
    type: str  # ADDED, MODIFIED, DELETED
    obj: dict


@dataclass(eq=False)
class Watcher:
    kind: Kind
    namespace: str | None
    match: Predicate
    queue: asyncio.Queue[Change | None]

    def wants(self, change: Change) -> bool:
        if change.kind is not self.kind:
            return False
        if self.namespace and change.obj["metadata"].get("namespace") != self.namespace:
            return False
        return self.match(change.obj)


def _without_rv(obj: dict) -> dict:
    meta = {k: v for k, v in obj.get("metadata", {}).items() if k != "resourceVersion"}
    return {**obj, "metadata": meta}


class Store:
    """The cluster's objects by kind, with their history of changes for watches.

    A stored object is never changed in place: every write stores a new dict. So the
    stored object itself can be a change's object (a watcher only serializes it) and a
    new version can share what it did not change with the one before; only what goes
    out to a caller that may change it - a read, a write's result - is a copy. The
    controllers' `peek` and `iter` readers must not change what they are given."""

    def __init__(self, history: int = 5000) -> None:
        self.rv = 1
        self._objects: dict[str, dict[tuple[str, str], dict]] = {}
        self._history: deque[Change] = deque(maxlen=history)
        self._watchers: set[Watcher] = set()
        self._listeners: list[Listener] = []
        self.created_by_kind: dict[str, int] = {}

    # -- plumbing --------------------------------------------------------
    def _bucket(self, kind: Kind) -> dict[tuple[str, str], dict]:
        return self._objects.setdefault(kind.plural + "." + kind.group, {})

    def add_listener(self, fn: Listener) -> None:
        self._listeners.append(fn)

    def _emit(self, kind: Kind, type_: str, obj: dict) -> None:
        change = Change(self.rv, kind, type_, obj)
        self._history.append(change)
        for w in list(self._watchers):
            if w.wants(change):
                w.queue.put_nowait(change)
        for fn in self._listeners:
            fn(kind, type_, obj)

    def _next_rv(self) -> str:
        self.rv += 1
        return str(self.rv)

    @staticmethod
    def _key(kind: Kind, namespace: str | None, name: str) -> tuple[str, str]:
        return ((namespace or "") if kind.namespaced else "", name)

    # -- reads -----------------------------------------------------------
    def peek(self, kind: Kind, namespace: str | None, name: str) -> dict | None:
        """The stored object itself (no copy): for controllers that only read."""
        return self._bucket(kind).get(self._key(kind, namespace, name))

    def get(self, kind: Kind, namespace: str | None, name: str) -> dict:
        obj = self.peek(kind, namespace, name)
        if obj is None:
            raise ApiError.not_found(kind.plural, name, kind.group)
        return clone(obj)

    def iter(self, kind: Kind, namespace: str | None = None) -> Iterable[dict]:
        """Stored objects (no copies), optionally in one namespace."""
        for (ns, _), obj in list(self._bucket(kind).items()):
            if namespace and ns != namespace:
                continue
            yield obj

    def list(self, kind: Kind, namespace: str | None = None,
             match: Predicate | None = None) -> tuple[list[dict], str]:
        items = [clone(o) for o in self.iter(kind, namespace) if not match or match(o)]
        items.sort(key=lambda o: (o["metadata"].get("namespace", ""), o["metadata"]["name"]))
        return items, str(self.rv)

    # -- writes ----------------------------------------------------------
    def create(self, kind: Kind, obj: dict) -> dict:
        meta = obj.setdefault("metadata", {})
        if not meta.get("name") and meta.get("generateName"):
            meta["name"] = meta["generateName"] + uuid.uuid4().hex[:5]
        name = meta.get("name")
        if not name:
            raise ApiError.invalid(kind.kind, "", [{
                "reason": "FieldValueRequired", "field": "metadata.name",
                "message": "Required value: name or generateName is required"}], kind.group)
        key = self._key(kind, meta.get("namespace"), name)
        bucket = self._bucket(kind)
        if key in bucket:
            raise ApiError.already_exists(kind.plural, name, kind.group)
        if not kind.namespaced:
            meta.pop("namespace", None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = now_iso()
        meta["resourceVersion"] = self._next_rv()
        meta.pop("deletionTimestamp", None)
        if "spec" in obj or kind.kind in ("StorageClass",):
            meta["generation"] = 1
        obj["apiVersion"], obj["kind"] = kind.api_version, kind.kind
        bucket[key] = obj
        self.created_by_kind[kind.kind] = self.created_by_kind.get(kind.kind, 0) + 1
        self._emit(kind, "ADDED", obj)
        return clone(obj)

    def replace(self, kind: Kind, obj: dict, *, subresource: str | None = None,
                check_rv: bool = True, owned: bool = False) -> dict:
        """PUT semantics: optimistic concurrency, status/spec split, generation. `owned`:
        `obj` is the store's to keep (a copy no one else holds), so it is not copied."""
        meta = obj.get("metadata") or {}
        name = meta.get("name", "")
        key = self._key(kind, meta.get("namespace"), name)
        bucket = self._bucket(kind)
        cur = bucket.get(key)
        if cur is None:
            raise ApiError.not_found(kind.plural, name, kind.group)
        want_rv = meta.get("resourceVersion")
        if check_rv and want_rv and want_rv != cur["metadata"]["resourceVersion"]:
            raise ApiError.conflict(kind.plural, name,
                                    "the object has been modified; please apply your changes "
                                    "to the latest version and try again", kind.group)
        new = obj if owned else clone(obj)
        if subresource == "status":
            # the current object with the new status; its metadata is a copy (changed
            # below), the rest is shared with the version before (never changed in place)
            new = {**cur, "metadata": dict(cur["metadata"]), "status": new.get("status", {})}
        elif "status" in cur and kind.kind not in ("Namespace",):
            # The main resource ignores status writes, as the apiserver does.
            new["status"] = cur["status"]
        new["metadata"] = nmeta = dict(new.get("metadata") or {})
        for immutable in ("uid", "creationTimestamp", "deletionTimestamp",
                          "deletionGracePeriodSeconds", "generation"):
            if immutable in cur["metadata"]:
                nmeta[immutable] = cur["metadata"][immutable]
            else:
                nmeta.pop(immutable, None)
        if not kind.namespaced:
            nmeta.pop("namespace", None)
        new["apiVersion"], new["kind"] = kind.api_version, kind.kind
        if _without_rv(new) == _without_rv(cur):
            return clone(cur)  # a no-op write does not bump resourceVersion
        if "generation" in nmeta and new.get("spec") != cur.get("spec"):
            nmeta["generation"] = cur["metadata"]["generation"] + 1
        nmeta["resourceVersion"] = self._next_rv()
        # A terminating object whose last finalizer this update removed is gone now
        # (graceful pods and namespaces wait for the kubelet / namespace controller).
        if nmeta.get("deletionTimestamp") and not nmeta.get("finalizers") and \
                cur["metadata"].get("finalizers"):
            del bucket[key]
            self._emit(kind, "DELETED", new)
            return clone(new)
        bucket[key] = new
        self._emit(kind, "MODIFIED", new)
        return clone(new)

    def mutate(self, kind: Kind, namespace: str | None, name: str,
               fn: Callable[[dict], None], *, subresource: str | None = None) -> dict:
        """Read-modify-write by the controllers (never conflicts: single loop). Controllers
        rewrite every object they own on every pass; most passes change nothing, and
        `replace` would find that only after copying the object twice more - the
        comparison here is what `replace` decides, without the copies."""
        obj = self.get(kind, namespace, name)
        fn(obj)
        if obj == self.peek(kind, namespace, name):
            return obj  # a no-op write: no new resourceVersion, no watch event
        return self.replace(kind, obj, subresource=subresource, check_rv=False, owned=True)

    @staticmethod
    def check_preconditions(kind: Kind, cur: dict, uid: str | None, rv: str | None) -> None:
        """DeleteOptions.preconditions: a 409 when the object is not the one meant."""
        name = cur["metadata"]["name"]
        if uid and cur["metadata"]["uid"] != uid:
            raise ApiError.conflict(kind.plural, name,
                                    f"Precondition failed: UID in precondition: {uid}, "
                                    f"UID in object meta: {cur['metadata']['uid']}", kind.group)
        if rv and cur["metadata"]["resourceVersion"] != rv:
            raise ApiError.conflict(kind.plural, name,
                                    "Precondition failed: ResourceVersion in precondition: "
                                    f"{rv}, ResourceVersion in object meta: "
                                    f"{cur['metadata']['resourceVersion']}", kind.group)

    def delete(self, kind: Kind, namespace: str | None, name: str, *,
               uid: str | None = None, rv: str | None = None,
               graceful: bool = False) -> dict:
        """Delete or mark terminating.

        Objects with finalizers (or a graceful pod on a node) get
        `deletionTimestamp` and stay until their finalizers are removed;
        everything else disappears at once.
        """
        key = self._key(kind, namespace, name)
        bucket = self._bucket(kind)
        cur = bucket.get(key)
        if cur is None:
            raise ApiError.not_found(kind.plural, name, kind.group)
        self.check_preconditions(kind, cur, uid, rv)
        if cur["metadata"].get("finalizers") or graceful:
            if cur["metadata"].get("deletionTimestamp"):
                return clone(cur)
            new = {**cur, "metadata": dict(cur["metadata"])}  # the rest shared, unchanged
            new["metadata"]["deletionTimestamp"] = now_iso()
            if kind.kind == "Namespace":
                # The namespace registry marks the phase itself, in the same write, and
                # sets no grace period; the namespace controller does the rest.
                new["status"] = {**(cur.get("status") or {}), "phase": "Terminating"}
            else:
                new["metadata"]["deletionGracePeriodSeconds"] = 30 if graceful else 0
            new["metadata"]["resourceVersion"] = self._next_rv()
            bucket[key] = new
            self._emit(kind, "MODIFIED", new)
            return clone(new)
        del bucket[key]
        gone = {**cur, "metadata": {**cur["metadata"], "resourceVersion": self._next_rv()}}
        self._emit(kind, "DELETED", gone)
        return clone(gone)

    def remove_now(self, kind: Kind, namespace: str | None, name: str) -> None:
        """Final removal (the kubelet finishing a pod, a finalizer-free object)."""
        bucket = self._bucket(kind)
        cur = bucket.pop(self._key(kind, namespace, name), None)
        if cur is not None:
            gone = {**cur, "metadata": {**cur["metadata"], "resourceVersion": self._next_rv()}}
            self._emit(kind, "DELETED", gone)

    def compacted(self, rv: int) -> bool:
        """Whether versions up to `rv` fell out of the history window, where etcd would
        have compacted them (an old continue token or watch resourceVersion is 410)."""
        oldest = self._history[0].rv if self._history else self.rv + 1
        return rv < oldest - 1 and rv < self.rv

    # -- watch -----------------------------------------------------------
    def watch(self, kind: Kind, namespace: str | None, match: Predicate,
              resource_version: str | None) -> Watcher:
        """Register a watcher, replaying history after `resource_version`.

        An empty or "0" version starts with synthetic ADDED events for what
        exists now, as the apiserver does.
        """
        w = Watcher(kind, namespace, match, asyncio.Queue())
        if not resource_version or resource_version == "0":
            for obj in sorted(self.iter(kind, namespace),
                              key=lambda o: int(o["metadata"]["resourceVersion"])):
                if match(obj):
                    w.queue.put_nowait(Change(int(obj["metadata"]["resourceVersion"]), kind,
                                              "ADDED", obj))
        else:
            try:
                since = int(resource_version)
            except ValueError:
                raise ApiError.bad_request(
                    f"invalid resource version: {resource_version!r}") from None
            oldest = self._history[0].rv if self._history else self.rv + 1
            if since < oldest - 1 and since < self.rv:
                raise ApiError.gone(f"too old resource version: {since} ({oldest - 1})")
            for change in self._history:
                if change.rv > since and w.wants(change):
                    w.queue.put_nowait(change)
        self._watchers.add(w)
        return w

    def unwatch(self, w: Watcher) -> None:
        self._watchers.discard(w)

    def drop_watches(self) -> int:
        """End every open watch (the flaky-api fault): clients must re-watch."""
        n = len(self._watchers)
        for w in list(self._watchers):
            w.queue.put_nowait(None)
        self._watchers.clear()
        return n
