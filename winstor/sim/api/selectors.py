"""Label and field selectors with the apiserver's grammar.

Both the list and watch paths filter through here, so a selector that kubectl
or the Python client sends means the same thing as on a real cluster
(set-based label requirements included).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from .errors import ApiError

Predicate = Callable[[dict], bool]

_SET_RE = re.compile(r"^\s*(!?)([\w./-]+)\s*(?:(in|notin)\s*\(([^)]*)\))?\s*$")


def _split_top(expr: str) -> list[str]:
    """Split on commas that are not inside parentheses (``env in (a,b)``)."""
    parts, depth, cur = [], 0, []
    for ch in expr:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts if p.strip()]


def label_selector(expr: str | None) -> Predicate:
    if not expr:
        return lambda obj: True
    reqs: list[Predicate] = []
    for part in _split_top(expr):
        reqs.append(_label_requirement(part))

    def match(obj: dict) -> bool:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        return all(r(labels) for r in reqs)

    return match


def _label_requirement(part: str) -> Predicate:
    for op in ("!=", "==", "="):
        if op in part:
            key, _, value = part.partition(op)
            key, value = key.strip(), value.strip()
            if op == "!=":
                return lambda labels: labels.get(key) != value
            return lambda labels: labels.get(key) == value
    m = _SET_RE.match(part)
    if not m:
        raise ApiError.bad_request(f"unable to parse requirement: {part!r}")
    neg, key, op, values = m.groups()
    if op:
        vals = {v.strip() for v in values.split(",") if v.strip()}
        if op == "in":
            return lambda labels: labels.get(key) in vals
        return lambda labels: labels.get(key) not in vals
    if neg:
        return lambda labels: key not in labels
    return lambda labels: key in labels


def field_value(obj: dict, path: str) -> Any:
    cur: Any = obj
    for seg in path.split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(seg)
    return cur


def field_selector(expr: str | None) -> Predicate:
    if not expr:
        return lambda obj: True
    reqs: list[Predicate] = []
    for part in _split_top(expr):
        neg = "!=" in part
        key, _, value = part.partition("!=" if neg else ("==" if "==" in part else "="))
        key, value = key.strip(), value.strip()
        if not key:
            raise ApiError.bad_request(f"invalid field selector: {part!r}")

        def req(obj: dict, key: str = key, value: str = value, neg: bool = neg) -> bool:
            actual = field_value(obj, key)
            actual_s = "" if actual is None else str(actual)
            return (actual_s != value) if neg else (actual_s == value)

        reqs.append(req)
    return lambda obj: all(r(obj) for r in reqs)
