"""The kind cluster config (`kind-config/cluster.yaml`): checked and rendered.

kind reads `kind.x-k8s.io/v1alpha4` Cluster documents and rejects unknown
fields only at `kind create cluster` time, on a machine that has Docker. So
the config is checked here against kind's documented v1alpha4 format (the
field names and enums of kind's `pkg/apis/config/v1alpha4` types) where
anyone can run it, and the parts the kind profile relies on - a control plane,
a worker labelled as the Windows stand-in, the node directory mounted at
`/winstor` - are checked too.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from winstor.resources import data_dir
from winstor.targets.profiles import NODE_DIR, STAND_IN_LABEL

__all__ = ["DEFAULT_CONFIG", "load", "problems", "render"]

DEFAULT_CONFIG = data_dir("kind_config") / "cluster.yaml"
API_VERSION = "kind.x-k8s.io/v1alpha4"

# kind v1alpha4: field -> expected Python type after YAML parsing.
_CLUSTER_FIELDS: dict[str, type | tuple[type, ...]] = {
    "kind": str, "apiVersion": str, "name": str, "nodes": list, "networking": dict,
    "featureGates": dict, "runtimeConfig": dict, "kubeadmConfigPatches": list,
    "kubeadmConfigPatchesJSON6902": list, "containerdConfigPatches": list,
    "containerdConfigPatchesJSON6902": list,
}
_NODE_FIELDS: dict[str, type | tuple[type, ...]] = {
    "role": str, "image": str, "labels": dict, "extraMounts": list,
    "extraPortMappings": list, "gpus": str, "kubeadmConfigPatches": list,
    "kubeadmConfigPatchesJSON6902": list,
}
_MOUNT_FIELDS: dict[str, type | tuple[type, ...]] = {
    "containerPath": str, "hostPath": str, "readOnly": bool, "selinuxRelabel": bool,
    "propagation": str,
}
_PORT_FIELDS: dict[str, type | tuple[type, ...]] = {
    "containerPort": int, "hostPort": int, "listenAddress": str, "protocol": str,
}
_NETWORKING_FIELDS: dict[str, type | tuple[type, ...]] = {
    "ipFamily": str, "apiServerPort": int, "apiServerAddress": str, "podSubnet": str,
    "serviceSubnet": str, "disableDefaultCNI": bool, "kubeProxyMode": str, "dnsSearch": list,
}
_ENUMS = {
    "role": ("control-plane", "worker"),
    "propagation": ("None", "HostToContainer", "Bidirectional"),
    "protocol": ("TCP", "UDP", "SCTP"),
    "ipFamily": ("ipv4", "ipv6", "dual"),
    "kubeProxyMode": ("iptables", "ipvs", "nftables", "none"),
}


def load(path: Path = DEFAULT_CONFIG) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict):
        raise ValueError(f"{path}: not a kind Cluster document")
    return doc


def _fields(where: str, obj: Any, allowed: dict[str, type | tuple[type, ...]],
            out: list[str]) -> dict:
    if not isinstance(obj, dict):
        out.append(f"{where}: expected a mapping")
        return {}
    for key, value in obj.items():
        want = allowed.get(key)
        if want is None:
            out.append(f"{where}.{key}: unknown field (kind {API_VERSION} has: "
                       f"{', '.join(sorted(allowed))})")
        elif not isinstance(value, want) or (want is int and isinstance(value, bool)):
            out.append(f"{where}.{key}: expected {getattr(want, '__name__', want)}, "
                       f"got {type(value).__name__}")
        elif key in _ENUMS and value not in _ENUMS[key]:
            out.append(f"{where}.{key}: {value!r} is not one of {', '.join(_ENUMS[key])}")
    return obj


def problems(doc: Any, *, for_profile: bool = True) -> list[str]:
    """What is wrong with `doc` as a kind v1alpha4 Cluster (and, with `for_profile`,
    as the kind profile's cluster). Empty when it is fine."""
    out: list[str] = []
    doc = _fields("cluster", doc, _CLUSTER_FIELDS, out)
    if not doc:
        return out
    if doc.get("kind") != "Cluster":
        out.append(f"cluster.kind: must be Cluster, not {doc.get('kind')!r}")
    if doc.get("apiVersion") != API_VERSION:
        out.append(f"cluster.apiVersion: must be {API_VERSION}, not {doc.get('apiVersion')!r}")
    if "networking" in doc:
        _fields("cluster.networking", doc["networking"], _NETWORKING_FIELDS, out)
    nodes = doc.get("nodes") or []
    for i, node in enumerate(nodes):
        node = _fields(f"cluster.nodes[{i}]", node, _NODE_FIELDS, out)
        for j, mount in enumerate(node.get("extraMounts") or []):
            where = f"cluster.nodes[{i}].extraMounts[{j}]"
            mount = _fields(where, mount, _MOUNT_FIELDS, out)
            for key in ("containerPath", "hostPath"):
                if mount and not mount.get(key):
                    out.append(f"{where}.{key}: required")
        for j, port in enumerate(node.get("extraPortMappings") or []):
            _fields(f"cluster.nodes[{i}].extraPortMappings[{j}]", port, _PORT_FIELDS, out)
        for key, value in (node.get("labels") or {}).items():
            if not isinstance(value, str):
                out.append(f"cluster.nodes[{i}].labels.{key}: label values are strings; "
                           f"quote {value!r}")
    if for_profile and not out:
        out.extend(_profile_problems(nodes))
    return out


def _profile_problems(nodes: list[dict]) -> list[str]:
    out = []
    roles = [n.get("role", "control-plane") for n in nodes]
    if "control-plane" not in roles:
        out.append("cluster.nodes: needs a control-plane node")
    stand_ins = [n for n in nodes if (n.get("labels") or {}).get(STAND_IN_LABEL) == "true"]
    if not stand_ins:
        out.append(f"cluster.nodes: no node labelled {STAND_IN_LABEL}: \"true\" (the Windows "
                   "stand-in the kind profile schedules on)")
    for n in stand_ins:
        if n.get("role", "control-plane") != "worker":
            out.append(f"the {STAND_IN_LABEL} node should be a worker (control planes are "
                       "tainted)")
        if not any(m.get("containerPath") == NODE_DIR for m in n.get("extraMounts") or []):
            out.append(f"the {STAND_IN_LABEL} node needs an extraMounts entry with "
                       f"containerPath {NODE_DIR} (the share and its mapping record)")
    return out


def render(doc: dict[str, Any], *, name: str, node_dir: Path) -> dict[str, Any]:
    """The config `winstor kind up` hands to kind: its cluster name, and every
    `/winstor` mount pointed at this machine's node directory (kind wants an
    absolute host path)."""
    out = yaml.safe_load(yaml.safe_dump(doc))
    out["name"] = name
    for node in out.get("nodes") or []:
        for mount in node.get("extraMounts") or []:
            if mount.get("containerPath") == NODE_DIR:
                mount["hostPath"] = str(node_dir.resolve())
    return out
