"""Least privilege: the embedded cluster enforces RBAC like kube-apiserver, the
suite passes with exactly the rights manifests/rbac/ grants, and a read-only
identity fails at the first write with one line naming verb and resource.

The authorizer is checked rule shape by rule shape against upstream's semantics;
the manifests are checked end to end - applied with kubectl (or the Python
client), a token minted through the TokenRequest API, the whole suite run with
it - and rule by rule: without any one of the rights a healthy run uses, the run
fails and says which right it lacked.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client, config, utils

from helpers import ROOT, run_suite
from inspect_cluster import leftovers
from test_scenarios import ALL
from winstor.sim.api import rbac
from winstor.sim.api.errors import ApiError
from winstor.sim.api.kinds import kind_of
from winstor.sim.api.store import Store
from winstor.sim.api.tokens import TokenIssuer
from winstor.targets.embedded import SimProcess

KUBECTL = shutil.which("kubectl")
RBAC_DIR = ROOT / "manifests" / "rbac"
SA = ("winstor-system", "winstor")
WRITES = {"create", "update", "patch", "delete", "deletecollection"}
# Rights the manifest grants for paths a healthy run on the sim does not take:
# (resource, verb) -> why it is granted anyway.
UNEXERCISED = {
    ("deployments", "get"): "a create retried after a transient error adopts its success",
    ("deployments", "list"): "a namespace that does not go is reported with what holds it",
    ("pods/exec", "create"): "websocket exec needs it from Kubernetes 1.35; the sim is 1.31",
    ("namespaces", "watch"): "the sim often deletes a namespace before the wait watches it",
    ("secrets", "create"): "only for shares whose credentials are in AWS Secrets Manager",
    ("leases", "get"): "only when another run holds the drain Lease",
}

PODS = kind_of("v1", "Pod")
NODES = kind_of("v1", "Node")
NAMESPACES = kind_of("v1", "Namespace")
SCS = kind_of("storage.k8s.io/v1", "StorageClass")
SAS = kind_of("v1", "ServiceAccount")
DEPLOYMENTS = kind_of("apps/v1", "Deployment")


# -- helpers -----------------------------------------------------------------------------
def manifest_docs() -> list[dict]:
    """manifests/rbac/ in an order that applies (Namespace before its ServiceAccount)."""
    docs = [d for f in sorted(RBAC_DIR.glob("*.yaml"))
            for d in yaml.safe_load_all(f.read_text()) if d]
    order = ["Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role",
             "RoleBinding"]
    return sorted(docs, key=lambda d: order.index(d["kind"]))


def apply(sim: SimProcess, docs: list[dict]) -> None:
    """As the admin: `kubectl apply` when kubectl is installed, else the Python client."""
    if KUBECTL:
        proc = subprocess.run([KUBECTL, f"--kubeconfig={sim.kubeconfig}", "--context=sim-1",
                               "apply", "-f", "-"], input=yaml.safe_dump_all(docs),
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return
    api = config.new_client_from_config(str(sim.kubeconfig), context="sim-1")
    for doc in docs:
        utils.create_from_dict(api, doc)


def mint_token(sim: SimProcess, namespace: str, name: str) -> str:
    """A token for the ServiceAccount through the TokenRequest API, as the admin."""
    v1 = client.CoreV1Api(config.new_client_from_config(str(sim.kubeconfig), context="sim-1"))
    req = client.AuthenticationV1TokenRequest(spec=client.V1TokenRequestSpec(
        audiences=[], expiration_seconds=3600))
    return v1.create_namespaced_service_account_token(name, namespace, req).status.token


def kubeconfig_with_token(sim: SimProcess, token: str, path: Path) -> Path:
    """The sim's kubeconfig with the admin credentials replaced by `token`."""
    kc = yaml.safe_load(sim.kubeconfig.read_text())
    kc["users"] = [{"name": "token", "user": {"token": token}}]
    for ctx in kc["contexts"]:
        ctx["context"]["user"] = "token"
    path.write_text(yaml.safe_dump(kc))
    path.chmod(0o600)
    return path


def request_counts(sim: SimProcess) -> Counter[tuple[str, str, int]]:
    """Requests the cluster answered, by verb, resource and code (from its /metrics)."""
    api = config.new_client_from_config(str(sim.kubeconfig), context="sim-1")
    text = api.rest_client.request("GET", f"{api.configuration.host}/metrics").data.decode()
    out: Counter[tuple[str, str, int]] = Counter()
    for line in text.splitlines():
        if line.startswith("apiserver_request_total{"):
            labels = dict(re.findall(r'(\w+)="([^"]*)"', line))
            out[(labels["verb"].lower(), labels["resource"], int(labels["code"]))] += \
                int(line.rsplit(" ", 1)[1])
    return out


def run_as(sim: SimProcess, token: str, tmp_path: Path):
    kc = kubeconfig_with_token(sim, token, tmp_path / "token.kubeconfig")
    return run_suite([f"--kubeconfig={kc}", "--context", "sim-1"], tmp_path, env=sim.aws_env)


# -- the authorizer, rule shape by rule shape ------------------------------------------------
@pytest.fixture
def store() -> Store:
    s = Store()
    for ns in ("default", "team", "other", "kube-system"):
        s.create(NAMESPACES, {"metadata": {"name": ns}})
    rbac.seed(s)
    return s


def role(store: Store, name: str, rules: list[dict], namespace: str | None = None,
         **extra: Any) -> None:
    kind = rbac.ROLES if namespace else rbac.CLUSTER_ROLES
    meta: dict[str, Any] = {"name": name, **({"namespace": namespace} if namespace else {})}
    meta.update(extra.pop("metadata", {}))
    store.create(kind, {"metadata": meta, "rules": rules, **extra})


def bind(store: Store, name: str, ref_kind: str, ref_name: str, subjects: list[dict],
         namespace: str | None = None) -> None:
    kind = rbac.ROLE_BINDINGS if namespace else rbac.CLUSTER_ROLE_BINDINGS
    meta = {"name": name, **({"namespace": namespace} if namespace else {})}
    store.create(kind, {"metadata": meta, "subjects": subjects, "roleRef": {
        "apiGroup": rbac.RBAC_GROUP, "kind": ref_kind, "name": ref_name}})


ALICE = rbac.UserInfo("alice", ("devs", rbac.AUTHENTICATED))
BOT = rbac.service_account_user("team", "bot")


def can(store: Store, user: rbac.UserInfo, verb: str, resource: str, *, group: str = "",
        sub: str = "", ns: str = "", name: str = "", version: str = "1.31") -> bool:
    attrs = rbac.Attributes(user, verb, resource, sub, group, ns, name)
    return rbac.Authorizer(store, version).authorize(attrs)[0]


def test_verbs_groups_and_resources_match_like_upstream(store: Store) -> None:
    role(store, "r", [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["get"]},
                      {"apiGroups": ["*"], "resources": ["csinodes"], "verbs": ["*"]}])
    bind(store, "b", "ClusterRole", "r", [{"kind": "User", "name": "alice"}])
    assert can(store, ALICE, "get", "deployments", group="apps", ns="team")
    assert not can(store, ALICE, "list", "deployments", group="apps", ns="team")
    assert not can(store, ALICE, "get", "deployments", group="extensions", ns="team")
    assert can(store, ALICE, "deletecollection", "csinodes", group="storage.k8s.io")
    assert not can(store, ALICE, "get", "nodes")


def test_subresources_are_separate_resources_except_star_slash(store: Store) -> None:
    role(store, "pods", [{"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]}])
    role(store, "scale", [{"apiGroups": ["*"], "resources": ["*/scale"], "verbs": ["get"]}])
    bind(store, "b1", "ClusterRole", "pods", [{"kind": "User", "name": "alice"}])
    bind(store, "b2", "ClusterRole", "scale", [{"kind": "User", "name": "alice"}])
    assert can(store, ALICE, "create", "pods", ns="team")
    assert not can(store, ALICE, "create", "pods", sub="exec", ns="team")
    assert not can(store, ALICE, "get", "pods", sub="log", ns="team")
    assert can(store, ALICE, "get", "deployments", group="apps", sub="scale", ns="team")
    assert not can(store, ALICE, "get", "deployments", group="apps", ns="team")


def test_resource_names_allow_named_requests_only(store: Store) -> None:
    role(store, "sc", [{"apiGroups": ["storage.k8s.io"], "resources": ["storageclasses"],
                        "resourceNames": ["gp2-windows"], "verbs": ["get", "delete", "list"]}])
    bind(store, "b", "ClusterRole", "sc", [{"kind": "User", "name": "alice"}])
    g = "storage.k8s.io"
    assert can(store, ALICE, "delete", "storageclasses", group=g, name="gp2-windows")
    assert not can(store, ALICE, "delete", "storageclasses", group=g, name="gp2")
    # A list names nothing, unless a field selector pins metadata.name.
    assert not can(store, ALICE, "list", "storageclasses", group=g)
    attrs = rbac.request_attributes(ALICE, "list", SCS, None, None, None,
                                    {"fieldSelector": "metadata.name=gp2-windows"})
    assert attrs.name == "gp2-windows"
    assert rbac.Authorizer(store).authorize(attrs)[0]


def test_role_bindings_stay_in_their_namespace(store: Store) -> None:
    role(store, "reader", [{"apiGroups": [""], "resources": ["pods", "namespaces"],
                            "verbs": ["get", "list"]}])
    role(store, "local", [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["get"]}],
         namespace="team")
    # A ServiceAccount subject without a namespace is the binding's namespace's.
    bind(store, "rb", "ClusterRole", "reader", [{"kind": "ServiceAccount", "name": "bot"}],
         namespace="team")
    bind(store, "rb2", "Role", "local", [{"kind": "ServiceAccount", "name": "bot"}],
         namespace="team")
    assert can(store, BOT, "list", "pods", ns="team")
    assert not can(store, BOT, "list", "pods", ns="other")
    assert not can(store, BOT, "list", "pods")  # all namespaces = the cluster scope
    assert can(store, BOT, "get", "configmaps", ns="team")
    # GET /api/v1/namespaces/team is a request in namespace "team".
    here = rbac.request_attributes(BOT, "get", NAMESPACES, None, None, "team")
    there = rbac.request_attributes(BOT, "get", NAMESPACES, None, None, "other")
    assert rbac.Authorizer(store).authorize(here)[0]
    assert not rbac.Authorizer(store).authorize(there)[0]
    other_bot = rbac.service_account_user("other", "bot")
    assert not can(store, other_bot, "list", "pods", ns="team")


def test_group_subjects_and_service_account_groups(store: Store) -> None:
    role(store, "nodes", [{"apiGroups": [""], "resources": ["nodes"], "verbs": ["list"]}])
    bind(store, "all-sas", "ClusterRole", "nodes",
         [{"kind": "Group", "name": "system:serviceaccounts:team"}])
    assert BOT.groups == ("system:serviceaccounts", "system:serviceaccounts:team",
                          "system:authenticated")
    assert can(store, BOT, "list", "nodes")
    assert not can(store, rbac.service_account_user("other", "bot"), "list", "nodes")
    assert not can(store, ALICE, "list", "nodes")
    bind(store, "everyone", "ClusterRole", "nodes",
         [{"kind": "Group", "name": "system:authenticated"}])
    assert can(store, ALICE, "list", "nodes")
    assert not can(store, rbac.ANONYMOUS, "list", "nodes")


def test_aggregated_view_and_bootstrap_policy(store: Store) -> None:
    bind(store, "v", "ClusterRole", "view", [{"kind": "User", "name": "alice"}])
    assert can(store, ALICE, "watch", "pods", ns="team")
    assert can(store, ALICE, "get", "pods", sub="log", ns="team")
    assert not can(store, ALICE, "create", "pods", ns="team")
    assert not can(store, ALICE, "get", "secrets", ns="team")
    role(store, "extra", [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]}],
         metadata={"labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}})
    assert can(store, ALICE, "get", "secrets", ns="team")
    # system:masters never depends on bindings; everyone may ask who they are.
    assert can(store, rbac.ADMIN, "escalate", "clusterroles", group=rbac.RBAC_GROUP)
    assert can(store, ALICE, "create", "selfsubjectaccessreviews",
               group="authorization.k8s.io")
    version = rbac.Attributes(rbac.ANONYMOUS, "get", path="/version", resource_request=False)
    assert rbac.Authorizer(store).authorize(version)[0]
    assert rbac.non_resource_url_matches({"nonResourceURLs": ["/apis/*"]}, "/apis/apps/v1")


def test_websocket_exec_needs_get_and_from_1_35_create(store: Store) -> None:
    role(store, "exec", [{"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["create"]}])
    bind(store, "b", "ClusterRole", "exec", [{"kind": "ServiceAccount", "name": "bot",
                                              "namespace": "team"}])
    with pytest.raises(ApiError) as denied:
        rbac.Authorizer(store, "1.31").check_request(BOT, "create", PODS, "exec", "team", "p")
    assert 'cannot get resource "pods/exec"' in denied.value.message
    store.create(rbac.CLUSTER_ROLES, {"metadata": {"name": "exec-get"}, "rules": [
        {"apiGroups": [""], "resources": ["pods/exec"], "verbs": ["get"]}]})
    bind(store, "b2", "ClusterRole", "exec-get", [{"kind": "ServiceAccount", "name": "bot",
                                                   "namespace": "team"}])
    rbac.Authorizer(store, "1.31").check_request(BOT, "create", PODS, "exec", "team", "p")
    rbac.Authorizer(store, "1.35").check_request(BOT, "create", PODS, "exec", "team", "p")
    store.delete(rbac.CLUSTER_ROLE_BINDINGS, None, "b")
    with pytest.raises(ApiError) as denied:
        rbac.Authorizer(store, "1.35").check_request(BOT, "create", PODS, "exec", "team", "p")
    assert 'cannot create resource "pods/exec"' in denied.value.message


def test_denials_are_worded_like_kube_apiserver(store: Store) -> None:
    authz = rbac.Authorizer(store)
    cases = [
        ((BOT, "create", PODS, None, "x", None),
         'pods is forbidden: User "system:serviceaccount:team:bot" cannot create resource '
         '"pods" in API group "" in the namespace "x"'),
        ((BOT, "list", NODES, None, None, None),
         'nodes is forbidden: User "system:serviceaccount:team:bot" cannot list resource '
         '"nodes" in API group "" at the cluster scope'),
        ((BOT, "delete", SCS, None, None, "gp2"),
         'storageclasses.storage.k8s.io "gp2" is forbidden: User '
         '"system:serviceaccount:team:bot" cannot delete resource "storageclasses" in API '
         'group "storage.k8s.io" at the cluster scope'),
        ((BOT, "get", DEPLOYMENTS, "scale", "x", "web"),
         'deployments.apps "web" is forbidden: User "system:serviceaccount:team:bot" cannot '
         'get resource "deployments/scale" in API group "apps" in the namespace "x"'),
    ]
    for args, message in cases:
        with pytest.raises(ApiError) as denied:
            authz.check_request(*args)
        assert (denied.value.code, denied.value.reason) == (403, "Forbidden")
        assert denied.value.message == message
    bind(store, "dangling", "ClusterRole", "gone", [{"kind": "User", "name": "alice"}])
    with pytest.raises(ApiError) as denied:
        authz.check_request(ALICE, "list", NODES, None, None, None)
    assert denied.value.message.endswith(
        'at the cluster scope: RBAC: clusterrole.rbac.authorization.k8s.io "gone" not found')


def test_token_request_defaults_validation_and_revocation(store: Store) -> None:
    clock = [1000.0]
    issuer = TokenIssuer(store, now=lambda: clock[0])
    store.create(SAS, {"metadata": {"name": "bot", "namespace": "team"}})
    with pytest.raises(ApiError) as err:
        issuer.request("team", "nobody", {})
    assert err.value.code == 404 and err.value.message == 'serviceaccounts "nobody" not found'
    with pytest.raises(ApiError) as err:
        issuer.request("team", "bot", {"spec": {"expirationSeconds": 60}})
    assert err.value.code == 422 and "may not specify a duration less than 10 minutes" in \
        err.value.message
    out = issuer.request("team", "bot", {"apiVersion": "authentication.k8s.io/v1",
                                         "kind": "TokenRequest", "spec": {}})
    assert out["spec"]["expirationSeconds"] == 3600
    assert out["spec"]["audiences"] == ["https://kubernetes.default.svc"]
    token = out["status"]["token"]
    user = issuer.authenticate(token)
    assert user is not None and (user.name, user.groups) == (BOT.name, BOT.groups)
    clock[0] += 3600
    assert issuer.authenticate(token) is None  # expired
    token = issuer.request("team", "bot", {})["status"]["token"]
    store.delete(SAS, "team", "bot")
    store.create(SAS, {"metadata": {"name": "bot", "namespace": "team"}})
    assert issuer.authenticate(token) is None  # issued to the deleted ServiceAccount
    assert issuer.authenticate("not-a-token") is None


# -- the manifests, end to end ----------------------------------------------------------------
def test_manifests_grant_each_rule_with_a_reason() -> None:
    text = (RBAC_DIR / "clusterrole.yaml").read_text()
    docs = manifest_docs()
    assert [d["kind"] for d in docs] == ["Namespace", "ServiceAccount", "ClusterRole",
                                         "ClusterRoleBinding", "Role", "RoleBinding"]
    rules = [r for d in docs if d["kind"] in ("ClusterRole", "Role") for r in d["rules"]]
    assert text.count("  - apiGroups:") == sum(1 for d in docs if d["kind"] == "ClusterRole"
                                               for _ in d["rules"])
    blocks = text.split("  - apiGroups:")[:-1]
    assert all(b.rstrip().splitlines()[-1].lstrip().startswith("#") for b in blocks), \
        "every rule needs a comment above it"
    granted = {v for r in rules for v in r["verbs"]}
    assert "*" not in granted and not {"update", "deletecollection"} & granted
    # The patches: a run records itself as a user of the shared classes, EBS-MOVE-01
    # cordons and uncordons a node, EBS-RESIZE-01/02 grow a claim.
    patching = [r for r in rules if "patch" in r["verbs"]]
    assert patching == [
        {"apiGroups": [""], "resources": ["nodes"], "verbs": ["patch"]},
        {"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": ["patch"]},
        {"apiGroups": ["storage.k8s.io"], "resources": ["storageclasses"],
         "resourceNames": ["gp2-windows", "gp2-windows-lifecycle"],
         "verbs": ["get", "patch", "delete"]}]
    assert all("*" not in r["resources"] and "*" not in r["apiGroups"] for r in rules)
    for d in docs:
        labels = d["metadata"].get("labels") or {}
        assert "app.kubernetes.io/managed-by" not in labels  # runs' leftovers carry that


def rights() -> list[tuple[str, str, str]]:
    """(file kind, resource, verb) for every right the manifests grant."""
    out = []
    for d in manifest_docs():
        if d["kind"] in ("ClusterRole", "Role"):
            for r in d["rules"]:
                out += [(d["kind"], res, v) for res in r["resources"] for v in r["verbs"]]
    return out


def test_least_privilege_role_passes_the_full_suite(sim_factory, tmp_path: Path) -> None:
    sim = sim_factory(1)
    apply(sim, manifest_docs())
    token = mint_token(sim, *SA)
    before = request_counts(sim)
    result = run_as(sim, token, tmp_path)
    during = request_counts(sim) - before
    assert result.code == 0, result.output[-3000:]
    assert result.outcomes == {f"sim-1:{c}": "passed" for c in ALL}
    assert leftovers(sim) == []
    # Nothing was refused except the dry runs meant to be: SMB-PSA-01's pod, by Pod
    # Security admission, and EBS-RESIZE-02's growing of the seed's claim, by the resize
    # admission.
    assert {k: n for k, n in during.items() if k[2] == 403} == {
        ("create", "pods", 403): 1, ("patch", "persistentvolumeclaims", 403): 1}
    # Every right granted is used (websocket exec is a `get` of pods/exec before 1.35).
    used = {("get" if res == "pods/exec" else verb, res) for verb, res, _ in during if res}
    granted = {(verb, res) for _, res, verb in rights()}
    assert used <= granted
    assert granted - used <= {(verb, res) for res, verb in UNEXERCISED}, granted - used


def test_read_only_token_fails_at_the_first_write(sim_factory, tmp_path: Path) -> None:
    sim = sim_factory(1)
    ns, name = SA[0], "reader"
    apply(sim, [d for d in manifest_docs() if d["kind"] == "Namespace"] + [
        {"apiVersion": "v1", "kind": "ServiceAccount",
         "metadata": {"name": name, "namespace": ns}},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
         "metadata": {"name": "read-only"},
         "rules": [{"apiGroups": ["*"], "resources": ["*"], "verbs": ["get", "list", "watch"]}]},
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
         "metadata": {"name": "reader"},
         "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                     "name": "read-only"},
         "subjects": [{"kind": "ServiceAccount", "name": name, "namespace": ns}]}])
    result = run_as(sim, mint_token(sim, ns, name), tmp_path)
    assert result.code != 0
    assert set(result.outcomes) == {f"sim-1:{c}" for c in ALL}
    # Refused writes: a check's own (failed) or its fixture's (error, e.g. the run's
    # namespace) - both count here; which it is does not matter to this test.
    failed = {k for k, v in result.outcomes.items() if v in ("failed", "error")}
    # Only the checks that read and nothing else get through.
    assert set(result.outcomes) - failed == {"sim-1:NODES-READY-01", "sim-1:NODES-AMI-01",
                                             "sim-1:SC-DEFAULT-01", "sim-1:SHARE-AWS-01"}
    denied = set()
    for key in failed:
        line = result.messages[key].splitlines()[0]
        assert "is forbidden: User \"system:serviceaccount:winstor-system:reader\" cannot " \
            in line, line
        verb, resource = line.split('" cannot ', 1)[1].split(" resource ", 1)
        denied.add((verb, resource.split('"')[1]))
    assert denied == {("create", "namespaces"), ("create", "storageclasses")}
    assert "Traceback" not in result.output
    assert leftovers(sim) == []


def _without(right: tuple[str, str, str]) -> list[dict]:
    """The manifests with one verb taken off one resource (each rule names one)."""
    kind, resource, verb = right
    docs = manifest_docs()
    for d in docs:
        if d["kind"] == kind:
            for r in d["rules"]:
                assert len(r["resources"]) == 1, r
                if r["resources"] == [resource] and verb in r["verbs"]:
                    r["verbs"] = [v for v in r["verbs"] if v != verb]
            d["rules"] = [r for r in d["rules"] if r["verbs"]]
    return docs


SWEEP = os.environ.get("WINSTOR_RBAC_SWEEP") == "1"


@pytest.mark.skipif(not SWEEP, reason="about 30 suite runs (5 minutes on 2 CPUs); "
                    "set WINSTOR_RBAC_SWEEP=1")
@pytest.mark.parametrize("right", [r for r in rights() if r[1:] not in UNEXERCISED]
                         if SWEEP else [], ids=lambda r: f"{r[1]}-{r[2]}")
def test_every_granted_right_is_needed(right: tuple[str, str, str], sim_factory,
                                       tmp_path: Path) -> None:
    """Take away one right the manifests grant: the run fails, naming it."""
    sim = sim_factory(1)
    apply(sim, _without(right))
    result = run_as(sim, mint_token(sim, *SA), tmp_path)
    _, resource, verb = right
    assert result.code != 0, f"the suite passed without {verb} {resource}"
    text = result.output + json.dumps(result.messages)
    assert f'cannot {verb} resource \\"{resource}\\"' in text or \
        f'cannot {verb} resource "{resource}"' in text, result.output[-2000:]


# -- kubectl against the embedded cluster's RBAC --------------------------------------------
@pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
def test_kubectl_create_token_and_auth_can_i(sim_factory, tmp_path: Path) -> None:
    sim = sim_factory(2)
    apply(sim, manifest_docs())

    def kubectl(*args: str, kc: Path = sim.kubeconfig) -> subprocess.CompletedProcess[str]:
        assert KUBECTL is not None
        return subprocess.run([KUBECTL, f"--kubeconfig={kc}", "--context=sim-1", *args],
                              capture_output=True, text=True, timeout=60)

    made = kubectl("create", "token", "winstor", "-n", "winstor-system", "--duration=20m")
    assert made.returncode == 0, made.stderr
    kc = kubeconfig_with_token(sim, made.stdout.strip(), tmp_path / "sa.kubeconfig")
    who = kubectl("auth", "whoami", "-o", "json", kc=kc)
    assert json.loads(who.stdout)["status"]["userInfo"]["username"] == \
        "system:serviceaccount:winstor-system:winstor"
    for args, answer in ((["create", "namespaces"], "yes"), (["create", "pods/exec"], "yes"),
                         (["delete", "storageclass/gp2-windows"], "yes"),
                         (["delete", "storageclass/gp2"], "no"),
                         (["list", "daemonsets", "-n", "kube-system"], "yes"),
                         (["list", "daemonsets", "-n", "default"], "no"),
                         (["get", "secrets", "-A"], "no"),
                         # EBS-MOVE-01 cordons and drains a node: it may patch nodes and
                         # evict pods, never delete a node.
                         (["patch", "nodes"], "yes"), (["delete", "nodes"], "no"),
                         (["create", "pods/eviction"], "yes")):
        assert kubectl("auth", "can-i", *args, kc=kc).stdout.strip() == answer, args
    denied = kubectl("delete", "storageclass", "gp2", kc=kc)
    assert denied.returncode != 0
    assert 'storageclasses.storage.k8s.io "gp2" is forbidden: User ' \
        '"system:serviceaccount:winstor-system:winstor" cannot delete resource ' \
        '"storageclasses" in API group "storage.k8s.io" at the cluster scope' in denied.stderr
    # Tokens are the issuing cluster's: sim-2 does not know this one.
    other = subprocess.run([KUBECTL, f"--kubeconfig={kc}", "--context=sim-2", "get", "nodes"],
                           capture_output=True, text=True, timeout=60)
    assert "You must be logged in to the server" in other.stderr
    assert kubectl("delete", "serviceaccount", "winstor", "-n", "winstor-system").returncode == 0
    assert "You must be logged in" in kubectl("get", "nodes", kc=kc).stderr
