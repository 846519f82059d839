"""Self-tests of winstor.sim.api.schema: decoding checks, patch metadata and OpenAPI v3.

The expected texts are kube-apiserver's own (its field-validation integration
test and messages users meet from `kubectl apply`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import time

import pytest

from winstor.sim.api.schema import (
    ARRAY,
    OBJECT,
    SchemaError,
    SchemaRegistry,
    _schema_set,
    available_versions,
    resolve_version,
)


@pytest.fixture(scope="module")
def reg() -> SchemaRegistry:
    return SchemaRegistry("1.31")


def seed_deployment() -> dict:
    """The seed scenario's Windows Deployment, as the server stores it."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "windows-server-ltsc2019", "namespace": "windows",
            "uid": "0b8e7c1e-9a34-4f7e-8f64-2d1b2f6f1c11", "resourceVersion": "812",
            "generation": 2, "creationTimestamp": "2026-01-01T00:00:00Z",
            "labels": {"app": "windows-server-ltsc2019"},
            "annotations": {"deployment.kubernetes.io/revision": "1"},
            "managedFields": [{"manager": "kubectl", "operation": "Update",
                               "apiVersion": "apps/v1", "time": "2026-01-01T00:00:00Z",
                               "fieldsType": "FieldsV1",
                               "fieldsV1": {"f:spec": {"f:replicas": {}}}}],
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "windows-server-ltsc2019"}},
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": 1}},
            "template": {
                "metadata": {"labels": {"app": "windows-server-ltsc2019"}},
                "spec": {
                    "nodeSelector": {"kubernetes.io/os": "windows",
                                     "node.kubernetes.io/windows-build": "10.0.17763"},
                    "containers": [{
                        "name": "windows-server-ltsc2019",
                        "image": "mcr.microsoft.com/windows/servercore:ltsc2019",
                        "ports": [{"containerPort": 80, "protocol": "TCP"}],
                        "resources": {"limits": {"cpu": 1, "memory": "800Mi"},
                                      "requests": {"cpu": "500m", "memory": 0.5}},
                        "volumeMounts": [{"name": "ebs-volume", "mountPath": "C:\\data"}],
                        "command": ["powershell.exe", "-command", "Start-Sleep 3600"],
                    }],
                    "volumes": [{"name": "ebs-volume", "persistentVolumeClaim": {
                        "claimName": "ebs-windows-pv-claim"}}],
                    "tolerations": [{"key": "os", "operator": "Equal", "value": "windows",
                                     "effect": "NoSchedule"}],
                },
            },
        },
        "status": {"replicas": 1, "readyReplicas": 1, "observedGeneration": 2,
                   "conditions": [{"type": "Available", "status": "True",
                                   "lastUpdateTime": "2026-01-01T00:00:10Z"}]},
    }


def pod(**spec_extra: object) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "test-fsx"},
            "spec": {"containers": [{"name": "c", "image": "i"}], **spec_extra}}


# -- versions ------------------------------------------------------------------


def test_version_resolution_picks_exact_minor_or_nearest() -> None:
    have = available_versions()
    assert (1, 31) in have
    assert resolve_version("1.31") == "v1.31.0"
    assert resolve_version("v1.30.7-eks-1234") == "v1.30.0"
    newest, oldest = have[-1], have[0]
    assert resolve_version("1.99") == f"v{newest[0]}.{newest[1]}.0"
    assert resolve_version("1.10") == f"v{oldest[0]}.{oldest[1]}.0"
    with pytest.raises(ValueError):
        resolve_version("latest")


def test_definitions_are_loaded_once_per_version_and_shared() -> None:
    a, b = SchemaRegistry("1.31"), SchemaRegistry("1.31.2")
    a.root("v1", "Pod")
    assert _schema_set(a.version_dir) is _schema_set(b.version_dir)
    assert a.root("v1", "Pod") is b.root("v1", "Pod")


# -- unknown fields --------------------------------------------------------------


def test_realistic_objects_validate_without_warnings(reg: SchemaRegistry) -> None:
    objs = [
        seed_deployment(),
        {"apiVersion": "v1", "kind": "PersistentVolumeClaim",
         "metadata": {"name": "ebs-windows-pv-claim", "namespace": "windows"},
         "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "gp2-windows",
                  "resources": {"requests": {"storage": "1Gi"}}},
         "status": {"phase": "Bound", "capacity": {"storage": "1Gi"}}},
        {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
         "metadata": {"name": "gp2-windows"}, "provisioner": "kubernetes.io/aws-ebs",
         "parameters": {"type": "gp2", "fsType": "ntfs"},
         "volumeBindingMode": "WaitForFirstConsumer", "reclaimPolicy": "Delete"},
        pod(volumes=[{"name": "smb", "hostPath": {"path": "G:\\Directory\\app-state",
                                                  "type": "Directory"}}]),
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
         "data": {"password": "cGFzcw=="}, "type": "Opaque"},
    ]
    for obj in objs:
        before = copy.deepcopy(obj)
        assert reg.validate(obj, strict=True) == []
        assert obj == before


def test_unknown_fields_warn_with_apiserver_paths_and_are_dropped(reg: SchemaRegistry) -> None:
    obj = seed_deployment()
    obj["metadata"]["unknownMeta"] = "x"
    obj["spec"]["unknown1"] = "val1"
    container = obj["spec"]["template"]["spec"]["containers"][0]
    container["unknownNested"] = "val1"
    container["volumeMounts"][0]["readonly"] = True
    warnings = reg.validate(obj, strict=False)
    # Document order, as the apiserver reports them.
    assert warnings == [
        'unknown field "metadata.unknownMeta"',
        'unknown field "spec.template.spec.containers[0].volumeMounts[0].readonly"',
        'unknown field "spec.template.spec.containers[0].unknownNested"',
        'unknown field "spec.unknown1"',
    ]
    assert "unknownMeta" not in obj["metadata"]
    assert "unknown1" not in obj["spec"]
    assert container == seed_deployment()["spec"]["template"]["spec"]["containers"][0]


def test_strict_unknown_fields_are_a_bad_request(reg: SchemaRegistry) -> None:
    obj = pod()
    obj["metadata"]["region"] = "us-east-1"
    obj["spec"]["containers"][0]["instanceType"] = "m5"
    with pytest.raises(SchemaError) as err:
        reg.validate(obj, strict=True)
    assert err.value.code == 400 and err.value.reason == "BadRequest"
    assert err.value.causes == []
    assert str(err.value) == (
        'Pod in version "v1" cannot be handled as a Pod: strict decoding error: '
        'unknown field "metadata.region", unknown field "spec.containers[0].instanceType"')
    assert err.value.to_status()["code"] == 400


def test_status_is_never_a_reason_to_refuse(reg: SchemaRegistry) -> None:
    obj = pod()
    obj["status"] = {"phase": "Running", "madeUp": 1, "conditions": [{"reason": 5}]}
    assert reg.validate(obj, strict=True) == ['unknown field "status.madeUp"']
    assert "madeUp" not in obj["status"]
    assert obj["status"]["conditions"] == [{"reason": 5}]


def test_unknown_kinds_are_left_alone(reg: SchemaRegistry) -> None:
    obj = {"apiVersion": "example.com/v1", "kind": "Widget", "spec": {"anything": 1}}
    assert reg.validate(obj, strict=True) == []
    assert obj["spec"] == {"anything": 1}
    assert reg.validate({"kind": "Pod"}, strict=True) == []


# -- type errors -----------------------------------------------------------------


@pytest.mark.parametrize(("mutate", "detail"), [
    (lambda d: d["spec"].__setitem__("replicas", "3"),
     "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas of "
     "type int32"),
    (lambda d: d["spec"]["template"]["spec"]["containers"][0]["ports"][0].__setitem__(
        "containerPort", "80"),
     "json: cannot unmarshal string into Go struct field ContainerPort.spec.template.spec."
     "containers.ports.containerPort of type int32"),
    (lambda d: d["spec"]["template"]["spec"].__setitem__("containers", {"name": "x"}),
     "json: cannot unmarshal object into Go struct field PodSpec.spec.template.spec."
     "containers of type []v1.Container"),
    (lambda d: d["spec"]["template"]["spec"]["containers"][0].__setitem__("ports", ["80"]),
     "json: cannot unmarshal string into Go struct field Container.spec.template.spec."
     "containers.ports of type v1.ContainerPort"),
    (lambda d: d["metadata"]["labels"].__setitem__("tier", 1),
     "json: cannot unmarshal number into Go struct field ObjectMeta.metadata.labels of "
     "type string"),
    (lambda d: d["spec"].__setitem__("paused", "yes"),
     "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.paused of "
     "type bool"),
    (lambda d: d["spec"].__setitem__("replicas", 1.5),
     "json: cannot unmarshal number 1.5 into Go struct field DeploymentSpec.spec.replicas of "
     "type int32"),
    (lambda d: d["spec"].__setitem__("replicas", 2**31),
     "json: cannot unmarshal number 2147483648 into Go struct field DeploymentSpec.spec."
     "replicas of type int32"),
])
def test_wrong_json_types_are_the_decoders_bad_request(reg: SchemaRegistry, mutate,
                                                       detail: str) -> None:
    obj = seed_deployment()
    mutate(obj)
    with pytest.raises(SchemaError) as err:
        reg.validate(obj, strict=False)
    assert err.value.code == 400 and err.value.causes == []
    assert str(err.value) == ('Deployment in version "v1" cannot be handled as a '
                              f"Deployment: {detail}")


def test_int_or_string_accepts_both_forms_only(reg: SchemaRegistry) -> None:
    for surge in (1, "25%", "3"):
        obj = seed_deployment()
        obj["spec"]["strategy"]["rollingUpdate"]["maxSurge"] = surge
        assert reg.validate(obj, strict=True) == []
    for bad in (1.5, True, ["1"]):
        obj = seed_deployment()
        obj["spec"]["strategy"]["rollingUpdate"]["maxSurge"] = bad
        with pytest.raises(SchemaError, match="Go value of type int32"):
            reg.validate(obj, strict=True)


def test_quantities_accept_strings_and_numbers(reg: SchemaRegistry) -> None:
    for q in ("1Gi", "500m", "1.5", "2e3", 1, 0.5, "+1k"):
        obj = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "c"},
               "spec": {"resources": {"requests": {"storage": q}}}}
        assert reg.validate(obj, strict=True) == [], q
    for bad, why in (("5KM", "unable to parse quantity's suffix"),
                     ("1GB", "quantities must match the regular expression"),
                     ("abc", "quantities must match the regular expression"),
                     ("1.2.3", "quantities must match"), (True, "quantities must match")):
        obj = {"apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "c"},
               "spec": {"resources": {"requests": {"storage": bad}}}}
        with pytest.raises(SchemaError, match=re.escape(why)) as err:
            reg.validate(obj, strict=False)
        assert err.value.code == 400


def test_secret_data_must_be_base64(reg: SchemaRegistry) -> None:
    obj = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"},
           "data": {"password": "not base64!"}}
    with pytest.raises(SchemaError, match="illegal base64 data at input byte 3"):
        reg.validate(obj, strict=False)


def test_timestamps_must_be_rfc3339(reg: SchemaRegistry) -> None:
    obj = pod()
    obj["metadata"]["creationTimestamp"] = "yesterday"
    with pytest.raises(SchemaError, match='parsing time "yesterday"'):
        reg.validate(obj, strict=False)


def test_null_is_a_zero_value_not_an_error(reg: SchemaRegistry) -> None:
    obj = seed_deployment()
    obj["spec"]["replicas"] = None
    obj["metadata"]["labels"] = None
    assert reg.validate(obj, strict=True) == []


# -- required fields -------------------------------------------------------------------


def test_missing_required_fields_are_invalid_with_causes(reg: SchemaRegistry) -> None:
    obj = pod()
    obj["spec"]["containers"] = [{"image": "a"}, {"name": "", "image": "b"}]
    with pytest.raises(SchemaError) as err:
        reg.validate(obj, strict=False)
    e = err.value
    assert (e.code, e.reason) == (422, "Invalid")
    assert e.causes == [
        {"reason": "FieldValueRequired", "message": "Required value",
         "field": "spec.containers[0].name"},
        {"reason": "FieldValueRequired", "message": "Required value",
         "field": "spec.containers[1].name"},
    ]
    assert e.message == ('Pod "test-fsx" is invalid: [spec.containers[0].name: Required value, '
                         'spec.containers[1].name: Required value]')
    assert e.to_status()["details"]["causes"] == e.causes


def test_one_missing_field_message_and_group(reg: SchemaRegistry) -> None:
    obj = {"apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
           "metadata": {"name": "gp2-windows"}}
    with pytest.raises(SchemaError) as err:
        reg.validate(obj, strict=False)
    assert err.value.message == ('StorageClass.storage.k8s.io "gp2-windows" is invalid: '
                                 "provisioner: Required value")
    assert err.value.details == {"name": "gp2-windows", "group": "storage.k8s.io",
                                 "kind": "StorageClass", "causes": err.value.causes}


def test_type_errors_win_over_unknown_and_required(reg: SchemaRegistry) -> None:
    obj = pod()
    obj["spec"]["containers"] = [{"image": 5}]
    obj["spec"]["bogus"] = 1
    with pytest.raises(SchemaError) as err:
        reg.validate(obj, strict=True)
    assert err.value.code == 400 and "cannot unmarshal number" in err.value.message


# -- patch metadata ----------------------------------------------------------------------


@pytest.mark.parametrize(("api_version", "kind", "path", "expected"), [
    ("apps/v1", "Deployment", "spec.template.spec.containers", ("name", ("merge",))),
    ("apps/v1", "Deployment", "spec.template.spec.containers.volumeMounts",
     ("mountPath", ("merge",))),
    ("v1", "Pod", "spec.containers.ports", ("containerPort", ("merge",))),
    ("v1", "Pod", "spec.containers.env", ("name", ("merge",))),
    ("v1", "Pod", "spec.volumes", ("name", ("merge", "retainKeys"))),
    ("v1", "Pod", "metadata.finalizers", (None, ("merge",))),
    ("v1", "Pod", "metadata.ownerReferences", ("uid", ("merge",))),
    ("v1", "Pod", "spec.tolerations", (None, ())),
    ("v1", "Service", "spec.ports", ("port", ("merge",))),
    ("apps/v1", "Deployment", "spec.strategy", (None, ("retainKeys",))),
    ("policy/v1", "PodDisruptionBudget", "spec.selector", (None, ("replace",))),
    ("v1", "Pod", "spec.nope", (None, ())),
])
def test_merge_keys_and_strategies_come_from_the_official_schema(
        reg: SchemaRegistry, api_version: str, kind: str, path: str,
        expected: tuple) -> None:
    assert reg.lookup(api_version, kind, path.split(".")) == expected


def test_patch_meta_exposes_nodes_with_field_metadata(reg: SchemaRegistry) -> None:
    root = reg.patch_meta("v1", "Pod")
    assert root is not None and root.kind == OBJECT
    containers = root.fields["spec"].node.fields["containers"]
    assert containers.merge_key == "name" and containers.patch_strategy == "merge"
    assert containers.node.kind == ARRAY
    assert containers.node.items is reg.root("v1", "Pod").fields["spec"].node.fields[
        "initContainers"].node.items
    volumes = root.fields["spec"].node.fields["volumes"]
    assert volumes.retain_keys and volumes.patch_strategy == "merge"
    assert reg.patch_meta("example.com/v1", "Widget") is None


# -- speed --------------------------------------------------------------------------------


def test_validation_is_fast_after_warm_up(reg: SchemaRegistry) -> None:
    obj = seed_deployment()
    reg.validate(copy.deepcopy(obj), strict=False)
    copies = [copy.deepcopy(obj) for _ in range(200)]
    start = time.perf_counter()
    for c in copies:
        reg.validate(c, strict=False)
    per_call = (time.perf_counter() - start) / len(copies)
    assert per_call < 0.005, f"{per_call * 1000:.2f} ms per validation"


# -- OpenAPI v3 ----------------------------------------------------------------------------


def test_openapi_index_lists_group_versions_with_content_hashes(reg: SchemaRegistry) -> None:
    index = reg.openapi_v3_index()
    paths = index["paths"]
    for key in ("api/v1", "apis/apps/v1", "apis/storage.k8s.io/v1", "apis/policy/v1",
                "apis/coordination.k8s.io/v1"):
        url = paths[key]["serverRelativeURL"]
        assert url.startswith(f"/openapi/v3/{key}?hash=")
        digest = url.split("hash=", 1)[1]
        raw = reg.openapi_v3_document_bytes(key)
        assert raw is not None
        assert digest == hashlib.sha512(raw).hexdigest().upper()
        assert json.loads(raw) == reg.openapi_v3_document(key)


def test_openapi_document_names_accept_every_spelling(reg: SchemaRegistry) -> None:
    doc = reg.openapi_v3_document("apis/apps/v1")
    assert doc is not None
    for spelling in ("apps/v1", "/apis/apps/v1", "apis/apps/v1?hash=ABC"):
        assert reg.openapi_v3_document(spelling) is doc
    assert reg.openapi_v3_document("v1") is reg.openapi_v3_document("api/v1")
    assert reg.openapi_v3_document("apis/nothing.example.com/v1") is None


def test_openapi_document_has_what_kubectl_apply_reads(reg: SchemaRegistry) -> None:
    doc = reg.openapi_v3_document("apis/apps/v1")
    assert doc["openapi"] == "3.0.0"
    schemas = doc["components"]["schemas"]
    dep = schemas["io.k8s.api.apps.v1.Deployment"]
    assert dep["x-kubernetes-group-version-kind"] == [
        {"group": "apps", "kind": "Deployment", "version": "v1"}]
    assert dep["type"] == "object"
    assert dep["properties"]["spec"]["allOf"] == [
        {"$ref": "#/components/schemas/io.k8s.api.apps.v1.DeploymentSpec"}]
    strategy = schemas["io.k8s.api.apps.v1.DeploymentSpec"]["properties"]["strategy"]
    assert strategy["x-kubernetes-patch-strategy"] == "retainKeys"
    assert strategy["allOf"][0]["$ref"].endswith("DeploymentStrategy")
    containers = schemas["io.k8s.api.core.v1.PodSpec"]["properties"]["containers"]
    assert containers["x-kubernetes-patch-merge-key"] == "name"
    assert containers["x-kubernetes-patch-strategy"] == "merge"
    assert containers["items"] == {"$ref": "#/components/schemas/io.k8s.api.core.v1.Container"}
    assert schemas["io.k8s.apimachinery.pkg.util.intstr.IntOrString"]["format"] == \
        "int-or-string"

    item = doc["paths"]["/apis/apps/v1/namespaces/{namespace}/deployments/{name}"]
    patch = item["patch"]
    assert patch["x-kubernetes-group-version-kind"] == {
        "group": "apps", "kind": "Deployment", "version": "v1"}
    assert patch["operationId"] == "patchAppsV1NamespacedDeployment"
    assert "application/strategic-merge-patch+json" in patch["requestBody"]["content"]
    assert "fieldValidation" in {p["name"] for p in patch["parameters"]}
    # Every PATCH of a kind answers kubectl's checks the same way (it stops at the first).
    for path_item in doc["paths"].values():
        op = path_item.get("patch")
        if op:
            assert "fieldValidation" in {p["name"] for p in op["parameters"]}
            assert "application/strategic-merge-patch+json" in op["requestBody"]["content"]


@pytest.mark.parametrize("gv", ["api/v1", "apis/apps/v1", "apis/storage.k8s.io/v1",
                                "apis/policy/v1", "apis/coordination.k8s.io/v1"])
def test_openapi_references_all_resolve_and_no_json_schema_leftovers(
        reg: SchemaRegistry, gv: str) -> None:
    raw = reg.openapi_v3_document_bytes(gv)
    assert raw is not None
    doc = json.loads(raw)
    names = set(doc["components"]["schemas"])
    refs = set(re.findall(r'"\$ref":"#/components/schemas/([^"]+)"', raw.decode()))
    assert refs <= names
    assert "$defs" not in raw.decode() and '"null"' not in raw.decode()
    for path_item in doc["paths"].values():
        for verb, op in path_item.items():
            if verb != "parameters":
                assert op["x-kubernetes-group-version-kind"]["version"] == gv.rsplit("/", 1)[1]


def test_openapi_paths_follow_scope_and_plural(reg: SchemaRegistry) -> None:
    core = reg.openapi_v3_document("api/v1")["paths"]
    assert "/api/v1/namespaces/{namespace}/persistentvolumeclaims/{name}" in core
    assert "/api/v1/persistentvolumes/{name}" in core
    assert "/api/v1/namespaces/{name}/status" in core
    assert "/api/v1/namespaces/{namespace}/endpoints/{name}" in core
    storage = reg.openapi_v3_document("apis/storage.k8s.io/v1")["paths"]
    assert storage["/apis/storage.k8s.io/v1/storageclasses/{name}"]["patch"]["operationId"] \
        == "patchStorageV1StorageClass"
    coordination = reg.openapi_v3_document("apis/coordination.k8s.io/v1")["paths"]
    assert "/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/{name}" in coordination
    apps = reg.openapi_v3_document("apis/apps/v1")["paths"]
    scale = apps["/apis/apps/v1/namespaces/{namespace}/deployments/{name}/scale"]["patch"]
    assert scale["x-kubernetes-group-version-kind"]["kind"] == "Scale"


def test_group_versions_can_be_chosen() -> None:
    reg = SchemaRegistry("1.32", group_versions=["v1", "batch/v1"])
    assert set(reg.openapi_v3_index()["paths"]) == {"api/v1", "apis/batch/v1"}
    assert "/apis/batch/v1/namespaces/{namespace}/jobs/{name}" in \
        reg.openapi_v3_document("batch/v1")["paths"]
