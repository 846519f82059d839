"""SMB shares of a cluster and the SMB CSI driver's objects a run makes on them.

Which shares: those the clusters file names (`shares:`, with their kind and
credentials), or else those the cluster's own SMB StorageClasses (provisioner
`smb.csi.k8s.io`) point at - their `source` and node-stage secret are what the
cluster's administrator set up, and the share's kind is then read off AWS.

What a run makes per share (all labelled with the run, removed at the end): the
credentials' Secret when they come from AWS Secrets Manager (the values go from
boto3 into the Secret's body and nowhere else), a StorageClass with the share as
`source`, a ReadWriteMany claim on it, a static PV of the share's root with its
claim (mounted read-only), and three Windows pods (`manifests/pod-smb-csi.yaml`):
two on two nodes on the claim, one on the static volume.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass, field
from typing import Any

import pytest

from winstor.cluster import manifests
from winstor.cluster.kube import STORAGECLASSES, Resource
from winstor.cluster.outcome import Deferred
from winstor.cluster.target import Cluster

__all__ = ["DRIVER", "ROLES", "SECRETS", "Share", "ShareRun", "claim", "settled",
           "shares_for", "static_claim", "static_volume", "storage_class", "workload_pod"]

DRIVER = "smb.csi.k8s.io"
SECRETS = Resource("v1", "secrets")
DATA_PATH = "C:\\smb\\data"
SHARE_PATH = "C:\\smb\\share"
_PREFIX = "csi.storage.k8s.io/"
ROLES = ("writer", "reader", "root")  # the claim's two pods, and the root's read-only one


@dataclass(frozen=True)
class Share:
    """A share the SMB checks run against, and where its description came from."""

    name: str  # short, DNS-label safe: names the run's objects
    kind: str | None  # configured kind; None when read off AWS later
    source: str  # //server/share
    origin: str  # "clusters file" or "StorageClass <name>"
    host_path: str | None = None
    secret: tuple[str, str] | None = None  # (namespace, name) of a Secret the cluster holds
    provisioner_secret: tuple[str, str] | None = None
    secrets_manager: str | None = None
    on_delete: str = "delete"

    @property
    def server(self) -> str:
        return self.source.strip("/").split("/", 1)[0]

    @property
    def share_name(self) -> str:
        parts = self.source.strip("/").split("/")
        return parts[1] if len(parts) > 1 else ""

    @property
    def unc(self) -> str:
        return "\\\\" + self.source.strip("/").replace("/", "\\")

    def label(self) -> str:
        """How evidence and messages name it: name, kind and path."""
        return f"share {self.name} ({self.kind or 'kind unknown'}, {self.unc})"


@dataclass
class ShareRun:
    """One share's SMB CSI objects in this run; `problem` says why there are none."""

    share: Share
    namespace: str
    problem: str | None = None
    class_name: str | None = None
    claim: str | None = None
    root_claim: str | None = None
    root_volume: str | None = None
    secret: str | None = None  # a Secret this run made (from Secrets Manager)
    nodes: dict[str, str | None] = field(default_factory=dict)  # role -> node
    pods: dict[str, Deferred[dict]] = field(default_factory=dict)  # role -> pod
    deleted_claim: bool = False


def settled(d: Deferred[dict]) -> tuple[dict | None, str | None]:
    """A pod's outcome: the pod, or why it is not there (joined, never raising)."""
    try:
        return d.require(), None
    except pytest.fail.Exception as failed:
        return None, str(getattr(failed, "msg", failed))


def _secret_ref(params: dict[str, str], which: str) -> tuple[str, str] | None:
    lowered = {k.lower(): v for k, v in params.items()}
    name = lowered.get(f"{_PREFIX}{which}-secret-name")
    namespace = lowered.get(f"{_PREFIX}{which}-secret-namespace")
    return (namespace, name) if name and namespace else None


def shares_for(cluster: Cluster) -> list[Share]:
    """The configured shares, else those the cluster's SMB StorageClasses name."""
    configured = cluster.target.shares
    if configured:
        out = []
        for s in configured:
            secret = tuple(s.secret.split("/", 1)) if s.secret else None
            out.append(Share(name=s.name, kind=s.kind, source=s.source, origin="clusters file",
                             host_path=s.host_path, secret=secret,  # type: ignore[arg-type]
                             provisioner_secret=secret,  # type: ignore[arg-type]
                             secrets_manager=s.secrets_manager, on_delete=s.on_delete))
        return out
    found = []
    for sc in cluster.api.items(STORAGECLASSES):
        labels = sc["metadata"].get("labels") or {}
        if sc.get("provisioner") != DRIVER or labels.get("app.kubernetes.io/managed-by") == \
                "winstor":
            continue
        params = sc.get("parameters") or {}
        source = next((v for k, v in params.items() if k.lower() == "source"), "")
        if not source:
            continue
        on_delete = next((v for k, v in params.items() if k.lower() == "ondelete"), "delete")
        name = sc["metadata"]["name"]
        found.append(Share(
            name=_label_safe(name), kind=None, source="//" + source.replace("\\", "/").strip("/"),
            origin=f"StorageClass {name}", secret=_secret_ref(params, "node-stage"),
            provisioner_secret=_secret_ref(params, "provisioner") or _secret_ref(
                params, "node-stage"), on_delete=on_delete.lower()))
    return sorted(found, key=lambda s: s.name)


def _label_safe(name: str) -> str:
    """A class name shortened to fit in the run's object names (with a hash when cut)."""
    safe = "".join(c if c.isalnum() or c == "-" else "-" for c in name.lower()).strip("-")
    if len(safe) <= 30:
        return safe or "share"
    return safe[:23].rstrip("-") + "-" + hashlib.sha256(name.encode()).hexdigest()[:6]


def object_name(cluster: Cluster, share: Share, what: str) -> str:
    """`winstor-<run>-<share>-<what>`: unique per run, share and object."""
    return f"winstor-{cluster.run_id}-{share.name}-{what}"[:253].lower()


def credentials_secret(cluster: Cluster, share: Share, namespace: str,
                       values: dict[str, str]) -> dict:
    """A Secret holding credentials read from AWS Secrets Manager (for this run only)."""
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": object_name(cluster, share, "creds"), "namespace": namespace,
                         "labels": cluster.labels()},
            "data": {k: base64.b64encode(v.encode("utf-8")).decode("ascii")
                     for k, v in values.items()}}


def owned_by_namespace(namespace: dict) -> list[dict]:
    """ownerReferences that hand a cluster-scoped object (a class, a PV) to the run's
    namespace: the garbage collector removes it with the namespace, so the run needs no
    right to delete classes or PVs (gp2 and the rest stay out of its reach)."""
    return [{"apiVersion": "v1", "kind": "Namespace", "name": namespace["metadata"]["name"],
             "uid": namespace["metadata"]["uid"]}]


def storage_class(cluster: Cluster, share: Share, secret: tuple[str, str],
                  provisioner_secret: tuple[str, str], owner: dict) -> dict:
    """The share as an SMB CSI class (`manifests/storageclass-smb.yaml`), owned by the
    run's namespace (`owner`)."""
    sc = manifests.load("storageclass-smb.yaml")
    sc["metadata"] = {"name": object_name(cluster, share, "class"), "labels": cluster.labels(),
                      "ownerReferences": owned_by_namespace(owner)}
    params = sc["parameters"]
    params.update({"source": share.source, "onDelete": share.on_delete,
                   f"{_PREFIX}provisioner-secret-namespace": provisioner_secret[0],
                   f"{_PREFIX}provisioner-secret-name": provisioner_secret[1],
                   f"{_PREFIX}node-stage-secret-namespace": secret[0],
                   f"{_PREFIX}node-stage-secret-name": secret[1]})
    return sc


def claim(cluster: Cluster, share: Share, namespace: str, class_name: str) -> dict:
    pvc = manifests.load("pvc-smb.yaml")
    pvc["metadata"] = {"name": object_name(cluster, share, "data"), "namespace": namespace,
                       "labels": cluster.labels()}
    pvc["spec"]["storageClassName"] = class_name
    return pvc


def static_volume(cluster: Cluster, share: Share, namespace: str,
                  secret: tuple[str, str], owner: dict) -> dict:
    """A static PV of the share's root, pre-bound to `static_claim` (the driver's
    deploy/example/pv-smb.yaml: volumeHandle `<server>/<share>#<subdir>#<unique>`), owned
    by the run's namespace (`owner`)."""
    pv: dict[str, Any] = {
        "apiVersion": "v1", "kind": "PersistentVolume",
        "metadata": {"name": object_name(cluster, share, "root"), "labels": cluster.labels(),
                     "annotations": {"pv.kubernetes.io/provisioned-by": DRIVER},
                     "ownerReferences": owned_by_namespace(owner)},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadOnlyMany"],
                 "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "",
                 "claimRef": {"namespace": namespace,
                              "name": object_name(cluster, share, "root")},
                 "csi": {"driver": DRIVER,
                         "volumeHandle": f"{share.source.strip('/')}##"
                                         f"winstor-{cluster.run_id}-{share.name}",
                         "volumeAttributes": {"source": share.source},
                         "nodeStageSecretRef": {"namespace": secret[0], "name": secret[1]}}}}
    return pv


def static_claim(cluster: Cluster, share: Share, namespace: str) -> dict:
    name = object_name(cluster, share, "root")
    return {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": name, "namespace": namespace, "labels": cluster.labels()},
            "spec": {"accessModes": ["ReadOnlyMany"], "storageClassName": "",
                     "volumeName": name, "resources": {"requests": {"storage": "1Gi"}}}}


def workload_pod(cluster: Cluster, share: Share, namespace: str, role: str, claim_name: str,
                 node: str | None, *, read_only: bool = False) -> dict:
    """A Windows pod of the workloads' image mounting `claim_name` (at C:\\smb\\data, or
    read-only at C:\\smb\\share), on `node` when given."""
    pod = manifests.load("pod-smb-csi.yaml")
    pod["metadata"] = {"name": object_name(cluster, share, role), "namespace": namespace,
                       "labels": {**cluster.labels(), "winstor.io/smb-share": share.name}}
    spec = pod["spec"]
    spec["nodeSelector"]["node.kubernetes.io/windows-build"] = cluster.windows_build
    if node:
        spec["nodeSelector"]["kubernetes.io/hostname"] = node
    spec["volumes"][0]["persistentVolumeClaim"] = {"claimName": claim_name,
                                                   **({"readOnly": True} if read_only else {})}
    mount = spec["containers"][0]["volumeMounts"][0]
    if read_only:
        mount.update(mountPath=SHARE_PATH, readOnly=True)
    pod["spec"] = cluster.platform.render_pod_spec(spec, cluster.image())
    return pod
