"""Discovery documents: what kubectl reads before it does anything else.

Legacy (non-aggregated) discovery only: kubectl falls back to one request
per group-version when the reply is not an aggregated list.
"""

from __future__ import annotations

from typing import Any

from .kinds import Kind, groups

JSON = "application/json"


def version(kube_version: str) -> dict:
    major, minor = kube_version.split(".")[:2]
    return {
        "major": major, "minor": minor,
        "gitVersion": f"v{major}.{minor}.0-eks-winstor",
        "gitCommit": "0000000000000000000000000000000000000000",
        "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
        "goVersion": "go1.23.0", "compiler": "gc", "platform": "linux/amd64",
    }


def _resources(kinds: list[Kind]) -> list[dict]:
    out: list[dict] = []
    for k in kinds:
        entry: dict[str, Any] = {
            "name": k.plural, "singularName": k.singular, "namespaced": k.namespaced,
            "kind": k.kind, "verbs": list(k.verbs),
        }
        if k.short_names:
            entry["shortNames"] = list(k.short_names)
        if k.categories:
            entry["categories"] = list(k.categories)
        out.append(entry)
        for sub in k.subresources:
            verbs = {"exec": ["create", "get"], "log": ["get"], "binding": ["create"],
                     "finalize": ["update"], "token": ["create"], "eviction": ["create"]}.get(
                         sub, ["get", "patch", "update"])
            sub_kind = {"exec": "PodExecOptions", "log": "Pod", "binding": "Binding",
                        "scale": "Scale", "token": "TokenRequest",
                        "eviction": "Eviction"}.get(sub, k.kind)
            sub_entry = {"name": f"{k.plural}/{sub}", "singularName": "",
                         "namespaced": k.namespaced, "kind": sub_kind, "verbs": verbs}
            if sub == "token":
                sub_entry.update(group="authentication.k8s.io", version="v1")
            if sub == "eviction":  # kubectl drain reads the group/version it may post
                sub_entry.update(group="policy", version="v1")
            out.append(sub_entry)
    return out


def static(path: str, accept: str, schemas: Any) -> tuple[Any, str] | None:
    """Answer a discovery or OpenAPI path (a dict, or pre-serialized bytes), or None."""
    by_group = groups()
    path = path.rstrip("/") or "/"
    if path == "/api":
        return ({"kind": "APIVersions", "versions": ["v1"],
                 "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0",
                                                 "serverAddress": "127.0.0.1"}]}, JSON)
    if path == "/api/v1":
        return ({"kind": "APIResourceList", "groupVersion": "v1",
                 "resources": _resources(by_group[""])}, JSON)
    if path == "/apis":
        out = []
        for group, kinds in by_group.items():
            if not group:
                continue
            gv = {"groupVersion": kinds[0].api_version, "version": kinds[0].version}
            out.append({"name": group, "versions": [gv], "preferredVersion": gv})
        return ({"kind": "APIGroupList", "apiVersion": "v1", "groups": out}, JSON)
    parts = path.strip("/").split("/")
    if parts[0] == "apis" and len(parts) in (2, 3) and parts[1] in by_group:
        kinds = by_group[parts[1]]
        if len(parts) == 2:
            gv = {"groupVersion": kinds[0].api_version, "version": kinds[0].version}
            return ({"kind": "APIGroup", "apiVersion": "v1", "name": parts[1],
                     "versions": [gv], "preferredVersion": gv}, JSON)
        if parts[2] == kinds[0].version:
            return ({"kind": "APIResourceList", "apiVersion": "v1",
                     "groupVersion": kinds[0].api_version,
                     "resources": _resources(kinds)}, JSON)
    if path == "/openapi/v3":
        return schemas.openapi_v3_index(), JSON
    if path.startswith("/openapi/v3/"):
        doc = schemas.openapi_v3_document_bytes(path[len("/openapi/v3/"):])
        if doc is not None:
            return doc, JSON
    return None
