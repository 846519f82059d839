"""RBAC for the embedded cluster, decided the way kube-apiserver's RBAC authorizer does.

A least-privilege ClusterRole is only worth something if the cluster it is tested
against refuses what the role does not grant, and refuses it in the words EKS
uses - a check's failure message is all a person sees. So every request is
judged from the Role/ClusterRole and RoleBinding/ClusterRoleBinding objects in
the store, with upstream's matching rules (plugin/pkg/auth/authorizer/rbac):
`*` for verbs, groups and resources, `*/sub` for subresources, resourceNames,
ClusterRoleBindings everywhere and RoleBindings in their own namespace,
ServiceAccount subjects defaulting to the binding's namespace, and aggregated
ClusterRoles. `system:masters` is allowed before RBAC is asked, as upstream's
privileged-group authorizer does. A denial is the apiserver's 403 `Status`.

The self-subject reviews (`kubectl auth can-i`, `can-i --list`, `auth whoami`)
answer from the same evaluation, so they cannot disagree with enforcement.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace

from .errors import ApiError
from .kinds import Kind, kind_of
from .store import Store

SYSTEM_MASTERS = "system:masters"
AUTHENTICATED = "system:authenticated"
UNAUTHENTICATED = "system:unauthenticated"
SA_USER_PREFIX = "system:serviceaccount:"
SA_GROUP = "system:serviceaccounts"
RBAC_GROUP = "rbac.authorization.k8s.io"

ROLES = kind_of(f"{RBAC_GROUP}/v1", "Role")
CLUSTER_ROLES = kind_of(f"{RBAC_GROUP}/v1", "ClusterRole")
ROLE_BINDINGS = kind_of(f"{RBAC_GROUP}/v1", "RoleBinding")
CLUSTER_ROLE_BINDINGS = kind_of(f"{RBAC_GROUP}/v1", "ClusterRoleBinding")

# Subresources reached by a websocket GET that start a process or a stream.
CONNECT_SUBRESOURCES = ("exec", "attach", "portforward")
# From 1.35 (AuthorizePodWebsocketUpgradeCreatePermission, beta, on by default) the
# apiserver also demands `create` on such a GET; before, `get` alone was enough.
CONNECT_CREATE_SINCE = (1, 35)

REVIEW_KINDS = ("SelfSubjectAccessReview", "SelfSubjectRulesReview", "SelfSubjectReview")


@dataclass(frozen=True)
class UserInfo:
    """An authenticated identity: what RBAC subjects are matched against."""

    name: str
    groups: tuple[str, ...] = ()
    uid: str = ""


ADMIN = UserInfo("kubernetes-admin", (SYSTEM_MASTERS, AUTHENTICATED))
ANONYMOUS = UserInfo("system:anonymous", (UNAUTHENTICATED,))


def service_account_user(namespace: str, name: str, uid: str = "") -> UserInfo:
    """The user a ServiceAccount token authenticates as (upstream's naming)."""
    return UserInfo(f"{SA_USER_PREFIX}{namespace}:{name}",
                    (SA_GROUP, f"{SA_GROUP}:{namespace}", AUTHENTICATED), uid)


@dataclass(frozen=True)
class Attributes:
    """What is being asked: upstream's authorizer.Attributes for one request."""

    user: UserInfo
    verb: str
    resource: str = ""
    subresource: str = ""
    api_group: str = ""
    namespace: str = ""
    name: str = ""
    path: str = ""
    resource_request: bool = True

    @property
    def combined_resource(self) -> str:
        return f"{self.resource}/{self.subresource}" if self.subresource else self.resource


# -- rule matching (rbacv1helpers) --------------------------------------------------------
def verb_matches(rule: dict, verb: str) -> bool:
    verbs = rule.get("verbs") or []
    return "*" in verbs or verb in verbs


def api_group_matches(rule: dict, group: str) -> bool:
    groups = rule.get("apiGroups") or []
    return "*" in groups or group in groups


def resource_matches(rule: dict, combined: str, subresource: str) -> bool:
    for res in rule.get("resources") or []:
        if res in ("*", combined):
            return True
        # `*/scale` grants the scale subresource of every resource.
        if subresource and res == f"*/{subresource}":
            return True
    return False


def resource_name_matches(rule: dict, name: str) -> bool:
    names = rule.get("resourceNames") or []
    return not names or name in names


def non_resource_url_matches(rule: dict, path: str) -> bool:
    for url in rule.get("nonResourceURLs") or []:
        if url in ("*", path) or (url.endswith("*") and path.startswith(url[:-1])):
            return True
    return False


def rule_allows(attrs: Attributes, rule: dict) -> bool:
    if attrs.resource_request:
        return (verb_matches(rule, attrs.verb) and api_group_matches(rule, attrs.api_group)
                and resource_matches(rule, attrs.combined_resource, attrs.subresource)
                and resource_name_matches(rule, attrs.name))
    return verb_matches(rule, attrs.verb) and non_resource_url_matches(rule, attrs.path)


def applies_to(user: UserInfo, subject: dict, binding_namespace: str) -> bool:
    kind, name = subject.get("kind"), subject.get("name")
    if kind == "User":
        return user.name == name
    if kind == "Group":
        return name in user.groups
    if kind == "ServiceAccount":
        # A RoleBinding may name a ServiceAccount of its own namespace without one.
        namespace = subject.get("namespace") or binding_namespace
        return bool(namespace) and user.name == f"{SA_USER_PREFIX}{namespace}:{name}"
    return False


def _describe_subject(subject: dict, binding_namespace: str) -> str:
    if subject.get("kind") == "ServiceAccount":
        ns = subject.get("namespace") or binding_namespace
        return f'ServiceAccount {_q(subject.get("name", "") + "/" + ns)}'
    return f'{subject.get("kind")} {_q(subject.get("name", ""))}'


def _q(text: str) -> str:
    """Go's %q for the strings that occur here."""
    return json.dumps(text, ensure_ascii=False)


def _aggregate(errors: list[str]) -> str:
    """utilerrors.NewAggregate(...).Error(): one message, or `[a, b]` (deduplicated)."""
    unique = list(dict.fromkeys(errors))
    return unique[0] if len(unique) == 1 else "[" + ", ".join(unique) + "]"


def _selector_matches(selector: dict, labels: dict[str, str]) -> bool:
    """A metav1.LabelSelector (aggregationRule's clusterRoleSelectors)."""
    if not selector:
        return False  # an empty selector in an aggregation rule selects nothing
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
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


# -- the authorizer -----------------------------------------------------------------------
@dataclass
class _Visit:
    source: str
    rule: dict | None
    error: str | None


class Authorizer:
    """Decides requests from the RBAC objects in one cluster's store."""

    def __init__(self, store: Store, kube_version: str = "1.31") -> None:
        self.store = store
        major, minor = kube_version.split(".")[:2]
        self.version = (int(major), int("".join(c for c in minor if c.isdigit()) or 0))

    # -- rules ---------------------------------------------------------------------------
    def _cluster_role_rules(self, name: str, seen: frozenset[str] = frozenset()) -> list[dict]:
        role = self.store.peek(CLUSTER_ROLES, None, name)
        if role is None:
            raise LookupError(f'clusterrole.{RBAC_GROUP} {_q(name)} not found')
        rules = list(role.get("rules") or [])
        agg = role.get("aggregationRule")
        if agg:
            # Upstream's aggregation controller copies the selected roles' rules into
            # `rules`; evaluating the union directly gives the same decisions.
            rules = []
            for other in self.store.iter(CLUSTER_ROLES):
                other_name = other["metadata"]["name"]
                if other_name == name or other_name in seen:
                    continue
                labels = other["metadata"].get("labels") or {}
                if any(_selector_matches(s, labels)
                       for s in agg.get("clusterRoleSelectors") or []):
                    rules += self._cluster_role_rules(other_name, seen | {name})
        return rules

    def _ref_rules(self, ref: dict, binding_namespace: str) -> list[dict]:
        if ref.get("kind") == "ClusterRole":
            return self._cluster_role_rules(ref.get("name", ""))
        if ref.get("kind") == "Role" and binding_namespace:
            role = self.store.peek(ROLES, binding_namespace, ref.get("name", ""))
            if role is None:
                raise LookupError(f'role.{RBAC_GROUP} {_q(ref.get("name", ""))} not found')
            return list(role.get("rules") or [])
        raise LookupError(f'unsupported role reference kind: {_q(str(ref.get("kind")))}')

    def visit(self, user: UserInfo, namespace: str) -> Iterator[_Visit]:
        """Every rule that applies to `user` in `namespace` ("" = cluster scope), in
        upstream's order: ClusterRoleBindings first, then the namespace's RoleBindings."""
        for binding in list(self.store.iter(CLUSTER_ROLE_BINDINGS)):
            yield from self._visit_binding(user, binding, "", "ClusterRoleBinding")
        if namespace:
            for binding in list(self.store.iter(ROLE_BINDINGS, namespace)):
                yield from self._visit_binding(user, binding, namespace, "RoleBinding")

    def _visit_binding(self, user: UserInfo, binding: dict, namespace: str,
                       what: str) -> Iterator[_Visit]:
        for subject in binding.get("subjects") or []:
            if not applies_to(user, subject, namespace):
                continue
            ref = binding.get("roleRef") or {}
            name = binding["metadata"]["name"] + (f"/{namespace}" if namespace else "")
            source = (f"{what} {_q(name)} of {ref.get('kind')} {_q(ref.get('name', ''))} "
                      f"to {_describe_subject(subject, namespace)}")
            try:
                rules = self._ref_rules(ref, namespace)
            except LookupError as err:
                yield _Visit(source, None, str(err))
                return
            for rule in rules:
                yield _Visit(source, rule, None)
            return  # one applicable subject is enough; later ones add the same rules

    # -- decisions -----------------------------------------------------------------------
    def authorize(self, attrs: Attributes) -> tuple[bool, str]:
        """(allowed, reason) - the reason is upstream's `RBAC: ...` text, or ""."""
        if SYSTEM_MASTERS in attrs.user.groups:
            return True, ""
        errors: list[str] = []
        for v in self.visit(attrs.user, attrs.namespace if attrs.resource_request else ""):
            if v.error is not None:
                errors.append(v.error)
            elif v.rule is not None and rule_allows(attrs, v.rule):
                return True, f"RBAC: allowed by {v.source}"
        return False, f"RBAC: {_aggregate(errors)}" if errors else ""

    def check(self, attrs: Attributes) -> None:
        allowed, reason = self.authorize(attrs)
        if not allowed:
            raise forbidden(attrs, reason)

    def check_request(self, user: UserInfo | None, verb: str, kind: Kind, sub: str | None,
                      namespace: str | None, name: str | None,
                      query: dict[str, str] | None = None) -> None:
        """Authorize one API request as kube-apiserver's filter chain would.

        The sim serves exec only over websockets, a GET: authorized as `get` on
        `pods/exec`, and from Kubernetes 1.35 additionally as `create` (whatever
        verb the caller computed for it).
        """
        attrs = request_attributes(user or ANONYMOUS, verb, kind, sub, namespace, name, query)
        if sub in CONNECT_SUBRESOURCES:
            verbs = ("get", "create") if self.version >= CONNECT_CREATE_SINCE else ("get",)
            for v in verbs:
                self.check(replace(attrs, verb=v))
            return
        self.check(attrs)

    # -- self-subject reviews --------------------------------------------------------------
    def review(self, kind: Kind, user: UserInfo, body: object) -> dict:
        spec = (body.get("spec") if isinstance(body, dict) else None) or {}
        out = {"kind": kind.kind, "apiVersion": kind.api_version,
               "metadata": {"creationTimestamp": None}, "spec": spec}
        if kind.kind == "SelfSubjectReview":
            out.pop("spec")
            out["status"] = {"userInfo": {"username": user.name, "uid": user.uid or None,
                                          "groups": list(user.groups)}}
            if not user.uid:
                out["status"]["userInfo"].pop("uid")
            return out
        if kind.kind == "SelfSubjectRulesReview":
            out["status"] = self._rules_review(user, spec.get("namespace") or "")
            return out
        res, non = spec.get("resourceAttributes"), spec.get("nonResourceAttributes")
        if bool(res) == bool(non):
            raise ApiError.invalid(kind.kind, "", [{
                "reason": "FieldValueInvalid", "field": "spec.resourceAttributes",
                "message": "Invalid value: \"null\": exactly one of nonResourceAttributes or "
                           "resourceAttributes must be specified"}], kind.group)
        if res:
            attrs = Attributes(user, res.get("verb", ""), res.get("resource", ""),
                               res.get("subresource", ""), res.get("group", ""),
                               res.get("namespace", ""), res.get("name", ""))
        else:
            attrs = Attributes(user, non.get("verb", ""), path=non.get("path", ""),
                               resource_request=False)
        allowed, reason = self.authorize(attrs)
        out["status"] = {"allowed": allowed, **({"reason": reason} if reason else {})}
        return out

    def _rules_review(self, user: UserInfo, namespace: str) -> dict:
        resource_rules, non_resource_rules, errors = [], [], []
        for v in self.visit(user, namespace):
            if v.error is not None:
                errors.append(v.error)
            elif v.rule is not None:
                if v.rule.get("nonResourceURLs"):
                    non_resource_rules.append({"verbs": v.rule.get("verbs") or [],
                                               "nonResourceURLs": v.rule["nonResourceURLs"]})
                else:
                    resource_rules.append({k: v.rule[k] for k in (
                        "verbs", "apiGroups", "resources", "resourceNames") if v.rule.get(k)})
        status: dict = {"resourceRules": resource_rules, "nonResourceRules": non_resource_rules,
                        "incomplete": bool(errors)}
        if errors:
            status["evaluationError"] = _aggregate(errors)
        return status


def exact_name(field_selector: str | None) -> str:
    """The name a list/watch is limited to by `metadata.name=` (upstream's RequestInfo
    hands it to authorization, so resourceNames rules can allow such a watch)."""
    for part in (field_selector or "").split(","):
        for op in ("==", "="):
            key, sep, value = part.partition(op)
            if sep and key.strip() == "metadata.name" and "!" not in key:
                return value.strip()
    return ""


def request_attributes(user: UserInfo, verb: str, kind: Kind, sub: str | None,
                       namespace: str | None, name: str | None,
                       query: dict[str, str] | None = None) -> Attributes:
    """Upstream's RequestInfo for a parsed sim route."""
    ns = namespace or ""
    if kind.kind == "Namespace" and name:
        ns = name  # /api/v1/namespaces/{name} is a request in namespace {name}
    if not name and verb in ("list", "watch"):
        name = exact_name((query or {}).get("fieldSelector"))
    return Attributes(user, verb, kind.plural, sub or "", kind.group, ns, name or "")


def forbidden(attrs: Attributes, reason: str = "") -> ApiError:
    """The 403 kube-apiserver writes (responsewriters.forbiddenMessage + NewForbidden)."""
    who = _q(attrs.user.name)
    if not attrs.resource_request:
        text = f"User {who} cannot {attrs.verb} path {_q(attrs.path)}"
        message = f"forbidden: {text}" + (f": {reason}" if reason else "")
        return ApiError(403, "Forbidden", message)
    scope = (f"in the namespace {_q(attrs.namespace)}" if attrs.namespace
             else "at the cluster scope")
    text = (f"User {who} cannot {attrs.verb} resource {_q(attrs.combined_resource)} "
            f"in API group {_q(attrs.api_group)} {scope}")
    if reason:
        text += f": {reason}"
    qualified = f"{attrs.resource}.{attrs.api_group}" if attrs.api_group else attrs.resource
    subject = f"{qualified} {_q(attrs.name)}" if attrs.name else qualified
    details: dict[str, str] = {"kind": attrs.resource}
    if attrs.api_group:
        details["group"] = attrs.api_group
    if attrs.name:
        details["name"] = attrs.name
    return ApiError(403, "Forbidden", f"{subject} is forbidden: {text}", details)


# -- the bootstrap policy ---------------------------------------------------------------
_BOOTSTRAP_META = {"labels": {"kubernetes.io/bootstrapping": "rbac-defaults"},
                   "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}}
_READ = ["get", "list", "watch"]
_AGGREGATE_TO_VIEW = "rbac.authorization.k8s.io/aggregate-to-view"


def _meta(name: str, **labels: str) -> dict:
    return {"name": name, "labels": {**_BOOTSTRAP_META["labels"], **labels},
            "annotations": dict(_BOOTSTRAP_META["annotations"])}


def bootstrap_policy() -> tuple[list[dict], list[dict]]:
    """The part of upstream's bootstrap ClusterRoles/Bindings the sim's users meet:
    `cluster-admin` (for system:masters), `view` (aggregated, as upstream), and what
    every authenticated user may do (discovery, /version, self-subject reviews)."""
    roles = [
        {"metadata": _meta("cluster-admin"), "rules": [
            {"apiGroups": ["*"], "resources": ["*"], "verbs": ["*"]},
            {"nonResourceURLs": ["*"], "verbs": ["*"]}]},
        {"metadata": _meta("view", **{"rbac.authorization.k8s.io/aggregate-to-edit": "true"}),
         "aggregationRule": {"clusterRoleSelectors": [
             {"matchLabels": {_AGGREGATE_TO_VIEW: "true"}}]}, "rules": []},
        {"metadata": _meta("system:aggregate-to-view", **{_AGGREGATE_TO_VIEW: "true"}),
         "rules": [
             {"apiGroups": [""], "resources": [
                 "configmaps", "endpoints", "persistentvolumeclaims",
                 "persistentvolumeclaims/status", "pods", "replicationcontrollers",
                 "replicationcontrollers/scale", "serviceaccounts", "services",
                 "services/status"], "verbs": _READ},
             {"apiGroups": [""], "resources": [
                 "bindings", "events", "limitranges", "namespaces/status", "pods/log",
                 "pods/status", "replicationcontrollers/status", "resourcequotas",
                 "resourcequotas/status"], "verbs": _READ},
             {"apiGroups": [""], "resources": ["namespaces"], "verbs": _READ},
             {"apiGroups": ["apps"], "resources": [
                 "controllerrevisions", "daemonsets", "daemonsets/status", "deployments",
                 "deployments/scale", "deployments/status", "replicasets",
                 "replicasets/scale", "replicasets/status", "statefulsets",
                 "statefulsets/scale", "statefulsets/status"], "verbs": _READ}]},
        {"metadata": _meta("system:basic-user"), "rules": [
            {"apiGroups": ["authorization.k8s.io"],
             "resources": ["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
             "verbs": ["create"]},
            {"apiGroups": ["authentication.k8s.io"], "resources": ["selfsubjectreviews"],
             "verbs": ["create"]}]},
        {"metadata": _meta("system:discovery"), "rules": [
            {"nonResourceURLs": ["/api", "/api/*", "/apis", "/apis/*", "/healthz", "/livez",
                                 "/openapi", "/openapi/*", "/readyz", "/version", "/version/"],
             "verbs": ["get"]}]},
        {"metadata": _meta("system:public-info-viewer"), "rules": [
            {"nonResourceURLs": ["/healthz", "/livez", "/readyz", "/version", "/version/"],
             "verbs": ["get"]}]},
    ]

    def binding(role: str, *groups: str) -> dict:
        return {"metadata": _meta(role),
                "roleRef": {"apiGroup": RBAC_GROUP, "kind": "ClusterRole", "name": role},
                "subjects": [{"apiGroup": RBAC_GROUP, "kind": "Group", "name": g}
                             for g in groups]}

    bindings = [binding("cluster-admin", SYSTEM_MASTERS),
                binding("system:basic-user", AUTHENTICATED),
                binding("system:discovery", AUTHENTICATED),
                binding("system:public-info-viewer", AUTHENTICATED, UNAUTHENTICATED)]
    return roles, bindings


def seed(store: Store) -> None:
    roles, bindings = bootstrap_policy()
    for role in roles:
        store.create(CLUSTER_ROLES, role)
    for b in bindings:
        store.create(CLUSTER_ROLE_BINDINGS, b)
