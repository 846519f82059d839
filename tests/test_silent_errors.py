"""No error is swallowed without a trace.

A watch that keeps failing gives up after a bounded number of tries with growing pauses
and names its cause (it reconnected every 0.2 s for as long as the API was down); a
failing AWS session or credential read, a malformed providerID and a timeline that could
not be read are said in the cluster's facts and in the terminal summary; the phase
ticker says why it stopped.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from botocore.exceptions import CredentialRetrievalError, ProfileNotFound
from test_reports import check_run_dir, minimal_doc
from test_retries import _api_for

from helpers import ROOT
from winstor.cluster import waits
from winstor.cluster.kube import NODES, PODS, Api
from winstor.cluster.target import Phase
from winstor.plugin.ticker import PhaseTicker
from winstor.reports import facts as clusterfacts
from winstor.reports import results
from winstor.reports.redact import REDACTED, Redactor

# ------------------------------------------------------------------------------ waits


class _WatchesFail(BaseHTTPRequestHandler):
    """Lists answer (empty); every watch fails the way `mode` says."""

    mode = "503"
    watches: list[tuple[str, float]] = []

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if parse_qs(url.query).get("watch") != ["true"]:
            self._json(200, {"kind": "List", "apiVersion": "v1", "items": [],
                             "metadata": {"resourceVersion": "7"}})
            return
        type(self).watches.append((url.path.rsplit("/", 1)[-1], time.monotonic()))
        if self.mode == "503":
            self._json(503, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                             "reason": "ServiceUnavailable", "code": 503,
                             "message": "etcd is down"})
        elif self.mode == "lived":  # open for a while, then broken mid-stream (a proxy)
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.flush()
            time.sleep(1.2)
            self.wfile.write(b"5\r\n{\"ty")  # a torn chunk, then the connection goes
            self.wfile.flush()
            self.connection.shutdown(2)
            self.close_connection = True
        elif self.mode == "drop":
            self.connection.shutdown(2)  # no answer at all: the API went away mid-request
            self.close_connection = True
        else:  # "empty": the watch is accepted and ended at once
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "0")
            self.end_headers()

    def _json(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def failing_watches(tmp_path: Path) -> Iterator[tuple[Api, type[_WatchesFail]]]:
    _WatchesFail.watches, _WatchesFail.mode = [], "503"
    server = ThreadingHTTPServer(("127.0.0.1", 0), _WatchesFail)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield _api_for(tmp_path, f"http://127.0.0.1:{server.server_address[1]}"), _WatchesFail
    server.shutdown()


@pytest.mark.parametrize(("mode", "cause"), [
    ("503", "503 ServiceUnavailable: etcd is down"),
    ("drop", "cannot reach"),
    ("empty", "the server ended the watch at once, with no events"),
])
def test_a_failing_watch_gives_up_and_names_its_cause(
        failing_watches: tuple[Api, type[_WatchesFail]], mode: str, cause: str,
        monkeypatch: pytest.MonkeyPatch) -> None:
    api, handler = failing_watches
    handler.mode = mode
    monkeypatch.setattr(waits, "WATCH_RETRY_FIRST", 0.02)
    monkeypatch.setattr(waits, "WATCH_RETRY_MAX", 0.3)
    started = time.monotonic()
    with pytest.raises(waits.WatchGaveUp) as failed:
        waits.wait_for(api, PODS, "p", f"ns-{mode}", condition=lambda o: False,
                       what="pod p to start", timeout=120)
    assert time.monotonic() - started < 30  # not the wait's 120 s
    message = str(failed.value)
    assert message.startswith("gave up waiting for pod p to start after ")
    assert f"failed {waits.WATCH_FAILURES} times in a row" in message and cause in message
    time.sleep(0.5)  # nothing reconnects once given up
    # The object's watch or the namespace's events watch (the wait reads both) gave up
    # after exactly WATCH_FAILURES tries; neither tried more.
    gave_up = "pods" if "the watch of pods" in message else "events"
    tries = {what: [t for w, t in handler.watches if w == what] for what in ("pods", "events")}
    assert len(tries[gave_up]) == waits.WATCH_FAILURES, handler.watches
    assert max(map(len, tries.values())) == waits.WATCH_FAILURES, handler.watches
    gaps = [b - a for a, b in itertools.pairwise(tries[gave_up])]
    # The pauses grow (0.02 s doubling, to 0.3 s): the last gaps are several times the first.
    assert gaps[-1] > 4 * gaps[0] and gaps[-1] >= 0.25, gaps


def test_a_timeout_names_the_failing_watch(failing_watches: tuple[Api, type[_WatchesFail]],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    api, handler = failing_watches
    monkeypatch.setattr(waits, "WATCH_RETRY_FIRST", 0.05)
    monkeypatch.setattr(waits, "WATCH_RETRY_MAX", 0.05)
    monkeypatch.setattr(waits, "WATCH_FAILURES", 1000)
    with pytest.raises(waits.WaitFailed) as failed:
        waits.wait_for(api, PODS, "p", "ns-timeout", condition=lambda o: False,
                       what="pod p to start", timeout=1.0)
    message = str(failed.value)
    assert message.startswith("timed out after 1s waiting for pod p to start")
    assert "the watch of pods has failed" in message and "etcd is down" in message, message
    assert len([w for w in handler.watches if w[0] == "pods"]) <= 25  # 0.05 s apart, not a spin


def test_a_watch_that_lived_is_not_a_failure(
        failing_watches: tuple[Api, type[_WatchesFail]]) -> None:
    """A watch broken after it ran a while (an idle proxy) had a working API: it is
    watched again, once a second at most, and the wait runs to its own deadline."""
    api, handler = failing_watches
    handler.mode = "lived"
    with pytest.raises(waits.WaitFailed) as failed:
        waits.wait_for(api, PODS, "p", "ns-lived", condition=lambda o: False,
                       what="pod p to start", timeout=4.0)
    message = str(failed.value)
    assert message.startswith("timed out after 4s") and "has failed" not in message, message
    pods = [w for w in handler.watches if w[0] == "pods"]
    assert 2 <= len(pods) <= 5, handler.watches


def test_the_defaults_are_bounded() -> None:
    """What a real run gets: a handful of tries over seconds, not an endless 5 Hz loop."""
    pauses, pause = [], waits.WATCH_RETRY_FIRST
    for _ in range(waits.WATCH_FAILURES - 1):
        pauses.append(pause)
        pause = min(pause * 2, waits.WATCH_RETRY_MAX)
    assert 5 <= waits.WATCH_FAILURES <= 12 and 10 <= sum(pauses) <= 60, pauses


# ------------------------------------------------------------------------ cluster facts


def _node(name: str, provider: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "labels": {"kubernetes.io/os": "windows",
                                                  "topology.kubernetes.io/zone": "us-west-2a"}},
            "spec": {"providerID": provider}, "status": {}}


class _Cluster:
    """What `cluster_facts` reads of a `winstor.cluster.target.Cluster`."""

    def __init__(self, nodes: list[dict[str, Any]], session: Any) -> None:
        self.name = "c1"
        self.target = SimpleNamespace(context="ctx", aws_region="us-west-2")
        self.facts: dict[str, Any] = {"kubernetes_version": "1.31"}
        self.timeline = [Phase("pod start", 100.0, 101.5, "pod/x")]
        self._api = self.api = SimpleNamespace(items=lambda res, *a, **kw: nodes)
        self._session = session

    def aws_session(self) -> Any:
        if isinstance(self._session, Exception):
            raise self._session
        return self._session


def _valid_cluster_entry(out: dict[str, Any]) -> None:
    """The facts fit results.json's schema (aws.error and provider_id included)."""
    doc = minimal_doc({"A-01": "passed"})
    entry = {k: v for k, v in out.items() if k != "problems"}
    entry["summary"] = results.counts(["passed"])
    entry["name"] = doc["clusters"][0]["name"]
    doc["clusters"] = [entry]
    assert results.validate(doc) == []


def test_a_failing_aws_session_is_reported() -> None:
    cluster = _Cluster([_node("w1", "aws:///us-west-2a/i-0123456789abcdef0")],
                       ProfileNotFound(profile="nightly-ci"))
    out = clusterfacts.cluster_facts(cluster, Redactor())
    assert out["aws"]["available"] is False
    assert "ProfileNotFound" in out["aws"]["error"] and "nightly-ci" in out["aws"]["error"]
    assert out["problems"] == [f"AWS facts not read: {out['aws']['error']}"]
    assert out["problems"][0] in out["notes"]["notes"]
    assert out["timeline"][0]["name"] == "pod start"
    _valid_cluster_entry(out)


def test_unreadable_credentials_are_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    class Session:
        region_name = "us-west-2"
        reads = 0

        def get_credentials(self) -> Any:
            type(self).reads += 1
            raise CredentialRetrievalError(provider="process", error_msg="helper exited 1")

    from winstor.aws import facts as awsfacts
    monkeypatch.setattr(awsfacts, "instance_facts", lambda session, ids: {})
    session, redactor = Session(), Redactor()
    assert "helper exited 1" in (redactor.learn_aws_session(session) or "")  # at check time
    out = clusterfacts.cluster_facts(_Cluster([], session), redactor)
    assert Session.reads == 1  # asked once per session, the answer kept
    assert out["aws"]["available"] is True
    (line,) = out["problems"]
    assert "credentials could not be read" in line and "helper exited 1" in line
    assert "by their shape only" in line


def test_session_keys_are_learned_for_redaction() -> None:
    import boto3
    session = boto3.Session(aws_access_key_id="AKIAPLANTEDKEY000001",
                            aws_secret_access_key="planted/secret+key/0123456789abcdefghij",
                            region_name="us-west-2")
    redactor = Redactor()
    assert redactor.learn_aws_session(session) is None
    text = redactor.text("saw planted/secret+key/0123456789abcdefghij in a log")
    assert text == f"saw {REDACTED} in a log"


def test_a_malformed_provider_id_is_reported_with_its_value() -> None:
    nodes = [_node("bad", "aws:///us-west-2a/not-an-instance"),
             _node("kind", "kind://docker/winstor/winstor-worker"), _node("bare", "")]
    out = clusterfacts.cluster_facts(_Cluster(nodes, None), Redactor())
    by = {n["name"]: n for n in out["windows_nodes"]}
    assert by["bad"]["instance_id"] is None
    assert by["bad"]["provider_id"] == "aws:///us-west-2a/not-an-instance"
    assert out["problems"] == [
        "node bad: malformed providerID 'aws:///us-west-2a/not-an-instance' (expected "
        "aws:///<zone>/i-<hex>): its instance and AMI are unknown"]
    _valid_cluster_entry(out)
    # Certification names it too, instead of "instance None".
    from winstor.reports import bundle
    doc = minimal_doc({"A-01": "passed"})
    entry = {**{k: v for k, v in out.items() if k != "problems"},
             "aws": {"available": True, "region": "us-west-2"},
             "name": doc["clusters"][0]["name"]}
    doc["clusters"] = [entry]
    reasons = bundle.verdict(doc, [])["clusters"][entry["name"]]["reasons"]
    assert any("providerID 'aws:///us-west-2a/not-an-instance' names no EC2 instance" in r
               for r in reasons), reasons


def test_a_failed_node_list_is_reported() -> None:
    def items(res: Any, *a: Any, **kw: Any) -> list[dict[str, Any]]:
        assert res is NODES
        raise ConnectionError("cannot reach https://10.0.0.1: connection refused")
    cluster = _Cluster([], None)
    cluster._api = cluster.api = SimpleNamespace(items=items)
    out = clusterfacts.cluster_facts(cluster, Redactor())
    assert out["error"] == "listing nodes failed: cannot reach https://10.0.0.1: connection " \
        "refused"
    assert out["problems"] and "connection refused" in out["problems"][0]


# ------------------------------------------------------------------------- the ticker


def test_the_ticker_says_why_it_stopped() -> None:
    phase = Phase("image pull", time.time() - 60, None, "pod/x")
    state = SimpleNamespace(clusters={"c1": SimpleNamespace(timeline=[phase])})

    def write(line: str) -> None:
        raise BrokenPipeError(32, "Broken pipe")
    ticker = PhaseTicker(state, write, notice=0.0)
    ticker.start()
    ticker.join(timeout=10)
    assert not ticker.is_alive()
    assert ticker.failed is not None and "BrokenPipeError" in ticker.failed


# --------------------------------------------------------- a run, as the user sees it

PLANT = '''
"""Makes the run's events unreadable and its AWS session fail when facts are read."""
import pytest
from botocore.exceptions import ProfileNotFound
from winstor.cluster import target
from winstor.reports import facts


def _events(cluster):
    raise RuntimeError("planted: events cannot be listed")


def pytest_configure(config):
    facts.event_phases = _events


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session):
    def aws_session(self):
        raise ProfileNotFound(profile="planted-profile")
    target.Cluster.aws_session = aws_session
'''


def test_a_run_says_what_its_facts_lack(tmp_path: Path) -> None:
    """results.json and the terminal summary name both failures; the timeline keeps the
    run's own phases and its checks. (NODES-BUILD-01: its node probes give the run phases
    of its own; a check that makes no object has none.)"""
    (tmp_path / "plant_failures.py").write_text(PLANT)
    report_dir = tmp_path / "reports"
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "plant_failures", "--sim-clusters", "1",
         "-k", "NODES-BUILD-01", f"--report-dir={report_dir}", "--run-id=t-silent"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env={**os.environ, "PYTHONPATH": str(tmp_path)})
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    doc = check_run_dir(report_dir / "t-silent", proc.stdout)
    (cluster,) = doc["clusters"]
    assert "planted-profile" in cluster["aws"]["error"]
    notes = cluster["notes"]["notes"]
    assert any("planted: events cannot be listed" in n for n in notes), notes
    assert any("AWS facts not read" in n and "planted-profile" in n for n in notes), notes
    assert {p["source"] for p in cluster["timeline"]} >= {"run", "check"}
    summary = proc.stdout.splitlines()
    assert any(ln.startswith("winstor: sim-1: the timeline lacks the cluster's own spans")
               and "planted: events cannot be listed" in ln for ln in summary), proc.stdout
    assert any(ln.startswith("winstor: sim-1: AWS facts not read:") and "planted-profile" in ln
               for ln in summary), proc.stdout
