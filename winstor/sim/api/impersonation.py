"""User impersonation (`Impersonate-User`, `Impersonate-Group`, `Impersonate-Uid` headers).

`kubectl --as` and `--as-group`, and clients that check what another identity may do, send
these headers; a real API server authorizes the caller to `impersonate` each requested
user, service account, group and uid, and then serves the request as that identity. An
emulator that ignored them would answer every such request as its caller (the admin), and
a least-privilege check run through impersonation would pass where a real cluster refuses.

Modelled, as the real server's impersonation filter behaves (facts from
k8s.io/apiserver's endpoints/filters): a service account name
(`system:serviceaccount:<ns>:<name>`) is authorized on `serviceaccounts` in its namespace
and gets its fixed groups unless groups are given; any other user on `users`; each group
on `groups` and a uid on `uids` (API group `authentication.k8s.io`); a non-anonymous
impersonated user always has `system:authenticated`; groups or a uid without a user are a
400 saying so (the real wording checked for a group; the uid's form is assumed alike).
Not modelled: `Impersonate-Extra-*` (refused as a 400 rather than ignored), and
constrained impersonation (KEP 5284).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .errors import ApiError
from .rbac import (
    AUTHENTICATED,
    SA_GROUP,
    SA_USER_PREFIX,
    Attributes,
    UserInfo,
)

__all__ = ["impersonate", "wants_impersonation"]

USER, GROUP, UID = "Impersonate-User", "Impersonate-Group", "Impersonate-Uid"
ANONYMOUS_USER = "system:anonymous"


def wants_impersonation(headers: Any) -> bool:
    """Whether a request (its multi-valued headers) asks to act as someone else."""
    return any(str(k).lower().startswith("impersonate-") for k in headers)


def impersonate(caller: UserInfo, headers: Any,
                check: Callable[[Attributes], None]) -> UserInfo:
    """The identity the request runs as: `caller`, or the one it may impersonate.
    `headers` is multi-valued (aiohttp's `getall`); `check` raises the 403 for an
    attribute the caller is not allowed."""
    users = list(headers.getall(USER, []))
    groups = list(headers.getall(GROUP, []))
    uids = list(headers.getall(UID, []))
    extras = [k for k in headers if str(k).lower().startswith("impersonate-extra-")]
    if not users and not groups and not uids and not extras:
        return caller
    if extras:
        raise ApiError.bad_request("impersonating user extras is not supported here")
    if not users:
        # The real server prints each request as an object reference (kind, namespace,
        # name and four empty fields).
        wanted = [f"{{Group  {g}    }}" for g in groups] + [f"{{UID  {u}    }}" for u in uids]
        raise ApiError.bad_request(f"requested [{' '.join(wanted)}] without impersonating "
                                   "a user")
    name = users[-1]
    if name.startswith(SA_USER_PREFIX) and name.count(":") == 3:
        namespace, sa = name[len(SA_USER_PREFIX):].split(":", 1)
        check(Attributes(caller, "impersonate", "serviceaccounts", "", "", namespace, sa))
        fixed = (SA_GROUP, f"{SA_GROUP}:{namespace}")
    else:
        check(Attributes(caller, "impersonate", "users", "", "", "", name))
        fixed = ()
    for group in groups:
        check(Attributes(caller, "impersonate", "groups", "", "", "", group))
    for uid in uids:
        check(Attributes(caller, "impersonate", "uids", "", "authentication.k8s.io", "", uid))
    result = list(groups) if groups else list(fixed)
    if name != ANONYMOUS_USER and AUTHENTICATED not in result:
        result.append(AUTHENTICATED)
    return UserInfo(name, tuple(result), uids[-1] if uids else "")
