"""Server-side defaulting, as the apiserver applies it on create.

Defaults matter beyond looks: `kubectl apply` keeps fields it did not set
only if the three-way patch leaves them alone, so a re-apply against this
server must see the same defaulted fields it would see on EKS.
"""

from __future__ import annotations

import base64
from typing import Any


def _container(c: dict) -> None:
    c.setdefault("imagePullPolicy", "Always" if str(c.get("image", "")).endswith(":latest")
                 or ":" not in str(c.get("image", "")).rsplit("/", 1)[-1] else "IfNotPresent")
    c.setdefault("terminationMessagePath", "/dev/termination-log")
    c.setdefault("terminationMessagePolicy", "File")
    c.setdefault("resources", {})
    for p in c.get("ports", []) or []:
        p.setdefault("protocol", "TCP")


def pod_spec(spec: dict) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    spec.setdefault("enableServiceLinks", True)
    for c in spec.get("containers", []) + spec.get("initContainers", []):
        _container(c)
    for v in spec.get("volumes", []) or []:
        if "hostPath" in v:
            v["hostPath"].setdefault("type", "")


def apply(kind: str, obj: dict[str, Any]) -> None:
    spec = obj.get("spec")
    meta = obj.setdefault("metadata", {})
    if kind == "Namespace":
        obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
        obj.setdefault("status", {})["phase"] = "Active"
        meta.setdefault("labels", {})["kubernetes.io/metadata.name"] = meta.get("name", "")
    elif kind == "Pod" and isinstance(spec, dict):
        pod_spec(spec)
        obj.setdefault("status", {}).setdefault("phase", "Pending")
        obj["status"].setdefault("qosClass", "BestEffort")
    elif kind in ("Deployment", "ReplicaSet", "DaemonSet") and isinstance(spec, dict):
        if kind != "DaemonSet":
            spec.setdefault("replicas", 1)
        spec.setdefault("revisionHistoryLimit", 10)
        if kind == "Deployment":
            spec.setdefault("progressDeadlineSeconds", 600)
            spec.setdefault("strategy", {"type": "RollingUpdate", "rollingUpdate": {
                "maxSurge": "25%", "maxUnavailable": "25%"}})
        tmpl = spec.setdefault("template", {})
        tmpl.setdefault("metadata", {}).setdefault("creationTimestamp", None)
        if isinstance(tmpl.get("spec"), dict):
            pod_spec(tmpl["spec"])
        obj.setdefault("status", {})
    elif kind == "PersistentVolumeClaim" and isinstance(spec, dict):
        spec.setdefault("volumeMode", "Filesystem")
        obj.setdefault("status", {}).setdefault("phase", "Pending")
        meta.setdefault("finalizers", [])
        if "kubernetes.io/pvc-protection" not in meta["finalizers"]:
            meta["finalizers"].append("kubernetes.io/pvc-protection")
    elif kind == "PersistentVolume" and isinstance(spec, dict):
        spec.setdefault("persistentVolumeReclaimPolicy", "Retain")
        spec.setdefault("volumeMode", "Filesystem")
        obj.setdefault("status", {}).setdefault("phase", "Pending")
        meta.setdefault("finalizers", [])
        if "kubernetes.io/pv-protection" not in meta["finalizers"]:
            meta["finalizers"].append("kubernetes.io/pv-protection")
    elif kind == "StorageClass":
        obj.setdefault("reclaimPolicy", "Delete")
        obj.setdefault("volumeBindingMode", "Immediate")
    elif kind == "CSIDriver" and isinstance(spec, dict):
        spec.setdefault("attachRequired", True)
        spec.setdefault("podInfoOnMount", False)
        spec.setdefault("requiresRepublish", False)
        spec.setdefault("storageCapacity", False)
        spec.setdefault("fsGroupPolicy", "ReadWriteOnceWithFSType")
        spec.setdefault("volumeLifecycleModes", ["Persistent"])
        spec.setdefault("seLinuxMount", False)
    elif kind == "Secret" and "stringData" in obj:
        # The apiserver merges stringData into data (base64) and never stores it.
        data = obj.setdefault("data", {}) or {}
        for key, value in (obj.pop("stringData") or {}).items():
            data[key] = base64.b64encode(str(value).encode("utf-8")).decode("ascii")
        obj["data"] = data
    elif kind == "Service" and isinstance(spec, dict):
        spec.setdefault("type", "ClusterIP")
        spec.setdefault("sessionAffinity", "None")
