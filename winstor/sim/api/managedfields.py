"""Server-side apply and `metadata.managedFields`, a documented subset of the real one.

`kubectl apply --server-side` (PATCH with `application/apply-patch+yaml`) and
controllers built on apply configurations expect the server to create the object
when it is missing, to merge what each field manager applies, and to refuse (409
Conflict) a change to a field another manager owns. Without it a client that works on
EKS fails here. What is modelled (facts of kube-apiserver's fieldmanager and
structured-merge-diff, checked against a 1.35 apiserver):

* apply needs `fieldManager` (422 on `PatchOptions.meta.k8s.io`); `force=true` takes
  conflicting fields over instead of failing;
* a field set is the set of leaf paths an applied configuration (or a write) sets:
  `f:<field>` through maps and structs, `k:{"<key>":<value>}` for items of lists the
  schema keys (containers by name, ...), every other list atomic (one leaf);
  `apiVersion`, `kind`, `status` and server-owned metadata (name, namespace, uid, ...)
  are never owned; `fieldsV1` is that set as nested `{}` maps, with `.` for a keyed
  list item itself;
* a conflict is a path the applier sets that another manager (Apply or Update) owns
  with a different value; equal values are co-owned. The 409 message and causes are
  the real ones (`Apply failed with 1 conflict: conflict with "m": .data.a`, grouped
  per manager when there are several);
* applying merges the configuration into the live object (maps by key, keyed lists
  by key, the rest replaced) after removing what this manager applied before, no
  longer applies, and nobody else owns;
* other writes through the API (create, update, patch) record an `Update` entry for
  their manager (`fieldManager`, else the User-Agent's product, as the real default)
  with the paths they changed, which they take from other managers without conflict.

Not modelled: ownership of `status` through its subresource, sets (`v:` items) and
associative lists with several keys beyond what the strategic-merge metadata gives,
apply of lists whose items a manager only partly owns in order, `managedFields` sent
by a client (they are recomputed), conversion between API versions, and writes the
controllers make inside the sim (they do not go through the registry, so they record
no manager).
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from .errors import ApiError
from .schema import ARRAY, MAP, OBJECT, Node

Path = tuple[str, ...]
SELF = "."  # a keyed list item itself (it exists), beside its fields

_SERVER_META = {"name", "namespace", "generateName", "uid", "resourceVersion", "generation",
                "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds",
                "managedFields", "selfLink"}


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- field sets -----------------------------------------------------------------------------
def _merge_key(node: Node | None, key: str) -> tuple[Node | None, str | None]:
    """The child node of `key` and, for a keyed list, its merge key."""
    if node is None:
        return None, None
    if node.kind == OBJECT:
        f = node.fields.get(key)
        return (f.node, f.merge_key) if f else (None, None)
    if node.kind == MAP:
        return node.values, None
    return None, None


def _item_element(item: Any, merge_key: str) -> str | None:
    if isinstance(item, dict) and merge_key in item:
        return "k:" + json.dumps({merge_key: item[merge_key]}, separators=(",", ":"))
    return None


def _walk(value: Any, node: Node | None, merge_key: str | None, at: Path) -> Iterable[Path]:
    if isinstance(value, dict) and (node is None or node.kind in (OBJECT, MAP)):
        if not value:
            yield at
            return
        for k, v in value.items():
            child, mk = _merge_key(node, k)
            yield from _walk(v, child, mk, (*at, f"f:{k}"))
        return
    if isinstance(value, list) and merge_key and node is not None and node.kind == ARRAY:
        elements = [_item_element(i, merge_key) for i in value]
        if value and all(elements):
            for item, element in zip(value, elements, strict=True):
                yield (*at, str(element), SELF)
                yield from _walk(item, node.items, None, (*at, str(element)))
            return
    yield at


def field_set(obj: dict, root: Node | None) -> set[Path]:
    """The leaf paths `obj` sets, without the fields nobody can own."""
    out: set[Path] = set()
    for key, value in obj.items():
        if key in ("apiVersion", "kind", "status"):
            continue
        child, mk = _merge_key(root, key)
        if key == "metadata" and isinstance(value, dict):
            value = {k: v for k, v in value.items() if k not in _SERVER_META}
            if not value:
                continue
        out.update(_walk(value, child, mk, (f"f:{key}",)))
    return out


def to_fields_v1(paths: Iterable[Path]) -> dict:
    tree: dict = {}
    for path in sorted(paths):
        cur = tree
        for element in path:
            cur = cur.setdefault(element, {})
    return tree


def from_fields_v1(tree: dict, at: Path = ()) -> set[Path]:
    out: set[Path] = set()
    for element, sub in tree.items():
        if isinstance(sub, dict) and sub:
            out |= from_fields_v1(sub, (*at, element))
        else:
            out.add((*at, element))
    return out


_MISSING = object()


def value_at(obj: Any, path: Path) -> Any:
    cur = obj
    for element in path:
        if element == SELF:
            return True if cur is not _MISSING else _MISSING
        if element.startswith("f:") and isinstance(cur, dict):
            cur = cur.get(element[2:], _MISSING)
        elif element.startswith("k:") and isinstance(cur, list):
            want = json.loads(element[2:])
            cur = next((i for i in cur if isinstance(i, dict)
                        and all(i.get(k) == v for k, v in want.items())), _MISSING)
        else:
            return _MISSING
        if cur is _MISSING:
            return _MISSING
    return cur


def render_path(path: Path) -> str:
    """A path as the conflict message prints it: `.data.a`, `.spec.containers[name="c"]`."""
    out = ""
    for element in path:
        if element == SELF:
            continue
        if element.startswith("f:"):
            out += "." + element[2:]
        elif element.startswith("k:"):
            keys = json.loads(element[2:])
            out += "[" + ",".join(f"{k}={json.dumps(v)}" for k, v in keys.items()) + "]"
    return out


def _remove(obj: Any, path: Path) -> None:
    """Delete the field or keyed item at `path` (its last element), if there."""
    if path and path[-1] == SELF:
        path = path[:-1]
    parent = value_at(obj, path[:-1]) if len(path) > 1 else obj
    last = path[-1]
    if last.startswith("f:") and isinstance(parent, dict):
        parent.pop(last[2:], None)
    elif last.startswith("k:") and isinstance(parent, list):
        want = json.loads(last[2:])
        parent[:] = [i for i in parent if not (isinstance(i, dict) and all(
            i.get(k) == v for k, v in want.items()))]


def merge(live: Any, applied: Any, node: Node | None, merge_key: str | None = None) -> Any:
    """The applied configuration over the live value: maps and keyed lists merged."""
    if isinstance(live, dict) and isinstance(applied, dict) and (
            node is None or node.kind in (OBJECT, MAP)):
        out = dict(live)
        for k, v in applied.items():
            child, mk = _merge_key(node, k)
            out[k] = merge(live.get(k), v, child, mk) if k in live else copy.deepcopy(v)
        return out
    if isinstance(live, list) and isinstance(applied, list) and merge_key and \
            node is not None and node.kind == ARRAY:
        out_list = list(live)
        for item in applied:
            element = _item_element(item, merge_key)
            at = next((n for n, i in enumerate(out_list)
                       if element and _item_element(i, merge_key) == element), None)
            if at is None:
                out_list.append(copy.deepcopy(item))
            else:
                out_list[at] = merge(out_list[at], item, node.items)
        return out_list
    return copy.deepcopy(applied)


# -- managers -------------------------------------------------------------------------------
def _entries(obj: dict) -> list[dict]:
    return [e for e in (obj.get("metadata") or {}).get("managedFields") or []
            if isinstance(e, dict)]


def _entry(manager: str, operation: str, api_version: str, paths: set[Path]) -> dict:
    return {"manager": manager, "operation": operation, "apiVersion": api_version,
            "time": _now(), "fieldsType": "FieldsV1", "fieldsV1": to_fields_v1(paths)}


def default_manager(user_agent: str) -> str:
    """The manager of a write that names none: the User-Agent up to its first '/'."""
    return (user_agent.split("/", 1)[0] or "unknown")[:128]


def require_manager(query: dict[str, str]) -> str:
    manager = query.get("fieldManager") or ""
    if not manager:
        raise ApiError(422, "Invalid", 'PatchOptions.meta.k8s.io "" is invalid: fieldManager: '
                       "Required value: is required for apply patch",
                       {"group": "meta.k8s.io", "kind": "PatchOptions", "causes": [{
                           "reason": "FieldValueRequired", "field": "fieldManager",
                           "message": "Required value: is required for apply patch"}]})
    return manager


def _who(entry: dict) -> str:
    """A manager as a conflict names it: an Update manager with its API version."""
    name = f'"{entry.get("manager")}"'
    if entry.get("operation") == "Update":
        return f"{name} using {entry.get('apiVersion')}"
    return name


def conflict_error(conflicts: list[tuple[str, Path]]) -> ApiError:
    """The 409 of an apply: `who` is a manager as `_who` names it."""
    conflicts = sorted(set(conflicts))
    causes = [{"reason": "FieldManagerConflict", "message": f"conflict with {who}",
               "field": render_path(p)} for who, p in conflicts]
    n = len(conflicts)
    if n == 1:
        who, p = conflicts[0]
        text = f"conflict with {who}: {render_path(p)}"
    else:
        lines = []
        for manager in sorted({who for who, _ in conflicts}):
            lines.append(f"conflicts with {manager}:")
            lines += [f"- {render_path(p)}" for who, p in conflicts if who == manager]
        text = "\n".join(lines)
    noun = "conflict" if n == 1 else "conflicts"
    return ApiError(409, "Conflict", f"Apply failed with {n} {noun}: {text}", {"causes": causes})


def _present(value: Any) -> Any:
    """A stored value as the real server holds it: an empty map is no map (Go's
    omitempty), while an applied empty map is a value; so applying `labels: {}` where
    another manager owns the (empty) labels changes them."""
    return _MISSING if value == {} else value


def _touched(owned: set[Path], mine: set[Path]) -> set[Path]:
    """Owned paths the applier sets: the same leaf, or a leaf (an atomic value, an empty
    map) the applier sets something inside of."""
    prefixes = {q[:n] for q in mine for n in range(1, len(q))}
    return {p for p in owned if p[-1] != SELF and (p in mine or p in prefixes)}


def apply(live: dict | None, applied: dict, root: Node | None, manager: str,
          force: bool) -> dict:
    """The object after `manager` applies `applied` to `live` (None: it is created),
    with its managedFields; raises the 409 of a conflict unless `force`."""
    api_version = applied.get("apiVersion", "")
    mine = field_set(applied, root)
    if live is None:
        obj = copy.deepcopy(applied)
        obj.setdefault("metadata", {})["managedFields"] = [
            _entry(manager, "Apply", api_version, mine)]
        return obj
    entries = _entries(live)
    others = [(e, from_fields_v1(e.get("fieldsV1") or {})) for e in entries
              if not (e.get("manager") == manager and e.get("operation") == "Apply")]
    before = next((from_fields_v1(e.get("fieldsV1") or {}) for e in entries
                   if e.get("manager") == manager and e.get("operation") == "Apply"), set())
    body = {k: v for k, v in applied.items() if k not in ("apiVersion", "kind", "status")}
    obj = merge(copy.deepcopy(live), body, root)
    # A conflict: a path another manager owns that the merge changes (equal values are
    # shared). Only then does what this manager stopped applying go.
    conflicts = [(_who(e), p) for e, owned in others for p in _touched(owned, mine)
                 if _present(value_at(live, p)) != value_at(obj, p)]
    if conflicts and not force:
        raise conflict_error(conflicts)
    taken = {p for _, p in conflicts}
    still_owned = set().union(*(owned - taken for _, owned in others)) if others else set()
    for path in sorted(before - mine - still_owned, key=len, reverse=True):
        _remove(obj, path)
    kept = []
    for e, owned in others:
        left = owned - taken if taken else owned
        if left:
            kept.append({**e, "fieldsV1": to_fields_v1(left)} if left != owned else e)
    kept.append(_entry(manager, "Apply", api_version, mine))
    obj.setdefault("metadata", {})["managedFields"] = kept
    return obj


def record_update(old: dict | None, new: dict, root: Node | None, manager: str) -> None:
    """Give `manager` an Update entry for what this write changed (in `new`, in place);
    the changed paths leave other managers, removed paths leave everyone. A write that
    changes no owned path keeps the entries as they were (a no-op stays a no-op)."""
    after = field_set(new, root)
    meta = new.setdefault("metadata", {})
    entries = _entries(old) if old is not None else []
    if old is None:
        changed = after
    else:
        changed = {p for p in after if value_at(old, p) != value_at(new, p)}
        if not changed and field_set(old, root) <= after:
            if entries:
                meta["managedFields"] = copy.deepcopy(entries)
            else:
                meta.pop("managedFields", None)
            return
    kept = []
    own = set(changed)
    for e in entries:
        recorded = from_fields_v1(e.get("fieldsV1") or {})
        if e.get("manager") == manager and e.get("operation") == "Update":
            own |= recorded & after
            continue
        left = (recorded & after) - changed
        if left:
            kept.append(e if left == recorded else {**e, "fieldsV1": to_fields_v1(left)})
    if own:
        kept.append(_entry(manager, "Update", new.get("apiVersion", ""), own))
    if kept:
        meta["managedFields"] = kept
    else:
        meta.pop("managedFields", None)
