"""Server-side printing (`meta.k8s.io/v1` Table) for `kubectl get`.

kubectl asks for `as=Table` and prints whatever columns the server returns;
priority-1 columns appear with `-o wide`. Columns follow the real printers
for the kinds a user of winstor looks at.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from .kinds import Kind


def _age(obj: dict) -> str:
    ts = (obj.get("metadata") or {}).get("creationTimestamp")
    if not ts:
        return "<unknown>"
    then = datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc)
    secs = int((datetime.now(timezone.utc) - then).total_seconds())
    if secs < 120:
        return f"{max(secs, 0)}s"
    if secs < 3600 * 3:
        return f"{secs // 60}m"
    if secs < 86400 * 2:
        return f"{secs // 3600}h"
    return f"{secs // 86400}d"


def _node_row(o: dict) -> list[Any]:
    st = o.get("status") or {}
    ready = next((c["status"] for c in st.get("conditions", []) if c["type"] == "Ready"), "")
    status = "Ready" if ready == "True" else "NotReady"
    if (o.get("spec") or {}).get("unschedulable"):
        status += ",SchedulingDisabled"
    labels = o["metadata"].get("labels") or {}
    roles = ",".join(sorted(k.split("/", 1)[1] for k in labels
                            if k.startswith("node-role.kubernetes.io/"))) or "<none>"
    addrs = {a["type"]: a["address"] for a in st.get("addresses", [])}
    info = st.get("nodeInfo") or {}
    return [o["metadata"]["name"], status, roles, _age(o), info.get("kubeletVersion", ""),
            addrs.get("InternalIP", "<none>"), addrs.get("ExternalIP", "<none>"),
            info.get("osImage", ""), info.get("kernelVersion", ""),
            info.get("containerRuntimeVersion", "")]


def _pod_row(o: dict) -> list[Any]:
    st = o.get("status") or {}
    cs = st.get("containerStatuses") or []
    ready = sum(1 for c in cs if c.get("ready"))
    total = len((o.get("spec") or {}).get("containers", []))
    reason = st.get("phase", "Pending")
    for c in cs:
        waiting = (c.get("state") or {}).get("waiting")
        if waiting and waiting.get("reason"):
            reason = waiting["reason"]
    if o["metadata"].get("deletionTimestamp"):
        reason = "Terminating"
    restarts = sum(c.get("restartCount", 0) for c in cs)
    return [o["metadata"]["name"], f"{ready}/{total}", reason, restarts, _age(o),
            st.get("podIP", "<none>"), (o.get("spec") or {}).get("nodeName", "<none>"),
            "<none>", "<none>"]


def _pvc_row(o: dict) -> list[Any]:
    st, sp = o.get("status") or {}, o.get("spec") or {}
    cap = (st.get("capacity") or {}).get("storage", "")
    modes = ",".join({"ReadWriteOnce": "RWO", "ReadOnlyMany": "ROX", "ReadWriteMany": "RWX",
                      "ReadWriteOncePod": "RWOP"}.get(m, m) for m in st.get("accessModes", []))
    return [o["metadata"]["name"], st.get("phase", "Pending"), sp.get("volumeName", ""), cap,
            modes, sp.get("storageClassName", ""), "<unset>", _age(o),
            sp.get("volumeMode", "Filesystem")]


def _pv_row(o: dict) -> list[Any]:
    st, sp = o.get("status") or {}, o.get("spec") or {}
    ref = sp.get("claimRef") or {}
    claim = f"{ref.get('namespace')}/{ref.get('name')}" if ref else ""
    modes = ",".join({"ReadWriteOnce": "RWO"}.get(m, m) for m in sp.get("accessModes", []))
    return [o["metadata"]["name"], (sp.get("capacity") or {}).get("storage", ""), modes,
            sp.get("persistentVolumeReclaimPolicy", ""), st.get("phase", ""), claim,
            sp.get("storageClassName", ""), "<unset>", st.get("reason", ""), _age(o),
            sp.get("volumeMode", "Filesystem")]


def _sc_row(o: dict) -> list[Any]:
    name = o["metadata"]["name"]
    if (o["metadata"].get("annotations") or {}).get(
            "storageclass.kubernetes.io/is-default-class") == "true":
        name += " (default)"
    return [name, o.get("provisioner", ""), o.get("reclaimPolicy", "Delete"),
            o.get("volumeBindingMode", "Immediate"), bool(o.get("allowVolumeExpansion")),
            _age(o)]


def _deploy_row(o: dict) -> list[Any]:
    st, sp = o.get("status") or {}, o.get("spec") or {}
    return [o["metadata"]["name"], f"{st.get('readyReplicas', 0)}/{sp.get('replicas', 1)}",
            st.get("updatedReplicas", 0), st.get("availableReplicas", 0), _age(o)]


def _ns_row(o: dict) -> list[Any]:
    return [o["metadata"]["name"], (o.get("status") or {}).get("phase", "Active"), _age(o)]


def _event_row(o: dict) -> list[Any]:
    inv = o.get("involvedObject") or {}
    return [_age(o), o.get("type", ""), o.get("reason", ""),
            f"{inv.get('kind', '').lower()}/{inv.get('name', '')}", o.get("message", "")]


def _cols(*spec: tuple[str, int]) -> list[dict]:
    return [{"name": n, "type": "string", "format": "name" if n == "Name" else "",
             "description": "", "priority": p} for n, p in spec]


PRINTERS: dict[str, tuple[list[dict], Callable[[dict], list[Any]]]] = {
    "Node": (_cols(("Name", 0), ("Status", 0), ("Roles", 0), ("Age", 0), ("Version", 0),
                   ("Internal-IP", 1), ("External-IP", 1), ("OS-Image", 1),
                   ("Kernel-Version", 1), ("Container-Runtime", 1)), _node_row),
    "Pod": (_cols(("Name", 0), ("Ready", 0), ("Status", 0), ("Restarts", 0), ("Age", 0),
                  ("IP", 1), ("Node", 1), ("Nominated Node", 1), ("Readiness Gates", 1)),
            _pod_row),
    "PersistentVolumeClaim": (_cols(("Name", 0), ("Status", 0), ("Volume", 0),
                                    ("Capacity", 0), ("Access Modes", 0),
                                    ("StorageClass", 0), ("VolumeAttributesClass", 0),
                                    ("Age", 0), ("VolumeMode", 1)), _pvc_row),
    "PersistentVolume": (_cols(("Name", 0), ("Capacity", 0), ("Access Modes", 0),
                               ("Reclaim Policy", 0), ("Status", 0), ("Claim", 0),
                               ("StorageClass", 0), ("VolumeAttributesClass", 0),
                               ("Reason", 0), ("Age", 0), ("VolumeMode", 1)), _pv_row),
    "StorageClass": (_cols(("Name", 0), ("Provisioner", 0), ("ReclaimPolicy", 0),
                           ("VolumeBindingMode", 0), ("AllowVolumeExpansion", 0),
                           ("Age", 0)), _sc_row),
    "Deployment": (_cols(("Name", 0), ("Ready", 0), ("Up-to-date", 0), ("Available", 0),
                         ("Age", 0)), _deploy_row),
    "Namespace": (_cols(("Name", 0), ("Status", 0), ("Age", 0)), _ns_row),
    "Event": (_cols(("Last Seen", 0), ("Type", 0), ("Reason", 0), ("Object", 0),
                    ("Message", 0)), _event_row),
}


def render(kind: Kind, result: dict, include_object: str | None) -> dict:
    cols, row = PRINTERS.get(kind.kind, (_cols(("Name", 0), ("Age", 0)),
                                         lambda o: [o["metadata"]["name"], _age(o)]))
    items = result.get("items") if result.get("kind", "").endswith("List") else [result]
    rows = []
    for obj in items or []:
        if include_object == "Object":
            embedded = obj
        else:
            embedded = {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                        "metadata": obj.get("metadata", {})}
        rows.append({"cells": row(obj), "object": embedded})
    listed = result.get("metadata") or {}
    meta = {"resourceVersion": listed.get("resourceVersion", "")}
    # A chunked list's paging travels with the table (kubectl get follows `continue`).
    meta.update({k: listed[k] for k in ("continue", "remainingItemCount") if k in listed})
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
            "columnDefinitions": cols, "rows": rows}
