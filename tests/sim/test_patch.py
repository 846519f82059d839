"""Self-tests of winstor.sim.api.patch: the three PATCH formats as kube-apiserver applies them.

Where kubectl is installed, two more things are checked against the real Go
code: `kubectl patch --local` (apimachinery's own strategic merge and json
patch) must give the same result as ours, and `kubectl apply` must work
end to end against a tiny server built only from this module and
winstor.sim.api.schema (OpenAPI v3, strict field validation, three-way patch).
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from winstor.sim.api.patch import PatchError, apply_patch, decoding_error
from winstor.sim.api.schema import SchemaError, SchemaRegistry

SMP = "application/strategic-merge-patch+json"
MERGE = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")


@pytest.fixture(scope="module")
def reg() -> SchemaRegistry:
    return SchemaRegistry("1.32")


def smp(obj: dict, patch: Any, reg: SchemaRegistry) -> dict:
    return apply_patch(obj, json.dumps(patch), SMP, schemas=reg)


def deployment() -> dict:
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "windows", "labels": {"a": "1", "b": "2"},
                     "finalizers": ["f1", "f2"], "resourceVersion": "7", "uid": "u"},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {"name": "c1", "image": "nginx", "args": ["a", "b"],
                         "env": [{"name": "E1", "value": "1"}, {"name": "E2", "value": "2"}],
                         "ports": [{"containerPort": 80}, {"containerPort": 443}],
                         "volumeMounts": [{"name": "v1", "mountPath": "C:\\d1"},
                                          {"name": "v2", "mountPath": "C:\\d2"}]},
                        {"name": "c2", "image": "busybox"},
                    ],
                    "volumes": [{"name": "v1", "emptyDir": {}},
                                {"name": "v2", "hostPath": {"path": "G:\\x",
                                                            "type": "Directory"}}],
                    "tolerations": [{"key": "os", "operator": "Equal", "value": "windows"}],
                    "nodeSelector": {"kubernetes.io/os": "windows"},
                },
            },
        },
        "status": {"replicas": 2, "conditions": [{"type": "Available", "status": "True"}]},
    }


def containers(obj: dict) -> list[dict]:
    return obj["spec"]["template"]["spec"]["containers"]


# -- what kubectl apply sends -----------------------------------------------------------

MANIFEST_V2 = {
    "apiVersion": "apps/v1", "kind": "Deployment",
    "metadata": {"annotations": {}, "name": "web", "namespace": "windows"},
    "spec": {"selector": {"matchLabels": {"app": "web"}},
             "template": {"metadata": {"labels": {"app": "web"}},
                          "spec": {"containers": [{
                              "env": [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}],
                              "image": "mcr.microsoft.com/windows/servercore:ltsc2022",
                              "name": "app"}],
                              "nodeSelector": {"kubernetes.io/os": "windows"}}}},
}


def applied_live_object() -> dict:
    """A Deployment created by `kubectl apply`, then touched by controllers."""
    manifest_v1 = copy.deepcopy(MANIFEST_V2)
    c = manifest_v1["spec"]["template"]["spec"]["containers"]
    c[0]["image"] = "mcr.microsoft.com/windows/servercore:ltsc2019"
    c[0]["env"] = [{"name": "A", "value": "1"}]
    c.append({"image": "busybox", "name": "side"})
    live = copy.deepcopy(manifest_v1)
    live["metadata"]["annotations"] = {
        "kubectl.kubernetes.io/last-applied-configuration": json.dumps(manifest_v1) + "\n",
        "deployment.kubernetes.io/revision": "1"}
    live["metadata"].update(uid="9f1c", resourceVersion="41", generation=1)
    live["spec"].update(replicas=1, revisionHistoryLimit=10)
    app = live["spec"]["template"]["spec"]["containers"][0]
    # Set by a controller/webhook; never in the manifest.
    app["volumeMounts"] = [{"name": "injected", "mountPath": "C:\\injected"}]
    app["terminationMessagePath"] = "/dev/termination-log"
    live["spec"]["template"]["spec"]["volumes"] = [{"name": "injected", "emptyDir": {}}]
    live["status"] = {"replicas": 1, "readyReplicas": 1, "observedGeneration": 1,
                      "conditions": [{"type": "Available", "status": "True"}]}
    return live


def kubectl_reapply_patch() -> str:
    """The body kubectl 1.32 sent for that re-apply (captured from a real run)."""
    last_applied = json.dumps(MANIFEST_V2, separators=(",", ":")) + "\n"
    return json.dumps({
        "metadata": {"annotations": {
            "kubectl.kubernetes.io/last-applied-configuration": last_applied}},
        "spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "app"}],
            "containers": [
                {"$setElementOrder/env": [{"name": "B"}, {"name": "A"}],
                 "env": [{"name": "B", "value": "2"}],
                 "image": "mcr.microsoft.com/windows/servercore:ltsc2022", "name": "app"},
                {"$patch": "delete", "name": "side"},
            ]}}}}, separators=(",", ":"))


def test_kubectl_reapply_keeps_what_controllers_set(reg: SchemaRegistry) -> None:
    live = applied_live_object()
    before = copy.deepcopy(live)
    out = apply_patch(live, kubectl_reapply_patch().encode(), SMP, schemas=reg)
    assert live == before, "the stored object must not be modified in place"
    spec = out["spec"]["template"]["spec"]
    assert [c["name"] for c in spec["containers"]] == ["app"]
    app = spec["containers"][0]
    assert app["image"] == "mcr.microsoft.com/windows/servercore:ltsc2022"
    assert app["env"] == [{"name": "B", "value": "2"}, {"name": "A", "value": "1"}]
    assert app["volumeMounts"] == [{"name": "injected", "mountPath": "C:\\injected"}]
    assert app["terminationMessagePath"] == "/dev/termination-log"
    assert spec["volumes"] == [{"name": "injected", "emptyDir": {}}]
    assert out["status"] == before["status"]
    assert out["spec"]["replicas"] == 1 and out["spec"]["revisionHistoryLimit"] == 10
    ann = out["metadata"]["annotations"]
    assert json.loads(ann["kubectl.kubernetes.io/last-applied-configuration"]) == MANIFEST_V2
    assert ann["deployment.kubernetes.io/revision"] == "1"
    assert out["metadata"]["uid"] == "9f1c"
    assert reg.validate(out, strict=True) == []


# -- strategic merge ---------------------------------------------------------------------


def test_containers_merge_by_name(reg: SchemaRegistry) -> None:
    out = smp(deployment(), {"spec": {"template": {"spec": {"containers": [
        {"name": "c2", "image": "busybox:2"}, {"name": "c0", "image": "new"}]}}}}, reg)
    names = [c["name"] for c in containers(out)]
    # apimachinery's order: server-only items keep live order, new ones go first.
    assert names == ["c1", "c2", "c0"]
    assert containers(out)[1] == {"name": "c2", "image": "busybox:2"}
    assert containers(out)[0] == containers(deployment())[0]


def test_new_list_items_without_order_directive_come_first(reg: SchemaRegistry) -> None:
    out = smp(deployment(), {"spec": {"template": {"spec": {"containers": [
        {"name": "c3", "image": "x"}]}}}}, reg)
    assert [c["name"] for c in containers(out)] == ["c3", "c1", "c2"]


def test_nested_lists_merge_by_their_own_keys(reg: SchemaRegistry) -> None:
    out = smp(deployment(), {"spec": {"template": {"spec": {"containers": [{
        "name": "c1",
        "env": [{"name": "E1", "value": "9"}],
        "ports": [{"containerPort": 8080}],
        "volumeMounts": [{"mountPath": "C:\\d1", "$patch": "delete"}],
    }]}}}}, reg)
    c1 = containers(out)[0]
    assert c1["env"] == [{"name": "E1", "value": "9"}, {"name": "E2", "value": "2"}]
    assert [p["containerPort"] for p in c1["ports"]] == [8080, 80, 443]
    assert c1["volumeMounts"] == [{"name": "v2", "mountPath": "C:\\d2"}]
    assert c1["args"] == ["a", "b"] and c1["image"] == "nginx"


def test_lists_without_strategy_are_replaced(reg: SchemaRegistry) -> None:
    out = smp(deployment(), {"spec": {"template": {"spec": {
        "tolerations": [{"key": "x", "operator": "Exists"}],
        "containers": [{"name": "c1", "args": ["c"]}]}}}}, reg)
    assert out["spec"]["template"]["spec"]["tolerations"] == [{"key": "x", "operator": "Exists"}]
    assert containers(out)[0]["args"] == ["c"]


def test_finalizers_are_unioned_and_deleted_by_parallel_list(reg: SchemaRegistry) -> None:
    out = smp(deployment(), {"metadata": {"finalizers": ["f3", "f1"]}}, reg)
    assert out["metadata"]["finalizers"] == ["f3", "f1", "f2"]
    out = smp(deployment(), {"metadata": {"$deleteFromPrimitiveList/finalizers": ["f1"]}}, reg)
    assert out["metadata"]["finalizers"] == ["f2"]
    out = smp(deployment(), {"metadata": {"$setElementOrder/finalizers": ["f2", "f3", "f1"],
                                          "finalizers": ["f3"]}}, reg)
    assert out["metadata"]["finalizers"] == ["f2", "f3", "f1"]
    out = smp(deployment(), {"metadata": {"finalizers": None}}, reg)
    assert "finalizers" not in out["metadata"]


def test_set_element_order_reorders_merged_list(reg: SchemaRegistry) -> None:
    out = smp(deployment(), {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "c2"}, {"name": "c0"}, {"name": "c1"}],
        "containers": [{"name": "c0", "image": "z"}]}}}}, reg)
    assert [c["name"] for c in containers(out)] == ["c2", "c0", "c1"]
    assert "$setElementOrder/containers" not in out["spec"]["template"]["spec"]


def test_list_directives(reg: SchemaRegistry) -> None:
    out = smp(deployment(), {"spec": {"template": {"spec": {"containers": [
        {"name": "c1", "$patch": "delete"}]}}}}, reg)
    assert [c["name"] for c in containers(out)] == ["c2"]
    out = smp(deployment(), {"spec": {"template": {"spec": {"containers": [
        {"name": "only", "image": "x"}, {"$patch": "replace"}]}}}}, reg)
    assert containers(out) == [{"name": "only", "image": "x"}]


def test_map_directives_and_null(reg: SchemaRegistry) -> None:
    out = smp(deployment(), {"metadata": {"labels": {"a": None, "c": "3"}}}, reg)
    assert out["metadata"]["labels"] == {"b": "2", "c": "3"}
    out = smp(deployment(), {"spec": {"template": {"spec": {
        "nodeSelector": {"$patch": "replace", "kubernetes.io/arch": "amd64"}}}}}, reg)
    assert out["spec"]["template"]["spec"]["nodeSelector"] == {"kubernetes.io/arch": "amd64"}
    out = smp(deployment(), {"spec": {"strategy": {"$patch": "delete"}}}, reg)
    assert out["spec"]["strategy"] == {}
    # `$patch: merge` on a map is an error in apimachinery, answered as a plain 500.
    with pytest.raises(PatchError) as err:
        smp(deployment(), {"spec": {"strategy": {"$patch": "merge"}}}, reg)
    assert (err.value.code, err.value.reason) == (500, "")
    assert err.value.message == "unknown patch type: merge in map: map[$patch:merge]"


def test_retain_keys(reg: SchemaRegistry) -> None:
    out = smp(deployment(), {"spec": {"strategy": {"$retainKeys": ["type"],
                                                   "type": "Recreate"}}}, reg)
    assert out["spec"]["strategy"] == {"type": "Recreate"}
    out = smp(deployment(), {"spec": {"template": {"spec": {"volumes": [
        {"name": "v2", "$retainKeys": ["name", "emptyDir"], "emptyDir": {}}]}}}}, reg)
    assert out["spec"]["template"]["spec"]["volumes"][1] == {"name": "v2", "emptyDir": {}}
    with pytest.raises(PatchError) as err:
        smp(deployment(), {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate",
                                                 "rollingUpdate": {"maxSurge": 2}}}}, reg)
    assert (err.value.code, err.value.reason) == (400, "BadRequest")
    assert err.value.message == "invalid patch format of retainKeys"


def test_replace_strategy_on_a_map(reg: SchemaRegistry) -> None:
    pdb = {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "p"},
           "spec": {"selector": {"matchLabels": {"a": "1", "b": "2"}}, "minAvailable": 1}}
    out = smp(pdb, {"spec": {"selector": {"matchLabels": {"c": "3"}}}}, reg)
    assert out["spec"]["selector"] == {"matchLabels": {"c": "3"}}


def test_merge_errors_use_the_apiservers_codes(reg: SchemaRegistry) -> None:
    with pytest.raises(PatchError) as err:
        smp(deployment(), {"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}},
            reg)
    assert (err.value.code, err.value.reason) == (500, "")
    assert err.value.message == "map: map[image:x] does not contain declared merge key: name"
    assert err.value.to_status()["code"] == 500
    with pytest.raises(PatchError) as err:
        smp(deployment(), {"spec": {"template": {"spec": {
            "$setElementOrder/containers": [{"name": "c1"}],
            "containers": [{"name": "c2", "image": "q"}]}}}}, reg)
    assert err.value.code == 500 and err.value.message.startswith("The order in patch list:")
    with pytest.raises(PatchError) as err:
        apply_patch(deployment(), b"[1]", SMP, schemas=reg)
    assert err.value.code == 400
    assert err.value.message == ("json: cannot unmarshal array into Go value of type "
                                 "map[string]interface {}")


def test_strategic_merge_needs_a_known_kind(reg: SchemaRegistry) -> None:
    widget = {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}}
    with pytest.raises(PatchError) as err:
        apply_patch(widget, {"spec": {}}, SMP, schemas=reg)
    assert (err.value.code, err.value.reason) == (415, "UnsupportedMediaType")
    assert apply_patch(widget, {"spec": {"a": 1}}, MERGE, schemas=reg)["spec"] == {"a": 1}


def test_decoding_errors_after_a_patch_are_invalid_against_patch(reg: SchemaRegistry) -> None:
    body = b'{"spec":{"replicas":"3"}}'
    new = apply_patch(deployment(), body, SMP, schemas=reg)
    with pytest.raises(SchemaError) as err:
        reg.validate(new, strict=False)
    assert err.value.detail == ("json: cannot unmarshal string into Go struct field "
                                "DeploymentSpec.spec.replicas of type int32")
    e = decoding_error(err.value, SMP, body, new)
    assert (e.code, e.reason) == (422, "Invalid")
    assert e.message == ('"" is invalid: patch: Invalid value: "map[spec:map[replicas:3]]": '
                         + err.value.detail)
    assert e.to_status()["details"]["causes"][0]["field"] == "patch"

    body = b'{"spec":{"bogus":1}}'
    new = apply_patch(deployment(), body, MERGE, schemas=reg)
    with pytest.raises(SchemaError) as err:
        reg.validate(new, strict=True)
    e = decoding_error(err.value, MERGE, body, new)
    assert e.code == 422
    assert e.message.endswith('": strict decoding error: unknown field "spec.bogus"')
    assert e.message.startswith('"" is invalid: patch: Invalid value: "{\\"apiVersion')

    missing = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {}}
    with pytest.raises(SchemaError) as err:
        reg.validate(missing, strict=False)
    assert decoding_error(err.value, MERGE, b"{}", missing).code == 422
    assert decoding_error(err.value, MERGE, b"{}", missing).message == err.value.message


# -- merge patch -----------------------------------------------------------------------------


def test_merge_patch_null_deletes_and_lists_replace(reg: SchemaRegistry) -> None:
    out = apply_patch(deployment(), json.dumps({
        "metadata": {"labels": {"a": None, "c": "3"}, "finalizers": None},
        "spec": {"template": {"spec": {"containers": [{"name": "only", "image": "x"}]}},
                 "newThing": {"a": None, "b": {"c": None, "d": 1}}}}), MERGE, schemas=reg)
    assert out["metadata"]["labels"] == {"b": "2", "c": "3"}
    assert "finalizers" not in out["metadata"]
    assert containers(out) == [{"name": "only", "image": "x"}]
    assert out["spec"]["newThing"] == {"b": {"d": 1}}
    assert out["status"] == deployment()["status"]


def test_merge_patch_must_be_an_object(reg: SchemaRegistry) -> None:
    for body in (b"[]", b"null", b'"x"'):
        with pytest.raises(PatchError) as err:
            apply_patch(deployment(), body, MERGE, schemas=reg)
        assert err.value.code == 400


# -- JSON patch --------------------------------------------------------------------------------


def test_json_patch_pointer_escaping(reg: SchemaRegistry) -> None:
    ops = [
        {"op": "add", "path": "/metadata/annotations", "value": {}},
        {"op": "add", "path": "/metadata/annotations/winstor.io~1run", "value": "r1"},
        {"op": "add", "path": "/metadata/annotations/tilde~0key", "value": "t"},
        {"op": "replace", "path": "/metadata/labels/a", "value": "9"},
        {"op": "test", "path": "/metadata/annotations/winstor.io~1run", "value": "r1"},
    ]
    out = apply_patch(deployment(), json.dumps(ops), JSON_PATCH, schemas=reg)
    assert out["metadata"]["annotations"] == {"winstor.io/run": "r1", "tilde~key": "t"}
    assert out["metadata"]["labels"]["a"] == "9"


def test_json_patch_operations(reg: SchemaRegistry) -> None:
    ops = [
        {"op": "add", "path": "/spec/template/spec/containers/-",
         "value": {"name": "c3", "image": "x"}},
        {"op": "add", "path": "/spec/template/spec/containers/0/args/1", "value": "mid"},
        {"op": "remove", "path": "/spec/template/spec/containers/1"},
        {"op": "copy", "from": "/metadata/labels", "path": "/spec/template/metadata/labels"},
        {"op": "move", "from": "/metadata/finalizers", "path": "/metadata/oldFinalizers"},
        {"op": "remove", "path": "/spec/template/spec/containers/-1/image"},
    ]
    out = apply_patch(deployment(), json.dumps(ops), JSON_PATCH, schemas=reg)
    assert [c["name"] for c in containers(out)] == ["c1", "c3"]
    assert containers(out)[0]["args"] == ["a", "mid", "b"]
    assert containers(out)[1] == {"name": "c3"}
    assert out["spec"]["template"]["metadata"]["labels"] == {"a": "1", "b": "2"}
    assert out["metadata"]["oldFinalizers"] == ["f1", "f2"]
    assert "finalizers" not in out["metadata"]


@pytest.mark.parametrize("ops", [
    [{"op": "test", "path": "/spec/replicas", "value": 3}],
    [{"op": "remove", "path": "/metadata/nope"}],
    [{"op": "add", "path": "/a/b/c", "value": 1}],
    [{"op": "replace", "path": "/spec/template/spec/containers/5", "value": {}}],
    [{"op": "bogus", "path": "/spec"}],
])
def test_json_patch_that_does_not_apply_is_invalid(reg: SchemaRegistry, ops: list) -> None:
    original = deployment()
    with pytest.raises(PatchError) as err:
        apply_patch(original, json.dumps(ops), JSON_PATCH, schemas=reg)
    e = err.value
    assert (e.code, e.reason) == (422, "Invalid")
    assert e.message == "the server rejected our request due to an error in our request"
    assert e.to_status()["details"] == {}
    assert original == deployment()


def test_json_patch_body_errors(reg: SchemaRegistry) -> None:
    with pytest.raises(PatchError) as err:
        apply_patch(deployment(), b'{"op": "add"}', JSON_PATCH, schemas=reg)
    assert err.value.code == 400
    assert err.value.message == ("json: cannot unmarshal object into Go value of type "
                                 "jsonpatch.Patch")
    too_many = [{"op": "test", "path": "/kind", "value": "Deployment"}] * 10001
    with pytest.raises(PatchError) as err:
        apply_patch(deployment(), json.dumps(too_many), JSON_PATCH, schemas=reg)
    assert (err.value.code, err.value.reason) == (413, "RequestEntityTooLarge")


# -- content types and bodies ---------------------------------------------------------------------


def test_content_types(reg: SchemaRegistry) -> None:
    out = apply_patch(deployment(), b'{"spec":{"replicas":3}}',
                      "application/merge-patch+json; charset=utf-8", schemas=reg)
    assert out["spec"]["replicas"] == 3
    for ctype in ("application/apply-patch+yaml", "application/json", "text/plain"):
        with pytest.raises(PatchError) as err:
            apply_patch(deployment(), b"{}", ctype, schemas=reg)
        assert (err.value.code, err.value.reason) == (415, "UnsupportedMediaType")


def test_malformed_json_is_a_bad_request(reg: SchemaRegistry) -> None:
    with pytest.raises(PatchError) as err:
        apply_patch(deployment(), b'{"spec": x}', SMP, schemas=reg)
    assert err.value.message == "invalid character 'x' looking for beginning of value"
    with pytest.raises(PatchError) as err:
        apply_patch(deployment(), b'{"spec": ', SMP, schemas=reg)
    assert err.value.message == "unexpected end of JSON input"


def test_dict_and_list_bodies_are_not_modified(reg: SchemaRegistry) -> None:
    body = {"spec": {"template": {"spec": {"containers": [{"name": "c1", "image": "n2"}],
                                           "$setElementOrder/containers": [{"name": "c1"}]}}}}
    kept = copy.deepcopy(body)
    apply_patch(deployment(), body, SMP, schemas=reg)
    assert body == kept
    ops = [{"op": "add", "path": "/metadata/labels/x", "value": {"deep": 1}}]
    out = apply_patch(deployment(), ops, JSON_PATCH, schemas=reg)
    out["metadata"]["labels"]["x"]["deep"] = 2
    assert ops[0]["value"] == {"deep": 1}


# -- differential check against apimachinery (kubectl patch --local) ------------------------------

ORACLE_CASES: list[tuple[str, Any]] = [
    ("strategic", {"metadata": {"labels": {"a": None, "c": "3"}, "finalizers": ["f3"]}}),
    ("strategic", {"metadata": {"$setElementOrder/finalizers": ["f2", "f3", "f1"],
                                "finalizers": ["f3"]}}),
    ("strategic", {"spec": {"template": {"spec": {"containers": [
        {"name": "c1", "env": [{"name": "E3", "value": "3"}, {"name": "E1", "value": "9"}],
         "ports": [{"containerPort": 8080}]}]}}}}),
    ("strategic", {"spec": {"template": {"spec": {
        "$setElementOrder/containers": [{"name": "c1"}, {"name": "c0"}, {"name": "c2"}],
        "containers": [{"name": "c0", "image": "n0"}]}}}}),
    ("strategic", {"spec": {"template": {"spec": {"containers": [{
        "name": "c1", "volumeMounts": [{"mountPath": "C:\\d3", "name": "v3"}],
        "$setElementOrder/volumeMounts": [{"mountPath": "C:\\d3"}, {"mountPath": "C:\\d1"},
                                          {"mountPath": "C:\\d2"}]}]}}}}),
    ("strategic", {"spec": {"template": {"spec": {"containers": [
        {"name": "c9", "image": "z"}, {"$patch": "replace"}]}}}}),
    ("strategic", {"spec": {"strategy": {"$retainKeys": ["type"], "type": "Recreate"}}}),
    ("strategic", {"spec": {"template": {"spec": {"volumes": [
        {"name": "v2", "$retainKeys": ["name", "emptyDir"], "emptyDir": {}}]}}}}),
    ("strategic", {"spec": {"template": {"spec": {"containers": [
        {"name": "c1", "env": [{"name": "E2", "$patch": "delete"}],
         "$setElementOrder/env": [{"name": "E1"}]}]}}}}),
    ("strategic", {"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}}),
    ("merge", {"metadata": {"labels": {"a": None}}, "spec": {"template": None}}),
    ("json", [{"op": "add", "path": "/metadata/labels/x~1y", "value": "1"},
              {"op": "remove", "path": "/spec/template/spec/containers/-1"},
              {"op": "replace", "path": "/metadata/missing", "value": "set"}]),
    ("json", [{"op": "test", "path": "/spec/replicas", "value": 5}]),
]
_CT = {"strategic": SMP, "merge": MERGE, "json": JSON_PATCH}


def _normalize(value: Any) -> Any:
    """Drop what Go's typed round trip adds or omits (empty values)."""
    if isinstance(value, dict):
        out = {k: _normalize(v) for k, v in value.items()}
        return {k: v for k, v in out.items() if v not in (None, {}, [], "")}
    if isinstance(value, list):
        return [_normalize(v) for v in value]
    return value


@needs_kubectl
@pytest.mark.parametrize(("kind", "patch"), ORACLE_CASES,
                         ids=[f"{k}-{i}" for i, (k, _) in enumerate(ORACLE_CASES)])
def test_same_result_as_apimachinery(reg: SchemaRegistry, tmp_path: Path, kind: str,
                                     patch: Any) -> None:
    original = deployment()
    src = tmp_path / "obj.json"
    src.write_text(json.dumps(original))
    proc = subprocess.run(
        [str(KUBECTL), "patch", "--local", "-f", str(src), "--type", kind, "-p",
         json.dumps(patch), "-o", "json"],
        capture_output=True, text=True, timeout=60,
        env={**os.environ, "KUBECONFIG": str(tmp_path / "none")})
    try:
        ours: Any = apply_patch(original, json.dumps(patch), _CT[kind], schemas=reg)
    except PatchError as err:
        assert proc.returncode != 0, f"apimachinery accepted what we refused: {err.detail}"
        assert err.detail in proc.stderr
        return
    assert proc.returncode == 0, proc.stderr
    assert _normalize(ours) == _normalize(json.loads(proc.stdout))


# -- kubectl apply end to end ----------------------------------------------------------------


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, reg: SchemaRegistry) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.reg = reg
        self.store: dict[str, dict] = {}
        self.requests: list[tuple[str, str, str]] = []
        self.patches: list[dict] = []


class _Handler(BaseHTTPRequestHandler):
    """Just enough of an apiserver for kubectl apply on Deployments."""

    server: _Server

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(raw)

    def _route(self) -> tuple[str, dict[str, str]]:
        path, _, query = self.path.partition("?")
        self.server.requests.append((self.command, path, query))
        return path, dict(p.split("=", 1) for p in query.split("&") if "=" in p)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _not_found(self, name: str = "") -> None:
        msg = (f'deployments.apps "{name}" not found' if name
               else "the server could not find the requested resource")
        self._send(404, {"kind": "Status", "apiVersion": "v1", "metadata": {},
                         "status": "Failure", "message": msg, "reason": "NotFound",
                         "code": 404})

    def do_GET(self) -> None:
        path, _ = self._route()
        reg = self.server.reg
        deploy = {"name": "deployments", "singularName": "deployment", "namespaced": True,
                  "kind": "Deployment", "verbs": ["create", "get", "list", "patch"]}
        gv = {"groupVersion": "apps/v1", "version": "v1"}
        fixed = {
            "/version": {"major": "1", "minor": "32", "gitVersion": "v1.32.0"},
            "/api": {"kind": "APIVersions", "versions": ["v1"],
                     "serverAddressByClientCIDRs": []},
            "/api/v1": {"kind": "APIResourceList", "groupVersion": "v1", "resources": []},
            "/apis": {"kind": "APIGroupList", "apiVersion": "v1", "groups": [
                {"name": "apps", "versions": [gv], "preferredVersion": gv}]},
            "/apis/apps/v1": {"kind": "APIResourceList", "apiVersion": "v1",
                              "groupVersion": "apps/v1", "resources": [deploy]},
            "/openapi/v3": reg.openapi_v3_index(),
        }
        if path in fixed:
            return self._send(200, fixed[path])
        if path.startswith("/openapi/v3/"):
            raw = reg.openapi_v3_document_bytes(path[len("/openapi/v3/"):])
            return self._send(200, raw) if raw else self._not_found()
        prefix = "/apis/apps/v1/namespaces/windows/deployments/"
        if path.startswith(prefix):
            name = path[len(prefix):]
            if name in self.server.store:
                return self._send(200, self.server.store[name])
            return self._not_found(name)
        return self._not_found()

    def do_POST(self) -> None:
        _, query = self._route()
        obj = json.loads(self._body())
        try:
            warnings = self.server.reg.validate(obj, strict=query.get("fieldValidation")
                                                == "Strict")
        except SchemaError as err:
            return self._send(err.code, err.to_status())
        obj["metadata"].update(uid="u-1", resourceVersion="1", generation=1)
        # What controllers and webhooks add after creation.
        spec = obj["spec"]["template"]["spec"]
        spec["containers"][0]["volumeMounts"] = [{"name": "injected",
                                                  "mountPath": "C:\\injected"}]
        spec["volumes"] = [{"name": "injected", "emptyDir": {}}]
        obj["status"] = {"replicas": 1, "readyReplicas": 1}
        self.server.store[obj["metadata"]["name"]] = obj
        headers = {"Warning": ", ".join(f'299 - "{w}"' for w in warnings)} if warnings else None
        return self._send(201, obj, headers)

    def do_PATCH(self) -> None:
        path, query = self._route()
        name = path.rsplit("/", 1)[1]
        raw = self._body()
        self.server.patches.append(json.loads(raw))
        try:
            new = apply_patch(self.server.store[name], raw, self.headers["Content-Type"],
                              schemas=self.server.reg)
            self.server.reg.validate(new, strict=query.get("fieldValidation") == "Strict")
        except (PatchError, SchemaError) as err:
            return self._send(err.code, err.to_status())
        new["metadata"]["resourceVersion"] = str(int(new["metadata"]["resourceVersion"]) + 1)
        self.server.store[name] = new
        return self._send(200, new)


@contextlib.contextmanager
def _serve(reg: SchemaRegistry) -> Iterator[_Server]:
    srv = _Server(reg)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


MANIFEST = """apiVersion: apps/v1
kind: Deployment
metadata:
  name: web-windows
  namespace: windows
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      nodeSelector: {kubernetes.io/os: windows}
      containers:
      - name: app
        image: mcr.microsoft.com/windows/servercore:ltsc2019
        env: [{name: A, value: "1"}]
      - name: side
        image: busybox
"""


@needs_kubectl
def test_kubectl_apply_end_to_end(reg: SchemaRegistry, tmp_path: Path) -> None:
    with _serve(reg) as srv:
        kubeconfig = tmp_path / "kubeconfig"
        kubeconfig.write_text(
            "apiVersion: v1\nkind: Config\n"
            f"clusters: [{{name: sim, cluster: {{server: 'http://127.0.0.1:"
            f"{srv.server_address[1]}'}}}}]\n"
            "users: [{name: u, user: {token: t}}]\n"
            "contexts: [{name: sim, context: {cluster: sim, user: u, namespace: windows}}]\n"
            "current-context: sim\n")
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "HOME": str(tmp_path)}

        def kubectl(*args: str, manifest: str | None = None) -> subprocess.CompletedProcess:
            return subprocess.run([str(KUBECTL), *args], input=manifest, capture_output=True,
                                  text=True, env=env, timeout=120)

        first = kubectl("apply", "-f", "-", manifest=MANIFEST)
        assert first.returncode == 0, first.stderr
        assert "created" in first.stdout
        v2 = MANIFEST.replace("ltsc2019\n", "ltsc2022\n").replace(
            '[{name: A, value: "1"}]', '[{name: B, value: "2"}, {name: A, value: "1"}]').replace(
            "      - name: side\n        image: busybox\n", "")
        second = kubectl("apply", "-f", "-", manifest=v2)
        assert second.returncode == 0, second.stderr
        assert "configured" in second.stdout
        assert "warning" not in second.stderr.lower(), second.stderr
        third = kubectl("apply", "-f", "-", manifest=v2)
        assert third.returncode == 0 and "unchanged" in third.stdout, third.stderr

        # kubectl computed a strategic merge patch from our OpenAPI v3 (no v2 fallback)
        # and found fieldValidation there, so the server did the validation.
        paths = [p for _, p, _ in srv.requests]
        assert "/openapi/v3/apis/apps/v1" in paths and "/openapi/v2" not in paths
        patch_queries = [q for m, _, q in srv.requests if m == "PATCH"]
        assert patch_queries and all("fieldValidation=Strict" in q for q in patch_queries)
        sent = srv.patches[0]["spec"]["template"]["spec"]
        assert sent["$setElementOrder/containers"] == [{"name": "app"}]
        assert {"$patch": "delete", "name": "side"} in sent["containers"]

        live = srv.store["web-windows"]
        spec = live["spec"]["template"]["spec"]
        assert [c["name"] for c in spec["containers"]] == ["app"]
        app = spec["containers"][0]
        assert app["image"] == "mcr.microsoft.com/windows/servercore:ltsc2022"
        assert [e["name"] for e in app["env"]] == ["B", "A"]
        assert app["volumeMounts"] == [{"name": "injected", "mountPath": "C:\\injected"}]
        assert spec["volumes"] == [{"name": "injected", "emptyDir": {}}]
        assert live["status"] == {"replicas": 1, "readyReplicas": 1}

        bad = kubectl("apply", "-f", "-", manifest=MANIFEST.replace(
            "      - name: side\n", "      - name: side\n        volumeMount: []\n"))
        assert bad.returncode != 0
        assert ('Deployment in version "v1" cannot be handled as a Deployment: strict decoding '
                'error: unknown field "spec.template.spec.containers[1].volumeMount"'
                in bad.stderr)

        explain = kubectl("explain", "deployment.spec.strategy")
        assert explain.returncode == 0, explain.stderr
        assert "rollingUpdate" in explain.stdout and "DeploymentStrategy" in explain.stdout
