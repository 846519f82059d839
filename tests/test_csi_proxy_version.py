"""CSIPROXY-VER-01 on a healthy cluster compares, for every Windows node, the version
the node runs with the one its AMI ships - read from AWS for all nodes in one call. A
check that found no expected version would still pass (with a note), so this asserts
the comparison was made, not only the verdict."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import run_suite


def test_every_node_is_compared_with_its_amis_version(tmp_path: Path) -> None:
    result = run_suite(["--sim-clusters", "1", "-k", "CSIPROXY-VER", "--run-id=t-ver"],
                       tmp_path)
    assert result.code == 0, result.output[-3000:]
    doc = json.loads((tmp_path / "reports" / "t-ver" / "results.json").read_text())
    (check,) = [c for c in doc["checks"] if c["id"] == "CSIPROXY-VER-01"]
    versions = check["evidence"]["versions"]
    assert len(versions) >= 2, versions  # the sim's Windows nodes
    assert all(v["expected"] and v["expected"] == v["found"] for v in versions.values()), \
        versions
    assert "note" not in check["evidence"]
