"""The `scale` subresource of Deployments and ReplicaSets (`autoscaling/v1` Scale).

`kubectl scale` and autoscalers change a workload's replica count through it rather than
through the workload itself: GET gives a Scale (the workload's identity, `spec.replicas`,
and `status.replicas` with the label selector as a string), PUT or PATCH of a Scale sets
`spec.replicas` and leaves every other field alone. Without it the embedded cluster
answered 404 where every real API server scales.
"""

from __future__ import annotations

from typing import Any

from .errors import ApiError
from .kinds import Kind
from .patch import PatchError, apply_patch
from .registry import Registry, Result
from .schema import SchemaRegistry

__all__ = ["handle_scale"]

SCALE_API = "autoscaling/v1"


def _selector_string(selector: dict | None) -> str:
    """A LabelSelector as its string form (`a=b,c in (d,e)`), as Scale's status has it."""
    selector = selector or {}
    parts = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In":
            parts.append(f"{key} in ({','.join(sorted(values))})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({','.join(sorted(values))})")
        elif op == "Exists":
            parts.append(str(key))
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(sorted(parts))


def to_scale(obj: dict) -> dict:
    meta = obj["metadata"]
    return {"kind": "Scale", "apiVersion": SCALE_API,
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion",
                                              "creationTimestamp") if k in meta},
            "spec": {"replicas": (obj.get("spec") or {}).get("replicas", 1)},
            "status": {"replicas": (obj.get("status") or {}).get("replicas", 0),
                       "selector": _selector_string((obj.get("spec") or {}).get("selector"))}}


def _set_replicas(registry: Registry, kind: Kind, current: dict, scale: Any,
                  query: dict[str, str]) -> Result:
    if not isinstance(scale, dict) or scale.get("kind") not in (None, "Scale"):
        raise ApiError.bad_request("the body of the request was in an unknown format")
    name = current["metadata"]["name"]
    replicas = (scale.get("spec") or {}).get("replicas", 0)
    if not isinstance(replicas, int) or isinstance(replicas, bool):
        raise ApiError.bad_request("the body of the request was in an unknown format: "
                                   "spec.replicas must be a whole number")
    if replicas < 0:
        raise ApiError.invalid("Scale", name, [{
            "reason": "FieldValueInvalid", "field": "spec.replicas",
            "message": f"Invalid value: {replicas}: must be greater than or equal to 0"}],
            "autoscaling")
    want_rv = (scale.get("metadata") or {}).get("resourceVersion")
    if want_rv and want_rv != current["metadata"]["resourceVersion"]:
        raise ApiError.conflict(kind.plural, name,
                                "the object has been modified; please apply your changes to "
                                "the latest version and try again", kind.group)
    updated = dict(current)
    updated["spec"] = {**(current.get("spec") or {}), "replicas": replicas}
    updated["metadata"] = dict(current["metadata"])
    result, code, warnings = registry.update(kind, current["metadata"].get("namespace"), name,
                                             None, updated, query)
    return to_scale(result), code, warnings


def handle_scale(registry: Registry, schemas: SchemaRegistry, verb: str, kind: Kind,
                 namespace: str | None, name: str, body: Any, content_type: str,
                 query: dict[str, str]) -> Result:
    """GET, PUT or PATCH on `<workload>/scale`."""
    current = registry.store.get(kind, namespace, name)
    if verb == "get":
        return to_scale(current), 200, []
    if verb == "update":
        return _set_replicas(registry, kind, current, body, query)
    if verb == "patch":
        try:
            patched = apply_patch(to_scale(current), body, content_type, schemas=schemas)
        except PatchError as err:
            raise ApiError(err.code, err.reason, err.message, err.details) from None
        return _set_replicas(registry, kind, current, patched, query)
    raise ApiError.method_not_allowed("the server does not allow this method on the "
                                      "requested resource")
