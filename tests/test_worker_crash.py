"""A pytest-xdist worker killed at any point: the run finishes, the check it was running is
reported lost - once, in every report, with the worker's crash as its reason - and the rest
of its cluster's checks run on another worker and pass, which makes the run's namespaces
anew (the dead worker's go, with what they held). Nothing of the run is left, and nothing
that is not the run's is touched.

The worker is killed (SIGKILL, from inside) by a small plugin the run loads, at the moment
the chosen point begins, so the point is the same on a fast machine and a loaded one.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from kubernetes import client

from helpers import run_suite
from inspect_cluster import api_client, leftovers
from test_scenarios import ALL

KILLER = '''
import os
import signal

import pytest

AT = os.environ["WINSTOR_TEST_KILL_AT"]
ONCE = os.environ["WINSTOR_TEST_KILL_ONCE"]


def _die():
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    try:  # one worker per run; its replacement must live
        os.close(os.open(ONCE, os.O_CREAT | os.O_EXCL))
    except FileExistsError:
        return
    os.kill(os.getpid(), signal.SIGKILL)


@pytest.hookimpl(tryfirst=True)
def pytest_fixture_setup(fixturedef, request):
    if AT == "head-start" and fixturedef.argname == "seed_workload":
        _die()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item):
    if AT == "before-a-check" and "sim-1:SC-DEFAULT-01" in item.nodeid:
        _die()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item):
    if AT == "mid-check" and "sim-1:EBS-PERSIST-01" in item.nodeid:
        _die()


def pytest_fixture_post_finalizer(fixturedef, request):
    # the claim is gone, its namespace not yet: the middle of the cluster's teardown
    if AT == "teardown" and fixturedef.argname == "claim":
        _die()
'''


def _lost_once(tmp_path: Path, result, clusters: list[str]) -> str:
    """Every check of every cluster is in each report exactly once; exactly one is lost,
    with the worker's crash as its reason; returns its id."""
    run_dir = tmp_path / "reports" / "latest"
    doc = json.loads((run_dir / "results.json").read_text())
    pairs = [(c["cluster"], c["id"]) for c in doc["checks"]]
    assert sorted(pairs) == sorted({(k, c) for k in clusters for c in ALL}), pairs
    lost = [c for c in doc["checks"] if (c["reason"] or "").startswith("lost: xdist worker")]
    assert len(lost) == 1 and lost[0]["outcome"] == "error", doc["checks"]
    assert "crashed while running this check" in lost[0]["reason"]
    cases = list(ET.parse(run_dir / "junit.xml").getroot().iter("testcase"))
    names = [case.get("name", "") for case in cases]
    assert len(names) == len(set(names)) == len(clusters) * len(ALL), names
    key = f"[{lost[0]['cluster']}:{lost[0]['id']}]"
    errors = [child.get("message") or "" for case in cases if key in case.get("name", "")
              for child in case if child.tag in ("error", "failure")]
    assert len(errors) == 1 and errors[0].startswith("lost: xdist worker"), errors
    # the terminal's table: one LOST cell, and the cluster's count says it
    assert sum(line.split().count("LOST") for line in result.output.splitlines()) == 1, \
        result.output[-3000:]
    assert f"{lost[0]['cluster']}: " in result.output and "1 lost with a crashed worker" in \
        result.output
    return lost[0]["id"]


@pytest.mark.parametrize("at, clusters, lost", [
    ("head-start", 1, None),  # the cluster's first check, whichever it is
    ("before-a-check", 1, "SC-DEFAULT-01"),
    ("mid-check", 2, "EBS-PERSIST-01"),
    ("teardown", 1, None),  # the cluster's last check
])
def test_killed_worker_loses_one_check_and_the_rest_pass(sim_factory, tmp_path: Path, at: str,
                                                         clusters: int,
                                                         lost: str | None) -> None:
    sim = sim_factory(clusters, [])
    v1 = client.CoreV1Api(api_client(sim))
    v1.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name="not-winstor")))
    (tmp_path / "kill_worker.py").write_text(KILLER)
    names = [f"sim-{i}" for i in range(1, clusters + 1)]
    env = {**sim.aws_env, "PYTHONPATH": str(tmp_path), "WINSTOR_TEST_KILL_AT": at,
           "WINSTOR_TEST_KILL_ONCE": str(tmp_path / "killed")}
    result = run_suite([f"--kubeconfig={sim.kubeconfig}",
                        *[a for n in names for a in ("--context", n)],
                        "-n", "2", "-p", "kill_worker"], tmp_path, env=env)
    assert (tmp_path / "killed").exists(), result.output[-3000:]
    assert result.code == pytest.ExitCode.TESTS_FAILED, result.output[-3000:]
    lost_id = _lost_once(tmp_path, result, names)
    if lost is not None:
        assert lost_id == lost
    doc = json.loads((tmp_path / "reports" / "latest" / "results.json").read_text())
    others = {(c["cluster"], c["id"]): c["outcome"] for c in doc["checks"]
              if c["id"] != lost_id or c["cluster"] != "sim-1"}
    assert set(others.values()) == {"passed"}, {k: v for k, v in others.items() if v != "passed"}
    if at != "teardown":
        # a replacement ran the rest, on namespaces made anew
        notes = next(c for c in doc["clusters"] if c["name"] == "sim-1")["notes"]["notes"]
        assert any("left by a worker of this run that died" in n for n in notes), notes
    for name in names:
        assert leftovers(sim, name) == [], result.output[-3000:]
    assert "not-winstor" in [n.metadata.name for n in v1.list_namespace().items]
