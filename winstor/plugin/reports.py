"""Run reports and certification: the pytest plugin behind `reports/<run-id>/`.

Every run that executes catalog checks writes `reports/<run-id>/` with
`junit.xml` (xunit2), `results.json` (see `winstor.reports.results`), `report.html`
(see `winstor.reports.html`) and `diagnostics/` for failed checks, and points
`reports/latest` at it. `--certify` adds the certification rules and one
bundle per cluster (see `winstor.reports.bundle`).

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
  files are written, JUnit by `winstor.plugin.junit` from the reports that
  arrive there, so that it is complete under xdist too.

This module is the registered plugin (`winstor-reports`), so it holds the
hooks and what only they use; the rest lives in `winstor.plugin.reportconfig` (the
report options, the redactor, the effective configuration),
`winstor.plugin.runrecord` (the controller's record and the files it writes) and
`winstor.plugin.ticker` (the phase notices on long waits).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from winstor.plugin import checks, interrupt, prepull
from winstor.plugin.junit import JunitWriter
from winstor.plugin.reportconfig import (
    OPTS,
    add_options,
    read_options,
    redactor_for,
    reset_redactor,
    state_of,
)
from winstor.plugin.runrecord import PAYLOAD, RunReports
from winstor.plugin.ticker import PhaseTicker
from winstor.reports import facts as clusterfacts
from winstor.reports import results
from winstor.reports.diagnostics import Collector, wait_failures
from winstor.reports.redact import Redactor

EVIDENCE = pytest.StashKey[dict]()
"""Where the `evidence` fixture keeps what a check saw (checks fill the dict)."""

FACTS_OUTPUT = "winstor_report_facts"
EVIDENCE_LIMIT = 64 * 1024
REASON_LIMIT = 8000

RUN = pytest.StashKey[RunReports]()
TICKER = pytest.StashKey[PhaseTicker]()


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


# ------------------------------------------------------------------------ configuration


def pytest_configure(config: pytest.Config) -> None:
    opts = read_options(config)
    config.stash[OPTS] = opts
    reset_redactor()
    if opts.certify:
        _refuse_partial_runs(config)
    if hasattr(config, "workerinput"):
        return
    run = RunReports(config, opts)
    config.stash[RUN] = run
    state = state_of(config)
    if state is None:
        return
    run.run_dir = opts.report_dir / state.settings.run_id

    def stopped() -> dict[str, str]:
        """Node id -> why, for the checks a signal stopped before their verdict."""
        return {nodeid: interrupt.interrupted_reason(config, phase) for nodeid, phase
                in interrupt.interrupted_checks(config).items() if phase != "teardown"}
    config.pluginmanager.register(
        JunitWriter(run.run_dir / "junit.xml", config,
                    enabled=lambda: run.enabled or bool(stopped()), interrupted=stopped),
        "winstor-run-junit")


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
    from winstor.plugin.hooks import cluster_of
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
        # The xdist worker running it (gw0, gw1...), from its own workerinput rather than
        # PYTEST_XDIST_WORKER, which a run started inside a worker inherits; None serially.
        "worker": (getattr(item.config, "workerinput", None) or {}).get("workerid"),
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
    state = state_of(item.config)
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
_EVENT_PHASE_PROBLEMS: dict[str, str] = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    """Before a cluster's shared objects are torn down (its last check), read the run's
    events once for the timeline: provisioning, attach and image pulls are timed by the
    cluster's own components, not by winstor."""
    from winstor.plugin.hooks import cluster_of
    name = cluster_of(item)
    if name and (nextitem is None or cluster_of(nextitem) != name):
        state = state_of(item.config)
        cluster = state.clusters.get(name) if state is not None else None
        if cluster is not None and getattr(cluster, "_api", None) is not None:
            try:
                _EVENT_PHASES[name] = clusterfacts.event_phases(cluster)
            except Exception as err:  # recorded: the cluster's facts and the summary say it
                _EVENT_PHASE_PROBLEMS[name] = (
                    "the timeline lacks the cluster's own spans (provisioning, attach, "
                    f"image pulls): reading its events failed: {type(err).__name__}: {err}")
    yield


def _all_cluster_facts(config: pytest.Config) -> dict[str, dict[str, Any]]:
    """Each cluster's facts; what could not be read is in its `problems` (and notes)."""
    state = state_of(config)
    if state is None:
        return {}
    redactor = redactor_for(config)
    out = {}
    for name, cluster in list(state.clusters.items()):
        try:
            facts = clusterfacts.cluster_facts(cluster, redactor, _EVENT_PHASES.get(name, []))
        except Exception as err:  # recorded below: a failed read must not lose the report
            problem = f"reading its facts failed: {type(err).__name__}: {err}"
            # The run's own phases are plain data: keep the timeline, whatever failed.
            facts = redactor.data({
                "name": name, "error": problem, "timeline": clusterfacts.run_phases(cluster)
                + _EVENT_PHASES.get(name, []), "notes": {"notes": [problem]},
                "problems": [problem]})
        if name in _EVENT_PHASE_PROBLEMS:
            problem = redactor.text(_EVENT_PHASE_PROBLEMS[name])
            facts.setdefault("problems", []).append(problem)
            facts.setdefault("notes", {}).setdefault("notes", []).append(problem)
        out[name] = facts
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


# ----------------------------------------------------------------------- controller hooks


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    config = _config_for_reports()
    if config is None:
        return
    run = config.stash.get(RUN, None)
    if run is not None:
        run.add(report)


def _config_for_reports() -> pytest.Config | None:
    from winstor.plugin.hooks import _CONFIG
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
    if run is None or run.run_dir is None:
        return
    from winstor.plugin.hooks import sweep_if_needed
    swept = sweep_if_needed(config)  # before writing, so that the report holds its result
    run.mark_interrupted(interrupt.interrupted_checks(config),
                         lambda phase: interrupt.interrupted_reason(config, phase))
    if not run.enabled:
        return
    state = state_of(config)
    pulls = config.pluginmanager.get_plugin(prepull.NAME)
    if pulls is not None:  # the run's image pulls (plugin.prepull): spans, what stays
        for name, spans in pulls.spans.items():
            run.add_end_spans(name, spans)
        for name, per in pulls.ends.items():
            for kind, lines in per.items():
                run.add_end_note(name, kind, lines)
    for name, result in swept.items():
        why = ("the run was interrupted" if interrupt.INTERRUPTED_BY in config.stash
               else "a worker crashed")
        run.add_end_note(name, "notes", result.notes(why, state.settings.run_id
                                                     if state is not None else "?"))
        if result.left:
            run.add_end_note(name, "leftovers", [*result.left, (
                "the embedded cluster stopped with the run, and what it held with it"
                if state is not None and state.settings.use_sim
                else "remove with: " + result.command)])
    if not getattr(config.option, "numprocesses", None):
        run.facts.update(_all_cluster_facts(config))
    try:
        run.write(session)
    except Exception as err:  # a broken report must not hide the run's verdict
        run.problems.append(f"writing reports to {run.run_dir} failed: "
                            f"{type(err).__name__}: {err}")
    _keep_sim_log(config, run)


def _keep_sim_log(config: pytest.Config, run: RunReports) -> None:
    """With --keep-on-failure, the embedded cluster's log goes into the report's diagnostics
    when the run failed or was stopped: the cluster's temporary directory, log included, is
    removed when the run ends (`winstor.targets.embedded`)."""
    state = state_of(config)
    if state is None or state.sim is None or run.run_dir is None or \
            not state.settings.keep_on_failure:
        return
    failed = any(r.outcome in ("failed", "error") for r in run.records.values())
    if not failed and interrupt.INTERRUPTED_BY not in config.stash:
        return
    keep_log = getattr(state.sim, "keep_log", None)  # the control plane keeps its own
    if keep_log is None:
        return
    rel = "diagnostics/embedded-cluster/sim.log"
    try:
        kept = keep_log(run.run_dir / rel, redactor_for(config).text)
    except OSError as err:
        run.problems.append(f"keeping the embedded cluster's log failed: {err}")
        return
    if kept is not None:
        run.written.append(rel)


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
    for name, facts in sorted(run.facts.items()):
        for line in facts.get("problems") or []:
            tr.write_line(f"winstor: {name}: {line}", yellow=True)
    ticker = config.stash.get(TICKER, None)
    if ticker is not None and ticker.failed:
        tr.write_line(f"winstor: {ticker.failed}", yellow=True)
    cert = run.certification
    if cert:
        for name, v in cert["clusters"].items():
            tr.write_line(f"winstor: certification {v['verdict'].upper()} for {name}"
                          + (f": {'; '.join(v['reasons'][:3])}" if v["reasons"] else ""),
                          green=v["verdict"] == "passed", red=v["verdict"] != "passed")
            if v.get("bundle"):
                tr.write_line(f"winstor: bundle {run.run_dir / v['bundle']}")


# ----------------------------------------------------------------- phases on long waits


def pytest_sessionstart(session: pytest.Session) -> None:
    config = session.config
    if hasattr(config, "workerinput") or getattr(config.option, "numprocesses", None) \
            or config.option.collectonly:
        return
    state, tr = state_of(config), config.pluginmanager.get_plugin("terminalreporter")
    if state is None or tr is None:
        return

    def write(line: str) -> None:
        tr.ensure_newline()
        tr.write_line(line, yellow=True)
    ticker = PhaseTicker(state, write)
    config.stash[TICKER] = ticker
    ticker.start()
