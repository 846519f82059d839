"""Chunked lists (`limit` and `continue`), with the real server's tokens and errors.

kubectl lists in chunks of 500 (`--chunk-size`), informers and the Python client page
with `limit`; a server that ignores `limit` hands them everything at once and never
exercises their continue loop. What is modelled, as kube-apiserver over etcd does it:

* a page holds at most `limit` items that match the selectors, in key order
  (`<namespace>/<name>` for a list across namespaces, `<name>` otherwise);
* a page with more to come carries `metadata.continue`: base64url (no padding) of
  `{"v":"meta.k8s.io/v1","rv":<list resourceVersion>,"start":"<last key>\\u0000"}`,
  and, when the list has no label or field selector, `metadata.remainingItemCount`;
  later pages report the first page's resourceVersion;
* a malformed token is 400 (`invalid continue token: ...`), `resourceVersion` beside
  `continue` is 400, a token newer than the store is 504 `ResourceVersionTooLarge`, and
  a token older than the store's history window (where etcd would have compacted) is
  410 Expired with a fresh token (`rv: -1`) in the Status to continue inconsistently.

Not modelled: a consistent snapshot across pages. The store keeps no old versions of
objects, so a later page shows objects as they are now (a real server shows them as
of the first page's resourceVersion); objects created or deleted meanwhile behind the
start key show up or vanish exactly as they would with a `rv: -1` token.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from .errors import ApiError

TOKEN_VERSION = "meta.k8s.io/v1"
EXPIRED_MESSAGE = (
    "The provided continue parameter is too old to display a consistent list result. You "
    "can start a new list without the continue parameter, or use the continue token in this "
    "response to retrieve the remainder of the results. Continuing with the provided token "
    "results in an inconsistent list - objects that were created, modified, or deleted "
    "between the time the first chunk was returned and now may show up in the list.")


def encode(rv: int, start: str) -> str:
    raw = json.dumps({"v": TOKEN_VERSION, "rv": rv, "start": start}, separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _invalid(why: str) -> ApiError:
    return ApiError.bad_request(f"invalid continue token: {why}")


def _clean(key: str) -> bool:
    """Whether a start key is already in the form path.Clean gives (no traversal)."""
    if key == "/":
        return True
    parts = key[1:].split("/")
    return not key.endswith("/") and all(p not in ("", ".", "..") for p in parts)


def decode(token: str) -> tuple[int, str]:
    """A continue token's resourceVersion and start key (always with a leading '/')."""
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError) as exc:
        raise _invalid(f"continue key is not valid: {exc}") from None
    try:
        data: Any = json.loads(raw)
    except ValueError as exc:
        raise _invalid(f"continue key is not valid: {exc}") from None
    if not isinstance(data, dict):
        raise _invalid("continue key is not valid: not an object")
    if data.get("v") != TOKEN_VERSION:
        raise _invalid("continue key is not valid: server does not recognize this encoded "
                       f"version {data.get('v')}")
    rv, start = data.get("rv"), data.get("start")
    if not isinstance(rv, int) or rv == 0:
        raise _invalid("continue key is not valid: incorrect encoded start resourceVersion "
                       f"(version {TOKEN_VERSION})")
    if not isinstance(start, str) or not start:
        raise _invalid("continue key is not valid: encoded start key empty")
    key = start if start.startswith("/") else "/" + start
    if not _clean(key):
        raise _invalid(f"continue key is not valid: {start}")
    return rv, key


def limit_of(query: dict[str, str]) -> int:
    """The `limit` parameter; 0 (no limit) when absent or not positive."""
    text = query.get("limit")
    if not text:
        return 0
    try:
        return max(int(text), 0)
    except ValueError:
        raise ApiError.bad_request(f'strconv.ParseInt: parsing "{text}": invalid syntax') from None


def item_key(obj: dict, across_namespaces: bool) -> str:
    meta = obj["metadata"]
    if across_namespaces:
        return f"/{meta.get('namespace', '')}/{meta['name']}"
    return f"/{meta['name']}"


def too_large(rv: int, current: int) -> ApiError:
    return ApiError(504, "Timeout",
                    f"Timeout: Too large resource version: {rv}, current: {current}",
                    {"causes": [{"reason": "ResourceVersionTooLarge",
                                 "message": "Too large resource version"}],
                     "retryAfterSeconds": 1})


def expired(start: str) -> ApiError:
    err = ApiError(410, "Expired", EXPIRED_MESSAGE)
    err.list_meta = {"continue": encode(-1, start.lstrip("/"))}
    return err


def paginate(items: list[dict], *, limit: int, token: str | None, resource_version: str,
             across_namespaces: bool, selected: bool, current_rv: int,
             compacted: bool | None = None) -> tuple[list[dict], dict[str, Any]]:
    """One page of `items` (all matches, any order) and its list metadata.

    `compacted` says whether the token's resourceVersion is older than the history the
    store keeps (the caller knows the store; None when there is no token)."""
    items = sorted(items, key=lambda o: item_key(o, across_namespaces))
    list_rv = int(resource_version)
    if token:
        rv, start = decode(token)
        if rv > current_rv:
            raise too_large(rv, current_rv)
        if compacted:
            raise expired(start)
        items = [o for o in items if item_key(o, across_namespaces) >= start]
        list_rv = rv if rv > 0 else current_rv
    meta: dict[str, Any] = {"resourceVersion": str(list_rv)}
    if limit and len(items) > limit:
        page, rest = items[:limit], items[limit:]
        meta["continue"] = encode(list_rv, item_key(page[-1], across_namespaces) + "\x00")
        if not selected:
            meta["remainingItemCount"] = len(rest)
        items = page
    return items, meta
