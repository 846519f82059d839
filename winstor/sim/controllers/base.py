"""Shared plumbing for controllers: what they see of the cluster, the work queue,
kinds, owner references, conditions.

The controllers do not import the cluster that runs them: `ClusterParts` names
the parts they use (store, event recorder, clock, node models, EBS, ...) and
`winstor.sim.cluster.Cluster` satisfies it. That keeps the import graph one
way - the cluster assembles the controllers, never the reverse - and lets a
test drive a controller with any object that has those parts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Set
from typing import Any, Protocol

from ..api.events import Recorder
from ..api.kinds import Kind, kind_of
from ..api.store import Store, now_iso
from ..metrics import Metrics
from ..nodes.workloads import Workloads
from ..timing import Clock
from ..topology import ClusterPlan

log = logging.getLogger("winstor.sim.controllers")

PODS = kind_of("v1", "Pod")
PVCS = kind_of("v1", "PersistentVolumeClaim")
PVS = kind_of("v1", "PersistentVolume")
NODES = kind_of("v1", "Node")
NAMESPACES = kind_of("v1", "Namespace")
EVENTS = kind_of("v1", "Event")
DEPLOYMENTS = kind_of("apps/v1", "Deployment")
REPLICASETS = kind_of("apps/v1", "ReplicaSet")
STORAGECLASSES = kind_of("storage.k8s.io/v1", "StorageClass")
CSIDRIVERS = kind_of("storage.k8s.io/v1", "CSIDriver")
CSINODES = kind_of("storage.k8s.io/v1", "CSINode")
ATTACHMENTS = kind_of("storage.k8s.io/v1", "VolumeAttachment")


class Ebs(Protocol):
    """The EC2 volume calls the provisioner and the attach-detach controller make
    (`winstor.sim.cloud.SimCloud`, over the moto backend). Blocking: controllers
    call them in an executor, as real controllers call AWS off their work loop."""

    def create_volume(self, zone: str, size_gib: int, volume_type: str,
                      tags: dict[str, str]) -> str: ...

    def attach_volume(self, volume_id: str, instance_id: str) -> str: ...

    def detach_volume(self, volume_id: str, instance_id: str) -> None: ...

    def modify_volume(self, volume_id: str, size_gib: int, denied: bool = False) -> str: ...

    def delete_volume(self, volume_id: str) -> None: ...


class ClusterParts(Protocol):
    """What the controllers read of the cluster they run in (read-only: they change
    the cluster through the store and the node models, never by rebinding parts)."""

    @property
    def store(self) -> Store: ...

    @property
    def events(self) -> Recorder: ...

    @property
    def clock(self) -> Clock:
        """Modelled EKS latencies: a controller spends them where EKS would take time."""

    @property
    def workloads(self) -> Workloads:
        """The node models: volumes, shares, pulled images, running containers."""

    @property
    def aws(self) -> Ebs: ...

    @property
    def metrics(self) -> Metrics:
        """Counters the kubelet adds to (image pulls)."""

    @property
    def plan(self) -> ClusterPlan: ...

    @property
    def flavour(self) -> str: ...

    @property
    def scenarios(self) -> Set[str]: ...

    @property
    def pod_security_admission(self) -> bool:
        """Whether the PodSecurity admission plugin runs (controllers admit their pods)."""


CHANGE_SAFETY_NET = 1.0
"""Seconds work waiting for the next store change (`WorkQueue.next_change`) waits without
one before it looks again anyway."""


class WorkQueue:
    """Level-triggered passes plus keyed background work, shared by all controllers.

    `dirty` asks for another pass (`Controllers` sets it on every store change, through
    `changed`, and when keyed work ends); slow work - provisioning, attaching, pulling - runs as
    keyed tasks so the same work is never started twice, just as real controllers
    key their work queues. Controllers hold it as `manager`.
    """

    def __init__(self) -> None:
        self.dirty = asyncio.Event()
        self.tasks: dict[str, asyncio.Task[Any]] = {}
        self._change: asyncio.Future[None] | None = None

    def changed(self) -> None:
        """The store changed: ask for a pass, and wake the work waiting in `next_change`."""
        self.dirty.set()
        waiting, self._change = self._change, None
        if waiting is not None and not waiting.done():
            waiting.set_result(None)

    async def next_change(self, timeout: float = CHANGE_SAFETY_NET) -> None:
        """Return at the next store change, or after `timeout` seconds (a safety net): for
        work that waits for what another controller writes - a kubelet for its volume's
        attachment - instead of looking again every few milliseconds, which in a fleet's
        sim made thousands of wake-ups a second of the one interpreter all clusters share."""
        if self._change is None or self._change.done():
            self._change = asyncio.get_running_loop().create_future()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.shield(self._change), timeout)

    def spawn(self, key: str, coro: Coroutine[Any, Any, Any]) -> bool:
        """Start keyed work unless the same key is already running."""
        task = self.tasks.get(key)
        if task is not None and not task.done():
            coro.close()
            return False
        task = asyncio.get_running_loop().create_task(self._guard(key, coro))
        self.tasks[key] = task
        return True

    def running(self, key: str) -> bool:
        task = self.tasks.get(key)
        return task is not None and not task.done()

    async def _guard(self, key: str, coro: Coroutine[Any, Any, Any]) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("controller task %s failed", key)
        finally:
            self.dirty.set()

    def later(self, delay: float) -> None:
        """Ask for another pass after `delay` seconds (a requeue with backoff)."""
        loop = asyncio.get_running_loop()
        loop.call_later(delay, self.dirty.set)


class Controller:
    def __init__(self, cluster: ClusterParts, manager: WorkQueue) -> None:
        self.cluster = cluster
        self.store = cluster.store
        self.manager = manager
        self.events = cluster.events

    def reconcile(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError

    def drop_finalizer(self, kind: Kind, namespace: str | None, name: str,
                       finalizer: str) -> None:
        """Remove one finalizer, as the controller that owns it does once its work is done
        (a terminating object with none left goes: `Store.mutate`)."""
        def drop(o: dict) -> None:
            o["metadata"]["finalizers"] = [f for f in o["metadata"].get("finalizers") or []
                                           if f != finalizer]
        self.store.mutate(kind, namespace, name, drop)


def owner_ref(owner: dict, controller: bool = True) -> dict[str, Any]:
    return {"apiVersion": owner["apiVersion"], "kind": owner["kind"],
            "name": owner["metadata"]["name"], "uid": owner["metadata"]["uid"],
            "controller": controller, "blockOwnerDeletion": True}


def owned_by(obj: dict, owner: dict) -> bool:
    return any(r.get("uid") == owner["metadata"]["uid"]
               for r in obj["metadata"].get("ownerReferences") or [])


def set_condition(conditions: list[dict], type_: str, status: str, reason: str = "",
                  message: str = "") -> None:
    for c in conditions:
        if c["type"] == type_:
            if c["status"] != status:
                c["lastTransitionTime"] = now_iso()
            c.update(status=status, reason=reason, message=message)
            if not reason:
                c.pop("reason", None)
            if not message:
                c.pop("message", None)
            return
    cond = {"type": type_, "status": status, "lastTransitionTime": now_iso()}
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    conditions.append(cond)


def terminating(obj: dict) -> bool:
    return bool(obj["metadata"].get("deletionTimestamp"))
