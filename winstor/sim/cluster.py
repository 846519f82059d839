"""One emulated cluster: store, admission, controllers and the node models.

The API server hands every request to `Cluster.handle`; the controllers run
on the same event loop and react to store changes, so everything a client
sees happens in the order a real control plane would produce it.

This is where the parts meet, and the only place that knows them all: the
API machinery (`api`), the node models (`nodes`), the controllers and AWS
(`cloud`) do not import this module. `Cluster` satisfies the small
interfaces they declare instead - `api.apiserver.Backend` for the API server,
`controllers.base.ClusterParts` for the controllers - and hands the rest over
as constructor arguments.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from functools import partial
from typing import Any

from . import bootstrap
from .api import admission, impersonation, rbac, scale
from .api.errors import ApiError
from .api.events import Recorder
from .api.faults import Faults
from .api.kinds import Kind
from .api.registry import Registry
from .api.schema import SchemaRegistry
from .api.store import Store
from .api.tokens import TokenIssuer
from .controllers import Controllers
from .metrics import Metrics
from .nodes.workloads import ExecTarget, Workloads
from .timing import Clock
from .topology import ClusterPlan

log = logging.getLogger("winstor.sim.cluster")



class Cluster:
    def __init__(self, plan: ClusterPlan, scenarios: set[str], aws: Any, *,
                 time_scale: float = 0.002, watch_history: int = 5000) -> None:
        self.plan = plan
        self.name = plan.name
        self.kube_version = plan.kube_version
        self.flavour = plan.flavour
        self.scenarios = scenarios
        self.aws = aws
        self.aws_cluster: Any = None
        self.token = secrets.token_urlsafe(32)
        self.store = Store(history=watch_history)
        self.schemas = SchemaRegistry(plan.kube_version)
        self.metrics = Metrics(self.store)  # counts pod starts from the store
        self.faults = Faults(enabled="flaky-api" in scenarios)
        # The PodSecurity admission plugin; off, namespaces' enforce labels do nothing.
        self.pod_security_admission = "pod-security-off" not in scenarios
        self.clock = Clock(scale=time_scale)
        self.events = Recorder(self.store)
        self.registry = Registry(self.store, self.schemas, self._admit)
        self.workloads = Workloads(self.store, self.flavour, scenarios)
        self.controllers = Controllers(self)
        self.bookmark_interval = 60.0  # the watch cache bookmarks about once a minute
        self.rbac = rbac.Authorizer(self.store, plan.kube_version)
        self.tokens = TokenIssuer(self.store)

    # -- lifecycle ---------------------------------------------------------------
    async def start(self) -> None:
        self.aws_cluster = await bootstrap.seed(self.plan, self.scenarios, self.store,
                                                self.workloads, self.aws)
        rbac.seed(self.store)
        self.controllers.start()

    async def stop(self) -> None:
        await self.controllers.stop()

    # -- auth --------------------------------------------------------------------
    def authenticate(self, header: str) -> rbac.UserInfo:
        """The admin token is system:masters; TokenRequest tokens are ServiceAccounts."""
        token = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if token and secrets.compare_digest(token, self.token):
            return rbac.ADMIN
        user = self.tokens.authenticate(token) if token else None
        if user is None:
            raise ApiError(401, "Unauthorized", "Unauthorized")
        return user

    def impersonate(self, user: rbac.UserInfo, headers: Any) -> rbac.UserInfo:
        return impersonation.impersonate(user, headers, self.rbac.check)

    def authorize(self, user: rbac.UserInfo | None, verb: str, kind: Kind, sub: str | None,
                  namespace: str | None, name: str | None,
                  query: dict[str, str] | None = None) -> None:
        self.rbac.check_request(user, verb, kind, sub, namespace, name, query)

    # -- requests ----------------------------------------------------------------
    async def handle(self, verb: str, kind: Kind, namespace: str | None, name: str | None,
                     sub: str | None, query: dict[str, str], body: Any,
                     content_type: str, user: rbac.UserInfo | None = None,
                     ) -> tuple[dict, int, list[str]]:
        reg = self.registry
        token_request = sub == "token" and kind.kind == "ServiceAccount"
        if verb not in kind.verbs or (token_request and verb != "create"):
            raise ApiError.method_not_allowed("the server does not allow this method on the "
                                              "requested resource")
        if token_request:
            return self.tokens.request(namespace, name or "", body), 201, []
        if kind.kind in rbac.REVIEW_KINDS:
            return self.rbac.review(kind, user or rbac.ANONYMOUS, body), 201, []
        if sub == "eviction" and kind.kind == "Pod":
            if verb != "create":
                raise ApiError.method_not_allowed("the server does not allow this method on "
                                                  "the requested resource")
            return self._evict(kind, namespace, name or "", body), 201, []
        if sub == "scale" and "scale" in kind.subresources:
            return scale.handle_scale(reg, self.schemas, verb, kind, namespace, name or "",
                                      body, content_type, query)
        if sub not in (None, "status", "finalize", "binding"):
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if verb == "get":
            return reg.get(kind, namespace, name or "")
        if verb == "list":
            return reg.list(kind, namespace, query)
        if verb == "create":
            if sub == "binding":
                return self.workloads.bind_from_api(namespace, name or "", body), 201, []
            return reg.create(kind, namespace, body, query)
        if verb == "update":
            if sub == "finalize":
                sub = None
            return reg.update(kind, namespace, name or "", sub, body, query)
        if verb == "patch":
            return reg.patch(kind, namespace, name or "", sub, body, content_type, query)
        if verb == "delete":
            return reg.delete(kind, namespace, name or "", body, query)
        if verb == "deletecollection":
            return reg.delete_collection(kind, namespace, body, query)
        raise ApiError.method_not_allowed(f"verb {verb} is not supported")

    def _evict(self, kind: Kind, namespace: str | None, name: str, body: Any) -> dict:
        """POST pods/<name>/eviction, as pkg/registry/core/pod/storage/eviction.go answers it:
        the Eviction must name the pod of the URL; the pod is then deleted with the
        eviction's deleteOptions (gracefully, when it runs on a node). No
        PodDisruptionBudget can refuse it (there is no such kind here: the 429 "Cannot evict
        pod as it would violate the pod's disruption budget." never comes)."""
        eviction = body if isinstance(body, dict) else {}
        if ((eviction.get("metadata") or {}).get("name") or "") != name:
            raise ApiError.bad_request("name in URL does not match name in Eviction object")
        options = eviction.get("deleteOptions")
        self.registry.delete(kind, namespace, name, dict(options) if isinstance(
            options, dict) else {}, {})
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "code": 201}

    def _admit(self, op: str, kind: Kind, obj: dict, old: dict | None) -> list[str]:
        if kind.kind == "PersistentVolumeClaim" and op == "create":
            admission.default_storage_class(self.store, obj)
        if kind.kind == "PersistentVolumeClaim" and op == "update" and old is not None and \
                "resize-admission-off" not in self.scenarios:
            admission.claim_resize(self.store, old, obj)
        if kind.kind == "Pod" and op == "create" and self.pod_security_admission:
            admission.pod_security(self.store, obj)
        if kind.kind in ("Deployment", "ReplicaSet", "DaemonSet") and self.pod_security_admission:
            return admission.pod_security_warnings(self.store, obj)
        return []

    # -- exec and logs -------------------------------------------------------------
    def exec_target(self, namespace: str | None, name: str,
                    container: str | None) -> ExecTarget:
        return self.workloads.exec_target(namespace or "default", name, container)

    async def run_exec(self, target: ExecTarget, argv: list[str], stdin: bytes = b"") -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(None, partial(self.workloads.run_exec, target, argv,
                                                        stdin=stdin))

    def pod_logs(self, namespace: str | None, name: str, container: str | None) -> str:
        return self.workloads.logs(namespace or "default", name, container)

    def render_metrics(self) -> str:
        return self.metrics.render(self.store.created_by_kind, self.clock.samples(self.name))
