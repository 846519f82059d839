"""Run reports and certification: the pytest plugin behind `reports/<run-id>/`.

Every run that executes catalog checks writes `reports/<run-id>/` with
`junit.xml` (xunit2), `results.json` (see `winstor.results`), `report.html`
(see `winstor.htmlreport`) and `diagnostics/` for failed checks, and points
`reports/latest` at it. `--certify` adds the certification rules and one
bundle per cluster (see `winstor.bundle`).

Where things happen, and why:
- on the process that ran a check (an xdist worker, or the only process):
  what the check saw, its failure reason and - for a failure - the
  diagnostics, because only that process holds the cluster connection and
  the cluster still holds the objects. They travel on the test report as
  one JSON string attribute (`winstor_result`): pytest's report
  serialization copies a report's attributes, and a string is safe for
  execnet whatever the evidence held. Cluster facts (nodes, AMIs, versions,
  timeline) are read there at session end and sent in `workeroutput`.
- on the controller (or the only process): everything is merged and the
  files are written, JUnit by a second pytest `LogXML` so that it is
  complete under xdist too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import platform
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from _pytest.junitxml import LogXML

from . import bundle, checks, clusterfacts, htmlreport, results
from .diagnostics import Collector, wait_failures
from .redact import REDACTED, Redactor, redacted_kubeconfig

EVIDENCE = pytest.StashKey[dict]()
"""Where the `evidence` fixture keeps what a check saw (checks fill the dict)."""

PAYLOAD = "winstor_result"
FACTS_OUTPUT = "winstor_report_facts"
EVIDENCE_LIMIT = 64 * 1024
REASON_LIMIT = 8000
WAIT_NOTICE = 15.0  # seconds a phase runs before the terminal says so

OPTIONS: list[tuple[str, str, dict[str, Any]]] = [
    ("--report-dir", "directory for run reports: <dir>/<run-id>/ and <dir>/latest "
                     "(default: reports)", {}),
    ("--certify", "certification run: the whole catalog (no -k, -m or deselection), skips "
                  "count as failures, AWS facts required; writes one "
                  "winstor-cert-<cluster>-<time>.tar.gz per cluster",
     {"action": "store_true", "default": None}),
    ("--expect-ami", "when certifying, the AMI id every Windows node must run (repeatable)",
     {"action": "append"}),
]


def _env(option: str) -> str:
    return "WINSTOR_" + option.lstrip("-").replace("-", "_").upper()


def _ini(option: str) -> str:
    return "winstor_" + option.lstrip("-").replace("-", "_")


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("winstor", "winstor: Windows storage conformance")
    for option, text, kwargs in OPTIONS:
        group.addoption(option, dest=option.lstrip("-").replace("-", "_"),
                        help=f"{text} [env {_env(option)}, ini {_ini(option)}]", **kwargs)
        kind = "linelist" if kwargs.get("action") == "append" else (
            "bool" if kwargs.get("action") == "store_true" else "string")
        parser.addini(_ini(option), f"winstor: default for {option}", type=kind)


@dataclasses.dataclass
class Options:
    report_dir: Path
    certify: bool
    expect_amis: list[str]


def _options(config: pytest.Config) -> Options:
    def get(option: str) -> tuple[Any, str]:
        dest = option.lstrip("-").replace("-", "_")
        value = config.getoption(dest, None)
        if value not in (None, []):
            return value, "cli"
        env = os.environ.get(_env(option))
        if env:
            return env, "env"
        ini = config.getini(_ini(option))
        return (ini, "ini") if ini not in (None, "", []) else (None, "")

    raw_dir, where = get("--report-dir")
    base = config.rootpath if where in ("ini", "") else config.invocation_params.dir
    report_dir = Path(os.path.expanduser(str(raw_dir or "reports")))
    if not report_dir.is_absolute():
        report_dir = base / report_dir
    certify, _ = get("--certify")
    if isinstance(certify, str):
        certify = certify.strip().lower() in ("1", "true", "yes")
    amis, _ = get("--expect-ami")
    if isinstance(amis, str):
        amis = amis.split(",")
    return Options(report_dir, bool(certify), [a.strip() for a in amis or [] if a.strip()])


OPTS = pytest.StashKey[Options]()
RUN = pytest.StashKey["RunReports"]()
_REDACTOR: dict[str, Any] = {}


def _state(config: pytest.Config) -> Any:
    from .plugin import STATE
    return config.stash.get(STATE, None)


def redactor_for(config: pytest.Config) -> Redactor:
    """This process's redactor: the environment, the embedded cluster's AWS settings and
    the kubeconfigs in use (built once the run knows them)."""
    state = _state(config)
    kubeconfigs: list[str | None] = []
    extra: dict[str, str] = {}
    if state is not None:
        extra = dict(state.sim_aws_env)
        kubeconfigs = [state.sim_kubeconfig, state.settings.kubeconfig,
                       *(t.kubeconfig for t in state.settings.targets)]
    # Rebuilt when the embedded cluster appears (its token and keys are new then),
    # keeping what was learned before (credentials of AWS sessions, workers' values).
    key = (tuple(kubeconfigs), tuple(sorted(extra.items())))
    if _REDACTOR.get("key") != key:
        old: Redactor | None = _REDACTOR.get("r")
        fresh = Redactor.from_environment(extra, kubeconfigs)
        if old is not None:
            fresh.add(old.values)
        _REDACTOR.update(key=key, r=fresh)
    return _REDACTOR["r"]


# ------------------------------------------------------------------------ configuration


def pytest_configure(config: pytest.Config) -> None:
    opts = _options(config)
    config.stash[OPTS] = opts
    _REDACTOR.clear()
    if opts.certify:
        _refuse_partial_runs(config)
    if hasattr(config, "workerinput"):
        return
    run = RunReports(config, opts)
    config.stash[RUN] = run
    state = _state(config)
    if state is None:
        return
    run.run_dir = opts.report_dir / state.settings.run_id
    junit = _RunJunit(str(run.run_dir / "junit.xml"), config, run)
    run.junit = junit
    config.pluginmanager.register(junit, "winstor-run-junit")


def _refuse_partial_runs(config: pytest.Config) -> None:
    o = config.option
    used = []
    if getattr(o, "keyword", ""):
        used.append("-k")
    if getattr(o, "markexpr", ""):
        used.append("-m")
    if getattr(o, "deselect", None):
        used.append("--deselect")
    if getattr(o, "lf", False):
        used.append("--last-failed")
    if config.args_source == pytest.Config.ArgsSource.ARGS:
        # Paths narrower than the configured suites would certify part of the catalog.
        base = config.invocation_params.dir
        whole = {(config.rootpath / p).resolve() for p in config.getini("testpaths") or ["."]}
        if any("::" in a or (base / a).resolve() not in whole for a in config.args):
            used.append("the test paths (certification runs "
                        f"{' '.join(config.getini('testpaths') or ['.'])})")
    if used:
        raise pytest.UsageError(f"winstor: --certify runs the whole catalog; remove "
                                f"{', '.join(used)}")


def pytest_deselected(items: list[pytest.Item]) -> None:
    if not items:
        return
    config = items[0].config
    opts = config.stash.get(OPTS, None)
    if opts is not None and opts.certify and any(checks.check_of(i) for i in items):
        raise pytest.UsageError(f"winstor: --certify runs the whole catalog, but {len(items)} "
                                "check(s) were deselected")


class _RunJunit(LogXML):
    """pytest's own JUnit writer, fixed to xunit2 and to the run directory, writing only
    when the run executed catalog checks (a self-test session writes nothing)."""

    def __init__(self, path: str, config: pytest.Config, run: RunReports) -> None:
        def ini(name: str, default: Any) -> Any:
            try:  # pytest's junitxml plugin may be disabled (-p no:junitxml)
                return config.getini(name)
            except ValueError:
                return default
        super().__init__(path, getattr(config.option, "junitprefix", None),
                         ini("junit_suite_name", "pytest"), ini("junit_logging", "no"),
                         ini("junit_duration_report", "total"), "xunit2",
                         ini("junit_log_passing_tests", True))
        self.run = run

    def pytest_sessionfinish(self) -> None:  # type: ignore[override]
        if self.run.enabled:
            super().pytest_sessionfinish()

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:  # type: ignore[override]
        return None  # the run's own summary names the directory


# ---------------------------------------------------------------- the process running checks


def _reason(report: pytest.TestReport, call: pytest.CallInfo[None]) -> str | None:
    if report.passed:
        return None
    if report.skipped:
        lr = report.longrepr
        text = lr[2] if isinstance(lr, tuple) and len(lr) == 3 else str(lr or "")
        return text.removeprefix("Skipped: ")
    exc = call.excinfo
    if exc is not None:
        text = str(exc.value).strip() or exc.exconly()
        if type(exc.value).__name__ not in ("Failed", "AssertionError"):
            text = f"{type(exc.value).__name__}: {text}"
        return text
    return report.longreprtext or None


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    from .plugin import cluster_of
    meta, cluster_name = checks.check_of(item), cluster_of(item)
    if meta is None or cluster_name is None:
        return
    opts = item.config.stash.get(OPTS, None)
    certified_skip = False
    if opts is not None and opts.certify and report.skipped:
        why = _reason(report, call)
        report.outcome = "failed"
        report.longrepr = (f"certification: a skipped check counts as a failure "
                           f"(skipped because: {why})")
        certified_skip = True
    redactor = redactor_for(item.config)
    _redact_report(report, redactor)
    if not (report.when == "call" or report.failed or report.skipped):
        return
    reason = (str(report.longrepr) if certified_skip else _reason(report, call))
    payload: dict[str, Any] = {
        "id": meta[0], "title": meta[1], "cluster": cluster_name,
        "markers": sorted({m.name for m in item.iter_markers()}
                          - {"winstor_check", "parametrize", "xdist_group", "usefixtures"}),
        "reason": redactor.text(reason[:REASON_LIMIT]) if reason else None,
    }
    evidence = item.stash.get(EVIDENCE, None)
    if evidence is not None and report.when != "teardown":
        payload["evidence"] = redactor.data(results.jsonable(evidence, EVIDENCE_LIMIT))
    if report.failed and report.when in ("setup", "call") and not certified_skip:
        payload["diagnostics"] = _diagnostics(item, call, cluster_name, meta[0],
                                              payload["reason"], payload["markers"], redactor)
    setattr(report, PAYLOAD, json.dumps(payload, default=str))


def _redact_report(report: pytest.TestReport, redactor: Redactor) -> None:
    """What pytest itself prints and writes (failure text, captured output) redacted too;
    a failure text is replaced by its redacted plain text only when it held a secret."""
    lr = report.longrepr
    if isinstance(lr, tuple) and len(lr) == 3:
        report.longrepr = (lr[0], lr[1], redactor.text(str(lr[2])))
    elif lr is not None:
        text = str(lr)
        clean = redactor.text(text)
        if clean != text:
            report.longrepr = clean
    report.sections = [(title, redactor.text(content)) for title, content in report.sections]


def _diagnostics(item: pytest.Item, call: pytest.CallInfo[None], cluster_name: str,
                 check_id: str, reason: str | None, markers: list[str],
                 redactor: Redactor) -> dict[str, str]:
    state = _state(item.config)
    cluster = state.clusters.get(cluster_name) if state is not None else None
    waits = wait_failures(call.excinfo.value if call.excinfo else None,
                          getattr(item, "funcargs", {}) or {})
    if cluster is None or getattr(cluster, "_api", None) is None:
        return {"summary.txt": redactor.text(
            f"check: {check_id}\ncluster: {cluster_name}\n\nreason:\n{reason}\n\n"
            "The cluster was never connected, so no cluster state was collected.\n")}
    try:
        return Collector(cluster.api, cluster.run_selector(), redactor).collect(
            check_id, cluster_name, reason, waits, markers)
    except Exception as err:  # diagnostics must never turn a failure into a crash
        return {"summary.txt": redactor.text(
            f"check: {check_id}\ncluster: {cluster_name}\n\nreason:\n{reason}\n\n"
            f"collecting diagnostics failed: {type(err).__name__}: {err}\n")}


_EVENT_PHASES: dict[str, list[dict[str, Any]]] = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    """Before a cluster's shared objects are torn down (its last check), read the run's
    events once for the timeline: provisioning, attach and image pulls are timed by the
    cluster's own components, not by winstor."""
    from .plugin import cluster_of
    name = cluster_of(item)
    if name and (nextitem is None or cluster_of(nextitem) != name):
        state = _state(item.config)
        cluster = state.clusters.get(name) if state is not None else None
        if cluster is not None and getattr(cluster, "_api", None) is not None:
            with contextlib.suppress(Exception):
                _EVENT_PHASES[name] = clusterfacts.event_phases(cluster)
    yield


def _all_cluster_facts(config: pytest.Config) -> dict[str, dict[str, Any]]:
    state = _state(config)
    if state is None:
        return {}
    redactor = redactor_for(config)
    out = {}
    for name, cluster in list(state.clusters.items()):
        try:
            out[name] = clusterfacts.cluster_facts(cluster, redactor,
                                                  _EVENT_PHASES.get(name, []))
        except Exception as err:
            out[name] = {"name": name, "error": f"reading facts failed: {err}"}
    return out


def _send_facts(config: pytest.Config, workeroutput: dict[str, Any]) -> None:
    """Workers: send cluster facts and the secrets they learned to the controller."""
    facts = _all_cluster_facts(config)
    workeroutput[FACTS_OUTPUT] = json.dumps(
        {"facts": facts, "redact": sorted(redactor_for(config).values)}, default=str)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    run = node.config.stash.get(RUN, None)
    raw = (getattr(node, "workeroutput", None) or {}).get(FACTS_OUTPUT)
    if run is None or not raw:
        return
    data = json.loads(raw)
    run.facts.update(data.get("facts") or {})
    redactor_for(node.config).add(data.get("redact") or [])


# ------------------------------------------------------------------- the controller's record


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


def parse_nodeid(nodeid: str) -> tuple[str, str] | None:
    """(cluster, check id) from `path::test[cluster:CHECK-ID]` (xdist may add `@group`)."""
    if "[" not in nodeid or "]" not in nodeid:
        return None
    param = nodeid[nodeid.rindex("[") + 1:nodeid.rindex("]")]
    cluster, sep, check = param.rpartition(":")
    return (cluster, check) if sep and cluster and check else None


class RunReports:
    """Collects check reports on the controller and writes the run directory."""

    def __init__(self, config: pytest.Config, opts: Options) -> None:
        self.config = config
        self.opts = opts
        self.started = time.time()
        self.records: dict[str, CheckRecord] = {}
        self.facts: dict[str, dict[str, Any]] = {}
        self.run_dir: Path | None = None
        self.junit: _RunJunit | None = None
        self.enabled = False
        self.written: list[str] = []
        self.problems: list[str] = []
        self.certification: dict[str, Any] | None = None
        self._lock = threading.Lock()

    def add(self, report: pytest.TestReport) -> None:
        raw = getattr(report, PAYLOAD, None)
        payload = json.loads(raw) if isinstance(raw, str) else {}
        ids = (payload.get("cluster"), payload.get("id")) if payload else None
        if not ids or not all(ids):
            parsed = parse_nodeid(report.nodeid)
            if parsed is None or not (payload or report.nodeid in self.records):
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
            if "evidence" in payload:
                rec.evidence = payload["evidence"] or {}
            if payload.get("diagnostics"):
                rec.diagnostic_files = payload["diagnostics"]
            reason = payload.get("reason")
            if report.when == "setup" and (report.failed or report.skipped):
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

    # -- the document --------------------------------------------------------------
    def document(self, exitstatus: int) -> dict[str, Any]:
        config = self.config
        state = _state(config)
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
                "reason": r.reason, "evidence": r.evidence, "diagnostics": diag})
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
            "timeline": list(base.get("timeline") or []),
            "notes": base.get("notes") or {"leftovers": [], "kept": [], "notes": []},
        }
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


def effective_config(config: pytest.Config) -> dict[str, Any]:
    """The settings the run actually used (before redaction)."""
    state = _state(config)
    opts = config.stash[OPTS]
    out: dict[str, Any] = {"report_dir": str(opts.report_dir), "certify": opts.certify,
                           "expect_amis": opts.expect_amis}
    if state is not None:
        s = state.settings
        out.update({
            "run_id": s.run_id, "profile": s.profile, "embedded_cluster": s.use_sim,
            "kubeconfig": s.kubeconfig, "sim_clusters": s.sim_clusters if s.use_sim else None,
            "sim_scenarios": s.sim_scenarios, "windows_image": s.windows_image,
            "keep_on_failure": s.keep_on_failure, "timeouts": dataclasses.asdict(s.timeouts),
            "targets": [{k: v for k, v in dataclasses.asdict(t).items() if k != "extra"}
                        for t in s.targets]})
    out["xdist"] = {"numprocesses": getattr(config.option, "numprocesses", None),
                    "dist": getattr(config.option, "dist", None)}
    out["environment"] = {k: REDACTED if k == "WINSTOR_REDACT" else v
                          for k, v in sorted(os.environ.items()) if k.startswith("WINSTOR_")}
    return out


def bundle_config(config: pytest.Config) -> dict[str, Any]:
    """The effective configuration for a bundle: settings, arguments, the kubeconfigs'
    clusters and contexts, the clusters file - all to be redacted by the caller."""
    state = _state(config)
    out = {"settings": effective_config(config),
           "args": [str(a) for a in config.invocation_params.args],
           "python": sys.version.split()[0], "platform": platform.platform()}
    if state is not None:
        paths = dict.fromkeys(p for p in [state.sim_kubeconfig, state.settings.kubeconfig,
                                          *(t.kubeconfig for t in state.settings.targets)] if p)
        out["kubeconfigs"] = [redacted_kubeconfig(p) for p in paths]
        clusters_file = config.getoption("clusters", None) or os.environ.get(
            "WINSTOR_CLUSTERS")
        if clusters_file:
            with contextlib.suppress(OSError, UnicodeDecodeError):
                out["clusters_file"] = {"path": clusters_file,
                                        "text": Path(clusters_file).read_text()}
    return out


# ----------------------------------------------------------------------- controller hooks


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    config = _config_for_reports()
    if config is None:
        return
    run = config.stash.get(RUN, None)
    if run is not None:
        run.add(report)


def _config_for_reports() -> pytest.Config | None:
    from .plugin import _CONFIG
    config = _CONFIG.get("config")
    if config is None or hasattr(config, "workerinput"):
        return None
    return config


@pytest.hookimpl(trylast=True)  # after the JUnit writer
def pytest_sessionfinish(session: pytest.Session) -> None:
    config = session.config
    ticker = config.stash.get(TICKER, None)
    if ticker is not None:
        ticker.stop()
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:
        _send_facts(config, workeroutput)
        return
    run = config.stash.get(RUN, None)
    if run is None or not run.enabled or run.run_dir is None:
        return
    if not getattr(config.option, "numprocesses", None):
        run.facts.update(_all_cluster_facts(config))
    try:
        run.write(session)
    except Exception as err:  # a broken report must not hide the run's verdict
        run.problems.append(f"writing reports to {run.run_dir} failed: "
                            f"{type(err).__name__}: {err}")


@pytest.hookimpl(trylast=True)  # after the check x cluster table
def pytest_terminal_summary(terminalreporter: Any, exitstatus: int,
                            config: pytest.Config) -> None:
    run = config.stash.get(RUN, None)
    if run is None or not run.enabled or run.run_dir is None:
        return
    tr = terminalreporter
    if run.written:
        tr.write_line(f"winstor: reports in {run.run_dir} ({', '.join(run.written)}"
                      + (", diagnostics/" if (run.run_dir / "diagnostics").is_dir() else "")
                      + ")")
    for problem in run.problems:
        tr.write_line(f"winstor: report problem: {problem}", red=True)
    cert = run.certification
    if cert:
        for name, v in cert["clusters"].items():
            tr.write_line(f"winstor: certification {v['verdict'].upper()} for {name}"
                          + (f": {'; '.join(v['reasons'][:3])}" if v["reasons"] else ""),
                          green=v["verdict"] == "passed", red=v["verdict"] != "passed")
            if v.get("bundle"):
                tr.write_line(f"winstor: bundle {run.run_dir / v['bundle']}")


# ----------------------------------------------------------------- phases on long waits

TICKER = pytest.StashKey["PhaseTicker"]()


class PhaseTicker(threading.Thread):
    """Says on the terminal which phase each cluster is in when a phase runs long
    (pulling a Windows image takes minutes on EKS). Serial runs only: xdist workers
    cannot write to the terminal."""

    def __init__(self, state: Any, write: Any, notice: float = WAIT_NOTICE) -> None:
        super().__init__(name="winstor-phase-ticker", daemon=True)
        self.state, self.write, self.notice = state, write, notice
        self._halt = threading.Event()
        self._said: dict[int, float] = {}

    def stop(self) -> None:
        self._halt.set()

    def lines(self, now: float) -> list[str]:
        out = []
        for name, cluster in list(self.state.clusters.items()):
            for phase in list(cluster.timeline):
                if phase.end is not None:
                    continue
                running = now - phase.start
                last = self._said.get(id(phase))
                if running >= self.notice and (last is None or now - last >= 2 * self.notice):
                    self._said[id(phase)] = now
                    detail = f" ({phase.detail})" if phase.detail else ""
                    out.append(f"winstor: {name}: {phase.name}{detail} for {running:.0f}s")
        return out

    def run(self) -> None:
        while not self._halt.wait(1.0):
            for line in self.lines(time.time()):
                with contextlib.suppress(Exception):
                    self.write(line)


def pytest_sessionstart(session: pytest.Session) -> None:
    config = session.config
    if hasattr(config, "workerinput") or getattr(config.option, "numprocesses", None) \
            or config.option.collectonly:
        return
    state, tr = _state(config), config.pluginmanager.get_plugin("terminalreporter")
    if state is None or tr is None:
        return

    def write(line: str) -> None:
        tr.ensure_newline()
        tr.write_line(line, yellow=True)
    ticker = PhaseTicker(state, write)
    config.stash[TICKER] = ticker
    ticker.start()
