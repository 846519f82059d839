"""The controller's record of a run, and the run directory it writes.

Check reports arrive on the controller (or the only process) one phase at a
time, from whichever process ran the check, each carrying the payload made
there (`PAYLOAD`: what the check saw, its reason, its diagnostics).
`RunReports` merges them into one record per check and cluster and, at the
end of the session, writes `reports/<run-id>/`: diagnostics, the redacted
JUnit, results.json (see `winstor.reports.results`), report.html (see
`winstor.reports.html`), the certification bundles (see `winstor.reports.bundle`), and
`reports/latest`. It holds no pytest hooks: `winstor.plugin.reports` feeds it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from winstor.plugin.checks import parse_nodeid
from winstor.plugin.reportconfig import (
    Options,
    bundle_config,
    effective_config,
    redactor_for,
    state_of,
)
from winstor.reports import bundle, results
from winstor.reports import html as htmlreport
from winstor.reports.redact import Redactor

PAYLOAD = "winstor_result"
"""The test report attribute that carries a check's payload (one JSON string)."""


@dataclasses.dataclass
class CheckRecord:
    id: str
    title: str
    cluster: str
    nodeid: str
    outcome: str = "passed"
    when: str = "call"
    duration: float = 0.0
    start: float | None = None
    stop: float | None = None
    markers: list[str] = dataclasses.field(default_factory=list)
    reason: str | None = None
    evidence: dict[str, Any] = dataclasses.field(default_factory=dict)
    diagnostic_files: dict[str, str] = dataclasses.field(default_factory=dict)
    decided: bool = False
    worker: str | None = None


class RunReports:
    """Collects check reports on the controller and writes the run directory."""

    def __init__(self, config: pytest.Config, opts: Options) -> None:
        self.config = config
        self.opts = opts
        self.started = time.time()
        self.records: dict[str, CheckRecord] = {}
        self.facts: dict[str, dict[str, Any]] = {}
        self.run_dir: Path | None = None
        self.enabled = False
        self.written: list[str] = []
        self.problems: list[str] = []
        self.certification: dict[str, Any] | None = None
        # cluster -> kind (notes, leftovers) -> lines the controller adds at the end: the
        # sweep after an interruption or a crashed worker
        self.end_notes: dict[str, dict[str, list[str]]] = {}
        self.end_spans: dict[str, list[dict[str, Any]]] = {}
        self._lock = threading.Lock()

    def add(self, report: pytest.TestReport) -> None:
        raw = getattr(report, PAYLOAD, None)
        payload = json.loads(raw) if isinstance(raw, str) else {}
        ids = (payload.get("cluster"), payload.get("id")) if payload else None
        lost = report.failed and report.when not in ("setup", "call", "teardown")
        if not ids or not all(ids):
            parsed = parse_nodeid(report.nodeid)
            # A check whose worker died is reported by xdist's controller (when="???",
            # no payload): it is recorded as an error, never left out.
            if parsed is None or not (payload or lost or report.nodeid in self.records):
                return
            ids = parsed
        with self._lock:
            self.enabled = True
            rec = self.records.get(report.nodeid)
            if rec is None:
                rec = self.records[report.nodeid] = CheckRecord(
                    id=ids[1], title=payload.get("title", ids[1]), cluster=ids[0],
                    nodeid=report.nodeid)
            rec.duration += float(getattr(report, "duration", 0.0) or 0.0)
            start, stop = getattr(report, "start", None), getattr(report, "stop", None)
            if start:
                rec.start = min(rec.start or start, start)
            if stop:
                rec.stop = max(rec.stop or stop, stop)
            if payload.get("markers"):
                rec.markers = payload["markers"]
            if payload.get("worker"):
                rec.worker = payload["worker"]
            if "evidence" in payload:
                rec.evidence = payload["evidence"] or {}
            if payload.get("diagnostics"):
                rec.diagnostic_files = payload["diagnostics"]
            reason = payload.get("reason")
            if lost:
                rec.outcome, rec.reason, rec.decided = "error", str(report.longrepr), True
            elif report.when == "setup" and (report.failed or report.skipped):
                rec.outcome = "error" if report.failed else "skipped"
                rec.when, rec.reason, rec.decided = "setup", reason, True
            elif report.when == "call":
                rec.outcome = report.outcome
                rec.when, rec.reason, rec.decided = "call", reason, True
            elif report.when == "teardown" and report.failed:
                if rec.outcome in ("passed", "skipped"):
                    rec.outcome, rec.when, rec.reason = "error", "teardown", reason
                else:
                    rec.reason = (rec.reason or "") + f"\n\nteardown also failed: {reason}"

    def mark_interrupted(self, checks: dict[str, str], reason: Any) -> int:
        """Record the checks a signal stopped before their verdict (node id -> the phase it
        stopped in; `reason(phase)` says why) as errors: a check that did not finish is
        neither passed nor missing. A check stopped in its teardown keeps its verdict.
        Returns how many were marked."""
        marked = 0
        with self._lock:
            for nodeid, phase in checks.items():
                ids = parse_nodeid(nodeid)
                rec = self.records.get(nodeid)
                if ids is None or phase == "teardown" or (rec is not None and rec.decided):
                    continue
                if rec is None:
                    rec = self.records[nodeid] = CheckRecord(id=ids[1], title=ids[1],
                                                             cluster=ids[0], nodeid=nodeid)
                rec.outcome, rec.when, rec.reason, rec.decided = "error", phase, reason(phase), True
                rec.stop = rec.stop or time.time()
                marked += 1
            if marked:
                self.enabled = True
        return marked

    def add_end_note(self, cluster: str, kind: str, lines: list[str]) -> None:
        self.end_notes.setdefault(cluster, {}).setdefault(kind, []).extend(lines)

    def add_end_spans(self, cluster: str, spans: list[dict[str, Any]]) -> None:
        """Timeline spans learned outside the cluster's own process (its image pull)."""
        self.end_spans.setdefault(cluster, []).extend(spans)

    # -- the document --------------------------------------------------------------
    def document(self, exitstatus: int) -> dict[str, Any]:
        config = self.config
        state = state_of(config)
        redactor = redactor_for(config)
        order = [t.name for t in state.settings.targets] if state is not None else []
        records = sorted(self.records.values(), key=lambda r: (
            order.index(r.cluster) if r.cluster in order else len(order), r.start or 0))
        clusters = []
        for name in order:
            if name not in self.facts and not any(r.cluster == name for r in records):
                continue
            clusters.append(self._cluster_entry(name, records))
        checks_out = []
        for r in records:
            diag = [f"diagnostics/{_safe(r.cluster)}/{_safe(r.id)}/{f}"
                    for f in sorted(r.diagnostic_files)] if r.outcome in (
                        "failed", "error") else []
            checks_out.append({
                "id": r.id, "title": r.title, "cluster": r.cluster, "nodeid": r.nodeid,
                "outcome": r.outcome, "when": r.when, "duration": round(r.duration, 4),
                "start": r.start, "stop": r.stop, "markers": r.markers,
                "reason": r.reason, "evidence": r.evidence, "diagnostics": diag,
                "worker": r.worker})
        finished = time.time()
        doc: dict[str, Any] = {
            "kind": results.KIND, "schema_version": results.SCHEMA_VERSION,
            "run": {
                "id": state.settings.run_id if state is not None else "unknown",
                "started": _iso(self.started), "finished": _iso(finished),
                "duration": round(finished - self.started, 3),
                "winstor_version": _version("winstor"), "pytest_version": pytest.__version__,
                "python_version": platform.python_version(), "exit_status": int(exitstatus),
                "args": [redactor.text(str(a)) for a in config.invocation_params.args],
                "options": redactor.data(effective_config(config)),
                "certify": self.opts.certify, "expect_amis": self.opts.expect_amis,
                "pytest_counts": _pytest_counts(config),
            },
            "clusters": clusters,
            "checks": redactor.data(checks_out),
            "summary": results.counts(r.outcome for r in records),
            "certification": None,
        }
        if self.opts.certify:
            doc["certification"] = bundle.verdict(doc, self.opts.expect_amis)
        return doc

    def _cluster_entry(self, name: str, records: list[CheckRecord]) -> dict[str, Any]:
        base = dict(self.facts.get(name) or {})
        entry: dict[str, Any] = {
            "name": name, "context": base.get("context"), "reachable": bool(
                base.get("reachable")), "error": base.get("error") or (
                None if base else "no facts were recorded for this cluster"),
            "kubernetes_version": base.get("kubernetes_version"),
            "server_version": base.get("server_version"), "zones": base.get("zones") or [],
            "aws": base.get("aws") or {"available": False, "region": None},
            "windows_nodes": base.get("windows_nodes") or [],
            "linux_nodes": base.get("linux_nodes") or 0, "facts": base.get("facts") or {},
            "timeline": list(base.get("timeline") or []) + self.end_spans.get(name, []),
            "notes": base.get("notes") or {"leftovers": [], "kept": [], "notes": []},
        }
        notes = {k: list(v) for k, v in entry["notes"].items()}
        for kind, lines in self.end_notes.get(name, {}).items():
            notes.setdefault(kind, []).extend(ln for ln in lines if ln not in notes[kind])
        entry["notes"] = notes
        mine = [r for r in records if r.cluster == name]
        for r in mine:
            if r.start and r.stop:
                entry["timeline"].append({"name": "check", "start": r.start, "end": r.stop,
                                          "duration": round(r.stop - r.start, 4),
                                          "detail": r.id, "source": "check"})
        entry["timeline"].sort(key=lambda p: p["start"])
        entry["summary"] = results.counts(r.outcome for r in mine)
        return entry

    # -- writing -----------------------------------------------------------------------
    def write(self, session: pytest.Session) -> None:
        assert self.run_dir is not None
        redactor = redactor_for(self.config)
        run_dir = self.run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        for r in self.records.values():
            if r.outcome not in ("failed", "error"):
                continue
            for rel, text in r.diagnostic_files.items():
                path = run_dir / "diagnostics" / _safe(r.cluster) / _safe(r.id) / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(redactor.text(text), encoding="utf-8")
        junit_path = run_dir / "junit.xml"
        if junit_path.exists():
            junit_path.write_text(_redact_xml(junit_path.read_text(encoding="utf-8"),
                                              redactor), encoding="utf-8")
        doc = self.document(session.exitstatus)
        self.problems = results.validate(doc)
        self.certification = doc.get("certification")
        if self.certification and self.certification["verdict"] != "passed" and \
                session.exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
            doc["run"]["exit_status"] = int(session.exitstatus)
        if self.certification:
            self._bundles(doc, run_dir, redactor)
        (run_dir / "results.json").write_text(json.dumps(doc, indent=2) + "\n",
                                              encoding="utf-8")
        (run_dir / "report.html").write_text(
            htmlreport.render(doc, _reader(run_dir)), encoding="utf-8")
        self.written = ["junit.xml", "results.json", "report.html"]
        point_latest(self.opts.report_dir, run_dir.name)

    def _bundles(self, doc: dict[str, Any], run_dir: Path, redactor: Redactor) -> None:
        junit_path = run_dir / "junit.xml"
        junit = junit_path.read_text(encoding="utf-8") if junit_path.exists() else \
            '<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" ' \
            'tests="0" failures="0" errors="0" skipped="0"/></testsuites>'
        config_doc = redactor.data(bundle_config(self.config))
        when = time.time()
        for c in doc["clusters"]:
            name = bundle.bundle_name(c["name"], when)
            doc["certification"]["clusters"][c["name"]]["bundle"] = name
        for c in doc["clusters"]:
            mine = results.for_cluster(doc, c["name"])
            files: dict[str, bytes] = {
                "results.json": bundle.dumps(mine),
                "junit.xml": bundle.junit_for_cluster(junit, c["name"]).encode(),
                "report.html": htmlreport.render(mine, _reader(run_dir)).encode(),
                "config.json": bundle.dumps(config_doc),
            }
            for check in mine["checks"]:
                for rel in check["diagnostics"]:
                    p = run_dir / rel
                    if p.is_file():
                        files[rel] = p.read_bytes()
            bundle.write(run_dir, doc["certification"]["clusters"][c["name"]]["bundle"], files)


def _reader(run_dir: Path) -> htmlreport.DiagnosticsReader:
    def read(rel: str) -> str | None:
        p = (run_dir / rel).resolve()
        if run_dir.resolve() not in p.parents or not p.is_file():
            return None
        return p.read_text(encoding="utf-8", errors="replace")
    return read


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in name) or "_"


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def _version(dist: str) -> str:
    from importlib import metadata
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "0+unknown"


def _pytest_counts(config: pytest.Config) -> dict[str, int]:
    tr = config.pluginmanager.get_plugin("terminalreporter")
    stats = getattr(tr, "stats", {}) or {}
    return {k: len(stats.get(k, [])) for k in ("passed", "failed", "error", "skipped",
                                               "xfailed", "xpassed")}


def _redact_xml(text: str, redactor: Redactor) -> str:
    """Redact every attribute and text node, so XML escaping cannot hide a secret."""
    import xml.etree.ElementTree as ET
    try:
        root = ET.fromstring(text)
    except ET.ParseError:
        return redactor.text(text)
    for el in root.iter():
        for k, v in list(el.attrib.items()):
            el.set(k, redactor.text(v))
        if el.text:
            el.text = redactor.text(el.text)
        if el.tail:
            el.tail = redactor.text(el.tail)
    return '<?xml version="1.0" encoding="utf-8"?>' + ET.tostring(root, encoding="unicode")


def point_latest(report_dir: Path, run_name: str) -> None:
    """`reports/latest` -> the run directory: a relative symlink (so
    `reports/latest/report.html` opens in a browser and survives moving the whole
    directory), replaced atomically; a one-line file naming the run where
    symlinks cannot be made."""
    link = report_dir / "latest"
    tmp = report_dir / f".latest-{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    if link.is_dir() and not link.is_symlink():
        return  # someone's own directory: leave it alone
    try:
        tmp.symlink_to(run_name, target_is_directory=True)
        os.replace(tmp, link)
    except (OSError, NotImplementedError):
        with contextlib.suppress(OSError):
            tmp.unlink()
        tmp.write_text(run_name + "\n", encoding="utf-8")
        os.replace(tmp, link)
