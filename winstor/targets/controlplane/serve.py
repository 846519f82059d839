"""`python -m winstor.targets.controlplane.serve`: the supervisor of a running control plane.

One process owns every process of the control plane's clusters (`ControlPlane`), the
way `winstor sim up` owns the embedded cluster: it starts them, writes a ready file
(`<workdir>/ready.json`: kubeconfig, contexts, each cluster's AWS settings, pids and
logs) when all are up, and stops them in order on SIGTERM, SIGINT or SIGHUP - or when
the process named by `--exit-with` is gone (a pytest run or CI job killed outright
must not leave API servers behind). Its children die with it even when it is killed
with SIGKILL (the parent-death signal; see `launcher.py`).

`pytest --profile controlplane` and `winstor controlplane up` start it through
`process.ControlPlaneProcess`; nothing imports it. A failed start prints one line,
`winstor controlplane: error: ...`, and exits 1; progress lines start with
`controlplane:`. With `--remove-workdir` it removes its work directory when it ends
and its owner is gone (a living owner reads the log first and removes it itself).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

READY_FILE = "ready.json"
ERROR_PREFIX = "winstor controlplane: error: "
PARENT_POLL_S = 1.0


class _Stop(Exception):
    """A stop signal, or the owner gone, while the clusters were starting."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=True)
    os.replace(tmp, path)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more: {text}")
    return value


def _scale(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a positive finite number: {text}")
    return value


def parser() -> argparse.ArgumentParser:
    """The supervisor's options (checked again here: the CLI and pytest checked them)."""
    p = argparse.ArgumentParser(prog="python -m winstor.targets.controlplane.serve",
                                description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--workdir", required=True, help="where everything lives (created)")
    p.add_argument("--clusters", type=_positive_int, default=2)
    p.add_argument("--scenario", action="append", default=[], metavar="[CLUSTER:]NAME")
    p.add_argument("--time-scale", type=_scale, default=None)
    p.add_argument("--no-nodes", action="store_true",
                   help="the control plane alone: no node agent, stream server or CSI")
    p.add_argument("--exit-with", type=_positive_int, metavar="PID",
                   help="stop when this process is gone")
    p.add_argument("--remove-workdir", action="store_true",
                   help="remove --workdir when stopping, if the --exit-with process is gone")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from winstor.targets.controlplane.launcher import ControlPlane, ControlPlaneError

    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    ready = workdir / READY_FILE
    ready.unlink(missing_ok=True)
    state = {"starting": True, "stop": False}

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        state["stop"] = True
        if state["starting"]:
            state["starting"] = False  # one _Stop; the stop that follows is not interrupted
            raise _Stop(signal.Signals(signum).name)

    def check_owner(_signum: int, _frame: FrameType | None) -> None:
        if args.exit_with and not _alive(args.exit_with) and state["starting"]:
            state["starting"] = False
            raise _Stop(f"owner {args.exit_with} gone")

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    if args.exit_with:
        signal.signal(signal.SIGALRM, check_owner)
        signal.setitimer(signal.ITIMER_REAL, PARENT_POLL_S, PARENT_POLL_S)

    def say(line: str) -> None:
        print(line, flush=True)

    try:
        cp = ControlPlane(args.clusters, args.scenario, args.time_scale, nodes=not args.no_nodes,
                          workdir=workdir, progress=say)
    except ValueError as err:
        print(f"{ERROR_PREFIX}{err}", file=sys.stderr, flush=True)
        return 2
    code = 0
    try:
        try:
            cp.start()
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0, 0)
            state["starting"] = False
        _write_json(ready, {**cp.info(), "pid": os.getpid()})
        reported: set[str] = set()
        while not state["stop"]:
            if args.exit_with and not _alive(args.exit_with):
                say(f"controlplane: owner process {args.exit_with} is gone; stopping")
                break
            for line in cp.problems():
                if line not in reported:  # said once; `winstor controlplane status` says more
                    reported.add(line)
                    say(f"controlplane: {line}")
            time.sleep(0.5)
    except ControlPlaneError as err:
        print(f"{ERROR_PREFIX}{err}", file=sys.stderr, flush=True)
        code = 1
    except _Stop as why:
        say(f"controlplane: stopped while starting ({why})")
        code = 1
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)  # the ordered stop is not interrupted
        ready.unlink(missing_ok=True)
        began = time.monotonic()
        cp.stop()
        say(f"controlplane: stopped ({time.monotonic() - began:.1f} s)")
        # A living owner reads the log of a failed start first and removes the directory
        # itself; an owner that is gone cannot.
        if args.remove_workdir and not (args.exit_with and _alive(args.exit_with)):
            shutil.rmtree(workdir, ignore_errors=True)
    return code


if __name__ == "__main__":
    sys.exit(main())
