"""Stopping a run on SIGINT or SIGTERM, and sweeping what a stopped run or a lost worker left.

CI systems cancel and time out jobs with SIGTERM (some send SIGINT first). Python's default
for SIGTERM ends the process on the spot: no teardown, no report, xdist workers orphaned,
the embedded cluster's directory left in /tmp. So the controller (the only process of a
serial run) treats SIGTERM exactly like a first Ctrl-C:

1. it says so in one line, passes SIGTERM on to its xdist workers (each turns it into
   KeyboardInterrupt and tears its fixtures down - pods, claims, namespaces - before it
   leaves; xdist kills one still there 10 s after the controller's shutdown), and raises
   KeyboardInterrupt, so pytest stops the checks and tears down the controller's own
   fixtures;
2. after that teardown the run's objects are swept by run label (`winstor janitor --run`,
   one process per cluster a check started on, all at once): a signal may land between
   creating an object and the fixture that owns it registering its teardown;
3. the report is written with the checks that were running marked interrupted, and the
   terminal names what could not be removed with the `winstor janitor` line that removes
   it;
4. pytest exits with its interrupted code (2); the embedded cluster is stopped and its
   directory removed (its log kept in the report's diagnostics with --keep-on-failure).

The KeyboardInterrupt of a signal that lands while the main thread imports is raised a
few milliseconds later, once the import is done (`Deferral`): raised inside importlib, it
can leave Python's import lock held and every other thread's next import waiting for ever.

A second signal stops at once: what may be left and how to remove it is printed, the
workers and the sweep's janitors are killed, the embedded cluster is stopped, and the
exit status is 128 + the signal's number.

A worker treats its first SIGINT or SIGTERM the same way (KeyboardInterrupt) and ignores
later ones: when to stop a worker hard is its controller's decision, and a worker whose
controller is gone leaves by execnet's own path (it interrupts itself and exits within
15 s).

Worker process ids come from /proc (the controller's children other than the embedded
cluster): xdist has no public way to name them. Where there is no /proc, workers learn
of the stop from xdist's shutdown instead, 5 s later.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from winstor.plugin.runstate import RunState

__all__ = [
    "FINISHED",
    "INTERRUPTED_BY",
    "IN_FLIGHT",
    "NEXT_PHASE",
    "STARTING",
    "WORKER_PENDING",
    "Swept",
    "child_pids",
    "install_controller_handler",
    "install_worker_handler",
    "interrupted_checks",
    "interrupted_reason",
    "janitor_command",
    "sweep",
]

INTERRUPTED_BY = pytest.StashKey[str]()
"""The signal that stopped the run (`SIGTERM`, `SIGINT`), once one has."""

IN_FLIGHT = pytest.StashKey[dict[str, str]]()
"""Controller: node id -> phase (setup, call, teardown) of each check that started and has
not finished: what a signal interrupts."""
NEXT_PHASE = {"setup": "call", "call": "teardown"}

FINISHED = pytest.StashKey[set[str]]()
"""Controller: node ids whose last report came (pytest_runtest_logfinish)."""
WORKER_PENDING = pytest.StashKey[Callable[[], list[list[str]]]]()
"""xdist controller: per worker, the node ids sent to it that its scheduler has not heard
complete, in order - set where winstor's scheduler is made."""
STARTING = pytest.StashKey[list[list[str]]]()
"""WORKER_PENDING when the signal came. A worker's reports reach the controller after the
fact, so the check a worker is on may be one whose start the controller has not heard of:
the first of its pending checks that has not reached its teardown."""

SWEEP_TIMEOUT = 600.0
"""The sweep's bound, all clusters together (they are swept at once)."""


def interrupted_checks(config: pytest.Config) -> dict[str, str]:
    """Node id -> phase of the checks a signal stopped mid-way; {} unless one did."""
    if INTERRUPTED_BY not in config.stash:
        return {}
    in_flight = config.stash.get(IN_FLIGHT, {})
    finished = config.stash.get(FINISHED, set())
    checks: dict[str, str] = {}
    for pending in config.stash.get(STARTING, []):
        for nodeid in pending:
            if nodeid in finished or in_flight.get(nodeid) == "teardown":
                continue  # decided; the worker had gone on to the next
            if nodeid not in in_flight:
                checks[nodeid] = "start"
            break
    checks.update(in_flight)
    return checks


def interrupted_reason(config: pytest.Config, phase: str) -> str:
    by = config.stash.get(INTERRUPTED_BY, "a signal")
    when = (f"during its {phase}" if phase != "start" else
            "while its worker was on it (starting it, running it, or about to report it)")
    return (f"interrupted: {by} arrived {when}, so it has no verdict; the run "
            "stopped, removed what it had created and wrote this report")


def signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def install_controller_handler(config: pytest.Config, state: RunState) -> None:
    """SIGINT and SIGTERM on the controller (or the only process): see the module's text."""
    if threading.current_thread() is not threading.main_thread():
        return
    received: list[int] = []
    say = _stderr_writer(config)

    deferral = Deferral()

    @deferral.guard
    def handler(signum: int, frame: Any) -> None:
        if received:
            stop_now(state, signum, say)
            return
        received.append(signum)
        name = signal_name(signum)
        state.interrupted = True
        config.stash[INTERRUPTED_BY] = name
        pending = config.stash.get(WORKER_PENDING, None)
        if pending is not None:
            config.stash[STARTING] = pending()
        say(f"\nwinstor: {name}: stopping run {state.settings.run_id}: its checks stop, "
            "what it created is removed and its report written (a second SIGINT or "
            "SIGTERM stops at once)\n" + _if_killed(state))
        signal_workers(state, signal.SIGTERM)
        deferral.interrupt(signum, frame)

    deferral.install()
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def _if_killed(state: RunState) -> str:
    """The janitor lines, said with the first signal: a CI system that cancels a job sends
    SIGKILL a few seconds after SIGTERM, long before the teardown of a real cluster ends
    (pods, claims, volumes and namespaces take minutes on EKS), and the lines this run
    would print at its end are then never printed. An embedded cluster ends with the run:
    nothing to say."""
    s = state.settings
    if s.use_sim:
        return ""
    return "".join(f"winstor: should this run be killed before it ends, remove what it leaves "
                   f"on {t.name} with: {janitor_command(state, t.name)}\n" for t in s.targets)


def _stderr_writer(config: pytest.Config) -> Any:
    """A writer to the terminal's stderr that pytest's output capture cannot swallow: a
    signal arrives while a check runs, when stderr (file descriptor 2 included) goes to the
    check's captured output, which an interrupted check never shows. The descriptor is
    copied now, while pytest's global capture is suspended (as pytest's faulthandler
    plugin does), and closed with the config."""
    try:
        fd = os.dup(sys.stderr.fileno())
    except (OSError, AttributeError, ValueError):  # no real stderr (embedded, closed)
        return lambda text: print(text, end="", file=sys.stderr, flush=True)
    config.add_cleanup(lambda: os.close(fd))

    def write(text: str) -> None:
        with contextlib.suppress(OSError):  # the terminal is gone: nobody to tell
            os.write(fd, text.encode("utf-8", "replace"))
    return write


def install_worker_handler() -> None:
    """A worker's first SIGINT or SIGTERM interrupts it like Ctrl-C; later ones are
    ignored, so that its teardown is not cut short by the signal its controller passes on
    after the terminal or CI sent one to the whole process group."""
    if threading.current_thread() is not threading.main_thread():
        return
    received: list[int] = []

    deferral = Deferral()

    @deferral.guard
    def handler(signum: int, frame: Any) -> None:
        if received:
            return
        received.append(signum)
        deferral.interrupt(signum, frame)

    deferral.install()
    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


IMPORT_RETRY = 0.005
"""Seconds before a signal that arrived during an import is raised again (`Deferral`)."""
IMPORT_RETRIES = 400
"""How often at most (2 s in all): an import that takes longer is interrupted after all."""

_IMPORT_MACHINERY = ("<frozen importlib._bootstrap>", "<frozen importlib._bootstrap_external>")


def _inside_import(frame: Any) -> bool:
    """Whether the interrupted code runs under an import: importlib's frames anywhere on
    its stack (the body of a module being imported included - where an exception is safe,
    but telling the two apart is not worth a signal that waits a few milliseconds)."""
    while frame is not None:
        if frame.f_code.co_filename in _IMPORT_MACHINERY:
            return True
        frame = frame.f_back
    return False


def _again_signal() -> int | None:
    """The signal that re-sends a deferred one: its own number, so that it never merges
    with a SIGINT or SIGTERM from outside (the kernel keeps one pending signal per number)
    nor is taken for one. A real-time signal where there are (Linux), SIGUSR2 elsewhere;
    none on Windows, where a signal is raised at once, as before."""
    if hasattr(signal, "SIGRTMAX"):
        return int(signal.SIGRTMAX) - 1
    return getattr(signal, "SIGUSR2", None)


class Deferral:
    """Raising KeyboardInterrupt in the main thread - unless it is inside an import. There
    the exception can land between importlib taking its global lock and the `try` that
    releases it (3.11's `_get_module_lock`, or a module lock's bookkeeping): the lock
    stays held by the main thread, which can take it again, and the first other thread
    that imports anything waits on it for ever - seen as a run that hung in teardown,
    its main thread waiting for the AWS session a background thread was importing boto3
    for. So a thread signals the main thread (`_again_signal`) every few milliseconds
    until the interrupt lands outside the import - one send could come just before the
    main thread blocks in a system call, and wait there for as long as the call. A second
    SIGINT or SIGTERM meanwhile is a second signal, as always.

    `guard` wraps the handlers: a signal that arrives while a handler's own Python code
    runs (starting the sender thread, writing the stop line) would run a handler inside
    it, and its KeyboardInterrupt would unwind through whatever the first call
    interrupted - an import too. The one inside waits, and is handled when the first call
    has returned without raising (where the main thread then is: the same frame)."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self.tries = 0
        self._again = _again_signal()
        self._sender: threading.Thread | None = None
        self._busy = False
        self._missed: list[tuple[Callable[[int, Any], None], int]] = []

    def install(self) -> None:
        if self._again is not None:
            signal.signal(self._again, self.guard(self._resent))

    def _resent(self, signum: int, frame: Any) -> None:
        if self.signum is not None:  # else one sent just before the raise: nothing to do
            self.interrupt(self.signum, frame)

    def interrupt(self, signum: int, frame: Any) -> None:
        if self._again is not None and self.tries < IMPORT_RETRIES and _inside_import(frame):
            self.signum = self.signum or signum
            self.tries += 1
            if self._sender is None or not self._sender.is_alive():
                self._sender = threading.Thread(target=self._send_until_raised, daemon=True,
                                                name="winstor-signal-again")
                self._sender.start()
            return
        self.signum = None
        raise KeyboardInterrupt

    def _send_until_raised(self) -> None:
        main, again = threading.main_thread().ident, self._again
        while main is not None and again is not None:
            time.sleep(IMPORT_RETRY)
            if self.signum is None:
                return
            with contextlib.suppress(ProcessLookupError):
                signal.pthread_kill(main, again)

    def guard(self, handler: Callable[[int, Any], None]) -> Callable[[int, Any], None]:
        def guarded(signum: int, frame: Any) -> None:
            if self._busy:
                self._missed.append((handler, signum))
                return
            self._busy = True
            try:
                handler(signum, frame)
                while self._missed:
                    later, number = self._missed.pop(0)
                    later(number, frame)
            finally:
                self._busy = False
                self._missed.clear()
        return guarded


def child_pids(pid: int | None = None) -> list[int]:
    """Running children of `pid` (default: this process), from /proc; [] without it."""
    parent = os.getpid() if pid is None else pid
    out = []
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue  # gone meanwhile
        # fields[0] is the state, fields[1] the parent's pid
        if len(fields) > 1 and fields[1] == str(parent) and fields[0] != "Z":
            out.append(int(entry))
    return out


def _own_children(state: RunState) -> list[int]:
    """This process's children but the embedded cluster (stopped in order, last)."""
    sim = state.sim.proc.pid if state.sim is not None and state.sim.proc is not None else None
    return [p for p in child_pids() if p != sim]


def signal_workers(state: RunState, signum: int) -> None:
    for pid in _own_children(state):
        try:
            os.kill(pid, signum)
        except (ProcessLookupError, PermissionError):
            continue


def stop_now(state: RunState, signum: int, say: Any = None) -> None:
    """The second signal: say what may be left and how to remove it, stop everything this
    process started, exit 128 + signal."""
    s = state.settings
    lines = [f"winstor: {signal_name(signum)} again: stopping now, cleanup of run {s.run_id} "
             "was cut short."]
    if s.use_sim:
        lines.append("winstor: the embedded cluster stops with the run: nothing of it stays.")
    else:
        for t in s.targets:
            lines.append(f"winstor: {t.name} may still hold namespaces winstor-{s.run_id} and "
                         f"winstor-{s.run_id}-host with their pods and claims (and EBS "
                         "volumes), and gp2-windows if this run created it; remove them with: "
                         + janitor_command(state, t.name))
    text = "\n" + "\n".join(lines) + "\n"
    if say is not None:
        say(text)
    else:
        print(text, end="", file=sys.stderr, flush=True)
    signal_workers(state, signal.SIGKILL)  # workers and the sweep's janitors
    state.stop()
    os._exit(128 + signum)


def janitor_command(state: RunState, cluster: str, program: str = "winstor") -> str:
    """The `winstor janitor` line that removes this run's objects from one cluster."""
    return " ".join(_janitor_args(state, cluster, [program]))


def _janitor_args(state: RunState, cluster: str, program: list[str]) -> list[str]:
    s = state.settings
    target = next(t for t in s.targets if t.name == cluster)
    kubeconfig = target.kubeconfig or state.sim_kubeconfig or s.kubeconfig
    cmd = [*program, "janitor", "--run", s.run_id]
    if target.context:
        cmd += ["--context", target.context]
    if kubeconfig:
        cmd.append(f"--kubeconfig={kubeconfig}")
    if target.aws_region:
        cmd.append(f"--aws-region={target.aws_region}")
    if target.aws_profile:
        cmd.append(f"--aws-profile={target.aws_profile}")
    return cmd


@dataclass
class Swept:
    """What the sweep of one cluster did."""

    cluster: str
    lines: list[str] = field(default_factory=list)  # the janitor's removed / NOT REMOVED lines
    left: list[str] = field(default_factory=list)  # what stays, one line each
    command: str = ""  # how to remove what stays

    def notes(self, why: str, run_id: str) -> list[str]:
        return [f"{why}; swept run {run_id}:"] + [f"  {ln}" for ln in self.lines]


def sweep(state: RunState, clusters: list[str], timeout: float = SWEEP_TIMEOUT
          ) -> dict[str, Swept]:
    """`winstor janitor --run <this run>` on each of `clusters`, all at once, bounded by
    `timeout` in all; what each removed and what stays."""
    env = {**os.environ, **state.sim_aws_env}
    procs: dict[str, subprocess.Popen[str]] = {}
    out: dict[str, Swept] = {}
    for name in clusters:
        out[name] = Swept(name, command=janitor_command(state, name))
        try:
            procs[name] = subprocess.Popen(
                _janitor_args(state, name, [sys.executable, "-m", "winstor"]),
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                text=True, env=env)
        except OSError as err:
            out[name].left.append(f"the janitor could not be started: {err}")
    deadline = time.monotonic() + timeout
    for name, proc in procs.items():
        try:
            text, _ = proc.communicate(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            text, _ = proc.communicate()
            out[name].left.append(f"the janitor did not finish within {timeout:.0f} s")
        rows = [ln for ln in (text or "").splitlines()
                if ln.startswith(("removed", "NOT REMOVED", "janitor: removed"))]
        out[name].lines = rows
        out[name].left += [ln for ln in rows if ln.startswith("NOT REMOVED")]
        if proc.returncode not in (0, None) and not out[name].left:
            tail = [ln for ln in (text or "").strip().splitlines() if ln.strip()][-1:]
            out[name].left.append(f"the janitor exited with {proc.returncode}"
                                  + (f": {tail[0]}" if tail else ""))
    return out
