"""PATCH bodies applied the way kube-apiserver applies them.

Three formats, each with the apiserver's semantics and error codes:

* `application/strategic-merge-patch+json`: apimachinery's strategic merge,
  driven by the merge keys and strategies in the official schemas
  (`schema.SchemaRegistry.patch_meta`). Lists with `merge` strategy merge by
  key (maps) or are unioned (scalars); other lists are replaced. Directives:
  `$patch: replace|delete|merge`, `$deleteFromPrimitiveList/<f>`,
  `$setElementOrder/<f>`, `$retainKeys`, and `null` to delete. This is what
  `kubectl apply` re-applies with, so a field a controller set and the
  manifest never mentioned must survive it.
* `application/merge-patch+json`: RFC 7386.
* `application/json-patch+json`: RFC 6902 with JSON pointers.

`application/apply-patch+yaml` (server-side apply) is not a patch here: the registry hands
it to `managedfields` (this module refuses it with 415).

Error codes follow apiserver's patch handler: a body that is not the right
JSON shape is 400; a JSON patch that does not apply is 422 with the generic
message; strategic-merge format errors are 400, and the remaining merge
errors come back as apimachinery's plain errors, which the apiserver sends
as 500 with an empty reason (what kubectl shows as "Error from server: map:
... does not contain declared merge key: name").
"""

from __future__ import annotations

import json
from typing import Any

from .schema import ARRAY, MAP, OBJECT, Node, SchemaError, SchemaRegistry, json_kind

STRATEGIC = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY = "application/apply-patch+yaml"

MAX_JSON_PATCH_OPERATIONS = 10000

_DIRECTIVE = "$patch"
_RETAIN_KEYS = "$retainKeys"
_DELETE_PRIMITIVES = "$deleteFromPrimitiveList"
_SET_ORDER = "$setElementOrder"
_INVALID_422 = "the server rejected our request due to an error in our request"


class PatchError(Exception):
    """A patch the apiserver refuses, with the status code, reason and message it uses."""

    def __init__(self, code: int, reason: str, message: str, details: dict | None = None,
                 detail: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details
        # What actually went wrong when the apiserver's message is generic.
        self.detail = detail or message

    def to_status(self) -> dict:
        body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {},
                                "status": "Failure", "message": self.message,
                                "reason": self.reason, "code": self.code}
        if self.details is not None:
            body["details"] = self.details
        return body


class _MergeError(Exception):
    """A plain apimachinery error: the apiserver answers 500 with the text as message."""


class _BadFormat(Exception):
    """One of apimachinery's mergepatch format errors: the apiserver answers 400."""


def _bad_request(message: str) -> PatchError:
    return PatchError(400, "BadRequest", message)


def _unsupported(content_type: str) -> PatchError:
    return PatchError(
        415, "UnsupportedMediaType",
        f"the body of the request was in an unknown format - accepted media types include: "
        f"{JSON_PATCH}, {MERGE}, {STRATEGIC}" + (f" ({content_type} is not served)"
                                                 if content_type == APPLY else ""))


def apply_patch(original: dict, patch: bytes | str | dict | list, content_type: str, *,
                schemas: SchemaRegistry) -> dict:
    """Apply `patch` of `content_type` to `original` and return the new object.

    `original` is not modified. Raises `PatchError` with the apiserver's code.
    """
    ctype = content_type.split(";", 1)[0].strip().lower()
    if ctype not in (STRATEGIC, MERGE, JSON_PATCH):
        raise _unsupported(ctype)
    body = _decode(patch)
    doc = _copy(original)
    if ctype == JSON_PATCH:
        result = apply_json_patch(doc, body)
    elif ctype == MERGE:
        if not isinstance(body, dict):
            raise _bad_request("Invalid JSON Patch")
        result = apply_merge_patch(doc, body)
    else:
        if not isinstance(body, dict):
            raise _bad_request(f"json: cannot unmarshal {json_kind(body)} into Go value of "
                               f"type map[string]interface {{}}")
        node = schemas.patch_meta(str(doc.get("apiVersion", "")), str(doc.get("kind", "")))
        if node is None:
            raise _unsupported(ctype)
        result = apply_strategic_merge_patch(doc, _copy(body), node)
    if not isinstance(result, dict):
        raise _bad_request(f"json: cannot unmarshal {json_kind(result)} into Go value of type "
                           f"map[string]interface {{}}")
    return _prune_nulls(result)


def decoding_error(err: SchemaError, content_type: str, patch: Any, patched: dict) -> PatchError:
    """How the apiserver reports a decoding failure of a *patched* object.

    On PATCH, a wrong JSON type or (with fieldValidation=Strict) an unknown
    field is not the 400 a POST gets but a 422 against the field `patch`,
    quoting the patch (strategic merge) or the patched object (the others).
    Other `SchemaError`s (missing required fields) are returned unchanged.
    """
    if err.code != 400:
        return PatchError(err.code, err.reason, err.message, err.details)
    ctype = content_type.split(";", 1)[0].strip().lower()
    if ctype == STRATEGIC:
        shown = _go_fmt(_decode(patch) if isinstance(patch, (bytes, str)) else patch)
    else:
        shown = json.dumps(patched, separators=(",", ":"))
    cause = {"reason": "FieldValueInvalid", "message": f"Invalid value: {json.dumps(shown)}: "
             f"{err.detail}", "field": "patch"}
    return PatchError(422, "Invalid", f'"" is invalid: patch: {cause["message"]}',
                      details={"causes": [cause]}, detail=err.detail)


# -- helpers -----------------------------------------------------------------


def _decode(patch: bytes | str | dict | list) -> Any:
    if isinstance(patch, (dict, list)):
        return _copy(patch)
    try:
        text = patch.decode("utf-8") if isinstance(patch, (bytes, bytearray)) else patch
    except UnicodeDecodeError:
        raise _bad_request("invalid character in JSON input: not UTF-8") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        if err.pos >= len(text.rstrip()):
            raise _bad_request("unexpected end of JSON input") from None
        ch = text[err.pos]
        raise _bad_request(f"invalid character '{ch}' looking for beginning of value") from None


def _copy(value: Any) -> Any:
    """Deep copy of JSON data (faster than copy.deepcopy for dicts of lists)."""
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _prune_nulls(value: Any) -> Any:
    """Drop null-valued fields: the apiserver decodes them to zero values and omits them."""
    if isinstance(value, dict):
        return {k: _prune_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_prune_nulls(v) for v in value]
    return value


def _go_kind(value: Any) -> str:
    """reflect.Kind of a decoded JSON value in Go (all numbers are float64)."""
    if isinstance(value, dict):
        return "map"
    if isinstance(value, list):
        return "slice"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "float64"
    if isinstance(value, str):
        return "string"
    return "nil"


def _go_eq(a: Any, b: Any) -> bool:
    """Go's `==` on decoded JSON scalars: no bool/number confusion."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return _go_kind(a) == _go_kind(b) and a == b


def _go_fmt(value: Any) -> str:
    """Go's %v of decoded JSON, for error messages that quote a value."""
    if isinstance(value, dict):
        return "map[" + " ".join(f"{k}:{_go_fmt(value[k])}" for k in sorted(value)) + "]"
    if isinstance(value, list):
        return "[" + " ".join(_go_fmt(v) for v in value) + "]"
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    return str(value)


def _scalar_key(value: Any) -> tuple[str, Any]:
    return (_go_kind(value), value if not isinstance(value, (dict, list)) else id(value))


# -- RFC 7386 merge patch --------------------------------------------------------


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, `null` deletes, anything else replaces."""
    if not isinstance(patch, dict):
        return _copy(patch)
    result = target if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


# -- RFC 6902 JSON patch -----------------------------------------------------------


class _JSONPatchFailed(Exception):
    pass


def apply_json_patch(doc: Any, ops: Any) -> Any:
    """RFC 6902 operations applied in order; any failure leaves the patch unapplied (422)."""
    if not isinstance(ops, list):
        raise _bad_request(f"json: cannot unmarshal {json_kind(ops)} into Go value of type "
                           f"jsonpatch.Patch")
    for op in ops:
        if not isinstance(op, dict):
            raise _bad_request(f"json: cannot unmarshal {json_kind(op)} into Go value of type "
                               f"jsonpatch.Operation")
    if len(ops) > MAX_JSON_PATCH_OPERATIONS:
        raise PatchError(413, "RequestEntityTooLarge",
                         f"Request entity too large: The allowed maximum operations in a JSON "
                         f"patch is {MAX_JSON_PATCH_OPERATIONS}, got {len(ops)}")
    try:
        for op in ops:
            doc = _json_patch_op(doc, op)
    except _JSONPatchFailed as err:
        raise PatchError(422, "Invalid", _INVALID_422, details={}, detail=str(err)) from None
    return doc


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str):
        raise _JSONPatchFailed(f"path is not a string: {path!r}")
    if path == "":
        return []
    if not path.startswith("/"):
        raise _JSONPatchFailed(f'JSON pointer must be empty or start with a "/": {path}')
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _index(token: str, size: int, *, allow_end: bool) -> int:
    if token == "-" and allow_end:
        return size
    if not token.lstrip("-").isdigit():
        raise _JSONPatchFailed(f"invalid array index: {token}")
    idx = int(token)
    if idx < 0:
        idx += size  # the apiserver's json-patch accepts negative indices
    limit = size if allow_end else size - 1
    if idx < 0 or idx > limit:
        raise _JSONPatchFailed(f"index out of bounds: {token}")
    return idx


def _parent(doc: Any, tokens: list[str], op: str) -> Any:
    cur = doc
    for token in tokens[:-1]:
        if isinstance(cur, dict):
            if token not in cur:
                raise _JSONPatchFailed(f"{op} operation does not apply: doc is missing path")
            cur = cur[token]
        elif isinstance(cur, list):
            cur = cur[_index(token, len(cur), allow_end=False)]
        else:
            raise _JSONPatchFailed(f"{op} operation does not apply: doc is missing path")
    return cur


def _get(doc: Any, tokens: list[str], op: str) -> Any:
    if not tokens:
        return doc
    parent = _parent(doc, tokens, op)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise _JSONPatchFailed(f"{op} operation does not apply: doc is missing key")
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(last, len(parent), allow_end=False)]
    raise _JSONPatchFailed(f"{op} operation does not apply: doc is missing path")


def _add(doc: Any, tokens: list[str], value: Any) -> Any:
    if not tokens:
        return value
    parent = _parent(doc, tokens, "add")
    last = tokens[-1]
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        parent.insert(_index(last, len(parent), allow_end=True), value)
    else:
        raise _JSONPatchFailed("add operation does not apply: doc is missing path")
    return doc


def _remove(doc: Any, tokens: list[str], op: str) -> Any:
    if not tokens:
        raise _JSONPatchFailed(f"{op} operation does not apply: cannot remove the root")
    parent = _parent(doc, tokens, op)
    last = tokens[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise _JSONPatchFailed(f"{op} operation does not apply: doc is missing key")
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(last, len(parent), allow_end=False))
    raise _JSONPatchFailed(f"{op} operation does not apply: doc is missing path")


def _value(op: dict) -> Any:
    if "value" not in op:
        raise _JSONPatchFailed(f"missing value for {op.get('op')} operation")
    return _copy(op["value"])


def _json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_json_equal(x, y) for x, y in zip(a, b, strict=True))
    return _go_eq(a, b)


def _json_patch_op(doc: Any, op: dict) -> Any:
    kind = op.get("op")
    tokens = _pointer(op.get("path"))
    if kind == "add":
        return _add(doc, tokens, _value(op))
    if kind == "remove":
        _remove(doc, tokens, "remove")
        return doc
    if kind == "replace":
        if not tokens:
            return _value(op)
        parent = _parent(doc, tokens, "replace")
        if isinstance(parent, dict):
            # json-patch v4 (what the apiserver uses) sets a missing key too.
            parent[tokens[-1]] = _value(op)
        elif isinstance(parent, list):
            parent[_index(tokens[-1], len(parent), allow_end=False)] = _value(op)
        else:
            raise _JSONPatchFailed("replace operation does not apply: doc is missing path")
        return doc
    if kind in ("move", "copy"):
        source = _pointer(op.get("from"))
        if kind == "move":
            if tokens[:len(source)] == source and len(tokens) > len(source):
                raise _JSONPatchFailed("move operation does not apply: from is a parent of path")
            value = _remove(doc, source, "move") if source else doc
        else:
            value = _copy(_get(doc, source, "copy"))
        return _add(doc, tokens, value)
    if kind == "test":
        if "value" not in op:
            raise _JSONPatchFailed("missing value for test operation")
        try:
            current = _get(doc, tokens, "test")
        except _JSONPatchFailed:
            current = None
        if not _json_equal(current, op["value"]):
            raise _JSONPatchFailed(f"testing value {op.get('path')} failed: test failed")
        return doc
    raise _JSONPatchFailed(f"Unexpected kind: {kind}")


# -- strategic merge patch -----------------------------------------------------------


def apply_strategic_merge_patch(original: dict, patch: dict, node: Node | None) -> dict:
    """apimachinery's StrategicMergeMapPatch (parallel lists merged, unmatched nulls dropped).

    Both arguments are modified; pass copies.
    """
    try:
        return _merge_map(original, patch, node)
    except _BadFormat as err:
        raise _bad_request(str(err)) from None
    except _NoListOfLists:
        raise PatchError(422, "Invalid", _INVALID_422, details={},
                         detail="lists of lists are not supported") from None
    except _MergeError as err:
        raise PatchError(500, "", str(err)) from None


class _NoListOfLists(Exception):
    pass


_ERR_RETAIN_KEYS = "invalid patch format of retainKeys"
_ERR_SET_ORDER = "invalid patch format of setElementOrder list"
_ERR_PRIMITIVE_LIST = "invalid patch format of primitive list"


def _field(node: Node | None, key: str) -> tuple[Node | None, str | None, str]:
    """Sub-schema, merge key and strategy (retainKeys split off) of `key` under `node`."""
    if node is None:
        return None, None, ""
    if node.kind == OBJECT:
        f = node.fields.get(key)
        if f is None:
            return None, None, ""
        return f.node, f.merge_key, f.patch_strategy
    if node.kind == MAP:
        return node.values, None, ""
    return None, None, ""


def _elem(node: Node | None) -> Node | None:
    return node.items if node is not None and node.kind == ARRAY else None


def _bad_arg(expected: str, actual: Any) -> _MergeError:
    return _MergeError(f"expected a {expected}, but received a {_go_kind(actual)}")


def _no_merge_key(m: dict, key: str) -> _MergeError:
    return _MergeError(f"map: {_go_fmt(m)} does not contain declared merge key: {key}")


def _strip_new_value(value: Any) -> Any:
    """A value added where the original had none: nulls and directives do not survive."""
    if isinstance(value, dict):
        if value.get(_DIRECTIVE) == "delete":
            return {}
        return {k: _strip_new_value(v) for k, v in value.items()
                if v is not None and not k.startswith("$")}
    if isinstance(value, list):
        return [_strip_new_value(v) for v in value
                if not (isinstance(v, dict) and v.get(_DIRECTIVE) == "delete")]
    return value


def _merge_map(original: dict | None, patch: dict, node: Node | None) -> dict:
    if _DIRECTIVE in patch:
        directive = patch[_DIRECTIVE]
        if directive == "replace":
            del patch[_DIRECTIVE]
            return _strip_new_value(patch)
        if directive == "delete":
            return {}
        raise _MergeError(f"unknown patch type: {_go_fmt(directive)} in map: {_go_fmt(patch)}")
    if original is None:
        original = {}
    _apply_retain_keys(original, patch)
    _merge_ordered_lists(original, patch, node)
    deletions = []
    for key, value in list(patch.items()):
        if key.startswith(_DELETE_PRIMITIVES):
            deletions.append((key, value))
            continue
        _merge_key(original, key, value, node, is_delete_list=False)
    for key, value in deletions:
        parts = key.split("/", 1)
        if len(parts) != 2 or parts[0] != _DELETE_PRIMITIVES:
            raise _BadFormat(_ERR_PRIMITIVE_LIST)
        _merge_key(original, parts[1], value, node, is_delete_list=True)
    return original


def _merge_key(original: dict, key: str, value: Any, node: Node | None,
               is_delete_list: bool) -> None:
    if value is None:
        original.pop(key, None)
        return
    if key not in original:
        if not is_delete_list:
            original[key] = _strip_new_value(value)
        return
    current = original[key]
    if _go_kind(current) != _go_kind(value):
        if not is_delete_list:
            original[key] = _strip_new_value(value)
        return
    sub, merge_key, strategy = _field(node, key)
    if isinstance(current, dict):
        if strategy == "replace":
            original[key] = _strip_new_value(value)
        else:
            original[key] = _merge_map(current, value, sub)
    elif isinstance(current, list):
        original[key] = _merge_slice_handler(current, value, sub, strategy, merge_key,
                                             is_delete_list)
    else:
        original[key] = value


def _apply_retain_keys(original: dict, patch: dict) -> None:
    if _RETAIN_KEYS not in patch:
        return
    keep = patch.pop(_RETAIN_KEYS)
    if not isinstance(keep, list):
        raise _BadFormat(_ERR_RETAIN_KEYS)
    allowed = {_scalar_key(k) for k in keep}
    for k, v in patch.items():
        if v is None or k.startswith((_DELETE_PRIMITIVES, _SET_ORDER)):
            continue
        if _scalar_key(k) not in allowed:
            raise _BadFormat(_ERR_RETAIN_KEYS)
    for k in list(original):
        if _scalar_key(k) not in allowed:
            del original[k]


def _merge_ordered_lists(original: dict, patch: dict, node: Node | None) -> None:
    """Process `$setElementOrder/<f>` with its list: merge, then order as the directive says."""
    for key in [k for k in patch if k.startswith(_SET_ORDER)]:
        order = patch.pop(key)
        if not isinstance(order, list):
            raise _bad_arg("slice", order)
        parts = key.split("/", 1)
        if len(parts) != 2 or parts[0] != _SET_ORDER:
            raise _BadFormat(_ERR_SET_ORDER)
        field = parts[1]
        found_original, found_patch = field in original, field in patch
        original_list = original.get(field)
        patch_list = patch.get(field)
        if found_original and not isinstance(original_list, list):
            raise _bad_arg("slice", original_list)
        if found_patch and not isinstance(patch_list, list):
            raise _bad_arg("slice", patch_list)
        sub, merge_key, strategy = _field(node, field)
        _validate_order(patch_list or [], order, merge_key or "")
        if found_original and not found_patch:
            merged = original_list
        elif found_patch and not found_original:
            merged = _strip_new_value(patch_list)
        elif found_original and found_patch:
            merged = _merge_slice_handler(original_list, patch_list, sub, strategy, merge_key,
                                          False)
        else:
            continue
        assert isinstance(merged, list)
        elements = (original_list or []) + (patch_list or [])
        kind = _element_kind(elements) if elements else ""
        if kind and (merge_key or kind != "map"):
            if merge_key:
                in_order, server_only = _partition_maps(merged, order, merge_key)
            else:
                in_order, server_only = _partition_scalars(merged, order)
            merged = _normalize_order(in_order, server_only, order, original_list or [],
                                      merge_key or "", kind)
        original[field] = merged
        patch.pop(field, None)


def _validate_order(patch_list: list, order: list, merge_key: str) -> None:
    if not order or not patch_list:
        return
    if merge_key:
        for item in patch_list:
            if not isinstance(item, dict):
                raise _bad_arg("map", item)
        items = [i for i in patch_list if i.get(_DIRECTIVE) != "delete"]
    else:
        items = patch_list
    pi = oi = 0
    while pi < len(items) and oi < len(order):
        item = items[pi]
        if isinstance(item, dict) and _DIRECTIVE in item:
            pi += 1
            continue
        if _merge_values_equal(item, order[oi], merge_key):
            pi += 1
        oi += 1
    if pi < len(items):
        raise _MergeError(f"The order in patch list:\n{_go_fmt(patch_list)}\n doesn't match "
                          f"{_SET_ORDER} list:\n{_go_fmt(order)}\n")


def _merge_values_equal(left: Any, right: Any, merge_key: str) -> bool:
    if not merge_key:
        return _go_eq(left, right)
    if not isinstance(left, dict):
        raise _bad_arg("map", left)
    if not isinstance(right, dict):
        raise _bad_arg("map", right)
    if merge_key not in left:
        raise _no_merge_key(left, merge_key)
    if merge_key not in right:
        raise _no_merge_key(right, merge_key)
    return _go_eq(left[merge_key], right[merge_key])


def _element_kind(elements: list) -> str:
    kind = ""
    for v in elements:
        k = _go_kind(v)
        if not kind:
            if k == "slice":
                raise _NoListOfLists()
            kind = k
        elif k != kind:
            raise _MergeError(f"list element types are not identical: {_go_fmt(elements)}")
    return kind


def _merge_slice_handler(original: list, patch: list, node: Node | None, strategy: str,
                         merge_key: str | None, is_delete_list: bool) -> list:
    if strategy == "merge":
        return _merge_slice(original, patch, _elem(node), merge_key or "", is_delete_list)
    return _strip_new_value(patch)


def _merge_slice(original: list, patch: list, elem: Node | None, merge_key: str,
                 is_delete_list: bool) -> list:
    if not original and not patch:
        return original
    kind = _element_kind(original + patch)
    if kind != "map":
        if is_delete_list:
            drop = {_scalar_key(v) for v in patch}
            return [v for v in original if _scalar_key(v) not in drop]
        merged: list = []
        seen: set = set()
        for v in original + patch:
            key = _scalar_key(v)
            if key not in seen:
                seen.add(key)
                merged.append(v)
        in_patch, server_only = _partition_scalars(merged, patch)
    else:
        if not merge_key:
            raise _MergeError("cannot merge lists without merge key for type map")
        original, patch = _special_elements(original, patch, merge_key)
        merged = _merge_without_special(original, patch, merge_key, elem)
        in_patch, server_only = _partition_maps(merged, patch, merge_key)
    return _normalize_order(in_patch, server_only, patch, original, merge_key, kind)


def _special_elements(original: list, patch: list, merge_key: str) -> tuple[list, list]:
    """Apply `$patch` elements of a list of maps; return the original and the plain items."""
    plain: list = []
    replace = False
    for item in patch:
        if _DIRECTIVE not in item:
            plain.append(item)
            continue
        directive = item[_DIRECTIVE]
        if directive == "delete":
            if merge_key not in item:
                raise _no_merge_key(item, merge_key)
            target = item[merge_key]
            original = [o for o in original if not _matches(o, merge_key, target)]
        elif directive == "replace":
            replace = True
        elif directive == "merge":
            raise _MergeError("merging lists cannot yet be specified in the patch")
        else:
            raise _MergeError(f"unknown patch type: {_go_fmt(directive)} in map: "
                              f"{_go_fmt(item)}")
    if replace:
        return [_strip_new_value(p) for p in plain], []
    return original, plain


def _matches(item: Any, merge_key: str, value: Any) -> bool:
    if not isinstance(item, dict):
        raise _MergeError("value for key is not a map.")
    return merge_key in item and _go_eq(item[merge_key], value)


def _find(items: list, merge_key: str, value: Any) -> int:
    for i, item in enumerate(items):
        if _matches(item, merge_key, value):
            return i
    return -1


def _merge_without_special(original: list, patch: list, merge_key: str,
                           elem: Node | None) -> list:
    # A new list: the caller keeps ordering by the live list, as Go's append
    # onto a copied slice header leaves the caller's view unchanged.
    original = list(original)
    for item in patch:
        if merge_key not in item:
            raise _no_merge_key(item, merge_key)
        at = _find(original, merge_key, item[merge_key])
        if at >= 0:
            original[at] = _merge_map(original[at], item, elem)
        else:
            original.append(_strip_new_value(item))
    return original


def _partition_scalars(items: list, by: list) -> tuple[list, list]:
    wanted = {_scalar_key(v) for v in by}
    in_by = [v for v in items if _scalar_key(v) in wanted]
    rest = [v for v in items if _scalar_key(v) not in wanted]
    return in_by, rest


def _partition_maps(items: list, by: list, merge_key: str) -> tuple[list, list]:
    in_by, rest = [], []
    for item in items:
        if not isinstance(item, dict):
            raise _bad_arg("map", item)
        if merge_key not in item:
            raise _no_merge_key(item, merge_key)
        (in_by if _find(by, merge_key, item[merge_key]) >= 0 else rest).append(item)
    return in_by, rest


def _position(items: list, value: Any, merge_key: str, kind: str) -> int:
    probe = value.get(merge_key) if kind == "map" and isinstance(value, dict) else value
    for i, item in enumerate(items):
        other = item.get(merge_key) if kind == "map" and isinstance(item, dict) else item
        if _go_eq(probe, other):
            return i
    return -1


def _sort_by(items: list, order: list, merge_key: str, kind: str) -> list:
    tail: list = []
    if kind == "map":
        for item in items + order:
            if not isinstance(item, dict):
                raise _bad_arg("map", item)
            if merge_key not in item:
                raise _no_merge_key(item, merge_key)
        tail = [i for i in items if i.get(_DIRECTIVE) == "delete"]
        items = [i for i in items if i.get(_DIRECTIVE) != "delete"]

    def rank(item: Any) -> int:
        at = _position(order, item, merge_key, kind)
        return at if at >= 0 else len(order)

    return sorted(items, key=rank) + tail


def _normalize_order(in_patch: list, server_only: list, patch_order: list, server_order: list,
                     merge_key: str, kind: str) -> list:
    """Patch items in patch order, server-only items in live order, interleaved by live order."""
    right = _sort_by(in_patch, patch_order, merge_key, kind)
    left = _sort_by(server_only, server_order, merge_key, kind)
    out: list = []
    i = j = 0
    while i < len(left) or j < len(right):
        if i >= len(left):
            out.append(right[j])
            j += 1
        elif j >= len(right):
            out.append(left[i])
            i += 1
        else:
            li = _position(server_order, left[i], merge_key, kind)
            ri = _position(server_order, right[j], merge_key, kind)
            if li >= 0 and ri >= 0 and li < ri:
                out.append(left[i])
                i += 1
            else:
                out.append(right[j])
                j += 1
    return out
