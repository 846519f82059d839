"""ServiceAccount tokens: the TokenRequest API and authenticating what it issues.

A locked-down run is handed `kubectl create token SA -n NS`, which posts a
TokenRequest to `/api/v1/namespaces/NS/serviceaccounts/SA/token`. The sim
answers that call the way kube-apiserver does (defaults, validation, bound
objects) with an opaque token instead of a signed JWT - nothing in winstor or
kubectl looks inside - and a token stays valid only while it has not expired
and its ServiceAccount (and bound Pod or Secret) is the same object it was
issued for, as upstream's bound-token validator insists.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from .errors import ApiError
from .kinds import kind_of
from .rbac import UserInfo, service_account_user
from .store import Store

SERVICE_ACCOUNTS = kind_of("v1", "ServiceAccount")
BINDABLE = {"Pod": kind_of("v1", "Pod"), "Secret": kind_of("v1", "Secret")}
GROUP = "authentication.k8s.io"
DEFAULT_AUDIENCES = ("https://kubernetes.default.svc",)
DEFAULT_SECONDS = 3600
MIN_SECONDS = 600
MAX_SECONDS = 2**32


@dataclass(frozen=True)
class _Grant:
    namespace: str
    name: str
    sa_uid: str
    expires: float
    bound: tuple[str, str, str] | None  # (kind, name, uid)


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(int(epoch), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class TokenIssuer:
    """Issues and checks one cluster's ServiceAccount tokens (kept in memory)."""

    def __init__(self, store: Store, now: Callable[[], float] = time.time) -> None:
        self.store = store
        self.now = now
        self._grants: dict[str, _Grant] = {}
        self._lock = threading.Lock()

    def request(self, namespace: str | None, name: str, body: object) -> dict:
        """Answer POST .../serviceaccounts/{name}/token with the TokenRequest, status set."""
        ns = namespace or "default"
        req = body if isinstance(body, dict) else {}
        for key, want in (("apiVersion", f"{GROUP}/v1"), ("kind", "TokenRequest")):
            if req.get(key) not in (None, want):
                raise ApiError.bad_request(f"the {key} in the data ({req.get(key)}) does not "
                                           f"match the expected {key} ({want})")
        spec = dict(req.get("spec") or {})
        seconds = spec.get("expirationSeconds")
        seconds = DEFAULT_SECONDS if seconds is None else seconds
        if not isinstance(seconds, int) or isinstance(seconds, bool):
            raise ApiError.bad_request("TokenRequest in version \"v1\" cannot be handled as a "
                                       "TokenRequest: spec.expirationSeconds: expected int64")
        if seconds < MIN_SECONDS or seconds > MAX_SECONDS:
            why = ("may not specify a duration less than 10 minutes" if seconds < MIN_SECONDS
                   else "may not specify a duration larger than 2^32 seconds")
            raise ApiError.invalid("TokenRequest", name, [{
                "reason": "FieldValueInvalid", "field": "spec.expirationSeconds",
                "message": f"Invalid value: {seconds}: {why}"}], GROUP)
        sa = self.store.get(SERVICE_ACCOUNTS, ns, name)  # 404 serviceaccounts "x" not found
        bound = self._bound(ns, name, spec.get("boundObjectRef"))
        spec["audiences"] = list(spec.get("audiences") or DEFAULT_AUDIENCES)
        spec["expirationSeconds"] = seconds
        spec.setdefault("boundObjectRef", None)
        token = secrets.token_urlsafe(48)
        expires = self.now() + seconds
        with self._lock:
            self._grants[token] = _Grant(ns, name, sa["metadata"]["uid"], expires, bound)
        return {"kind": "TokenRequest", "apiVersion": f"{GROUP}/v1",
                "metadata": {"name": name, "namespace": ns, "creationTimestamp": None},
                "spec": spec,
                "status": {"token": token, "expirationTimestamp": _iso(expires)}}

    def _bound(self, ns: str, sa: str, ref: object) -> tuple[str, str, str] | None:
        if not ref:
            return None
        if not isinstance(ref, dict):
            raise ApiError.bad_request("spec.boundObjectRef: expected an object")
        kind, obj_name, uid = ref.get("kind", ""), ref.get("name", ""), ref.get("uid", "")
        target = BINDABLE.get(kind)
        if target is None or ref.get("apiVersion", "v1") != "v1":
            raise ApiError.bad_request(f"cannot bind token for serviceaccount {sa!r} to object "
                                       f"of kind {kind!r}")
        obj = self.store.get(target, ns, obj_name)
        if kind == "Pod" and (obj.get("spec") or {}).get("serviceAccountName", "default") != sa:
            raise ApiError.bad_request(f'cannot bind token for serviceaccount "{sa}" to pod '
                                       "running with different serviceaccount name.")
        have = obj["metadata"]["uid"]
        if uid and uid != have:
            raise ApiError.conflict(kind, obj_name, f"the UID in the bound object reference "
                                    f"({uid}) does not match the UID in record. The object "
                                    "might have been deleted and then recreated")
        return kind, obj_name, have

    def authenticate(self, token: str) -> UserInfo | None:
        """The ServiceAccount user for a live token; None for unknown, expired or orphaned."""
        with self._lock:
            grant = self._grants.get(token)
        if grant is None:
            return None
        if self.now() >= grant.expires:
            with self._lock:
                self._grants.pop(token, None)
            return None
        sa = self.store.peek(SERVICE_ACCOUNTS, grant.namespace, grant.name)
        if sa is None or sa["metadata"]["uid"] != grant.sa_uid:
            return None
        if grant.bound is not None:
            kind, obj_name, uid = grant.bound
            obj = self.store.peek(BINDABLE[kind], grant.namespace, obj_name)
            if obj is None or obj["metadata"]["uid"] != uid:
                return None
        return service_account_user(grant.namespace, grant.name, grant.sa_uid)
