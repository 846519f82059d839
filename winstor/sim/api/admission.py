"""Admission the way kube-apiserver's default plugins do it.

NamespaceLifecycle, DefaultStorageClass, PodSecurity (the baseline and
restricted checks that matter for Windows storage pods) and the immutability
rules of StorageClass and PersistentVolumeClaim. Messages follow the real
plugins so that the suite's error reporting is exercised on real wording.
"""

from __future__ import annotations

from . import quantity
from .errors import ApiError
from .kinds import Kind, kind_of
from .store import Store

NAMESPACE = kind_of("v1", "Namespace")
STORAGECLASS = kind_of("storage.k8s.io/v1", "StorageClass")
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"
ENFORCE_LABEL = "pod-security.kubernetes.io/enforce"
LEVELS = ("privileged", "baseline", "restricted")


def namespace_lifecycle(store: Store, kind: Kind, namespace: str | None,
                        name: str = "") -> None:
    """NamespaceLifecycle on create: no content in a missing namespace (404) or in one
    being deleted (403, with the NamespaceTerminating cause the real plugin gives)."""
    if not kind.namespaced or not namespace:
        return
    ns = store.peek(NAMESPACE, None, namespace)
    if ns is None:
        raise ApiError.not_found("namespaces", namespace)
    if ns["metadata"].get("deletionTimestamp"):
        full = f"{kind.plural}.{kind.group}" if kind.group else kind.plural
        err = ApiError.forbidden(
            f'{full} "{name}" is forbidden: unable to create new content in namespace '
            f"{namespace} because it is being terminated", kind.plural, name, kind.group)
        err.details = {**(err.details or {}), "causes": [{
            "reason": "NamespaceTerminating", "field": "metadata.namespace",
            "message": f"namespace {namespace} is being terminated"}]}
        raise err


def default_storage_class(store: Store, pvc: dict) -> None:
    """Fill `spec.storageClassName` when absent (not when set to "")."""
    spec = pvc.setdefault("spec", {})
    if "storageClassName" in spec and spec["storageClassName"] is not None:
        return
    defaults = [sc for sc in store.iter(STORAGECLASS)
                if (sc["metadata"].get("annotations") or {}).get(DEFAULT_CLASS_ANNOTATION)
                == "true"]
    if defaults:
        # Since 1.26 the newest default wins when there are several.
        newest = max(defaults, key=lambda sc: (sc["metadata"]["creationTimestamp"],
                                               sc["metadata"]["name"]))
        spec["storageClassName"] = newest["metadata"]["name"]


def immutable_fields(kind: Kind, old: dict, new: dict) -> None:
    name = old["metadata"]["name"]
    causes = []
    if kind.kind == "StorageClass":
        for field in kind.immutable:
            if old.get(field) != new.get(field) and not (
                    field == "reclaimPolicy" and new.get(field) is None):
                causes.append({"reason": "FieldValueForbidden", "field": field,
                               "message": f"Forbidden: updates to {field} are forbidden."})
    elif kind.kind == "PersistentVolumeClaim":
        o, n = dict(old.get("spec") or {}), dict(new.get("spec") or {})
        # Only a Bound claim may change its requests (ValidatePersistentVolumeClaimUpdate).
        if (old.get("status") or {}).get("phase") == "Bound":
            for spec in (o, n):
                spec.pop("resources", None)
                spec.pop("volumeAttributesClassName", None)
        # The binder fills volumeName once; that is allowed.
        if not o.get("volumeName"):
            n.pop("volumeName", None)
            o.pop("volumeName", None)
        if o != n:
            causes.append({"reason": "FieldValueForbidden", "field": "spec",
                           "message": "Forbidden: spec is immutable after creation except "
                                      "resources.requests and volumeAttributesClassName for "
                                      "bound claims"})
    elif kind.kind == "PersistentVolume" and (old.get("spec") or {}).get(
            "persistentVolumeSource") != (new.get("spec") or {}).get("persistentVolumeSource"):
        causes.append({"reason": "FieldValueForbidden", "field": "spec.persistentvolumesource",
                       "message": "Forbidden: spec.persistentvolumesource is immutable after "
                                  "creation"})
    if causes:
        raise ApiError.invalid(kind.kind, name, causes, kind.group)


def claim_resize(store: Store, old: dict, new: dict) -> None:
    """PersistentVolumeClaimResize (validating, updates): a claim may grow only when it is
    Bound and the StorageClass that provisioned it sets `allowVolumeExpansion: true`
    (plugin/pkg/admission/storage/persistentvolume/resize)."""
    before, after = quantity.storage(old), quantity.storage(new)
    if before is None or after is None or after <= before:
        return
    name = old["metadata"]["name"]

    def forbidden(why: str) -> ApiError:
        return ApiError.forbidden(f'persistentvolumeclaims "{name}" is forbidden: {why}',
                                  "persistentvolumeclaims", name)

    if (old.get("status") or {}).get("phase") != "Bound":
        raise forbidden("Only bound persistent volume claims can be expanded")
    old_class = (old.get("spec") or {}).get("storageClassName") or ""
    new_class = (new.get("spec") or {}).get("storageClassName") or ""
    sc = store.peek(STORAGECLASS, None, new_class) if new_class else None
    if not old_class or old_class != new_class or sc is None or \
            sc.get("allowVolumeExpansion") is not True:
        raise forbidden("only dynamically provisioned pvc can be resized and the "
                        "storageclass that provisions the pvc must support resize")


def _baseline_violations(pod: dict) -> list[str]:
    spec = pod.get("spec") or {}
    out: list[str] = []
    host_paths = [v["name"] for v in spec.get("volumes", []) if "hostPath" in v]
    if host_paths:
        names = ", ".join(f'"{n}"' for n in host_paths)
        noun = "volume" if len(host_paths) == 1 else "volumes"
        out.append(f"hostPath volumes ({noun} {names})")
    ns_fields = [f"{f}=true" for f in ("hostNetwork", "hostPID", "hostIPC") if spec.get(f)]
    if ns_fields:
        out.append(f"host namespaces ({', '.join(ns_fields)})")
    containers = spec.get("containers", []) + spec.get("initContainers", [])
    pod_hp = ((spec.get("securityContext") or {}).get("windowsOptions") or {}).get("hostProcess")
    hp = [c["name"] for c in containers
          if ((c.get("securityContext") or {}).get("windowsOptions") or {}).get("hostProcess")]
    if pod_hp or hp:
        who = "pod" if pod_hp else ""
        if hp:
            cs = ", ".join(f'"{n}"' for n in hp)
            who = (who + " and " if who else "") + f"container{'s' if len(hp) > 1 else ''} {cs}"
        out.append(f"hostProcess ({who} must not set "
                   "securityContext.windowsOptions.hostProcess=true)")
    priv = [c["name"] for c in containers if (c.get("securityContext") or {}).get("privileged")]
    if priv:
        out.append(f"privileged (container {', '.join(repr(p) for p in priv)} must not set "
                   "securityContext.privileged=true)")
    return out


def _restricted_violations(pod: dict) -> list[str]:
    spec = pod.get("spec") or {}
    out = _baseline_violations(pod)
    if (spec.get("os") or {}).get("name") == "windows":
        # Restricted exempts Windows pods from the Linux-only controls.
        return out
    containers = spec.get("containers", []) + spec.get("initContainers", [])
    psc = spec.get("securityContext") or {}
    ape = [c["name"] for c in containers
           if (c.get("securityContext") or {}).get("allowPrivilegeEscalation") is not False]
    if ape:
        out.append(f"allowPrivilegeEscalation != false (containers {ape} must set "
                   "securityContext.allowPrivilegeEscalation=false)")
    if not psc.get("runAsNonRoot") and not all(
            (c.get("securityContext") or {}).get("runAsNonRoot") for c in containers):
        out.append("runAsNonRoot != true (pod or containers must set "
                   "securityContext.runAsNonRoot=true)")
    return out


def pod_security(store: Store, pod: dict) -> None:
    namespace = pod["metadata"].get("namespace")
    ns = store.peek(NAMESPACE, None, namespace) if namespace else None
    level = ((ns or {}).get("metadata", {}).get("labels") or {}).get(ENFORCE_LABEL,
                                                                       "privileged")
    if level not in LEVELS:
        level = "restricted"  # an unparseable level is treated as the strictest
    if level == "privileged":
        return
    violations = (_baseline_violations if level == "baseline" else _restricted_violations)(pod)
    if violations:
        name = pod["metadata"].get("name") or pod["metadata"].get("generateName", "")
        raise ApiError.forbidden(
            f'pods "{name}" is forbidden: violates PodSecurity "{level}:latest": '
            + ", ".join(violations), "pods", name)


def pod_security_warnings(store: Store, template_owner: dict) -> list[str]:
    """Workload objects are admitted but warned about, as the plugin does."""
    namespace = template_owner["metadata"].get("namespace")
    ns = store.peek(NAMESPACE, None, namespace) if namespace else None
    level = ((ns or {}).get("metadata", {}).get("labels") or {}).get(ENFORCE_LABEL,
                                                                       "privileged")
    if level == "privileged":
        return []
    template = ((template_owner.get("spec") or {}).get("template")) or {}
    fake = {"metadata": {"name": template_owner["metadata"]["name"]},
            "spec": template.get("spec") or {}}
    violations = (_baseline_violations if level == "baseline" else _restricted_violations)(fake)
    if not violations:
        return []
    return [f'would violate PodSecurity "{level}:latest": ' + ", ".join(violations)]
