"""Field validation on create and update, answered the way kube-apiserver answers it.

A real cluster refuses an invalid object with 422 `Invalid` and a `Status` whose
`details.causes` name each offending field; kubectl prints them and clients key on
them. Without this the embedded cluster would accept objects that EKS refuses, and a
check (or winstor's own code) could pass here and fail there.

Modelled, with the real server's wording (1.35, checked against a real apiserver):

* `metadata.name` (and `metadata.generateName`, trailing `-` allowed) by kind: a
  lowercase RFC 1123 subdomain for most kinds (at most 253 characters), an RFC 1123
  label for namespaces (at most 63, no dots), an RFC 1035 label for services, and a
  path segment (not `.`/`..`, no `/` or `%`) for RBAC objects and events;
* label keys (qualified names with an optional DNS-subdomain prefix) and values (at
  most 63 bytes, alphanumerics with `-_.` inside), annotation keys and the 256 KiB
  annotation budget;
* PersistentVolumeClaim: at least one access mode, a positive `resources.requests.
  storage`;
* Deployment, ReplicaSet, DaemonSet: a selector is required, must not be empty and
  must match the template's labels; on update it is immutable.

Not modelled: the hundreds of other spec rules of pkg/apis/*/validation (pods'
containers, volumes, ports...), which the schema's required-field check covers only
in part. Messages list causes in a stable order (sorted keys), where the real server
follows Go's map order.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from . import quantity
from .errors import ApiError
from .kinds import Kind

_LABEL_FMT = "[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN_FMT = _LABEL_FMT + r"(\." + _LABEL_FMT + ")*"
_DNS1035_FMT = "[a-z]([-a-z0-9]*[a-z0-9])?"
_QNAME_FMT = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE_FMT = "(" + _QNAME_FMT + ")?"

_LABEL_RE = re.compile(f"^{_LABEL_FMT}$")
_SUBDOMAIN_RE = re.compile(f"^{_SUBDOMAIN_FMT}$")
_DNS1035_RE = re.compile(f"^{_DNS1035_FMT}$")
_QNAME_RE = re.compile(f"^{_QNAME_FMT}$")
_LABEL_VALUE_RE = re.compile(f"^{_LABEL_VALUE_FMT}$")

ANNOTATIONS_MAX_BYTES = 256 * 1024


def _regex_error(what: str, fmt: str, *examples: str) -> str:
    """The apimachinery phrasing: what is allowed, examples, and the regex."""
    shown = ",  or ".join(f"'{e}'" for e in examples)
    return f"{what} (e.g. {shown}, regex used for validation is '{fmt}')"


SUBDOMAIN_MSG = _regex_error(
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
    "'-' or '.', and must start and end with an alphanumeric character", _SUBDOMAIN_FMT,
    "example.com")
LABEL_MSG = _regex_error(
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character", _LABEL_FMT, "my-name", "123-abc")
DNS1035_MSG = _regex_error(
    "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with "
    "an alphabetic character, and end with an alphanumeric character", _DNS1035_FMT,
    "my-name", "abc-123")
QNAME_MSG = _regex_error(
    "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with "
    "an alphanumeric character", _QNAME_FMT, "MyName", "my.name", "123-abc")
LABEL_VALUE_MSG = _regex_error(
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' "
    "or '.', and must start and end with an alphanumeric character", _LABEL_VALUE_FMT,
    "MyValue", "my_value", "12345")


def render(value: Any) -> str:
    """A value as the real server prints it after `Invalid value: ` (JSON, keys sorted)."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def invalid(field: str, value: Any, detail: str) -> dict:
    return {"reason": "FieldValueInvalid", "field": field,
            "message": f"Invalid value: {render(value)}: {detail}"}


def required(field: str, detail: str = "") -> dict:
    return {"reason": "FieldValueRequired", "field": field,
            "message": "Required value" + (f": {detail}" if detail else "")}


# -- names ----------------------------------------------------------------------------------
def subdomain_problems(value: str) -> list[str]:
    out = []
    if len(value) > 253:
        out.append("must be no more than 253 characters")
    if not _SUBDOMAIN_RE.match(value):
        out.append(SUBDOMAIN_MSG)
    return out


def dns_label_problems(value: str) -> list[str]:
    out = []
    if len(value) > 63:
        out.append("must be no more than 63 characters")
    if not _LABEL_RE.match(value):
        out.append("must not contain dots" if "." in value else LABEL_MSG)
    return out


def dns1035_problems(value: str) -> list[str]:
    out = []
    if len(value) > 63:
        out.append("must be no more than 63 characters")
    if not _DNS1035_RE.match(value):
        out.append(DNS1035_MSG)
    return out


def path_segment_problems(value: str) -> list[str]:
    if value in (".", ".."):
        return [f"may not be '{value}'"]
    return [f"may not contain '{c}'" for c in ("/", "%") if c in value]


NameCheck = Callable[[str], list[str]]

# Kinds whose names are not DNS subdomains (the rest are).
NAME_CHECKS: dict[str, NameCheck] = {
    "Namespace": dns_label_problems,
    "Service": dns1035_problems,
    "Event": path_segment_problems,
    "ClusterRole": path_segment_problems,
    "ClusterRoleBinding": path_segment_problems,
    "Role": path_segment_problems,
    "RoleBinding": path_segment_problems,
}


def _name_causes(kind: Kind, meta: dict) -> list[dict]:
    check = NAME_CHECKS.get(kind.kind, subdomain_problems)
    causes: list[dict] = []
    name, generate = meta.get("name"), meta.get("generateName")
    if generate and isinstance(generate, str):
        # A prefix may end in '-' (the random suffix follows it).
        masked = generate[:-1] + "a" if generate.endswith("-") else generate
        causes += [invalid("metadata.generateName", generate, p) for p in check(masked)]
    if not name:
        causes.append(required("metadata.name", "name or generateName is required"))
    elif isinstance(name, str):
        causes += [invalid("metadata.name", name, p) for p in check(name)]
    return causes


# -- labels and annotations -----------------------------------------------------------------
def qualified_name_problems(key: str) -> list[str]:
    """A label or annotation key: `[prefix/]name`, prefix a DNS subdomain."""
    parts = key.split("/")
    if len(parts) == 1:
        name = parts[0]
        out: list[str] = []
    elif len(parts) == 2:
        prefix, name = parts
        if not prefix:
            out = ["prefix part must be non-empty"]
        else:
            out = [f"prefix part {p}" for p in subdomain_problems(prefix)]
            out = [p.replace("253 characters", "253 bytes") for p in out]
    else:
        return ["a valid label key " + QNAME_MSG + " with an optional DNS subdomain prefix and "
                "'/' (e.g. 'example.com/MyName')"]
    if not name:
        out.append("name part must be non-empty")
    elif len(name) > 63:
        out.append("name part must be no more than 63 bytes")
    if not _QNAME_RE.match(name):
        out.append("name part " + QNAME_MSG)
    return out


def label_value_problems(value: str) -> list[str]:
    out = []
    if len(value.encode()) > 63:
        out.append("must be no more than 63 bytes")
    if not _LABEL_VALUE_RE.match(value):
        out.append(LABEL_VALUE_MSG)
    return out


def label_causes(labels: Any, field: str) -> list[dict]:
    if not isinstance(labels, dict):
        return []
    causes = []
    for key in sorted(labels):
        causes += [invalid(field, key, p) for p in qualified_name_problems(key)]
        value = labels[key]
        if isinstance(value, str):
            causes += [invalid(field, value, p) for p in label_value_problems(value)]
    return causes


def _annotation_causes(annotations: Any) -> list[dict]:
    if not isinstance(annotations, dict):
        return []
    causes = []
    for key in sorted(annotations):
        causes += [invalid("metadata.annotations", key, p)
                   for p in qualified_name_problems(key.lower())]
    size = sum(len(k.encode()) + len(str(v).encode()) for k, v in annotations.items())
    if size > ANNOTATIONS_MAX_BYTES:
        causes.append({"reason": "FieldValueTooLong", "field": "metadata.annotations",
                       "message": f"Too long: may not be more than {ANNOTATIONS_MAX_BYTES} "
                                  "bytes"})
    return causes


def _meta_causes(kind: Kind, meta: dict, *, names: bool) -> list[dict]:
    causes = _name_causes(kind, meta) if names else []
    causes += label_causes(meta.get("labels"), "metadata.labels")
    causes += _annotation_causes(meta.get("annotations"))
    return causes


# -- kinds ----------------------------------------------------------------------------------
def _claim_causes(claim: dict) -> list[dict]:
    spec = claim.get("spec") if isinstance(claim.get("spec"), dict) else {}
    causes = []
    if not spec.get("accessModes"):
        causes.append(required("spec.accessModes", "at least 1 access mode is required"))
    requests = ((spec.get("resources") or {}).get("requests") or {})
    storage = requests.get("storage") if isinstance(requests, dict) else None
    if storage is None:
        causes.append(required("spec.resources[storage]"))
    else:
        size = quantity.value(storage)
        if size is not None and size <= 0:
            causes.append(invalid("spec.resources[storage]", str(storage),
                                  "must be greater than zero"))
    return causes


def selector_matches(selector: dict, labels: dict) -> bool:
    """A LabelSelector (matchLabels and matchExpressions) against a label map."""
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In" and labels.get(key) not in values:
            return False
        if op == "NotIn" and key in labels and labels[key] in values:
            return False
        if op == "Exists" and key not in labels:
            return False
        if op == "DoesNotExist" and key in labels:
            return False
    return True


def _workload_causes(kind: Kind, obj: dict) -> list[dict]:
    spec = obj.get("spec") if isinstance(obj.get("spec"), dict) else {}
    selector = spec.get("selector")
    template = spec.get("template") if isinstance(spec.get("template"), dict) else {}
    labels = ((template.get("metadata") or {}).get("labels")) or {}
    causes = []
    if selector is None:
        causes.append(required("spec.selector"))
    elif isinstance(selector, dict) and not (selector.get("matchLabels")
                                             or selector.get("matchExpressions")):
        causes.append(invalid("spec.selector", selector,
                              f"empty selector is invalid for {kind.kind.lower()}"))
        return causes
    if not isinstance(selector, dict) or not selector_matches(selector, labels):
        causes.append(invalid("spec.template.metadata.labels", labels,
                              "`selector` does not match template `labels`"))
    causes += label_causes(labels, "spec.template.metadata.labels")
    return causes


SPEC_CHECKS: dict[str, Callable[[Kind, dict], list[dict]]] = {
    "PersistentVolumeClaim": lambda _k, o: _claim_causes(o),
    "Deployment": _workload_causes,
    "ReplicaSet": _workload_causes,
    "DaemonSet": _workload_causes,
}


def _raise(kind: Kind, obj: dict, causes: list[dict]) -> None:
    if causes:
        meta = obj.get("metadata") or {}
        raise ApiError.invalid(kind.kind, meta.get("name") or "", causes, kind.group)


def validate_create(kind: Kind, obj: dict) -> None:
    """Refuse (422 Invalid) an object the real server would not create."""
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    causes = _meta_causes(kind, meta, names=True)
    check = SPEC_CHECKS.get(kind.kind)
    if check is not None:
        causes += check(kind, obj)
    _raise(kind, obj, causes)


def validate_update(kind: Kind, obj: dict, old: dict) -> None:
    """Refuse an update of the main resource the real server would not take: the new
    object's metadata and spec, and the fields that may not change. (A status update
    keeps the stored metadata and spec, which were valid when written.)"""
    meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
    causes = _meta_causes(kind, meta, names=False)
    check = SPEC_CHECKS.get(kind.kind)
    if check is not None:
        causes += check(kind, obj)
    if kind.kind in ("Deployment", "ReplicaSet", "DaemonSet"):
        before = (old.get("spec") or {}).get("selector")
        after = (obj.get("spec") or {}).get("selector")
        if before != after:
            causes.append(invalid("spec.selector", after, "field is immutable"))
    _raise(kind, obj, causes)
