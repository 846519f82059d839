"""`winstor controlplane up|down|status`: real Kubernetes clusters for the controlplane profile.

`up` builds the binaries if needed (a first build takes ~20 min on 2 cores, then
seconds), starts a supervisor process that runs each cluster's etcd, kube-apiserver,
kube-controller-manager, kube-scheduler, the kubelet stand-in, the node agent (the
nodes, their Windows models and moto) and the EBS CSI controller with its sidecars,
and writes the settings a plain `pytest` then follows (see
`winstor.targets.controlplane.state`). `down` stops all of it in order and removes
it. `status` says what runs. Whatever `up` had started when it fails is stopped again
before it returns.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from winstor.cli.args import cluster_count, help_of, positive_seconds, time_scale
from winstor.config import ConfigError
from winstor.errors import UsageError
from winstor.targets.controlplane import state as cpstate
from winstor.targets.controlplane.process import (
    ControlPlaneProcess,
    describe,
    is_supervisor,
    stop_supervisor,
)
from winstor.targets.embedded import LaunchError

__all__ = ["register"]

MAX_CLUSTERS = 16


def _say(text: str) -> None:
    print(f"winstor controlplane: {text}", flush=True)


def _progress(line: str) -> None:
    # Build and start progress: stderr, so stdout stays the summary a script can read.
    print(line, file=sys.stderr, flush=True)


def _up(args: argparse.Namespace) -> int:
    if args.clusters > MAX_CLUSTERS:
        raise UsageError(f"controlplane up: --clusters must be at most {MAX_CLUSTERS}, "
                         f"not {args.clusters}")
    from winstor.targets.controlplane.launcher import parse_scenarios

    try:
        parse_scenarios(args.scenario, args.clusters)
    except ValueError as err:
        raise UsageError(f"controlplane up: {err}") from None
    try:
        existing = cpstate.load()
    except ConfigError as err:
        raise UsageError(f"controlplane up: {err}") from None
    if existing is not None:
        running = "running" if is_supervisor(existing.pid) else "no longer running"
        raise UsageError(f"controlplane up: a control plane from an earlier `winstor "
                         f"controlplane up` ({', '.join(existing.contexts)}, {running}) is "
                         f"recorded in {existing.path}: run `winstor controlplane down` first")
    directory = cpstate.state_dir()
    cp = ControlPlaneProcess(clusters=args.clusters, scenarios=list(args.scenario),
                             time_scale=args.time_scale, nodes=not args.no_nodes,
                             workdir=directory / "run", owned=False)
    began = time.monotonic()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        cp.start(timeout=args.timeout, progress=_progress)
        info = cp.info
        saved = cpstate.ControlPlaneState(
            pid=int(info["pid"]), workdir=str(cp.workdir), kubeconfig=info["kubeconfig"],
            contexts=list(info["contexts"]), aws_envs=cp.aws_envs,
            aws_env_file=info.get("aws_env_file"), release=info.get("release"),
            scenarios=list(args.scenario),
            started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), info=info).save()
    except BaseException as err:
        cp.stop()
        shutil.rmtree(directory, ignore_errors=True)
        if isinstance(err, KeyboardInterrupt):
            print("winstor: controlplane up: interrupted; stopped what it had started",
                  file=sys.stderr)
            return 130
        if isinstance(err, LaunchError | OSError):
            print(f"winstor: error: controlplane up: {err}", file=sys.stderr)
            return 1
        raise
    _say(f"ready in {time.monotonic() - began:.1f} s: Kubernetes {info.get('release')}, "
         f"contexts {', '.join(info['contexts'])}")
    for line in describe(info):
        _say(f"  {line}")
    _say(f"kubeconfig {info['kubeconfig']}; AWS settings {info.get('aws_env_file')}; "
         f"settings {saved}")
    _say("now run: pytest    (it follows these clusters on the controlplane profile; "
         "`winstor controlplane down` when done)")
    return 0


def _down(args: argparse.Namespace) -> int:
    directory = cpstate.state_dir()
    try:
        recorded = cpstate.load()
    except ConfigError:
        recorded = None  # unreadable: still stop and remove what we can find
    if recorded is None and not directory.exists():
        _say(f"nothing to remove (no state in {directory})")
        return 0
    pid = recorded.pid if recorded else _pid_from_ready(directory / "run")
    if pid and stop_supervisor(pid):
        _say(f"stopped the control plane (supervisor pid {pid}) and its clusters")
    elif recorded is not None:
        _say(f"the control plane (supervisor pid {recorded.pid}) was no longer running")
    shutil.rmtree(directory, ignore_errors=True)
    _say(f"removed {directory}")
    return 0


def _pid_from_ready(workdir: Path) -> int | None:
    import json

    try:
        return int(json.loads((workdir / "ready.json").read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _alive(pid: Any) -> bool:
    """Running, not merely not yet reaped: a component that died is a zombie until its
    supervisor next polls it, and signal 0 still reaches a zombie."""
    import os

    if not isinstance(pid, int):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True  # no /proc: signal 0 is all there is to go by
    return state not in ("Z", "X")


def _status(args: argparse.Namespace) -> int:
    try:
        recorded = cpstate.load()
    except ConfigError as err:
        raise UsageError(f"controlplane status: {err}") from None
    if recorded is None:
        _say(f"no control plane recorded (state directory {cpstate.state_dir()}); "
             "`winstor controlplane up` starts one")
        return 1
    running = is_supervisor(recorded.pid)
    _say(f"Kubernetes {recorded.release}, contexts {', '.join(recorded.contexts)}, kubeconfig "
         f"{recorded.kubeconfig}; supervisor pid {recorded.pid} "
         f"{'running' if running else 'NOT running'} since {recorded.started}")
    down: list[str] = []
    for name, c in (recorded.info.get("clusters") or {}).items():
        pids = c.get("pids") or {}
        stopped = sorted(n for n, pid in pids.items() if not _alive(pid))
        down += [f"{name}: {n}" for n in stopped]
        state = (f"{len(pids) - len(stopped)}/{len(pids)} components running"
                 + (f" (stopped: {', '.join(stopped)}; logs in {c.get('logs')})"
                    if stopped else ""))
        line = next(iter(describe(recorded.info, [name])), name)
        _say(f"  {line}; {state}")
    if not running or down:
        _say("not everything runs: `winstor controlplane down` and `up` again start afresh")
        return 1
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    cp = sub.add_parser(
        "controlplane", help="real Kubernetes clusters (built from source) with emulated "
                             "nodes and AWS, for the controlplane profile",
        description="Start or stop the clusters of the controlplane profile: for each, the "
                    "real kube-apiserver, kube-controller-manager, kube-scheduler and etcd "
                    "of the pinned Kubernetes release and the real EBS CSI controller path "
                    "(aws-ebs-csi-driver, external-provisioner/-attacher/-resizer), built "
                    "from Go modules into a per-user cache (the first build takes ~20 min "
                    "on 2 cores, later ones none); nodes, their Windows side and AWS (moto) "
                    "are emulated by winstor's node agent. After `winstor controlplane up`, "
                    "a plain `pytest` checks these clusters; `winstor controlplane down` "
                    "stops and removes everything. Loopback only, no Docker. State lives in "
                    "$WINSTOR_CONTROLPLANE_STATE, else $XDG_STATE_HOME/winstor/controlplane, "
                    "else ~/.local/state/winstor/controlplane. Needs Go 1.26+ for the build.")
    cp_sub = cp.add_subparsers(dest="controlplane_command", metavar="COMMAND")
    up = cp_sub.add_parser("up", help="build if needed, start the clusters, write the settings",
                           description="Build the binaries if needed (progress on stderr), "
                                       "start the clusters (contexts cp-1, cp-2, ...) and "
                                       "write the settings a plain `pytest` follows. Prints "
                                       "the kubeconfig and AWS settings files.")
    up.add_argument("--clusters", type=cluster_count, default=2,
                    help=f"how many clusters (default 2, at most {MAX_CLUSTERS}); each is a "
                         "full control plane, ~0.5 GB of memory")
    up.add_argument("--scenario", action="append", default=[], metavar="[CLUSTER:]NAME",
                    help="break a cluster the way real clusters break (repeatable; "
                         "`winstor sim scenarios` lists them; CLUSTER is cp-N or N)")
    up.add_argument("--time-scale", type=time_scale, default=None,
                    help="factor on the emulated nodes' and AWS's latencies (the node "
                         "agent's default when not given)")
    up.add_argument("--no-nodes", action="store_true",
                    help="the control plane alone: no nodes, no AWS, no CSI")
    up.add_argument("--timeout", type=positive_seconds, default=300.0,
                    help="seconds to wait for the clusters once built (default 300)")
    up.set_defaults(func=_up)
    down = cp_sub.add_parser("down", help="stop everything `up` started and remove its state")
    down.set_defaults(func=_down)
    status = cp_sub.add_parser("status", help="show what `up` started and whether it runs "
                                              "(exit 1 when not everything does)")
    status.set_defaults(func=_status)
    cp.set_defaults(func=lambda _: help_of(cp))
