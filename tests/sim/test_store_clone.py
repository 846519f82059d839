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
