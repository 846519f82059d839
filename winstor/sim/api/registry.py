"""REST verbs on the store: what the apiserver does between HTTP and etcd.

Decoding checks, schema validation (with `fieldValidation`), defaulting,
admission, dry-run, patch application and delete options. The cluster model
plugs in its admission hooks; everything here is generic.
"""

from __future__ import annotations

import copy
import random
from collections.abc import Callable
from typing import Any

from . import admission, defaults, managedfields, pagination, validation
from .errors import ApiError
from .kinds import Kind, kind_of
from .patch import PatchError, apply_patch, decoding_error
from .schema import SchemaError, SchemaRegistry
from .selectors import field_selector, label_selector
from .store import Store

Result = tuple[dict, int, list[str]]
PODS = kind_of("v1", "Pod")
APPLY_PATCH = "application/apply-patch+yaml"
# The apiserver's generateName suffix: 5 characters, no vowels (no accidental words).
GENERATED_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"


class Registry:
    def __init__(self, store: Store, schemas: SchemaRegistry,
                 admit: Callable[[str, Kind, dict, dict | None], list[str]]) -> None:
        self.store = store
        self.schemas = schemas
        self.admit = admit

    # -- helpers -------------------------------------------------------------
    def _validate(self, kind: Kind, obj: dict, query: dict[str, str]) -> list[str]:
        mode = query.get("fieldValidation", "Warn")
        if mode not in ("Ignore", "Warn", "Strict"):
            raise ApiError.bad_request(f"fieldValidation parameter unsupported: {mode}")
        try:
            warnings = self.schemas.validate(obj, strict=mode == "Strict")
        except SchemaError as err:
            raise ApiError(err.code, err.reason, str(err), err.details) from None
        return [] if mode == "Ignore" else warnings

    @staticmethod
    def _check_type(kind: Kind, body: Any) -> dict:
        if not isinstance(body, dict):
            raise ApiError.bad_request("the body of the request was in an unknown format")
        api_version, k = body.get("apiVersion"), body.get("kind")
        if api_version and api_version != kind.api_version:
            raise ApiError.bad_request(
                f"the API version in the data ({api_version}) does not match the expected "
                f"API version ({kind.api_version})")
        if k and k != kind.kind:
            raise ApiError.bad_request(
                f"the kind in the data ({k}) does not match the expected kind ({kind.kind})")
        body["apiVersion"], body["kind"] = kind.api_version, kind.kind
        return body

    # -- verbs -----------------------------------------------------------------
    def get(self, kind: Kind, namespace: str | None, name: str) -> Result:
        return self.store.get(kind, namespace, name), 200, []

    def list(self, kind: Kind, namespace: str | None, query: dict[str, str]) -> Result:
        lab, fld = label_selector(query.get("labelSelector")), field_selector(
            query.get("fieldSelector"))
        limit = pagination.limit_of(query)
        token = query.get("continue")
        if token and query.get("resourceVersion"):
            raise ApiError.bad_request("specifying resource version is not allowed when "
                                       "using continue")
        items, rv = self.store.list(kind, namespace, lambda o: lab(o) and fld(o))
        compacted = None
        if token:
            token_rv, _ = pagination.decode(token)
            compacted = token_rv > 0 and self.store.compacted(token_rv)
        items, meta = pagination.paginate(
            items, limit=limit, token=token, resource_version=rv,
            across_namespaces=kind.namespaced and not namespace,
            selected=bool(query.get("labelSelector") or query.get("fieldSelector")),
            current_rv=self.store.rv, compacted=compacted)
        return ({"kind": kind.list_kind, "apiVersion": kind.api_version,
                 "metadata": meta, "items": items}, 200, [])

    def _manage(self, kind: Kind, old: dict | None, new: dict, query: dict[str, str]) -> None:
        """Record the write's field manager in `new` (managedfields.record_update)."""
        manager = query.get("fieldManager")
        if manager:
            managedfields.record_update(old, new, self.schemas.patch_meta(
                kind.api_version, kind.kind), manager)

    def create(self, kind: Kind, namespace: str | None, body: Any,
               query: dict[str, str], *, applied: bool = False) -> Result:
        obj = self._check_type(kind, body)
        meta = obj.setdefault("metadata", {})
        if kind.namespaced:
            meta["namespace"] = namespace or meta.get("namespace") or "default"
        for server_owned in ("uid", "resourceVersion", "creationTimestamp",
                             "deletionTimestamp", "generation"):
            meta.pop(server_owned, None)
        warnings = self._validate(kind, obj, query)
        defaults.apply(kind.kind, obj)
        admission.namespace_lifecycle(self.store, kind, meta.get("namespace"),
                                      meta.get("name") or "")
        if not meta.get("name") and isinstance(meta.get("generateName"), str):
            # Named before validation, so that a bad prefix shows in the name too.
            meta["name"] = meta["generateName"] + "".join(
                random.choices(GENERATED_NAME_CHARS, k=5))
        validation.validate_create(kind, obj)
        warnings += self.admit("create", kind, obj, None)
        if not applied:
            self._manage(kind, None, obj, query)
        if query.get("dryRun") == "All":
            return obj, 201, warnings
        return self.store.create(kind, obj), 201, warnings

    def update(self, kind: Kind, namespace: str | None, name: str, sub: str | None,
               body: Any, query: dict[str, str]) -> Result:
        obj = self._check_type(kind, body)
        obj.setdefault("metadata", {})["name"] = name
        if kind.namespaced:
            obj["metadata"]["namespace"] = namespace
        old = self.store.get(kind, namespace, name)
        warnings = self._validate(kind, obj, query)
        if sub is None:
            admission.immutable_fields(kind, old, obj)
            validation.validate_update(kind, obj, old)
            warnings += self.admit("update", kind, obj, old)
            self._manage(kind, old, obj, query)
        if query.get("dryRun") == "All":
            return obj, 200, warnings
        return self.store.replace(kind, obj, subresource=sub), 200, warnings

    def patch(self, kind: Kind, namespace: str | None, name: str, sub: str | None,
              body: Any, content_type: str, query: dict[str, str]) -> Result:
        ctype = content_type.split(";")[0].strip()
        if ctype == APPLY_PATCH:
            return self.apply(kind, namespace, name, sub, body, query)
        old = self.store.get(kind, namespace, name)
        try:
            new = apply_patch(old, body, ctype, schemas=self.schemas)
            mode = query.get("fieldValidation", "Warn")
            warnings = self.schemas.validate(new, strict=mode == "Strict")
            if mode == "Ignore":
                warnings = []
        except PatchError as err:
            raise ApiError(err.code, err.reason, err.message, err.details) from None
        except SchemaError as err:
            # PATCH reports decoding failures as 422 "patch: Invalid value", unlike POST.
            perr = decoding_error(err, ctype, body, new)
            raise ApiError(perr.code, perr.reason, perr.message, perr.details) from None
        if sub is None:
            admission.immutable_fields(kind, old, new)
            validation.validate_update(kind, new, old)
            warnings += self.admit("update", kind, new, old)
            self._manage(kind, old, new, query)
        if query.get("dryRun") == "All":
            return new, 200, warnings
        return self.store.replace(kind, new, subresource=sub), 200, warnings

    def apply(self, kind: Kind, namespace: str | None, name: str, sub: str | None,
              body: Any, query: dict[str, str]) -> Result:
        """Server-side apply (see managedfields): create when missing, else merge with
        conflict detection; the rest of the write path is create's or update's."""
        manager = managedfields.require_manager(query)
        force = query.get("force") in ("1", "t", "T", "true", "TRUE", "True")
        applied = self._check_type(kind, body)
        meta = applied.setdefault("metadata", {})
        if meta.get("name") not in (None, name):
            raise ApiError.bad_request(f"the name of the object ({meta.get('name')}) does not "
                                       f"match the name on the URL ({name})")
        meta["name"] = name
        if kind.namespaced:
            meta["namespace"] = namespace
        root = self.schemas.patch_meta(kind.api_version, kind.kind)
        old = self.store.peek(kind, namespace, name)
        if old is None:
            if sub is not None:
                raise ApiError.not_found(kind.plural, name, kind.group)
            obj = managedfields.apply(None, applied, root, manager, force)
            return self.create(kind, namespace, obj, query, applied=True)
        old = copy.deepcopy(old)
        new = managedfields.apply(old, applied, root, manager, force)
        warnings = self._validate(kind, new, query)
        if sub is None:
            admission.immutable_fields(kind, old, new)
            validation.validate_update(kind, new, old)
            warnings += self.admit("update", kind, new, old)
        if query.get("dryRun") == "All":
            return new, 200, warnings
        return self.store.replace(kind, new, subresource=sub), 200, warnings

    def delete(self, kind: Kind, namespace: str | None, name: str, body: Any,
               query: dict[str, str]) -> Result:
        opts = body if isinstance(body, dict) else {}
        propagation = opts.get("propagationPolicy") or query.get("propagationPolicy")
        grace = opts.get("gracePeriodSeconds", query.get("gracePeriodSeconds"))
        pre = opts.get("preconditions") or {}
        cur = self.store.get(kind, namespace, name)
        if query.get("dryRun") == "All" or "All" in (opts.get("dryRun") or []):
            # A dry run still answers a failed precondition with its 409, as the real
            # server checks them before it decides not to persist.
            self.store.check_preconditions(kind, cur, pre.get("uid"), pre.get("resourceVersion"))
            return cur, 200, []
        if propagation == "Orphan":
            self._orphan(cur)
        elif propagation == "Foreground" and not cur["metadata"].get("deletionTimestamp"):
            fins = cur["metadata"].setdefault("finalizers", [])
            if "foregroundDeletion" not in fins:
                fins.append("foregroundDeletion")
                self.store.replace(kind, cur, check_rv=False)
        graceful = kind.kind == "Namespace" or (
            kind is PODS and bool((cur.get("spec") or {}).get("nodeName"))
            and str(grace) != "0")
        obj = self.store.delete(kind, namespace, name, uid=pre.get("uid"),
                                rv=pre.get("resourceVersion"), graceful=graceful)
        return obj, 200, []

    def _orphan(self, owner: dict) -> None:
        uid = owner["metadata"]["uid"]
        for kind in self._dependent_kinds():
            for dep in list(self.store.iter(kind, owner["metadata"].get("namespace"))):
                refs = dep["metadata"].get("ownerReferences") or []
                if any(r.get("uid") == uid for r in refs):
                    def strip(o: dict, uid: str = uid) -> None:
                        o["metadata"]["ownerReferences"] = [
                            r for r in o["metadata"].get("ownerReferences", [])
                            if r.get("uid") != uid]
                    self.store.mutate(kind, dep["metadata"].get("namespace"),
                                      dep["metadata"]["name"], strip)

    @staticmethod
    def _dependent_kinds() -> list[Kind]:
        from .kinds import KINDS
        return [k for k in KINDS if k.kind not in ("Event", "Namespace")]

    def delete_collection(self, kind: Kind, namespace: str | None, body: Any,
                          query: dict[str, str]) -> Result:
        listed, _, _ = self.list(kind, namespace, query)
        for obj in listed["items"]:
            try:
                self.delete(kind, namespace, obj["metadata"]["name"], copy.deepcopy(body), query)
            except ApiError as err:
                if err.code != 404:
                    raise
        return listed, 200, []
