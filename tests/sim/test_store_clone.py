"""The store's copies (winstor.sim.api.store.clone): deep, equal, and deepcopy's answer
for what marshal refuses."""

from __future__ import annotations

import datetime

from winstor.sim.api.store import clone


def test_a_copy_is_equal_and_shares_nothing_mutable() -> None:
    obj = {"metadata": {"name": "p", "labels": {"a": "b"}, "generation": 1},
           "spec": {"containers": [{"name": "c", "args": ["x"]}], "ready": True,
                    "ratio": 0.5, "none": None}}
    copied = clone(obj)
    assert copied == obj
    copied["metadata"]["labels"]["a"] = "changed"
    copied["spec"]["containers"][0]["args"].append("y")
    assert obj["metadata"]["labels"] == {"a": "b"}
    assert obj["spec"]["containers"][0]["args"] == ["x"]
    assert type(copied["spec"]["ready"]) is bool and type(copied["metadata"]["generation"]) is int


def test_what_marshal_refuses_is_deep_copied() -> None:
    when = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    obj = {"at": when, "nested": {"list": [1, 2]}}
    copied = clone(obj)
    assert copied == obj and copied["nested"] is not obj["nested"]


def test_stored_versions_are_never_changed_in_place() -> None:
    """The store keeps one dict per version and hands that same dict to watchers and its
    history (no copy): a later write - spec, status, graceful delete, delete, the
    controllers' read-modify-write - must make a new dict, never change an older one; and
    what a caller gets back is its own to change."""
    import json

    from winstor.sim.api.store import Store
    from winstor.sim.controllers.base import NAMESPACES, PODS

    store = Store()
    seen: list[tuple[dict, str]] = []
    store.add_listener(lambda kind, type_, obj: seen.append((obj, json.dumps(obj))))
    store.create(NAMESPACES, {"metadata": {"name": "ns", "finalizers": ["x"]},
                              "status": {"phase": "Active"}})
    pod = {"metadata": {"name": "p", "namespace": "ns", "labels": {"a": "1"},
                        "finalizers": ["f"]},
           "spec": {"containers": [{"name": "c"}]}, "status": {"phase": "Pending"}}
    created = store.create(PODS, pod)
    created["spec"]["containers"].append({"name": "mine"})  # the caller's copy
    got = store.get(PODS, "ns", "p")
    got["metadata"]["labels"]["a"] = "2"
    store.replace(PODS, got)
    status = store.get(PODS, "ns", "p")
    status["status"]["phase"] = "Running"
    status["spec"]["containers"][0]["name"] = "ignored by a status write"
    out = store.replace(PODS, status, subresource="status")
    out["status"]["phase"] = "changed by the caller"
    store.mutate(PODS, "ns", "p", lambda o: o["metadata"]["labels"].update(b="3"))
    store.mutate(PODS, "ns", "p", lambda o: o["status"].update(phase="Succeeded"),
                 subresource="status")
    store.delete(PODS, "ns", "p")  # a finalizer: marked only
    store.delete(NAMESPACES, None, "ns")  # the phase goes Terminating in the same write
    store.mutate(PODS, "ns", "p", lambda o: o["metadata"].update(finalizers=[]))  # gone
    store.create(PODS, {"metadata": {"name": "q", "namespace": "ns"}})
    store.remove_now(PODS, "ns", "q")
    assert [json.dumps(obj) for obj, _ in seen] == [frozen for _, frozen in seen]
    now = store.peek(NAMESPACES, None, "ns")
    assert now["status"]["phase"] == "Terminating"
    assert seen[0][0]["status"]["phase"] == "Active"
    phases = [o["status"]["phase"] for o, _ in seen if o["kind"] == "Pod" and
              o["metadata"]["name"] == "p"]
    assert phases == ["Pending", "Pending", "Running", "Running", "Succeeded", "Succeeded",
                      "Succeeded"], phases
    labels = [o["metadata"]["labels"] for o, _ in seen if o["metadata"]["name"] == "p"]
    assert labels[:3] == [{"a": "1"}, {"a": "2"}, {"a": "2"}] and labels[3] == {"a": "2", "b": "3"}
    history = [c.obj for c in store._history]
    assert all(h is o for h, (o, _) in zip(history, seen, strict=True))
