"""The resource types the embedded API server serves.

One table drives discovery (`/api`, `/apis`), URL routing and the store's
keys, so a resource added here is visible to kubectl and the Python client at
once and cannot be half-registered.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")


@dataclass(frozen=True)
class Kind:
    group: str
    version: str
    kind: str
    plural: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    # Fields that may not change once set (the apiserver answers 422).
    immutable: tuple[str, ...] = field(default=())

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> str:
        return self.api_version

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List"


KINDS: tuple[Kind, ...] = (
    Kind("", "v1", "Namespace", "namespaces", False, ("ns",), ("status", "finalize")),
    Kind("", "v1", "Node", "nodes", False, ("no",), ("status",)),
    Kind("", "v1", "Pod", "pods", True, ("po",),
         ("status", "exec", "log", "binding", "eviction"), ("all",)),
    Kind("", "v1", "PersistentVolumeClaim", "persistentvolumeclaims", True, ("pvc",), ("status",)),
    Kind("", "v1", "PersistentVolume", "persistentvolumes", False, ("pv",), ("status",)),
    Kind("", "v1", "Event", "events", True, ("ev",)),
    Kind("", "v1", "Service", "services", True, ("svc",), ("status",), ("all",)),
    Kind("", "v1", "ConfigMap", "configmaps", True, ("cm",)),
    Kind("", "v1", "Secret", "secrets", True),
    Kind("", "v1", "ServiceAccount", "serviceaccounts", True, ("sa",), ("token",)),
    Kind("apps", "v1", "Deployment", "deployments", True, ("deploy",), ("status", "scale"),
         ("all",)),
    Kind("apps", "v1", "ReplicaSet", "replicasets", True, ("rs",), ("status", "scale"), ("all",)),
    Kind("apps", "v1", "DaemonSet", "daemonsets", True, ("ds",), ("status",), ("all",)),
    Kind("storage.k8s.io", "v1", "StorageClass", "storageclasses", False, ("sc",),
         immutable=("parameters", "provisioner", "reclaimPolicy", "volumeBindingMode")),
    Kind("storage.k8s.io", "v1", "CSIDriver", "csidrivers", False),
    Kind("storage.k8s.io", "v1", "CSINode", "csinodes", False),
    Kind("storage.k8s.io", "v1", "VolumeAttachment", "volumeattachments", False, (), ("status",)),
    Kind("rbac.authorization.k8s.io", "v1", "ClusterRole", "clusterroles", False),
    Kind("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding", "clusterrolebindings", False),
    Kind("rbac.authorization.k8s.io", "v1", "Role", "roles", True),
    Kind("rbac.authorization.k8s.io", "v1", "RoleBinding", "rolebindings", True),
    Kind("coordination.k8s.io", "v1", "Lease", "leases", True),
    # Create-only reviews, answered from RBAC and never stored (`kubectl auth ...`).
    Kind("authorization.k8s.io", "v1", "SelfSubjectAccessReview", "selfsubjectaccessreviews",
         False, verbs=("create",)),
    Kind("authorization.k8s.io", "v1", "SelfSubjectRulesReview", "selfsubjectrulesreviews",
         False, verbs=("create",)),
    Kind("authentication.k8s.io", "v1", "SelfSubjectReview", "selfsubjectreviews", False,
         verbs=("create",)),
)

BY_PLURAL: dict[tuple[str, str], Kind] = {(k.group, k.plural): k for k in KINDS}
BY_KIND: dict[tuple[str, str], Kind] = {(k.api_version, k.kind): k for k in KINDS}


def lookup(group: str, plural: str) -> Kind | None:
    return BY_PLURAL.get((group, plural))


def for_object(obj: dict) -> Kind | None:
    return BY_KIND.get((obj.get("apiVersion", ""), obj.get("kind", "")))


def kind_of(api_version: str, kind: str) -> Kind:
    return BY_KIND[(api_version, kind)]


def groups() -> dict[str, list[Kind]]:
    """Kinds by group, in first-seen order (discovery lists groups in this order)."""
    out: dict[str, list[Kind]] = {}
    for k in KINDS:
        out.setdefault(k.group, []).append(k)
    return out
