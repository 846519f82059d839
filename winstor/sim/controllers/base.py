"""Shared plumbing for controllers: kinds, owner references, conditions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..kinds import kind_of
from ..store import now_iso

if TYPE_CHECKING:
    from ..cluster import Cluster
    from . import Controllers

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


class Controller:
    def __init__(self, cluster: Cluster, manager: Controllers) -> None:
        self.cluster = cluster
        self.store = cluster.store
        self.manager = manager
        self.events = cluster.events

    def reconcile(self) -> None:  # pragma: no cover - interface
        raise NotImplementedError


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
