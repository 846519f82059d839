"""The embedded API server's registry without HTTP: chunked lists, validation, delete
options. The wire-level comparison with a real apiserver is tests/test_differential.py;
these pin the cases it cannot reach cheaply (an expired continue token needs etcd to
compact, a too-new one makes the real server wait)."""

from __future__ import annotations

import pytest

from winstor.sim.api import pagination
from winstor.sim.api.errors import ApiError
from winstor.sim.api.kinds import kind_of
from winstor.sim.api.registry import Registry
from winstor.sim.api.schema import SchemaRegistry
from winstor.sim.api.store import Store

CM = kind_of("v1", "ConfigMap")
NS = kind_of("v1", "Namespace")
DEPLOY = kind_of("apps/v1", "Deployment")


@pytest.fixture(scope="module")
def schemas() -> SchemaRegistry:
    return SchemaRegistry("1.32")


def _registry(schemas: SchemaRegistry, history: int = 5000) -> Registry:
    reg = Registry(Store(history=history), schemas, lambda *_: [])
    reg.create(NS, None, {"metadata": {"name": "default"}}, {})
    return reg


def _cm(name: str, **labels: str) -> dict:
    return {"metadata": {"name": name, "labels": labels}}


def test_pages_carry_continue_and_remaining_count(schemas: SchemaRegistry) -> None:
    reg = _registry(schemas)
    for i in range(5):
        reg.create(CM, "default", _cm(f"c-{i}"), {})
    first, _, _ = reg.list(CM, "default", {"limit": "2"})
    assert [o["metadata"]["name"] for o in first["items"]] == ["c-0", "c-1"]
    assert first["metadata"]["remainingItemCount"] == 3
    rv, start = pagination.decode(first["metadata"]["continue"])
    assert start == "/c-1\x00" and str(rv) == first["metadata"]["resourceVersion"]
    reg.create(CM, "default", _cm("c-9"), {})  # after the first page: seen (no snapshot)
    second, _, _ = reg.list(CM, "default", {"limit": "2",
                                            "continue": first["metadata"]["continue"]})
    assert [o["metadata"]["name"] for o in second["items"]] == ["c-2", "c-3"]
    assert second["metadata"]["resourceVersion"] == first["metadata"]["resourceVersion"]
    last, _, _ = reg.list(CM, "default", {"limit": "2", "continue":
                                          second["metadata"]["continue"]})
    assert [o["metadata"]["name"] for o in last["items"]] == ["c-4", "c-9"]
    assert "continue" not in last["metadata"] and "remainingItemCount" not in last["metadata"]


def test_selected_pages_are_full_and_count_nothing(schemas: SchemaRegistry) -> None:
    reg = _registry(schemas)
    for i in range(6):
        reg.create(CM, "default", _cm(f"c-{i}", odd=str(i % 2)), {})
    page, _, _ = reg.list(CM, "default", {"limit": "2", "labelSelector": "odd=1"})
    assert [o["metadata"]["name"] for o in page["items"]] == ["c-1", "c-3"]
    assert "remainingItemCount" not in page["metadata"] and page["metadata"]["continue"]


def test_across_namespaces_keys_hold_the_namespace(schemas: SchemaRegistry) -> None:
    reg = _registry(schemas)
    reg.create(NS, None, {"metadata": {"name": "a-b"}}, {})
    reg.create(CM, "default", _cm("x"), {})
    reg.create(CM, "a-b", _cm("y"), {})
    page, _, _ = reg.list(CM, None, {"limit": "1"})
    assert pagination.decode(page["metadata"]["continue"])[1] == "/a-b/y\x00"


@pytest.mark.parametrize(("token", "says"), [
    ("garbage", "invalid continue token: continue key is not valid"),
    (pagination.encode(5, "/x\x00").replace("e", "E", 1), "continue key is not valid"),
    (pagination.encode(0, "/x\x00"), "incorrect encoded start resourceVersion"),
    (pagination.encode(5, "../x"), "continue key is not valid: ../x"),
])
def test_bad_tokens_are_400(schemas: SchemaRegistry, token: str, says: str) -> None:
    reg = _registry(schemas)
    with pytest.raises(ApiError) as err:
        reg.list(CM, "default", {"limit": "1", "continue": token})
    assert err.value.code == 400 and says in err.value.message


def test_token_and_resource_version_is_400(schemas: SchemaRegistry) -> None:
    reg = _registry(schemas)
    with pytest.raises(ApiError) as err:
        reg.list(CM, "default", {"continue": pagination.encode(2, "/a\x00"),
                                 "resourceVersion": "2"})
    assert err.value.code == 400 and "not allowed when using continue" in err.value.message


def test_too_new_token_is_504(schemas: SchemaRegistry) -> None:
    reg = _registry(schemas)
    with pytest.raises(ApiError) as err:
        reg.list(CM, "default", {"continue": pagination.encode(10**6, "/a\x00")})
    assert err.value.code == 504 and err.value.reason == "Timeout"
    assert err.value.body()["details"]["causes"][0]["reason"] == "ResourceVersionTooLarge"


def test_compacted_token_is_410_with_a_fresh_token(schemas: SchemaRegistry) -> None:
    reg = _registry(schemas, history=3)
    for i in range(4):
        reg.create(CM, "default", _cm(f"c-{i}"), {})
    first, _, _ = reg.list(CM, "default", {"limit": "1"})
    for i in range(5):
        reg.create(CM, "default", _cm(f"d-{i}"), {})  # the window moves past the token
    with pytest.raises(ApiError) as err:
        reg.list(CM, "default", {"limit": "1", "continue": first["metadata"]["continue"]})
    body = err.value.body()
    assert err.value.code == 410 and body["reason"] == "Expired"
    assert body["message"].startswith("The provided continue parameter is too old")
    fresh = body["metadata"]["continue"]
    assert pagination.decode(fresh) == (-1, "/c-0\x00")
    rest, _, _ = reg.list(CM, "default", {"continue": fresh})
    assert [o["metadata"]["name"] for o in rest["items"]][:2] == ["c-1", "c-2"]


def test_invalid_objects_are_refused_with_causes(schemas: SchemaRegistry) -> None:
    reg = _registry(schemas)
    with pytest.raises(ApiError) as err:
        reg.create(CM, "default", _cm("Bad_Name", x="v" * 64), {})
    causes = err.value.details["causes"]
    assert err.value.code == 422 and {c["field"] for c in causes} == {
        "metadata.name", "metadata.labels"}
    assert err.value.message.startswith('ConfigMap "Bad_Name" is invalid: [metadata.name: ')
    assert "group" not in err.value.details
    reg.create(CM, "default", _cm("ok"), {})
    with pytest.raises(ApiError) as err:
        reg.patch(CM, "default", "ok", None, {"metadata": {"labels": {"a": "b c"}}},
                  "application/merge-patch+json", {})
    assert err.value.code == 422


def test_workload_selector_must_match_and_stay(schemas: SchemaRegistry) -> None:
    reg = _registry(schemas)

    def deployment(sel: dict, labels: dict) -> dict:
        return {"metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": sel},
                "template": {"metadata": {"labels": labels},
                             "spec": {"containers": [{"name": "c", "image": "x"}]}}}}

    with pytest.raises(ApiError) as err:
        reg.create(DEPLOY, "default", deployment({"app": "a"}, {"app": "b"}), {})
    assert err.value.details["causes"][0]["field"] == "spec.template.metadata.labels"
    assert err.value.details["group"] == "apps"
    reg.create(DEPLOY, "default", deployment({"app": "a"}, {"app": "a", "b": "c"}), {})
    with pytest.raises(ApiError) as err:
        reg.patch(DEPLOY, "default", "d", None,
                  {"spec": {"selector": {"matchLabels": {"app": "a", "b": "c"}}}},
                  "application/merge-patch+json", {})
    assert err.value.message.endswith("field is immutable")


def test_dry_run_delete_checks_preconditions(schemas: SchemaRegistry) -> None:
    reg = _registry(schemas)
    reg.create(CM, "default", _cm("keep"), {})
    with pytest.raises(ApiError) as err:
        reg.delete(CM, "default", "keep", {"dryRun": ["All"],
                                           "preconditions": {"uid": "not-it"}}, {})
    assert err.value.code == 409
    reg.delete(CM, "default", "keep", {"dryRun": ["All"]}, {})
    assert reg.get(CM, "default", "keep")[0]["metadata"]["name"] == "keep"


def test_apply_creates_conflicts_and_a_no_op_update_stays_one(schemas: SchemaRegistry) -> None:
    reg = _registry(schemas)
    ctype = "application/apply-patch+yaml"
    made, code, _ = reg.patch(CM, "default", "s", None, {**_cm("s"), "data": {"a": "1"}},
                              ctype, {"fieldManager": "m1"})
    assert code == 201 and made["metadata"]["managedFields"][0]["fieldsV1"] == {
        "f:data": {"f:a": {}}, "f:metadata": {"f:labels": {}}}
    with pytest.raises(ApiError) as err:
        reg.patch(CM, "default", "s", None, {"metadata": {"name": "s"}, "data": {"a": "2"}},
                  ctype, {"fieldManager": "m2"})
    assert err.value.code == 409 and err.value.message == (
        'Apply failed with 1 conflict: conflict with "m1": .data.a')
    with pytest.raises(ApiError) as err:
        reg.patch(CM, "default", "s", None, {"metadata": {"name": "s"}}, ctype, {})
    assert err.value.code == 422
    cur, _, _ = reg.get(CM, "default", "s")
    same, _, _ = reg.update(CM, "default", "s", None, cur, {"fieldManager": "m3"})
    assert same["metadata"]["resourceVersion"] == cur["metadata"]["resourceVersion"]
    changed, _, _ = reg.update(CM, "default", "s", None, {**cur, "data": {"a": "3"}},
                               {"fieldManager": "m3"})
    owners = {(m["manager"], m["operation"]) for m in changed["metadata"]["managedFields"]}
    assert ("m3", "Update") in owners
