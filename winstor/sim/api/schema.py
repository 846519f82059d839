"""The official Kubernetes object schemas, compiled for the embedded API server.

The schemas are the ones `kubernetes-validate` ships (generated from the
apiserver's own OpenAPI), so field names, types, required fields and the
strategic-merge annotations (`x-kubernetes-patch-merge-key`/`-strategy`) are
the real ones, version by version, without a network or a Go toolchain.

Three jobs, all answered the way kube-apiserver answers them because kubectl
and the Python client can see the difference:

* decoding checks (`SchemaRegistry.validate`): unknown fields become
  `unknown field "spec.foo"` warnings and are dropped, or, with
  `fieldValidation=Strict`, a 400 `strict decoding error`; a value of the
  wrong JSON type is the Go decoder's 400 `json: cannot unmarshal ...`; a
  missing required field is a 422 `Required value`;
* patch metadata (`SchemaRegistry.patch_meta`): the schema node a strategic
  merge patch walks, with each field's merge key and strategy;
* OpenAPI v3 (`openapi_v3_index`, `openapi_v3_document`): what `kubectl apply`
  downloads to compute its three-way patch and to learn that the server does
  field validation itself.

Raw definitions load once per Kubernetes minor version per process (a module
level cache, so every emulated cluster shares them); a definition is compiled
into a `Node` the first time an object reaches it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kubernetes_validate

SCHEMA_ROOT = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema"

# Group-versions published under /openapi/v3 unless the caller names others.
DEFAULT_GROUP_VERSIONS: tuple[str, ...] = (
    "v1",
    "apps/v1",
    "storage.k8s.io/v1",
    "policy/v1",
    "coordination.k8s.io/v1",
    "rbac.authorization.k8s.io/v1",
)

# Node kinds.
OBJECT = "object"  # a Go struct: known fields only
MAP = "map"  # map[string]T
FREEFORM = "freeform"  # an object of any shape (FieldsV1, RawExtension)
ARRAY = "array"
STRING = "string"
INTEGER = "integer"
NUMBER = "number"
BOOLEAN = "boolean"
INT_OR_STRING = "int-or-string"
QUANTITY = "quantity"
ANY = "any"  # apiextensions JSON and friends

_INT_OR_STRING_DEF = "io.k8s.apimachinery.pkg.util.intstr.IntOrString"
_QUANTITY_DEF = "io.k8s.apimachinery.pkg.api.resource.Quantity"
_OBJECT_META_DEF = "io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
_INT_RANGES = {"int32": (-(2**31), 2**31 - 1), "int64": (-(2**63), 2**63 - 1)}
_QUANTITY_RE = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")
_QUANTITY_REGEX_TEXT = "'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
_QUANTITY_SUFFIXES = frozenset(
    ["", "n", "u", "m", "k", "M", "G", "T", "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"])
_RFC3339_RE = re.compile(
    r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})$")


class SchemaError(Exception):
    """An object the apiserver would refuse, with the Status it would send.

    `causes` is non-empty only for 422 Invalid (missing required fields); the
    400 BadRequest cases (wrong JSON type, strict unknown fields) carry their
    whole text in the message, as kube-apiserver does.
    """

    def __init__(self, code: int, reason: str, message: str,
                 causes: list[dict] | None = None, details: dict | None = None,
                 detail: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.causes: list[dict] = causes or []
        self.details = details
        # The decoder's own words, without the "<Kind> in version ..." prefix
        # (PATCH requests report them differently; see patch.decoding_error).
        self.detail = detail or message

    def to_status(self) -> dict:
        """The `Status` body kube-apiserver would answer with."""
        body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                "status": "Failure", "message": self.message,
                                "reason": self.reason, "code": self.code}
        if self.details:
            body["details"] = self.details
        return body


@dataclass(eq=False)
class Field:
    """One property of a struct: its schema and its strategic-merge metadata."""

    name: str
    node: Node
    merge_key: str | None = None
    strategies: tuple[str, ...] = ()

    @property
    def patch_strategy(self) -> str:
        """The strategy other than `retainKeys` ('' when none), as apimachinery splits it."""
        rest = [s for s in self.strategies if s != "retainKeys"]
        return rest[0] if rest else ""

    @property
    def retain_keys(self) -> bool:
        return "retainKeys" in self.strategies


class Node:
    """A compiled schema: what a JSON value at some place in an object must be."""

    __slots__ = ("fields", "fmt", "go_type", "items", "kind", "name", "required", "struct",
                 "values")

    def __init__(self, kind: str, go_type: str, *, name: str = "", fmt: str | None = None) -> None:
        self.kind = kind
        self.go_type = go_type  # as the Go decoder names it in errors
        self.name = name  # definition name, '' for inline schemas
        self.struct = go_type.rsplit(".", 1)[-1] if kind == OBJECT else ""
        self.fmt = fmt
        self.fields: dict[str, Field] = {}
        self.required: tuple[str, ...] = ()
        self.items: Node | None = None
        self.values: Node | None = None

    def field(self, key: str) -> Field | None:
        return self.fields.get(key) if self.kind == OBJECT else None

    def child(self, key: str) -> Node | None:
        """The node for `key` inside this object or map, or None if unknown."""
        if self.kind == OBJECT:
            f = self.fields.get(key)
            return f.node if f else None
        if self.kind == MAP:
            return self.values
        return None

    def __repr__(self) -> str:
        return f"Node({self.kind}, {self.go_type})"


def available_versions() -> list[tuple[int, int]]:
    """Kubernetes minor versions whose schemas are installed, oldest first."""
    out = []
    for d in SCHEMA_ROOT.iterdir():
        m = re.fullmatch(r"v(\d+)\.(\d+)\.\d+-local", d.name)
        if m:
            out.append((int(m.group(1)), int(m.group(2))))
    return sorted(out)


def resolve_version(kube_version: str) -> str:
    """The schema directory for a version like '1.31' or 'v1.31.4': exact minor, else nearest."""
    m = re.match(r"v?(\d+)\.(\d+)", kube_version.strip())
    if not m:
        raise ValueError(f"not a Kubernetes version: {kube_version!r}")
    want = (int(m.group(1)), int(m.group(2)))
    have = available_versions()
    if not have:
        raise RuntimeError(f"no schemas found under {SCHEMA_ROOT}")
    older = [v for v in have if v <= want]
    major, minor = older[-1] if older else have[0]
    return f"v{major}.{minor}.0"


def _types(schema: dict) -> set[str]:
    t = schema.get("type")
    if t is None:
        return set()
    return ({t} if isinstance(t, str) else set(t)) - {"null"}


def _go_name(def_name: str) -> str:
    """`io.k8s.api.core.v1.Container` -> `v1.Container`, as Go prints the type."""
    parts = def_name.split(".")
    return ".".join(parts[-2:])


def _ref_name(ref: str) -> str:
    return ref.rsplit("/", 1)[-1]


class _SchemaSet:
    """The definitions of one Kubernetes version and the nodes compiled from them."""

    def __init__(self, version_dir: str) -> None:
        self.version_dir = version_dir
        path = SCHEMA_ROOT / f"{version_dir}-local" / "_definitions.json"
        with path.open(encoding="utf-8") as fh:
            self.defs: dict[str, dict] = json.load(fh)["$defs"]
        self.by_gvk: dict[tuple[str, str], str] = {}
        for name, d in self.defs.items():
            for gvk in d.get("x-kubernetes-group-version-kind", ()):
                api_version = f"{gvk['group']}/{gvk['version']}" if gvk["group"] else gvk["version"]
                self.by_gvk.setdefault((api_version, gvk["kind"]), name)
        self.nodes: dict[str, Node] = {}  # complete nodes only: read without the lock
        self._building: dict[str, Node] = {}  # filled under the lock, published together
        self.lock = threading.RLock()
        self.openapi: dict[tuple[str, ...], _OpenAPIv3] = {}

    # -- compiling -----------------------------------------------------------
    def node(self, def_name: str) -> Node:
        found = self.nodes.get(def_name)
        if found is not None:
            return found
        with self.lock:
            found = self.nodes.get(def_name) or self._building.get(def_name)
            if found is not None:
                return found
            outermost = not self._building
            found = self._compile_def(def_name)
            if outermost:
                # Definitions refer to each other; none is complete until all are.
                self.nodes.update(self._building)
                self._building.clear()
            return found

    def _compile_def(self, name: str) -> Node:
        d = self.defs[name]
        if name == _INT_OR_STRING_DEF:
            node = Node(INT_OR_STRING, "intstr.IntOrString", name=name)
        elif name == _QUANTITY_DEF:
            node = Node(QUANTITY, "resource.Quantity", name=name)
        elif "properties" in d:
            node = Node(OBJECT, _go_name(name), name=name)
        else:
            node = self._compile(d, _go_name(name))
            node.name = name
        # Register before filling fields: definitions refer to themselves
        # (JSONSchemaProps) and to each other.
        self._building[name] = node
        if node.kind == OBJECT and "properties" in d:
            self._fill_object(node, d)
        return node

    def _fill_object(self, node: Node, schema: dict) -> None:
        fields: dict[str, Field] = {}
        for key, prop in schema["properties"].items():
            strategy = prop.get("x-kubernetes-patch-strategy")
            fields[key] = Field(
                name=key,
                node=self._compile(prop, f"{node.struct}.{key}"),
                merge_key=prop.get("x-kubernetes-patch-merge-key"),
                strategies=tuple(strategy.split(",")) if strategy else (),
            )
        node.fields = fields
        node.required = tuple(schema.get("required", ()))

    def _compile(self, schema: dict, hint: str) -> Node:
        ref = schema.get("$ref")
        if ref:
            return self.node(_ref_name(ref))
        if "oneOf" in schema:
            kinds = set().union(*(_types(s) for s in schema["oneOf"]))
            if kinds == {"string", "integer"}:
                return Node(INT_OR_STRING, "intstr.IntOrString")
            if kinds == {"string", "number"}:
                return Node(QUANTITY, "resource.Quantity")
            return Node(ANY, "interface {}")
        types = _types(schema)
        fmt = schema.get("format")
        if "object" in types or "properties" in schema:
            if "properties" in schema:
                node = Node(OBJECT, hint)
                self._fill_object(node, schema)
                return node
            extra = schema.get("additionalProperties")
            if isinstance(extra, dict):
                values = self._compile(extra, hint)
                node = Node(MAP, f"map[string]{values.go_type}")
                node.values = values
                return node
            return Node(FREEFORM, "map[string]interface {}")
        if "array" in types:
            items = self._compile(schema.get("items") or {}, hint)
            node = Node(ARRAY, f"[]{items.go_type}")
            node.items = items
            return node
        if "string" in types:
            go = "[]uint8" if fmt == "byte" else "string"
            return Node(STRING, go, fmt=fmt)
        if "integer" in types:
            return Node(INTEGER, fmt if fmt in _INT_RANGES else "int", fmt=fmt)
        if "number" in types:
            return Node(NUMBER, "float64", fmt=fmt)
        if "boolean" in types:
            return Node(BOOLEAN, "bool")
        return Node(ANY, "interface {}")

    def root(self, api_version: str, kind: str) -> Node | None:
        name = self.by_gvk.get((api_version, kind))
        return self.node(name) if name else None


_SETS: dict[str, _SchemaSet] = {}
_SETS_LOCK = threading.Lock()


def _schema_set(version_dir: str) -> _SchemaSet:
    found = _SETS.get(version_dir)
    if found is None:
        with _SETS_LOCK:
            found = _SETS.get(version_dir)
            if found is None:
                found = _SETS[version_dir] = _SchemaSet(version_dir)
    return found


# -- validation --------------------------------------------------------------


def json_kind(value: Any) -> str:
    """How Go's decoder names a JSON value in `cannot unmarshal X into ...`."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if value is None:
        return "null"
    return "object"


def _number_text(value: int | float) -> str:
    return repr(value) if isinstance(value, float) else str(value)


class _TypeError(Exception):
    """The first decoding error; Go's decoder reports only that one."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


class _Walk:
    """One validation pass over an object."""

    __slots__ = ("drop", "required", "type_error", "unknown")

    def __init__(self, drop: bool) -> None:
        self.drop = drop
        self.unknown: list[str] = []
        self.required: list[dict] = []
        self.type_error: str | None = None

    def fail(self, detail: str, lenient: bool) -> None:
        if not lenient and self.type_error is None:
            self.type_error = detail

    def value(self, value: Any, node: Node, path: str, owner: str, gopath: str,
              lenient: bool) -> None:
        """Check `value` against `node`; `owner`/`gopath` name the Go struct field for errors."""
        if value is None:
            return  # Go decodes null as the zero value
        kind = node.kind
        if kind == OBJECT:
            if not isinstance(value, dict):
                self.fail(self._cannot(value, owner, gopath, node.go_type), lenient)
                return
            self.object(value, node, path, gopath, lenient)
        elif kind == STRING:
            if not isinstance(value, str):
                self.fail(self._cannot(value, owner, gopath, node.go_type), lenient)
            elif node.fmt == "byte":
                self._base64(value, lenient)
            elif node.fmt == "date-time" and not _RFC3339_RE.match(value):
                self.fail(f'parsing time "{value}" as "2006-01-02T15:04:05Z07:00": cannot '
                          f'parse "{value}" as "2006"', lenient)
        elif kind == INTEGER:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self.fail(self._cannot(value, owner, gopath, node.go_type), lenient)
            elif isinstance(value, float) or not self._in_range(value, node.fmt):
                self.fail(f"json: cannot unmarshal number {_number_text(value)} into Go struct "
                          f"field {owner}.{gopath} of type {node.go_type}", lenient)
        elif kind == ARRAY:
            if not isinstance(value, list):
                self.fail(self._cannot(value, owner, gopath, node.go_type), lenient)
                return
            items = node.items
            assert items is not None
            if items.kind in (STRING, BOOLEAN, ANY) and items.fmt is None:
                if items.kind == ANY:
                    return
                want = str if items.kind == STRING else bool
                for v in value:
                    if v is not None and not isinstance(v, want):
                        self.fail(self._cannot(v, owner, gopath, items.go_type), lenient)
                        return
                return
            for i, v in enumerate(value):
                self.value(v, items, f"{path}[{i}]", owner, gopath, lenient)
        elif kind == MAP:
            if not isinstance(value, dict):
                self.fail(self._cannot(value, owner, gopath, node.go_type), lenient)
                return
            values = node.values
            assert values is not None
            if values.kind == STRING and values.fmt is None:
                for v in value.values():
                    if v is not None and not isinstance(v, str):
                        self.fail(self._cannot(v, owner, gopath, "string"), lenient)
                        return
                return
            for k, v in value.items():
                self.value(v, values, f"{path}.{k}", owner, gopath, lenient)
        elif kind == BOOLEAN:
            if not isinstance(value, bool):
                self.fail(self._cannot(value, owner, gopath, "bool"), lenient)
        elif kind == NUMBER:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self.fail(self._cannot(value, owner, gopath, "float64"), lenient)
        elif kind == INT_OR_STRING:
            if isinstance(value, str):
                return
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                self.fail(f"json: cannot unmarshal {json_kind(value)} into Go value of type "
                          f"int32", lenient)
            elif isinstance(value, float) or not self._in_range(value, "int32"):
                self.fail(f"json: cannot unmarshal number {_number_text(value)} into Go value "
                          f"of type int32", lenient)
        elif kind == QUANTITY:
            problem = _quantity_problem(value)
            if problem:
                self.fail(problem, lenient)
        elif kind == FREEFORM and not isinstance(value, dict):
            self.fail(self._cannot(value, owner, gopath, node.go_type), lenient)
        # ANY accepts everything

    def object(self, obj: dict, node: Node, path: str, gopath: str, lenient: bool,
               top: bool = False) -> None:
        fields = node.fields
        struct = node.struct
        unknown_keys: list[str] = []
        for key, v in obj.items():
            f = fields.get(key)
            child_path = f"{path}.{key}" if path else key
            if f is None:
                unknown_keys.append(key)
                self.unknown.append(child_path)
                continue
            if v is None:
                continue
            child_gopath = f"{gopath}.{key}" if gopath else key
            # Status is written by controllers through the status subresource;
            # the apiserver's own checks there are not what a client meets.
            self.value(v, f.node, child_path, struct, child_gopath,
                       lenient or (top and key == "status"))
        if unknown_keys and self.drop:
            for key in unknown_keys:
                del obj[key]
        if node.required and not lenient:
            for key in node.required:
                v = obj.get(key)
                if v is None or v == "" or v == []:
                    f = fields.get(key)
                    if f is not None and f.node.kind == BOOLEAN:
                        continue  # Go's zero value `false` is a value
                    field = f"{path}.{key}" if path else key
                    self.required.append({"reason": "FieldValueRequired",
                                          "message": "Required value", "field": field})

    @staticmethod
    def _cannot(value: Any, owner: str, gopath: str, go_type: str) -> str:
        where = f"Go struct field {owner}.{gopath}" if owner else "Go value"
        return f"json: cannot unmarshal {json_kind(value)} into {where} of type {go_type}"

    @staticmethod
    def _in_range(value: int, fmt: str | None) -> bool:
        lo, hi = _INT_RANGES.get(fmt or "int64", _INT_RANGES["int64"])
        return lo <= value <= hi

    def _base64(self, value: str, lenient: bool) -> None:
        try:
            base64.b64decode(value.replace("\r", "").replace("\n", ""), validate=True)
        except (binascii.Error, ValueError):
            bad = next((i for i, c in enumerate(value)
                        if not (c.isascii() and (c.isalnum() or c in "+/="))), len(value) - 1)
            self.fail(f"illegal base64 data at input byte {max(bad, 0)}", lenient)


def _quantity_problem(value: Any) -> str | None:
    """Why resource.ParseQuantity would refuse `value`, or None."""
    if isinstance(value, bool) or value is None:
        return None if value is None else _quantity_regex_error()
    if isinstance(value, (int, float)):
        return None
    if not isinstance(value, str):
        return _quantity_regex_error()
    text = value.strip()
    m = _QUANTITY_RE.match(text)
    if not m or m.group(1).count(".") > 1 or m.group(1).strip("+-") in ("", "."):
        return _quantity_regex_error()
    suffix = m.group(2)
    if suffix in _QUANTITY_SUFFIXES or re.fullmatch(r"[eE][-+]?[0-9]+", suffix):
        return None
    return "unable to parse quantity's suffix"


def _quantity_regex_error() -> str:
    return f"quantities must match the regular expression {_QUANTITY_REGEX_TEXT}"


# -- the registry --------------------------------------------------------------


class SchemaRegistry:
    """Schemas of one Kubernetes version, as one emulated cluster's apiserver uses them."""

    def __init__(self, kube_version: str,
                 group_versions: Iterable[str] | None = None) -> None:
        self.kube_version = kube_version
        self.version_dir = resolve_version(kube_version)
        self.group_versions = tuple(group_versions or DEFAULT_GROUP_VERSIONS)

    @property
    def _set(self) -> _SchemaSet:
        return _schema_set(self.version_dir)

    # -- lookups ---------------------------------------------------------------
    def knows(self, api_version: str, kind: str) -> bool:
        return (api_version, kind) in self._set.by_gvk

    def root(self, api_version: str, kind: str) -> Node | None:
        """The compiled schema of a top-level kind, or None if this version has no such kind."""
        return self._set.root(api_version, kind)

    def patch_meta(self, api_version: str, kind: str) -> Node | None:
        """The node a strategic merge patch walks (fields carry merge key and strategy)."""
        return self.root(api_version, kind)

    def lookup(self, api_version: str, kind: str,
               path: Sequence[str]) -> tuple[str | None, tuple[str, ...]]:
        """Merge key and strategies of the field at `path` (list items are stepped through).

        `lookup("apps/v1", "Deployment", ["spec", "template", "spec", "containers"])`
        is `("name", ("merge",))`.
        """
        node = self.root(api_version, kind)
        f: Field | None = None
        for key in path:
            while node is not None and node.kind == ARRAY:
                node = node.items
            if node is None:
                return None, ()
            if node.kind == MAP:
                node, f = node.values, None
                continue
            f = node.field(key)
            if f is None:
                return None, ()
            node = f.node
        return (f.merge_key, f.strategies) if f else (None, ())

    # -- validation ------------------------------------------------------------
    def validate(self, obj: dict, *, strict: bool) -> list[str]:
        """Check a whole object as the apiserver's decoder and validation would.

        Returns the `Warning` texts for unknown fields (`unknown field "spec.foo"`)
        and removes those fields from `obj`. Raises `SchemaError`: 400 for a
        value of the wrong JSON type, 400 for unknown fields when `strict`, 422
        (with `causes`) for missing required fields. Fields under `status` are
        never a reason to refuse (controllers own them), but unknown ones are
        still dropped. Kinds this version does not know are not checked.
        """
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if not isinstance(api_version, str) or not isinstance(kind, str):
            return []
        node = self.root(api_version, kind)
        if node is None or node.kind != OBJECT:
            return []
        walk = _Walk(drop=not strict)
        walk.object(obj, node, "", "", False, top=True)
        version = api_version.rsplit("/", 1)[-1]
        prefix = f'{kind} in version "{version}" cannot be handled as a {kind}: '
        if walk.type_error is not None:
            raise SchemaError(400, "BadRequest", prefix + walk.type_error,
                              detail=walk.type_error)
        status_unknown = [p for p in walk.unknown if p == "status" or p.startswith("status.")]
        if strict and len(status_unknown) < len(walk.unknown):
            refused = [p for p in walk.unknown if p not in status_unknown]
            text = "strict decoding error: " + ", ".join(f'unknown field "{p}"' for p in refused)
            raise SchemaError(400, "BadRequest", prefix + text, detail=text)
        if strict:
            for p in status_unknown:
                _drop_path(obj, p)
        if walk.required:
            meta = obj.get("metadata") if isinstance(obj.get("metadata"), dict) else {}
            name = meta.get("name") or meta.get("generateName") or ""
            group = api_version.rsplit("/", 1)[0] if "/" in api_version else ""
            full = f"{kind}.{group}" if group else kind
            listed = [f"{c['field']}: {c['message']}" for c in walk.required]
            text = listed[0] if len(listed) == 1 else f"[{', '.join(listed)}]"
            raise SchemaError(422, "Invalid", f'{full} "{name}" is invalid: {text}',
                              causes=walk.required,
                              details={"name": name, "group": group, "kind": kind,
                                       "causes": walk.required})
        return [f'unknown field "{p}"' for p in walk.unknown]

    # -- OpenAPI v3 --------------------------------------------------------------
    def _openapi(self) -> _OpenAPIv3:
        s = self._set
        key = self.group_versions
        found = s.openapi.get(key)
        if found is None:
            with s.lock:
                found = s.openapi.get(key)
                if found is None:
                    found = s.openapi[key] = _OpenAPIv3(s, key)
        return found

    def openapi_v3_index(self) -> dict:
        """The `/openapi/v3` discovery document: group-version paths with content hashes."""
        return self._openapi().index()

    def openapi_v3_document(self, group_version: str) -> dict | None:
        """The OpenAPI v3 document of one group-version, or None if not published.

        Accepts `api/v1`, `apis/apps/v1`, `v1` or `apps/v1` (a `?hash=` suffix
        is ignored). The dict is shared between callers: do not modify it.
        """
        return self._openapi().document(group_version)

    def openapi_v3_document_bytes(self, group_version: str) -> bytes | None:
        """The same document serialized once, for serving without re-encoding."""
        return self._openapi().document_bytes(group_version)


def _drop_path(obj: dict, dotted: str) -> None:
    """Remove the field at a warning path like `status.conditions[0].foo`."""
    parts = re.findall(r"[^.\[\]]+|\[\d+\]", dotted)
    cur: Any = obj
    for part in parts[:-1]:
        if part.startswith("["):
            idx = int(part[1:-1])
            cur = cur[idx] if isinstance(cur, list) and idx < len(cur) else None
        else:
            cur = cur.get(part) if isinstance(cur, dict) else None
        if cur is None:
            return
    if isinstance(cur, dict):
        cur.pop(parts[-1], None)


# -- OpenAPI v3 documents ------------------------------------------------------

# Kinds that are not REST resources of their group-version (subresource
# bodies, create-only reviews).
_NOT_RESOURCES = frozenset({
    "Binding", "Eviction", "Scale", "TokenRequest", "TokenReview", "SubjectAccessReview",
    "LocalSubjectAccessReview", "SelfSubjectAccessReview", "SelfSubjectRulesReview",
    "SelfSubjectReview", "ComponentStatus",
})
_CLUSTER_SCOPED = frozenset({
    "Namespace", "Node", "PersistentVolume", "ComponentStatus", "StorageClass", "CSIDriver",
    "CSINode", "VolumeAttachment", "VolumeAttributesClass", "ClusterRole",
    "ClusterRoleBinding", "PriorityClass", "RuntimeClass", "IngressClass",
    "CustomResourceDefinition", "APIService", "MutatingWebhookConfiguration",
    "ValidatingWebhookConfiguration", "ValidatingAdmissionPolicy",
    "ValidatingAdmissionPolicyBinding", "MutatingAdmissionPolicy",
    "MutatingAdmissionPolicyBinding", "CertificateSigningRequest", "ClusterTrustBundle",
    "FlowSchema", "PriorityLevelConfiguration", "StorageVersion", "IPAddress", "ServiceCIDR",
    "DeviceClass", "ResourceSlice", "StorageVersionMigration",
})
_SCALABLE = frozenset({"Deployment", "ReplicaSet", "StatefulSet", "ReplicationController"})
_PATCH_TYPES = ("application/apply-patch+yaml", "application/json-patch+json",
                "application/merge-patch+json", "application/strategic-merge-patch+json")
_RESPONSE_TYPES = ("application/json", "application/yaml", "application/vnd.kubernetes.protobuf")
_META = "io.k8s.apimachinery.pkg.apis.meta.v1."


def _plural(kind: str) -> str:
    low = kind.lower()
    if low == "endpoints":
        return low
    if low.endswith(("s", "x", "ch", "sh")):
        return low + "es"
    if low.endswith("y") and low[-2:-1] not in "aeiou":
        return low[:-1] + "ies"
    return low + "s"


def _gv_key(group_version: str) -> str:
    """Normalize `v1`/`api/v1`/`apps/v1`/`apis/apps/v1` to the index key form."""
    gv = group_version.split("?", 1)[0].strip("/")
    if gv.startswith(("api/", "apis/")):
        return gv
    return f"api/{gv}" if "/" not in gv else f"apis/{gv}"


def _camel(text: str) -> str:
    parts = re.split(r"[.\-]", text)
    return parts[0] + "".join(p[:1].upper() + p[1:] for p in parts[1:])


@dataclass
class _Resource:
    group: str
    version: str
    kind: str
    def_name: str
    plural: str
    namespaced: bool
    has_status: bool


def _query(name: str, description: str, typ: str = "string") -> dict:
    return {"name": name, "in": "query", "description": description,
            "schema": {"type": typ, "uniqueItems": True}}


_PRETTY = _query("pretty", "If 'true', then the output is pretty printed.")
_DRY_RUN = _query("dryRun", "When present, indicates that modifications should not be "
                  "persisted. Valid values are: - All: all dry run stages will be processed")
_FIELD_MANAGER = _query("fieldManager", "fieldManager is a name associated with the actor or "
                        "entity that is making these changes.")
_FIELD_VALIDATION = _query(
    "fieldValidation", "fieldValidation instructs the server on how to handle objects in the "
    "request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: "
    "- Ignore - Warn (the default) - Strict")
_FORCE = _query("force", "Force is going to \"force\" Apply requests.", "boolean")
_LIST_PARAMS = [
    _query("allowWatchBookmarks", "allowWatchBookmarks requests watch events with type "
           "\"BOOKMARK\".", "boolean"),
    _query("continue", "The continue option should be set when retrieving more results from "
           "the server."),
    _query("fieldSelector", "A selector to restrict the list of returned objects by their "
           "fields. Defaults to everything."),
    _query("labelSelector", "A selector to restrict the list of returned objects by their "
           "labels. Defaults to everything."),
    _query("limit", "limit is a maximum number of responses to return for a list call.",
           "integer"),
    _query("resourceVersion", "resourceVersion sets a constraint on what resource versions a "
           "request may be served from."),
    _query("resourceVersionMatch", "resourceVersionMatch determines how resourceVersion is "
           "applied to list calls."),
    _query("sendInitialEvents", "`sendInitialEvents=true` may be set together with "
           "`watch=true`.", "boolean"),
    _query("timeoutSeconds", "Timeout for the list/watch call.", "integer"),
    _query("watch", "Watch for changes to the described resources and return them as a stream "
           "of add, update, and remove notifications.", "boolean"),
]
_DELETE_PARAMS = [
    _DRY_RUN,
    _query("gracePeriodSeconds", "The duration in seconds before the object should be "
           "deleted.", "integer"),
    _query("orphanDependents", "Deprecated: please use the PropagationPolicy.", "boolean"),
    _query("propagationPolicy", "Whether and how garbage collection will be performed."),
]


class _OpenAPIv3:
    """OpenAPI v3 documents for a set of group-versions, built once from the definitions."""

    def __init__(self, schemas: _SchemaSet, group_versions: Sequence[str]) -> None:
        self.schemas = schemas
        major_minor = schemas.version_dir.lstrip("v").rsplit(".", 1)[0]
        self.info = {"title": "Kubernetes", "version": f"v{major_minor}.0"}
        self.docs: dict[str, dict] = {}
        self.raw: dict[str, bytes] = {}
        self.hashes: dict[str, str] = {}
        for gv in group_versions:
            key = _gv_key(gv)
            doc = self._build(key)
            if doc is None:
                continue
            raw = json.dumps(doc, separators=(",", ":")).encode()
            self.docs[key], self.raw[key] = doc, raw
            self.hashes[key] = hashlib.sha512(raw).hexdigest().upper()

    def index(self) -> dict:
        return {"paths": {key: {"serverRelativeURL": f"/openapi/v3/{key}?hash={h}"}
                          for key, h in self.hashes.items()}}

    def document(self, group_version: str) -> dict | None:
        return self.docs.get(_gv_key(group_version))

    def document_bytes(self, group_version: str) -> bytes | None:
        return self.raw.get(_gv_key(group_version))

    # -- building ----------------------------------------------------------------
    def _resources(self, group: str, version: str) -> list[_Resource]:
        out = []
        for name, d in self.schemas.defs.items():
            for gvk in d.get("x-kubernetes-group-version-kind", ()):
                if (gvk["group"], gvk["version"]) != (group, version):
                    continue
                kind = gvk["kind"]
                props = d.get("properties", {})
                meta_ref = (props.get("metadata") or {}).get("$ref", "")
                if (kind.endswith("List") or kind in _NOT_RESOURCES
                        or not meta_ref.endswith(_OBJECT_META_DEF)
                        or len(d["x-kubernetes-group-version-kind"]) != 1):
                    continue
                out.append(_Resource(group, version, kind, name, _plural(kind),
                                     kind not in _CLUSTER_SCOPED, "status" in props))
        return sorted(out, key=lambda r: r.plural)

    def _build(self, key: str) -> dict | None:
        parts = key.split("/")
        group, version = ("", parts[1]) if parts[0] == "api" else (parts[1], parts[2])
        resources = self._resources(group, version)
        if not resources:
            return None
        wanted = {r.def_name for r in resources}
        for r in resources:
            list_def = self.schemas.by_gvk.get(
                (f"{group}/{version}" if group else version, f"{r.kind}List"))
            if list_def:
                wanted.add(list_def)
        wanted |= {_META + n for n in ("DeleteOptions", "Status", "Patch", "APIResourceList",
                                       "WatchEvent")}
        if any(r.kind in _SCALABLE for r in resources):
            wanted.add("io.k8s.api.autoscaling.v1.Scale")
        paths: dict[str, dict] = {}
        for r in resources:
            self._paths(r, paths)
        return {
            "openapi": "3.0.0",
            "info": dict(self.info),
            "paths": paths,
            "components": {
                "schemas": self._components(wanted),
                "securitySchemes": {"BearerToken": {
                    "type": "apiKey", "description": "Bearer Token authentication",
                    "name": "authorization", "in": "header"}},
            },
        }

    def _components(self, roots: set[str]) -> dict[str, dict]:
        defs = self.schemas.defs
        seen: set[str] = set()
        todo = [n for n in roots if n in defs]
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            for ref in re.findall(r'"\$ref": "[^"]*/([^"/]+)"', json.dumps(defs[name])):
                if ref not in seen and ref in defs:
                    todo.append(ref)
        out = {}
        for name in sorted(seen):
            converted = _oas3(defs[name])
            if name == _INT_OR_STRING_DEF:
                converted["format"] = "int-or-string"
            out[name] = converted
        return out

    def _paths(self, r: _Resource, paths: dict[str, dict]) -> None:
        root = f"/apis/{r.group}/{r.version}" if r.group else f"/api/{r.version}"
        group_word = _camel(r.group.replace(".k8s.io", "")) if r.group else "core"
        group_word = group_word[:1].upper() + group_word[1:]
        tag = f"{group_word[:1].lower()}{group_word[1:]}_{r.version}"
        op_mid = f"{group_word}{r.version[:1].upper()}{r.version[1:]}"
        scope = "Namespaced" if r.namespaced else ""
        gvk = {"group": r.group, "kind": r.kind, "version": r.version}
        ref = f"#/components/schemas/{r.def_name}"
        list_ref = ref + "List"
        base = f"{root}/namespaces/{{namespace}}/{r.plural}" if r.namespaced else \
            f"{root}/{r.plural}"
        path_params = [_PRETTY]
        name_param = {"name": "name", "in": "path", "description": f"name of the {r.kind}",
                      "required": True, "schema": {"type": "string", "uniqueItems": True}}
        if r.namespaced:
            path_params = [{"name": "namespace", "in": "path",
                            "description": "object name and auth scope, such as for teams and "
                                           "projects", "required": True,
                            "schema": {"type": "string", "uniqueItems": True}}, _PRETTY]

        def op(verb: str, action: str, op_id: str, params: list[dict], responses: dict,
               body: dict | None = None, the_gvk: dict | None = None) -> dict:
            o: dict[str, Any] = {"tags": [tag], "description": f"{action} {r.kind}",
                                 "operationId": op_id, "parameters": params}
            if body is not None:
                o["requestBody"] = body
            o["responses"] = {**responses, "401": {"description": "Unauthorized"}}
            o["x-kubernetes-action"] = verb
            o["x-kubernetes-group-version-kind"] = dict(the_gvk or gvk)
            return o

        def ok(schema_ref: str, codes: Sequence[str] = ("200",)) -> dict:
            content = {ct: {"schema": {"$ref": schema_ref}} for ct in _RESPONSE_TYPES}
            return {c: {"description": {"200": "OK", "201": "Created",
                                        "202": "Accepted"}[c], "content": content}
                    for c in codes}

        def body(schema_ref: str, types: Sequence[str] = ("*/*",)) -> dict:
            return {"content": {t: {"schema": {"$ref": schema_ref}} for t in types},
                    "required": True}

        write = [_DRY_RUN, _FIELD_MANAGER, _FIELD_VALIDATION]
        patch_body = body(f"#/components/schemas/{_META}Patch", _PATCH_TYPES)
        status_ref = f"#/components/schemas/{_META}Status"
        delete_body = body(f"#/components/schemas/{_META}DeleteOptions")
        paths[base] = {
            "get": op("list", "list or watch objects of kind", f"list{op_mid}{scope}{r.kind}",
                      list(_LIST_PARAMS), ok(list_ref)),
            "post": op("post", "create a", f"create{op_mid}{scope}{r.kind}", list(write),
                       ok(ref, ("200", "201", "202")), body(ref)),
            "delete": op("deletecollection", "delete collection of",
                         f"delete{op_mid}Collection{scope}{r.kind}",
                         [*_DELETE_PARAMS, *_LIST_PARAMS], ok(status_ref), delete_body),
            "parameters": list(path_params),
        }
        paths[f"{base}/{{name}}"] = {
            "get": op("get", "read the specified", f"read{op_mid}{scope}{r.kind}", [], ok(ref)),
            "put": op("put", "replace the specified", f"replace{op_mid}{scope}{r.kind}",
                      list(write), ok(ref, ("200", "201")), body(ref)),
            "patch": op("patch", "partially update the specified",
                        f"patch{op_mid}{scope}{r.kind}", [*write, _FORCE],
                        ok(ref, ("200", "201")), patch_body),
            "delete": op("delete", "delete a", f"delete{op_mid}{scope}{r.kind}",
                         list(_DELETE_PARAMS), ok(status_ref, ("200", "202")), delete_body),
            "parameters": [name_param, *path_params],
        }
        if r.has_status:
            paths[f"{base}/{{name}}/status"] = {
                "get": op("get", "read status of the specified",
                          f"read{op_mid}{scope}{r.kind}Status", [], ok(ref)),
                "put": op("put", "replace status of the specified",
                          f"replace{op_mid}{scope}{r.kind}Status", list(write),
                          ok(ref, ("200", "201")), body(ref)),
                "patch": op("patch", "partially update status of the specified",
                            f"patch{op_mid}{scope}{r.kind}Status", [*write, _FORCE],
                            ok(ref, ("200", "201")), patch_body),
                "parameters": [name_param, *path_params],
            }
        if r.kind in _SCALABLE:
            scale = {"group": "autoscaling", "kind": "Scale", "version": "v1"}
            scale_ref = "#/components/schemas/io.k8s.api.autoscaling.v1.Scale"
            paths[f"{base}/{{name}}/scale"] = {
                "get": op("get", "read scale of the specified",
                          f"read{op_mid}{scope}{r.kind}Scale", [], ok(scale_ref), None, scale),
                "put": op("put", "replace scale of the specified",
                          f"replace{op_mid}{scope}{r.kind}Scale", list(write),
                          ok(scale_ref, ("200", "201")), body(scale_ref), scale),
                "patch": op("patch", "partially update scale of the specified",
                            f"patch{op_mid}{scope}{r.kind}Scale", [*write, _FORCE],
                            ok(scale_ref, ("200", "201")), patch_body, scale),
                "parameters": [name_param, *path_params],
            }
        if r.namespaced:
            paths[f"{root}/{r.plural}"] = {
                "get": op("list", "list or watch objects of kind",
                          f"list{op_mid}{r.kind}ForAllNamespaces", list(_LIST_PARAMS),
                          ok(list_ref)),
                "parameters": [_PRETTY],
            }


def _oas3(schema: Any) -> Any:
    """Turn a bundled JSON-schema definition into the shape kube-apiserver publishes in v3.

    `$ref` with siblings is wrapped in `allOf` (OpenAPI 3.0 ignores siblings
    of `$ref`; kubectl's strategic-merge lookup reads the extensions on the
    property and follows `allOf[0]`), `["x", "null"]` types become `x`, and
    the apiVersion/kind enums the bundle adds are left out.
    """
    if not isinstance(schema, dict):
        return schema
    if "$ref" in schema:
        ref = {"$ref": "#/components/schemas/" + _ref_name(schema["$ref"])}
        rest = {k: _oas3(v) for k, v in schema.items() if k != "$ref"}
        return {"allOf": [ref], **rest} if rest else ref
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key == "type":
            types = [value] if isinstance(value, str) else [t for t in value if t != "null"]
            if types:
                out["type"] = types[0] if len(types) == 1 else types
        elif key == "properties":
            out[key] = {k: _oas3(v) for k, v in value.items()}
        elif key in ("items", "additionalProperties") and isinstance(value, dict):
            out[key] = _oas3(value)
        elif key == "oneOf":
            out[key] = [_oas3(v) for v in value]
        elif key == "enum":
            continue
        else:
            out[key] = value
    return out
