"""Retries are for idempotent calls on transient errors only, bounded, and logged."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from winstor.cluster.kube import NAMESPACES, Api, KubeError


class _Throttling(BaseHTTPRequestHandler):
    calls: list[str] = []

    def _answer(self) -> None:
        type(self).calls.append(self.command)
        body = json.dumps({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                           "reason": "TooManyRequests", "code": 429,
                           "message": "Too many requests"}).encode()
        self.send_response(429)
        self.send_header("Retry-After", "0")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def throttled(tmp_path: Path) -> Iterator[Api]:
    _Throttling.calls = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Throttling)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield _api_for(tmp_path, f"http://127.0.0.1:{server.server_address[1]}")
    server.shutdown()


def _api_for(tmp_path: Path, server: str) -> Api:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "t",
        "clusters": [{"name": "t", "cluster": {"server": server}}],
        "users": [{"name": "t", "user": {"token": "x"}}],
        "contexts": [{"name": "t", "context": {"cluster": "t", "user": "t"}}]}))
    return Api.from_kubeconfig(str(kubeconfig), "t")


def test_idempotent_reads_retry_a_bounded_number_of_times(throttled: Api, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="winstor.cluster.kube")
    with pytest.raises(KubeError) as exc:
        throttled.list(NAMESPACES)
    assert exc.value.status == 429
    assert _Throttling.calls == ["GET"] * 8
    assert sum("retrying after transient error" in r.message for r in caplog.records) == 7


def test_a_create_is_retried_a_bounded_number_of_times(throttled: Api) -> None:
    """A create that meets only transient errors is retried like a read, eight tries
    in all, and then the error is reported. (Adoption of an earlier success is
    `test_a_retried_create_adopts_its_own_lost_success` below.)"""
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}
    with pytest.raises(KubeError) as exc:
        throttled.create(NAMESPACES, body)
    assert exc.value.status == 429
    assert _Throttling.calls == ["POST"] * 8


class _LostCreate(BaseHTTPRequestHandler):
    """A namespace store whose first POST is answered 503: with `commit_first` the
    object is stored all the same (the answer, not the create, was lost)."""

    store: dict[str, dict] = {}
    calls: list[str] = []
    commit_first = True

    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _status(self, code: int, reason: str, message: str) -> None:
        self._send(code, {"kind": "Status", "apiVersion": "v1", "status": "Failure",
                          "reason": reason, "code": code, "message": message})

    def do_POST(self) -> None:
        cls = type(self)
        cls.calls.append("POST")
        obj = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        name = obj["metadata"]["name"]
        first = cls.calls.count("POST") == 1
        if first:
            if cls.commit_first:
                cls.store[name] = {**obj, "metadata": {**obj["metadata"], "uid": "u1"}}
            self._status(503, "ServiceUnavailable", "etcd leader changed")
        elif name in cls.store:
            self._status(409, "AlreadyExists", f'namespaces "{name}" already exists')
        else:
            cls.store[name] = obj
            self._send(201, obj)

    def do_GET(self) -> None:
        cls = type(self)
        cls.calls.append("GET")
        name = self.path.split("?")[0].rsplit("/", 1)[-1]
        if name in cls.store:
            self._send(200, cls.store[name])
        else:
            self._status(404, "NotFound", f'namespaces "{name}" not found')

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def lost_create(tmp_path: Path) -> Iterator[Api]:
    _LostCreate.store, _LostCreate.calls, _LostCreate.commit_first = {}, [], True
    server = ThreadingHTTPServer(("127.0.0.1", 0), _LostCreate)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield _api_for(tmp_path, f"http://127.0.0.1:{server.server_address[1]}")
    server.shutdown()


def _ns(run: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "x", "labels": {"winstor.io/run": run}}}


def test_a_retried_create_adopts_its_own_lost_success(lost_create: Api) -> None:
    """The first POST got through but its answer was lost (503); the retry meets
    409 AlreadyExists, and the object there carries this run's label: it is this
    run's own, so `create` returns it instead of failing or creating twice."""
    got = lost_create.create(NAMESPACES, _ns("r1"))
    assert got["metadata"]["uid"] == "u1"
    assert got["metadata"]["labels"] == {"winstor.io/run": "r1"}
    assert _LostCreate.calls == ["POST", "POST", "GET"]
    assert list(_LostCreate.store) == ["x"]


def test_a_retried_create_does_not_adopt_another_runs_object(lost_create: Api) -> None:
    """The same 409 on a retry, but the object there is another run's: it is not
    adopted, the conflict is reported."""
    _LostCreate.commit_first = False
    _LostCreate.store["x"] = _ns("someone-else")
    with pytest.raises(KubeError) as exc:
        lost_create.create(NAMESPACES, _ns("r1"))
    assert exc.value.status == 409 and exc.value.reason == "AlreadyExists"
    assert _LostCreate.calls == ["POST", "POST", "GET"]
    assert _LostCreate.store["x"]["metadata"]["labels"] == {"winstor.io/run": "someone-else"}


def test_a_dry_run_create_is_retried(throttled: Api) -> None:
    """A dry run creates nothing (SMB-PSA-01 asks admission this way), so a
    transient error is retried as a read is, instead of failing the check."""
    body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}
    with pytest.raises(KubeError):
        throttled.dry_run_create(NAMESPACES, body)
    assert _Throttling.calls == ["POST"] * 8


class _FlakyOnce(BaseHTTPRequestHandler):
    """503 for the first request of each path, then an empty list."""

    seen: list[str] = []

    def do_GET(self) -> None:
        first = self.path not in type(self).seen
        type(self).seen.append(self.path)
        body = json.dumps({"kind": "Status", "code": 503, "reason": "ServiceUnavailable",
                           "message": "etcd leader changed"} if first else
                          {"kind": "List", "items": []}).encode()
        self.send_response(503 if first else 200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_diagnostics_reads_survive_a_transient_error(tmp_path: Path) -> None:
    """A failure's diagnostics are read from a cluster that may be the reason for it:
    one 503 must not cost a section of them."""
    from winstor.reports.diagnostics import Collector
    from winstor.reports.redact import Redactor

    _FlakyOnce.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FlakyOnce)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        api = _api_for(tmp_path, f"http://127.0.0.1:{server.server_address[1]}")
        collector = Collector(api, "winstor.io/run=r1", Redactor())
        assert collector._items(NAMESPACES) == []
        assert collector.errors == []
        assert len(_FlakyOnce.seen) == 2 and len(set(_FlakyOnce.seen)) == 1
    finally:
        server.shutdown()


def test_first_contact_retries_a_server_that_answers(throttled: Api, tmp_path: Path) -> None:
    # 429 every time: tried five times, then the answer is reported.
    with pytest.raises(KubeError) as exc:
        throttled.version()
    assert exc.value.status == 429 and _Throttling.calls == ["GET"] * 5
    # One 503 and then an answer: the cluster is connected, not given up on.
    _FlakyOnce.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FlakyOnce)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        api = _api_for(tmp_path, f"http://127.0.0.1:{server.server_address[1]}")
        assert api.version() == {"kind": "List", "items": []}
        assert _FlakyOnce.seen == ["/version", "/version"]
    finally:
        server.shutdown()


def test_first_contact_does_not_retry_a_server_that_is_not_there(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    api = _api_for(tmp_path, f"http://127.0.0.1:{port}")
    retries = Api.retries_total
    with pytest.raises(ConnectionError):
        api.version()
    assert Api.retries_total == retries
