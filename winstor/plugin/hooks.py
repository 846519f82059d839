"""The pytest plugin: options, markers, cluster parametrization, summaries.

Registered through the `pytest11` entry point, so every pytest run in an
environment with winstor installed knows the options and markers. Nothing
here contacts a cluster; the `cluster` fixture does that on first use.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pytest

from winstor import heap
from winstor.cluster.kube import load_official_client
from winstor.config import ConfigError
from winstor.plugin import checks, interrupt, prepull
from winstor.plugin.catalog import pytest_cmdline_main  # noqa: F401  (--help: the catalog)
from winstor.plugin.ordering import Ordering
from winstor.plugin.runstate import RunState
from winstor.plugin.settings import OPTIONS, env_name, ini_name, resolve
from winstor.targets import profiles

STATE = pytest.StashKey[RunState]()
# pytest_runtest_logreport gets no config; the outcome table lives on the one in use.
_CONFIG: dict[str, pytest.Config] = {}
OUTCOMES = pytest.StashKey[dict[str, dict[str, str]]]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("winstor", "winstor: Windows storage conformance")
    for option, help_text, kwargs in OPTIONS:
        group.addoption(option, dest=option.lstrip("-").replace("-", "_"),
                        help=f"{help_text} [env {env_name(option)}, ini {ini_name(option)}]",
                        **kwargs)
        ini_type = "linelist" if kwargs.get("action") == "append" else (
            "bool" if kwargs.get("action") == "store_true" else "string")
        parser.addini(ini_name(option), f"winstor: default for {option}", type=ini_type)


def _scenario_names() -> set[str]:
    # The names only: a table of strings, not the emulator.
    from winstor.sim.scenarios import SCENARIOS
    return set(SCENARIOS)


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    # Before pytest's unraisable-exception plugin adds its cleanup, so this one runs
    # after it (cleanups run last-in, first-out): see winstor.heap.
    config.add_cleanup(lambda: _thaw_if_settled(config))
    for name, text in checks.MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {text}")
    config.addinivalue_line("markers", "winstor_check(id, title): a winstor conformance check "
                                       "with a stable id")
    _check_separate_path_values(config)
    workerinput = getattr(config, "workerinput", None)
    run_id = workerinput.get("winstor_run_id") if workerinput else None
    try:
        settings = resolve(config, _scenario_names(), run_id)
    except ConfigError as err:
        raise pytest.UsageError(f"winstor: {err}") from None
    state = RunState(settings, progress=_terminal_line(config))
    if workerinput:
        state.adopt_worker_input(workerinput)
        if not state.sim_kubeconfig and settings.use_sim and not state.launch_error:
            state.launch_error = "the controller did not start the embedded cluster"
    config.stash[STATE] = state
    config.stash[interrupt.IN_FLIGHT] = {}
    config.stash[STARTED] = {}
    # As early as can be: SIGTERM's default would end the process on the spot (see
    # winstor.plugin.interrupt), and the embedded cluster starts in pytest_sessionstart.
    if workerinput:
        interrupt.install_worker_handler()
    else:
        interrupt.install_controller_handler(config, state)
    config.pluginmanager.register(Ordering(state, cluster_of), "winstor-ordering")
    config.pluginmanager.register(prepull.PrePulls(state, cluster_of), prepull.NAME)
    _CONFIG["config"] = config
    config.stash[OUTCOMES] = defaultdict(dict)


def _terminal_line(config: pytest.Config) -> Any:
    """Where a long start's progress goes (the control plane's first build takes
    minutes): the terminal, past pytest's capturing, in this process only."""
    def say(line: str) -> None:
        capture = config.pluginmanager.getplugin("capturemanager")
        reporter = config.pluginmanager.getplugin("terminalreporter")
        if capture is None or reporter is None:
            print(line, flush=True)
            return
        with capture.global_and_fixture_disabled():
            reporter.write_line(f"winstor: {line}")
    return say


DISTRIBUTIONS = ("load", "loadgroup")
"""The `--dist` modes winstor's scheduler stands in for: `load` is what `-n` alone means,
`loadgroup` what winstor asked for before it had its own. An explicit other mode
(`loadfile`, `worksteal`...) is left to xdist."""


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """A cluster's checks share expensive objects: keep them on one worker
    (`winstor.plugin.scheduling`)."""
    if config.getvalue("dist") not in DISTRIBUTIONS:
        return None
    from winstor.plugin.scheduling import ClusterScheduling
    scheduler = ClusterScheduling(config, log)
    config.stash[interrupt.WORKER_PENDING] = scheduler.pending
    return scheduler


PATH_OPTIONS = ("--kubeconfig", "--clusters", "--timeouts")


def _check_separate_path_values(config: pytest.Config) -> None:
    """pytest picks its rootdir before plugins' options are known, so in
    `--kubeconfig /elsewhere/file` it takes the path for a test path, loses
    the project's configuration and collects the wrong tests. Refuse that
    clearly instead of running something else."""
    if config.inipath is not None:
        return
    args = [str(a) for a in config.invocation_params.args]
    for i, arg in enumerate(args[:-1]):
        if arg in PATH_OPTIONS:
            raise pytest.UsageError(
                f"winstor: write {arg}={args[i + 1]} (with '='): given as two words, pytest "
                "takes the path for a test path and loses the project's configuration")


def _xdist_controller(config: pytest.Config) -> bool:
    return bool(getattr(config.option, "numprocesses", None)) and not hasattr(
        config, "workerinput")


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    config = session.config
    if _xdist_controller(config) and not config.option.collectonly:
        config.stash[STATE].ensure_sim()


SETTLED = pytest.StashKey[bool]()


def _settle(config: pytest.Config) -> None:
    """Settle the heap (`winstor.heap`) for this run, once."""
    if not config.stash.get(SETTLED, False):
        heap.settle()
        config.stash[SETTLED] = True


def _thaw_if_settled(config: pytest.Config) -> None:
    if config.stash.get(SETTLED, False):
        heap.thaw()


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    """Settle the heap once a catalog run's items exist (`winstor.heap`). The official
    Kubernetes client is imported first: the checks import it on first use anyway, and
    it is the largest part of that heap. Any other session (winstor is installed, so
    its plugin loads in every pytest run here) keeps its collector as it is. An xdist
    controller collects nothing: it settles on its first check report instead."""
    config = session.config
    # Here, not in pytest_collection_modifyitems: -k, -m and --deselect remove items there
    # after winstor's own (tryfirst) pass, and what a deselected check needs is not begun.
    config.stash[STATE].needed_fixtures = checks.needed_fixtures(session.items, cluster_of)
    if config.option.collectonly or not any(
            cluster_of(i) and checks.check_of(i) for i in session.items):
        return
    load_official_client()
    _settle(config)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    node.workerinput.update(node.config.stash[STATE].worker_input())


def pytest_report_header(config: pytest.Config) -> list[str]:
    s = config.stash[STATE].settings
    where = ("kubeconfig contexts" if not s.use_sim else "control plane (started on first use)"
             if s.profile == "controlplane" else "embedded cluster (started on first use)")
    lines = [f"winstor: run {s.run_id}, profile {s.profile}, {where}: "
             + ", ".join(t.name for t in s.targets)]
    if s.sim_scenarios:
        lines.append(f"winstor: scenarios {', '.join(s.sim_scenarios)}")
    where_verdicts = profiles.get(s.profile).where
    if where_verdicts:
        lines.append(f"winstor: {where_verdicts}")
    if s.controlplane_settings:
        lines.append(f"winstor: following `winstor controlplane up` ({s.controlplane_settings});"
                     " `winstor controlplane down` or --profile eks to use the embedded cluster")
    if s.kind_settings:
        lines.append(f"winstor: following `winstor kind up` ({s.kind_settings}); "
                     "`winstor kind down` or --profile eks to use the embedded cluster")
    advice = _worker_advice(config, len(s.targets))
    if advice:
        lines.append(f"winstor: {advice}")
    return lines


def _worker_advice(config: pytest.Config, clusters: int) -> str | None:
    """A cluster's checks stay on one worker and wait on that cluster's slow objects, so a
    worker with several clusters checks them one after another: with fewer workers than
    clusters, say so and what runs them side by side (README, "Many clusters in one run")."""
    workers = getattr(config.option, "numprocesses", None)
    if not _xdist_controller(config) or not isinstance(workers, int) or workers >= clusters:
        return None
    return (f"{clusters} clusters on {workers} worker{'s' if workers > 1 else ''}: a worker "
            f"checks its clusters one after another; -n {clusters} checks them side by side")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    check = metafunc.definition.get_closest_marker("winstor_check")
    if check is None or "cluster" not in metafunc.fixturenames:
        return  # only catalog checks run per cluster
    state = metafunc.config.stash[STATE]
    suffix = f":{check.args[0]}"
    names = [t.name for t in state.settings.targets]
    ids = [f"{n}{suffix}" for n in names]
    if "head_start" in metafunc.fixturenames:
        # The head start (fixtures/headstart.py, autouse, so first of the check's session
        # fixtures) is per cluster too: parametrized alike, it runs once per cluster.
        metafunc.parametrize(("cluster", "head_start"), [(n, n) for n in names],
                             indirect=True, scope="session", ids=ids)
    else:
        metafunc.parametrize("cluster", names, indirect=True, scope="session", ids=ids)


def cluster_of(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    if callspec is None:
        return None
    return callspec.params.get("cluster")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    settings = config.stash[STATE].settings
    order = {t.name: i for i, t in enumerate(settings.targets)}
    lacks = profiles.get(settings.profile).lacks
    for item in items:
        missing = [m for m in lacks if checks.check_of(item) and item.get_closest_marker(m)]
        if missing:
            # Declared, not discovered: the profile cannot have what the check judges.
            item.add_marker(pytest.mark.skip(
                reason=f"profile {settings.profile}: {lacks[missing[0]]}"))
    position = {id(item): i for i, item in enumerate(items)}
    items.sort(key=lambda it: (order.get(cluster_of(it) or "", -1),
                               (checks.check_of(it) or ("", "", 50))[2], position[id(it)]))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    outcome = yield
    report = outcome.get_result()
    name, meta = cluster_of(item), checks.check_of(item)
    if name and meta:
        # Plain attributes travel with the report under xdist; user_properties would
        # too, but they end up as per-testcase <properties>, which xunit2 forbids.
        report.winstor_cluster, report.winstor_check = name, meta[0]
    if report.failed and name and meta:
        cluster = item.config.stash[STATE].clusters.get(name)
        if cluster is not None and meta[0] not in cluster.failed_checks:
            cluster.failed_checks.append(meta[0])


def _cluster_notes(state: RunState) -> dict[str, dict[str, list[str]]]:
    """What teardown left, kept or noted per cluster (shown after the run)."""
    out: dict[str, dict[str, list[str]]] = {}
    for name, cluster in state.clusters.items():
        notes = {k: list(cluster.facts.get(k, [])) for k in ("leftovers", "kept", "notes")}
        if any(notes.values()):
            out[name] = notes
    return out


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    """Trylast: after pytest has torn down the fixtures (and xdist its workers)."""
    config = session.config
    workeroutput = getattr(config, "workeroutput", None)
    state = config.stash[STATE]
    if workeroutput is not None:
        workeroutput["winstor_notes"] = _cluster_notes(state)
        return
    sweep_if_needed(config)


SWEPT = pytest.StashKey[dict[str, interrupt.Swept]]()
"""The end-of-run sweep, per cluster (once it ran)."""
STARTED = pytest.StashKey[dict[str, set[str]]]()
"""Controller: cluster -> the workers ("" serially) its checks started on."""


def sweep_if_needed(config: pytest.Config) -> dict[str, interrupt.Swept]:
    """After an interruption or a worker's crash, sweep the run's objects by run label from
    the clusters concerned (once; the report plugin calls this before it writes, so that
    the report holds the result). Returns the sweep's result, {} when none was needed.
    The run's image pulls (`winstor.plugin.prepull`) are seen gone first, in every run."""
    if SWEPT in config.stash:
        return config.stash[SWEPT]
    config.stash[SWEPT] = {}
    state = config.stash[STATE]
    if hasattr(config, "workerinput") or config.option.collectonly:
        return {}
    pulls = config.pluginmanager.get_plugin(prepull.NAME)
    if pulls is not None:
        pulls.settle(config)
    started = config.stash.get(STARTED, {})
    if state.interrupted:
        # A signal may land between creating an object and the fixture that owns it
        # registering its teardown; the run's labels still find whatever that left.
        why = f"the run was interrupted ({config.stash.get(interrupt.INTERRUPTED_BY, '?')})"
        clusters = [t.name for t in state.settings.targets if t.name in started]
    elif state.crashed_workers:
        crashed = {w.split(":", 1)[0] for w in state.crashed_workers}
        why = f"a worker crashed ({'; '.join(state.crashed_workers)})"
        clusters = [t.name for t in state.settings.targets
                    if started.get(t.name, set()) & crashed]
    else:
        return {}
    swept = interrupt.sweep(state, clusters) if clusters else {}
    for name, result in swept.items():
        state.remote_notes.setdefault(name, {}).setdefault("notes", []).extend(
            result.notes(why, state.settings.run_id))
    config.stash[SWEPT] = swept
    return swept


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    notes = (getattr(node, "workeroutput", None) or {}).get("winstor_notes") or {}
    state = node.config.stash[STATE]
    state.remote_notes.update(notes)
    if error:
        # A worker that died (SIGKILL, OOM) tore nothing down: its successor makes its
        # cluster's namespaces anew (winstor.cluster.provision.ensure_namespace) and what
        # is left is swept by run label at the end.
        state.crashed_workers.append(f"{getattr(node.gateway, 'id', '?')}: {error}"[:300])


@pytest.hookimpl(optionalhook=True)
def pytest_handlecrashitem(crashitem: str, report: pytest.TestReport, sched: Any) -> None:
    """xdist reports the check a dead worker was running as failed in phase "???", with
    "worker 'gw0' crashed while running '<node id>'". Say it is lost, and why (the worker's
    end as xdist saw it), and label it with its cluster and check like any check's report,
    so that every report - junit.xml, results.json, the terminal - carries it once, alike."""
    node = getattr(report, "node", None)
    worker = getattr(getattr(node, "gateway", None), "id", "?")
    state = report.node.config.stash[STATE] if node is not None else None
    error = next((w.split(": ", 1)[1] for w in (state.crashed_workers if state else [])
                  if w.startswith(f"{worker}: ")), "")
    report.longrepr = (f"lost: xdist worker {worker} crashed while running this check"
                       + (f" ({error})" if error else "")
                       + "; it died without a report (killed, out of memory or an interpreter "
                         "crash), so the check has no verdict and is not run again")
    ids = checks.parse_nodeid(crashitem)
    if ids:
        report.winstor_cluster, report.winstor_check = ids


def _controller_config() -> pytest.Config | None:
    config = _CONFIG.get("config")
    return None if config is None or hasattr(config, "workerinput") else config


def pytest_runtest_logstart(nodeid: str, location: Any) -> None:
    """Controller: a check started (here or on a worker) - what a signal would interrupt,
    and a cluster that holds objects of the run from now on."""
    config = _controller_config()
    if config is None:
        return
    config.stash[interrupt.IN_FLIGHT][nodeid] = "setup"
    ids = _ids(nodeid)
    if ids:
        config.stash[STARTED].setdefault(ids[0], set())


def pytest_runtest_logfinish(nodeid: str, location: Any) -> None:
    config = _controller_config()
    if config is not None:
        config.stash[interrupt.IN_FLIGHT].pop(nodeid, None)
        config.stash.setdefault(interrupt.FINISHED, set()).add(nodeid)


def _ids(nodeid: str) -> tuple[str, str] | None:
    return checks.parse_nodeid(nodeid)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    cluster = getattr(report, "winstor_cluster", None)
    check = getattr(report, "winstor_check", None)
    if not cluster or not check:
        return
    config = _CONFIG.get("config")
    if config is not None:
        _settle(config)  # an xdist controller's first check report; see above
    outcome = None
    if report.when == "call" or report.outcome != "passed":
        outcome = "error" if report.when != "call" and report.failed else report.outcome
    if report.when == "setup" and report.skipped:
        outcome = "skipped"
    if report.when not in ("setup", "call", "teardown"):
        outcome = "lost"  # xdist's report of a crashed worker's check (pytest_handlecrashitem)
    if outcome is None or config is None:
        return
    if not hasattr(config, "workerinput"):
        worker = getattr(getattr(getattr(report, "node", None), "gateway", None), "id", "")
        config.stash[STARTED].setdefault(cluster, set()).add(worker)
        in_flight = config.stash[interrupt.IN_FLIGHT]
        if report.nodeid in in_flight and report.when in interrupt.NEXT_PHASE:
            in_flight[report.nodeid] = interrupt.NEXT_PHASE[report.when]
    table = config.stash[OUTCOMES]
    previous = table[cluster].get(check)
    if previous in ("failed", "error", "lost") and outcome == "passed":
        return
    table[cluster][check] = outcome


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int,
                            config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        return
    table = config.stash[OUTCOMES]
    for nodeid, phase in interrupt.interrupted_checks(config).items():
        ids = _ids(nodeid)
        if ids and phase != "teardown" and ids[1] not in table[ids[0]]:
            table[ids[0]][ids[1]] = "interrupted"  # no verdict came: the signal stopped it
    state = config.stash[STATE]
    swept = config.stash.get(SWEPT, {})
    if not table and not swept:
        return
    tr = terminalreporter
    tr.section("winstor: checks per cluster")
    checks_seen = sorted({c for per in table.values() for c in per})
    clusters = [t.name for t in state.settings.targets if t.name in table]
    width = max([len(c) for c in checks_seen] + [5])
    marks = {"passed": "pass", "failed": "FAIL", "error": "ERROR", "skipped": "skip",
             "lost": "LOST", "interrupted": "STOPPED"}
    tr.write_line(f"{'check':<{width}}  " + "  ".join(f"{c:<8}" for c in clusters))
    for check in checks_seen:
        cells = [marks.get(table[c].get(check, ""), "-") for c in clusters]
        tr.write_line(f"{check:<{width}}  " + "  ".join(f"{x:<8}" for x in cells))
    notes: dict[str, dict[str, list[str]]] = {}
    for source in (state.remote_notes, _cluster_notes(state)):
        for name, per in source.items():
            for kind, lines in per.items():
                mine = notes.setdefault(name, {}).setdefault(kind, [])
                mine.extend(ln for ln in lines if ln not in mine)
    for name, per in sorted(notes.items()):
        for kind, label in (("leftovers", "LEFT BEHIND"), ("kept", "kept (--keep-on-failure)"),
                            ("notes", "note")):
            for line in per.get(kind, []):
                tr.write_line(f"{name}: {label}: {line}")
    for name in clusters:
        counts: dict[str, int] = defaultdict(int)
        for outcome in table[name].values():
            counts[outcome] += 1
        tr.write_line(f"{name}: {counts['passed']} passed, {counts['failed']} failed, "
                      f"{counts['error']} errors, {counts['skipped']} skipped"
                      + (f", {counts['lost']} lost with a crashed worker" if counts["lost"]
                         else "")
                      + (f", {counts['interrupted']} stopped by "
                         f"{config.stash[interrupt.INTERRUPTED_BY]}" if counts["interrupted"]
                         else ""))
    _say_what_stays(tr, state, swept)


def _say_what_stays(tr: Any, state: RunState, swept: dict[str, interrupt.Swept]) -> None:
    """What the sweep could not remove, and the line that removes it (an embedded cluster
    stops with the run, and everything in it)."""
    for name, result in swept.items():
        if not result.left:
            continue
        for line in result.left:
            tr.write_line(f"winstor: {name}: could not remove: {line}", red=True)
        if state.settings.use_sim:
            tr.write_line(f"winstor: {name}: the embedded cluster stops with the run, and what "
                          "it holds with it", yellow=True)
        else:
            tr.write_line(f"winstor: {name}: remove it with: {result.command}", yellow=True)


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    if state is not None:
        state.stop()
    if _CONFIG.get("config") is config:
        del _CONFIG["config"]
