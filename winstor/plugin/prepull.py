"""Begin every cluster's image pull as soon as the run knows its selection.

Which process: the serial run's own, or the first xdist worker (`gw0`), right after it
has collected - the xdist controller collects nothing, so it cannot tell which checks
were selected, and a cluster whose selected checks run no Windows pod must not pull
gigabytes for nothing. A serial run skips its first cluster, whose checks (and head
start) begin at once anyway.

When: the pull is the longest step of a cluster's run, so the sooner it begins the
sooner the run ends. xdist starts its workers one after another; in a fleet, 16 workers
starting and collecting at once on a small machine kept the first from beginning the
pulls for seconds. So the controller holds the start of every other worker (xdist's
`pytest_xdist_newgateway`, called for each before its session starts) until the first
has begun every pull - its pods created - or for at most `HOLD_SECONDS`.

Who cleans up: each pull deletes its namespace once the image is on every node
(`winstor.cluster.prepull`); the pulling process deletes what is still under way when
its session ends, and the process that writes the report (controller or serial) then
waits until every pull's namespace is gone - on every cluster the pulling worker said it
began, or on all of them when that worker was lost - and reports what stays as the
cluster's leftovers, before the report is written.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from winstor.cluster import prepull
from winstor.cluster.target import Cluster
from winstor.plugin import checks
from winstor.plugin.runstate import RunState
from winstor.reports import facts as clusterfacts
from winstor.targets.embedded import LaunchError

log = logging.getLogger("winstor.prepull")

NAME = "winstor-prepull"
"""The plugin's name: `-p no:winstor-prepull` turns the pulls off."""
OUTPUT = "winstor_prepulled"
"""workeroutput key: the clusters where the pulling worker began a pull and did not see its
namespace gone ("begun"), each pull's timeline spans ("spans"), and why the pulls that
failed did ("errors")."""
PULLER = "gw0"
SETTLE_GRACE = 60.0
"""Seconds allowed beyond the namespace timeout for seeing the pulls' namespaces gone."""
HOLD_SECONDS = 5.0
"""The longest the controller holds the other workers' start for the first one's pulls."""
BEGUN = "winstor_prepull_begun"
"""workerinput key: the file the pulling worker creates once its pulls have begun."""
HOLD_POLL = 0.02
"""Seconds between looks for that file: a stat, for at most HOLD_SECONDS once a run."""


class PrePulls:
    """The pulls of one run, as a pytest plugin (`NAME`)."""

    def __init__(self, state: RunState, cluster_of: Callable[[pytest.Item], str | None]):
        self.state = state
        self.cluster_of = cluster_of
        self.pulls: dict[str, prepull.PrePull] = {}
        # the controller's view: clusters a worker began pulls on; None: not known (lost)
        self.reported: set[str] | None = set()
        self.settled = False
        # for the report (reports plugin): each cluster's pull spans from its events, and
        # what the end of the run found of the pulls (leftovers, notes)
        self.spans: dict[str, list[dict[str, Any]]] = {}
        self.ends: dict[str, dict[str, list[str]]] = {}
        self.errors: dict[str, str] = {}  # the pulling worker's failed pulls (controller)
        # the controller's hold of the other workers' start (BEGUN, HOLD_SECONDS)
        self.begun_file: Path | None = None
        self.hold_until = 0.0

    # -- the pulling process -------------------------------------------------------------
    @staticmethod
    def _pulls_here(config: pytest.Config) -> bool:
        workerinput = getattr(config, "workerinput", None)
        if workerinput is not None:
            return workerinput.get("workerid") == PULLER
        return not getattr(config.option, "numprocesses", None)

    def wanted(self, items: list[pytest.Item], serial: bool) -> list[Cluster]:
        """The clusters, in run order, whose selected checks that will run need the image
        (but a serial run's first cluster, whose checks begin at once). What the checks
        need is the run's own note of it (`RunState.needed_fixtures`)."""
        with_checks = list(dict.fromkeys(
            name for item in items if checks.check_of(item)
            and (name := self.cluster_of(item)) is not None))
        out = []
        for name in with_checks:
            needed = self.state.needed_fixtures.get(name, [])
            if not needed:
                continue
            cluster = self.state.detached_cluster(name)
            if any(gates <= cluster.opt_in and fixtures & set(prepull.PULLING_FIXTURES)
                   for gates, fixtures in needed):
                out.append(cluster)
        if serial and with_checks and out and out[0].name == with_checks[0]:
            out = out[1:]
        return out

    @pytest.hookimpl(wrapper=True)
    def pytest_collection_finish(self, session: pytest.Session) -> Any:
        """A wrapper: after every implementation, the plugin's own that notes what the
        checks need (`hooks.pytest_collection_finish`) included."""
        result = yield
        config = session.config
        nothing_runs = config.option.collectonly or config.option.setupplan \
            or not self._pulls_here(config) or self.state.launch_error
        try:
            if not nothing_runs:
                for cluster in self.wanted(session.items, not hasattr(config, "workerinput")):
                    self.pulls[cluster.name] = prepull.begin(cluster)
        except LaunchError:
            pass  # the embedded cluster did not start: the checks say so
        finally:
            self._say_begun(config)
        return result

    def _say_begun(self, config: pytest.Config) -> None:
        """The pulling worker: create the controller's BEGUN file once every pull's pods
        are created (or it ended), within HOLD_SECONDS - in the background."""
        path = (getattr(config, "workerinput", None) or {}).get(BEGUN)
        if not path:
            return
        pulls = list(self.pulls.values())

        def say() -> None:
            deadline = time.monotonic() + HOLD_SECONDS
            for pull in pulls:
                pull.begun.wait(max(0.0, deadline - time.monotonic()))
            try:
                Path(path).touch()
            except OSError as err:  # the controller stops holding at HOLD_SECONDS anyway
                log.debug("telling the controller the pulls began: %s", err)

        threading.Thread(target=say, name="prepull-begun", daemon=True).start()

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        for pull in self.pulls.values():
            pull.stop()
        workeroutput = getattr(session.config, "workeroutput", None)
        if workeroutput is not None:
            workeroutput[OUTPUT] = {"begun": self.begun(), "spans": self.own_spans(),
                                    "errors": self.own_errors()}

    def own_errors(self) -> dict[str, str]:
        """Why this process's failed pulls failed, per cluster."""
        return {name: pull.error for name, pull in self.pulls.items() if pull.error}

    def own_spans(self) -> dict[str, list[dict[str, Any]]]:
        """This process's pulls as timeline spans (from each namespace's events)."""
        out = {}
        for name, pull in self.pulls.items():
            spans = clusterfacts.spans_of(pull.events)
            for span in spans:
                span["detail"] += " (pulled from the start of the run)"
            if spans:
                out[name] = spans
        return out

    def begun(self) -> list[str]:
        """The clusters where a pull's namespace was asked for, or may still be, and was
        not seen gone (the end of the run checks these)."""
        return sorted(name for name, pull in self.pulls.items()
                      if (pull.created and not pull.gone) or not pull.done.is_set())

    # -- the controller ------------------------------------------------------------------
    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """The pulling worker is told where to say that its pulls began (the first time:
        a replacement worker starts alone, with nothing to hold)."""
        if node.workerinput.get("workerid") != PULLER or self.begun_file is not None:
            return
        self.begun_file = Path(tempfile.mkdtemp(prefix="winstor-prepull-")) / "begun"
        node.workerinput[BEGUN] = str(self.begun_file)
        self.hold_until = time.monotonic() + HOLD_SECONDS

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_newgateway(self, gateway: Any) -> None:
        """Hold the start of each worker after the first until the first has begun the
        pulls (the file exists), or until HOLD_SECONDS after the first started."""
        if self.begun_file is None or getattr(gateway, "id", PULLER) == PULLER:
            return
        while not self.begun_file.exists() and time.monotonic() < self.hold_until:
            time.sleep(HOLD_POLL)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self.begun_file is not None:
            shutil.rmtree(self.begun_file.parent, ignore_errors=True)

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: Any) -> None:
        if node.workerinput.get("workerid") != PULLER:
            return
        output = (getattr(node, "workeroutput", None) or {}).get(OUTPUT)
        if output is None:  # lost before its session ended: it may have begun any
            self.reported = None
            return
        if self.reported is not None:
            self.reported.update(output["begun"])
        for name, spans in output["spans"].items():
            self.spans.setdefault(name, []).extend(spans)
        self.errors.update(output.get("errors") or {})

    def settle(self, config: pytest.Config) -> None:
        """Controller or serial process, at the end of the run (once): every pull's
        namespace gone, what stays noted as the cluster's leftovers."""
        if self.settled or hasattr(config, "workerinput") or config.option.collectonly:
            return
        self.settled = True
        for pull in self.pulls.values():
            pull.stop()
        for name, spans in self.own_spans().items():  # a serial run's own
            self.spans.setdefault(name, []).extend(spans)
        for name, error in {**self.errors, **self.own_errors()}.items():
            self._note(name, "notes", [
                f"pulling the workloads' image onto the nodes from the start of the run "
                f"failed: {error} (the checks' own pods pull it themselves)"])
        names = set(self.begun()) | (self.reported if self.reported is not None else {
            t.name for t in self.state.settings.targets})
        if not names or self.state.launch_error:
            return
        left: dict[str, tuple[str, list[str]]] = {}
        clusters = {n: self.state.detached_cluster(n) for n in sorted(names)}

        def one(name: str) -> None:
            try:
                left[name] = ("leftovers", prepull.settle(clusters[name]))
            except Exception as err:  # an unreachable cluster: said, not raised
                left[name] = ("notes", [
                    f"could not check that namespace {prepull.namespace(clusters[name])} (the "
                    f"run's image pull) is gone: {type(err).__name__}: {str(err)[:200]}"])

        threads = {n: threading.Thread(target=one, args=(n,), daemon=True) for n in clusters}
        for t in threads.values():
            t.start()
        # Each wait is bounded by the namespace timeout; connecting to a cluster that
        # does not answer by the client's own: a bound of its own for both.
        bound = self.state.settings.timeouts.namespace_delete + SETTLE_GRACE
        deadline = time.monotonic() + bound
        for name, t in threads.items():
            t.join(max(0.0, deadline - time.monotonic()))
            if t.is_alive():
                left[name] = ("notes", [
                    f"could not check within {bound:.0f}s that namespace "
                    f"{prepull.namespace(clusters[name])} (the run's image pull) is gone"])
        for name, (kind, lines) in list(left.items()):
            if lines:
                self._note(name, kind, lines)

    def _note(self, name: str, kind: str, lines: list[str]) -> None:
        """For the terminal's end-of-run notes and for the cluster's report."""
        self.state.remote_notes.setdefault(name, {}).setdefault(kind, []).extend(lines)
        self.ends.setdefault(name, {}).setdefault(kind, []).extend(lines)
