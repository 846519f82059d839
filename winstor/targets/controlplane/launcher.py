"""`ControlPlane`: the real Kubernetes clusters of the `controlplane` target, in-process.

    cp = ControlPlane(clusters=2, scenarios=["cp-2:ebs-attach-fails"])
    cp.start()            # builds the binaries if needed, then starts every cluster
    cp.kubeconfig         # one context per cluster: cp-1, cp-2, ...
    cp.aws_envs["cp-1"]   # the AWS settings (moto) of each cluster
    cp.stop()             # ordered; every process and the work directory gone

Per cluster, in this order (all clusters advance stage by stage together, so two
clusters start in about the time of one): a fresh PKI (`pki.py`), etcd, the
kube-apiserver (ready when `/readyz` says `ok`), kube-controller-manager and
kube-scheduler, the kubelet stand-in `winstor-kubelet-stream` (the `pods/exec` and
`pods/log` endpoint of every fake node), the node agent `python -m winstor.sim.agent`
(the nodes, their Windows models, moto for EC2; contract in
`winstor/sim/agent/README.md`), then - unless the agent says the cluster has no CSI
controller (a scenario) - the EBS CSI driver's controller against the agent's moto,
with external-provisioner, -attacher and -resizer. The flags are those
`controlplane/README.md` verified; ports are free loopback ports, never fixed.

Every component runs in a process group of its own with its output in
`<workdir>/<cluster>/logs/<component>.log`. One that exits while the cluster starts
ends the start with a `LaunchError` of one line: cluster, component, exit code and the
last lines of its log. `stop()` goes in the reverse order of dependence - CSI,
controllers, agent, stream server, API server (waited for: stopping etcd under it makes
it retry for ~10 s), etcd - terminating each process group and killing what does not
exit. So that nothing outlives an owner that is killed outright, children started from
the main thread of a single-threaded process (the `serve` supervisor always is) get
SIGKILL when it dies (Linux's parent-death signal), and the agent is also told
`--exit-with` its owner.

This module starts processes and imports none of what it starts.
"""

from __future__ import annotations

import base64
import contextlib
import ctypes
import http.client
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from winstor.targets.controlplane import pki as pki_mod
from winstor.targets.controlplane.build import Binaries, BuildError, ensure_built
from winstor.targets.embedded import LaunchError

__all__ = ["CONTEXT_PREFIX", "STOP_ORDER", "Component", "ControlPlane", "ControlPlaneError",
           "cluster_names", "parse_scenarios"]

CONTEXT_PREFIX = "cp-"
SERVICE_CIDR = "10.96.0.0/16"
EBS_DRIVER = "ebs.csi.aws.com"
AUDIT_POLICY = """\
# The requests of the admin user - the suite, kubectl, people - one line each (what
# `python -m bench` counts as the suite's requests); the control plane's own components,
# the node agent and the CSI controller have identities of their own and are not logged.
apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived, ResponseStarted]
rules:
- level: Metadata
  users: [kubernetes-admin]
- level: None
"""
TAIL_LINES = 3
TAIL_CHARS = 600

ETCD_READY_S = 60.0
API_READY_S = 120.0
AGENT_READY_S = 180.0
CSI_READY_S = 60.0
SETTLE_S = 1.0
"""After the last start, how long every component must stay up to count as started:
controller-manager and scheduler have no health port here (`--secure-port=0`), so a
bad flag or an unreachable API server shows only as their exit."""

STOP_ORDER: tuple[tuple[str, tuple[str, ...], float], ...] = (
    ("CSI", ("csi-provisioner", "csi-attacher", "csi-resizer", "ebs-csi-controller"), 10.0),
    ("controllers", ("kube-controller-manager", "kube-scheduler"), 10.0),
    ("node agent", ("node-agent",), 15.0),
    ("stream server", ("kubelet-stream",), 5.0),
    ("API server", ("kube-apiserver",), 20.0),
    ("etcd", ("etcd",), 15.0),
)
"""(stage, components, seconds to wait before SIGKILL): the order `stop()` follows."""

_PASSED_ENV = ("PATH", "HOME", "TMPDIR", "LANG", "LC_ALL", "TZ", "SSL_CERT_FILE", "SSL_CERT_DIR")
"""What the Go components inherit: nothing that points them at a real cluster or a real
AWS account (no KUBECONFIG, no AWS_*)."""


class ControlPlaneError(LaunchError):
    """The control plane could not be started; one line says which component and why."""


def cluster_names(count: int) -> list[str]:
    return [f"{CONTEXT_PREFIX}{i}" for i in range(1, count + 1)]


def parse_scenarios(specs: Iterable[str], count: int) -> dict[str, list[str]]:
    """`[CLUSTER:]NAME` specs -> the scenario names of each cluster (`cp-2:x`, `2:x`,
    or `x` for every cluster). The names themselves are the agent's to judge."""
    names = cluster_names(count)
    out: dict[str, list[str]] = {n: [] for n in names}
    for spec in specs:
        target, _, name = spec.rpartition(":")
        if not name:
            raise ValueError(f"scenario {spec!r}: no scenario name")
        if not target:
            chosen = names
        elif target in out:
            chosen = [target]
        elif target.isdigit() and 1 <= int(target) <= count:
            chosen = [names[int(target) - 1]]
        else:
            raise ValueError(f"scenario {spec!r}: no cluster {target!r} (clusters: "
                             f"{', '.join(names)})")
        for n in chosen:
            if name not in out[n]:
                out[n].append(name)
    return out


PORT_RANGE = (20000, 32767)
"""Where ports are picked: below Linux's ephemeral range (32768-60999), from which the
kernel hands out `bind(0)` ports and outgoing connections' ports - so another process
cannot be given the port between our check and the component's bind (the Go
components take a port number, not a socket)."""


def free_port() -> int:
    """A loopback port nothing listens on now (the component binds it a moment later)."""
    import random

    for _ in range(64):
        port = random.randint(*PORT_RANGE)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    with socket.socket() as s:  # the range is crowded: any free port, as the kernel picks
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _write_private(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


def write_env_file(path: Path, env: dict[str, str]) -> None:
    """`export K='V'` lines a shell can source (what `winstor sim up --aws-env` writes)."""
    import shlex

    _write_private(path, "".join(f"export {k}={shlex.quote(v)}\n" for k, v in env.items()))


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def kubeconfig_doc(entries: Sequence[tuple[str, str, bytes, pki_mod.CertPair]],
                   extensions: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A kubeconfig with one context per (name, server, CA PEM, client cert) entry,
    everything embedded so the file works wherever it is copied."""
    context: dict[str, Any] = {}
    if extensions:
        context["extensions"] = extensions
    return {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": name, "cluster": {"server": server,
                                                "certificate-authority-data": _b64(ca)}}
                     for name, server, ca, _ in entries],
        "users": [{"name": f"{name}-admin", "user": {
            "client-certificate-data": _b64(pair.cert_pem()),
            "client-key-data": _b64(pair.key_pem())}} for name, _, _, pair in entries],
        "contexts": [{"name": name, "context": {"cluster": name, "user": f"{name}-admin",
                                                **context}} for name, _, _, _ in entries],
        "current-context": entries[0][0] if entries else "",
    }


def _die_with_owner() -> Callable[[], None] | None:
    """A preexec function giving the child SIGKILL when its owner dies (Linux only).

    The parent-death signal fires when the *thread* that forked the child ends, and a
    preexec function is unsafe while other threads may hold locks: so only from the
    main thread of a single-threaded process, where both are true."""
    if (not sys.platform.startswith("linux")
            or threading.current_thread() is not threading.main_thread()
            or threading.active_count() > 1):
        return None
    libc = ctypes.CDLL(None, use_errno=True)
    owner = os.getpid()

    def preexec() -> None:
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        if os.getppid() != owner:  # the owner died before the line above
            os._exit(1)

    return preexec


@dataclass
class Component:
    """One process of one cluster: how it is started, its log, its process group."""

    cluster: str
    name: str
    argv: list[str]
    log: Path
    env: dict[str, str]
    cwd: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0

    def start(self) -> None:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            try:
                self.proc = subprocess.Popen(
                    self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                    env=self.env, cwd=self.cwd, start_new_session=True,
                    preexec_fn=_die_with_owner())
            except OSError as err:
                raise ControlPlaneError(f"{self.cluster}: {self.name} could not be started "
                                        f"({self.argv[0]}: {err.strerror or err})") from None
        self.started_at = time.monotonic()

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def exit_code(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def log_text(self) -> str:
        try:
            return self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def tail(self, lines: int = TAIL_LINES) -> str:
        found = [ln.strip() for ln in self.log_text().splitlines() if ln.strip()]
        text = " | ".join(found[-lines:]) or "(no output)"
        return text if len(text) <= TAIL_CHARS else "..." + text[-TAIL_CHARS:]

    def died(self) -> str:
        """The one line that says this component exited (while it should be running)."""
        code = self.exit_code()
        how = f"was killed by signal {-code}" if code is not None and code < 0 else (
            f"exited with code {code}")
        return f"{self.cluster}: {self.name} {how}: {self.tail()} (log {self.log})"

    def signal_group(self, sig: int) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)

    def group_alive(self) -> bool:
        """Whether any process of its group is left (its children included)."""
        if self.proc is None:
            return False
        self.proc.poll()  # reap the leader if it is done
        try:
            os.killpg(self.proc.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


@dataclass
class ClusterRun:
    """One cluster's directory, PKI, ports, components and what its agent reported."""

    index: int
    name: str
    directory: Path
    scenarios: list[str]
    pki: pki_mod.ClusterPki | None = None
    ports: dict[str, int] = field(default_factory=dict)
    components: dict[str, Component] = field(default_factory=dict)
    agent: dict[str, Any] = field(default_factory=dict)

    @property
    def server(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    @property
    def logs(self) -> Path:
        return self.directory / "logs"

    @property
    def audit_log(self) -> Path:
        """One JSON line per request of the admin user (see AUDIT_POLICY)."""
        return self.logs / "audit.log"

    @property
    def aws_env(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in (self.agent.get("aws_env") or {}).items()}

    def kubeconfig_for(self, client: str) -> Path:
        return self.directory / f"{client}.kubeconfig"


class ControlPlane:
    """Real Kubernetes clusters on loopback; see the module docstring.

    `clusters`: how many (contexts `cp-1`...); `scenarios`: `[CLUSTER:]NAME` specs,
    passed to the clusters' node agents; `time_scale`: the agents' latency scale (their
    default when None); `nodes=False` starts the control plane alone (no agent, stream
    server or CSI: no nodes, no AWS); `workdir`: where everything lives (a temporary
    directory, removed by `stop()`, when None; a given one is left to its owner);
    `progress`: where progress lines go (stderr when None)."""

    def __init__(self, clusters: int = 2, scenarios: Iterable[str] = (),
                 time_scale: float | None = None, *, nodes: bool = True,
                 workdir: Path | None = None, binaries: Binaries | None = None,
                 progress: Callable[[str], None] | None = None,
                 agent_command: Sequence[str] | None = None,
                 agent_args: Sequence[str] = ()) -> None:
        if not 1 <= clusters <= 16:
            raise ValueError(f"clusters must be between 1 and 16, not {clusters}")
        self.count = clusters
        self.scenarios = parse_scenarios(scenarios, clusters)
        self.time_scale = time_scale
        self.nodes = nodes
        self.binaries = binaries
        self.agent_command = list(agent_command or [sys.executable, "-m", "winstor.sim.agent"])
        self.agent_args = list(agent_args)
        self._say = progress or (lambda line: print(line, file=sys.stderr, flush=True))
        self._given_workdir = workdir
        self.workdir: Path | None = None
        self.clusters: list[ClusterRun] = []
        self.started = False
        self.start_seconds: float | None = None

    # -- what a caller reads once started -----------------------------------------------
    @property
    def contexts(self) -> list[str]:
        return cluster_names(self.count)

    @property
    def kubeconfig(self) -> Path:
        assert self.workdir is not None, "not started"
        return self.workdir / "kubeconfig"

    @property
    def aws_env_file(self) -> Path:
        """The first cluster's AWS settings as `export` lines (each cluster's own are
        `aws-<cluster>.env` beside it)."""
        assert self.workdir is not None, "not started"
        return self.workdir / "aws.env"

    @property
    def aws_envs(self) -> dict[str, dict[str, str]]:
        """Each cluster's AWS settings (its agent's moto), by context."""
        return {c.name: c.aws_env for c in self.clusters}

    @property
    def aws_env(self) -> dict[str, str]:
        """The first cluster's AWS settings (as `SimProcess.aws_env`)."""
        return self.clusters[0].aws_env if self.clusters else {}

    def info(self) -> dict[str, Any]:
        """What a supervisor's ready file and `winstor controlplane status` report."""
        return {
            "release": self.binaries.release if self.binaries else None,
            "workdir": str(self.workdir), "kubeconfig": str(self.kubeconfig),
            "aws_env_file": str(self.aws_env_file), "contexts": self.contexts,
            "nodes": self.nodes, "start_seconds": self.start_seconds,
            "clusters": {c.name: {
                "server": c.server, "scenarios": c.scenarios, "aws_env": c.aws_env,
                "aws_env_file": str(self.workdir / f"aws-{c.name}.env")
                if self.workdir and c.aws_env else None,
                "csi_controller": "ebs-csi-controller" in c.components,
                "logs": str(c.logs), "audit_log": str(c.audit_log),
                "pids": {n: comp.pid for n, comp in c.components.items()}}
                for c in self.clusters},
        }

    def problems(self) -> list[str]:
        """One line per component that has exited since the start."""
        return [comp.died() for c in self.clusters for comp in c.components.values()
                if comp.proc is not None and not comp.running()]

    # -- start ----------------------------------------------------------------------------
    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start every cluster; on any failure stop what started and raise one line."""
        if self.started:
            return
        begun = time.monotonic()
        try:
            if self.binaries is None:
                self.binaries = ensure_built(self._say)
            self.workdir = self._given_workdir or Path(tempfile.mkdtemp(prefix="winstor-cp-"))
            self.workdir.mkdir(parents=True, exist_ok=True)
            self.clusters = [ClusterRun(i, name, self.workdir / name, self.scenarios[name])
                             for i, name in enumerate(self.contexts, 1)]
            self._start_all()
        except BuildError as err:
            self.stop()
            raise ControlPlaneError(f"building the control plane failed: {err}") from None
        except BaseException:
            self.stop()
            raise
        self.started = True
        self.start_seconds = time.monotonic() - begun

    def _stage(self, what: str, begun: float) -> None:
        self._say(f"controlplane: {what} ({time.monotonic() - begun:.1f} s)")

    def _start_all(self) -> None:
        begun = time.monotonic()
        for c in self.clusters:
            c.directory.mkdir(parents=True, exist_ok=True)
            c.pki = pki_mod.generate(c.directory / "pki", c.name)
            c.ports.update(etcd=free_port(), etcd_peer=free_port(), apiserver=free_port())
            self._write_component_kubeconfigs(c)
            (c.directory / "audit-policy.yaml").write_text(AUDIT_POLICY, encoding="utf-8")
            self._add(c, "etcd", self._etcd_argv(c)).start()
        self._wait("etcd", ETCD_READY_S,
                   lambda c: "etcd ready, serving clients" in c.components["etcd"].log_text())
        for c in self.clusters:
            self._add(c, "kube-apiserver", self._apiserver_argv(c)).start()
        self._wait("the API server's /readyz", API_READY_S, _readyz)
        self._stage(f"etcd and kube-apiserver ready on {self._names()}", begun)
        for c in self.clusters:
            self._add(c, "kube-controller-manager", self._controller_manager_argv(c)).start()
            self._add(c, "kube-scheduler", self._scheduler_argv(c)).start()
        if self.nodes:
            for c in self.clusters:
                c.ports["backend"] = free_port()
                self._add(c, "kubelet-stream", self._stream_argv(c)).start()
            self._wait("the stream server's port", 30.0, _stream_port)
            for c in self.clusters:
                self._add(c, "node-agent", self._agent_argv(c), env=self._agent_env()).start()
            self._wait("the node agent's ready file", AGENT_READY_S, _agent_ready)
            self._stage(f"nodes of {self._names()} ready", begun)
            csi = [c for c in self.clusters if c.agent.get("csi_controller", True)]
            for c in csi:
                self._add(c, "ebs-csi-controller", self._ebs_argv(c), env=self._ebs_env(c)).start()
            if csi:
                self._wait("the EBS CSI driver's socket", CSI_READY_S,
                           lambda c: (c.directory / "csi.sock").exists(), csi)
            for c in csi:
                self._ensure_csidriver(c)
                for sidecar in ("csi-provisioner", "csi-attacher", "csi-resizer"):
                    self._add(c, sidecar, self._sidecar_argv(c, sidecar)).start()
        self._settle()
        self._write_user_files()
        self._stage(f"{self.count} cluster(s) ready: {self._names()}", begun)

    def _names(self) -> str:
        return ", ".join(c.name for c in self.clusters)

    def _add(self, c: ClusterRun, name: str, argv: list[str],
             env: dict[str, str] | None = None) -> Component:
        comp = Component(c.name, name, argv, c.logs / f"{name}.log",
                         env if env is not None else _base_env(), cwd=c.directory)
        c.components[name] = comp
        return comp

    def _check_alive(self) -> None:
        for c in self.clusters:
            for comp in c.components.values():
                if comp.proc is not None and not comp.running():
                    raise ControlPlaneError(comp.died())

    def _wait(self, what: str, timeout: float, ready: Callable[[ClusterRun], bool],
              clusters: list[ClusterRun] | None = None) -> None:
        """Until `ready` holds for every cluster; a component that exits meanwhile, or the
        deadline, ends the start with one line."""
        pending = list(clusters if clusters is not None else self.clusters)
        deadline = time.monotonic() + timeout
        while pending:
            self._check_alive()
            pending = [c for c in pending if not ready(c)]
            if not pending:
                return
            if time.monotonic() > deadline:
                c = pending[0]
                last = list(c.components.values())[-1]
                raise ControlPlaneError(
                    f"{c.name}: {what} not ready within {timeout:.0f} s; the last lines of "
                    f"{last.name}: {last.tail()} (log {last.log})")
            time.sleep(0.1)

    def _settle(self) -> None:
        """Every component must still be up a moment after the last one started."""
        latest = max(comp.started_at for c in self.clusters for comp in c.components.values())
        while time.monotonic() < latest + SETTLE_S:
            self._check_alive()
            time.sleep(0.1)
        self._check_alive()

    # -- the components' command lines -----------------------------------------------------
    def _kube(self, component: str) -> list[str]:
        assert self.binaries is not None
        return [str(self.binaries.kube), component]

    def _etcd_argv(self, c: ClusterRun) -> list[str]:
        return [*self._kube("etcd"), f"--data-dir={c.directory / 'etcd'}",
                f"--port={c.ports['etcd']}", f"--peer-port={c.ports['etcd_peer']}",
                "--unsafe-no-fsync"]

    def _apiserver_argv(self, c: ClusterRun) -> list[str]:
        p = c.pki
        assert p is not None
        kc = p.client("kubelet-client")
        return [*self._kube("kube-apiserver"),
                f"--etcd-servers=http://127.0.0.1:{c.ports['etcd']}",
                "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1",
                f"--secure-port={c.ports['apiserver']}",
                # Endpoints validation refuses a loopback address (controlplane/README.md).
                "--endpoint-reconciler-type=none",
                f"--tls-cert-file={p.apiserver.cert}",
                f"--tls-private-key-file={p.apiserver.key}",
                f"--client-ca-file={p.ca.cert}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={p.sa_pub}",
                f"--service-account-signing-key-file={p.sa_key}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--authorization-mode=Node,RBAC", "--allow-privileged=true",
                f"--kubelet-client-certificate={kc.cert}",
                f"--kubelet-client-key={kc.key}",
                "--kubelet-preferred-address-types=InternalIP", "--profiling=false",
                f"--audit-policy-file={c.directory / 'audit-policy.yaml'}",
                f"--audit-log-path={c.logs / 'audit.log'}", "--audit-log-format=json",
                "--audit-log-maxsize=100", "--audit-log-maxbackup=1"]

    def _controller_manager_argv(self, c: ClusterRun) -> list[str]:
        p = c.pki
        assert p is not None
        kc = c.kubeconfig_for("controller-manager")
        return [*self._kube("kube-controller-manager"), f"--kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
                # Port 0: no HTTPS port of its own, so clusters never fight over 10257.
                "--bind-address=127.0.0.1", "--secure-port=0",
                "--controllers=*", "--leader-elect=false", f"--cluster-name={c.name}",
                "--use-service-account-credentials=true",
                f"--service-account-private-key-file={p.sa_key}",
                f"--root-ca-file={p.ca.cert}",
                f"--cluster-signing-cert-file={p.ca.cert}",
                f"--cluster-signing-key-file={p.ca.key}"]

    def _scheduler_argv(self, c: ClusterRun) -> list[str]:
        kc = c.kubeconfig_for("scheduler")
        return [*self._kube("kube-scheduler"), f"--kubeconfig={kc}",
                f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
                "--bind-address=127.0.0.1", "--secure-port=0", "--leader-elect=false"]

    def _stream_argv(self, c: ClusterRun) -> list[str]:
        p = c.pki
        assert p is not None and self.binaries is not None
        return [str(self.binaries.kubelet_stream), "--address=127.0.0.1", "--port=0",
                f"--tls-cert-file={p.stream.cert}", f"--tls-private-key-file={p.stream.key}",
                f"--client-ca-file={p.ca.cert}",
                f"--backend=http://127.0.0.1:{c.ports['backend']}"]

    def _agent_argv(self, c: ClusterRun) -> list[str]:
        argv = [*self.agent_command, "--kubeconfig", str(c.kubeconfig_for("node-agent")),
                "--cluster", c.name, "--index", str(c.index),
                "--stream-port", str(c.ports["stream"]),
                "--backend-port", str(c.ports["backend"]), "--aws-port", "0",
                "--exit-with", str(os.getpid()),
                "--ready-file", str(c.directory / "agent-ready.json")]
        for scenario in c.scenarios:
            argv += ["--scenario", scenario]
        if self.time_scale is not None:
            argv += ["--time-scale", f"{self.time_scale:g}"]
        return argv + self.agent_args

    def _agent_env(self) -> dict[str, str]:
        # Its moto and clients must never meet a real AWS account or cluster.
        return {k: v for k, v in os.environ.items()
                if not k.startswith("AWS_") and k != "KUBECONFIG"}

    def _ebs_argv(self, c: ClusterRun) -> list[str]:
        assert self.binaries is not None
        return [str(self.binaries.ebs_csi_driver), "controller",
                f"--endpoint=unix://{c.directory / 'csi.sock'}",
                f"--kubeconfig={c.kubeconfig_for('csi-controller')}",
                f"--k8s-tag-cluster-id={c.name}", "--batching=true"]

    def _ebs_env(self, c: ClusterRun) -> dict[str, str]:
        """The driver's EC2 endpoint is the agent's moto: AWS_EC2_ENDPOINT (no flag exists),
        and AWS_REGION, with which controller mode never asks the metadata service."""
        aws = c.aws_env
        endpoint = str(c.agent.get("aws_endpoint") or aws.get("AWS_ENDPOINT_URL", ""))
        region = str(c.agent.get("region") or aws.get("AWS_REGION")
                     or aws.get("AWS_DEFAULT_REGION") or "us-east-1")
        return {**_base_env(), **aws, "AWS_EC2_ENDPOINT": endpoint, "AWS_ENDPOINT_URL": endpoint,
                "AWS_REGION": region, "AWS_DEFAULT_REGION": region,
                "AWS_ACCESS_KEY_ID": aws.get("AWS_ACCESS_KEY_ID", "testing"),
                "AWS_SECRET_ACCESS_KEY": aws.get("AWS_SECRET_ACCESS_KEY", "testing"),
                "AWS_EC2_METADATA_DISABLED": "true"}

    def _sidecar_argv(self, c: ClusterRun, sidecar: str) -> list[str]:
        assert self.binaries is not None
        binary = {"csi-provisioner": self.binaries.csi_provisioner,
                  "csi-attacher": self.binaries.csi_attacher,
                  "csi-resizer": self.binaries.csi_resizer}[sidecar]
        argv = [str(binary), f"--csi-address={c.directory / 'csi.sock'}",
                f"--kubeconfig={c.kubeconfig_for('csi-controller')}",
                "--leader-election=false", "--timeout=60s"]
        if sidecar == "csi-provisioner":
            # As the EKS add-on runs it: topology for WaitForFirstConsumer, the created-for
            # tags on the volume, ext4 unless the class says otherwise.
            argv += ["--feature-gates=Topology=true", "--extra-create-metadata",
                     "--default-fstype=ext4"]
        if sidecar == "csi-resizer":
            argv += ["--handle-volume-inuse-error=false"]
        return argv

    # -- files ----------------------------------------------------------------------------
    def _write_component_kubeconfigs(self, c: ClusterRun) -> None:
        p = c.pki
        assert p is not None
        ca = p.ca.cert_pem()
        for client in ("admin", "controller-manager", "scheduler", "node-agent",
                       "csi-controller"):
            doc = kubeconfig_doc([(c.name, c.server, ca, p.client(client))])
            _write_private(c.kubeconfig_for(client), yaml.safe_dump(doc, sort_keys=False))

    def _write_user_files(self) -> None:
        """One kubeconfig with a context per cluster, and the AWS env files."""
        assert self.workdir is not None
        entries = []
        for c in self.clusters:
            assert c.pki is not None
            entries.append((c.name, c.server, c.pki.ca.cert_pem(), c.pki.client("admin")))
        # The clusters are the run's own: checks that disturb a whole node (drain) may run
        # on them, declared as winstor reads it from any context (as `winstor sim up`).
        doc = kubeconfig_doc(entries, [{"name": "winstor.io/opt-in",
                                        "extension": {"markers": ["drain"]}}])
        _write_private(self.kubeconfig, yaml.safe_dump(doc, sort_keys=False))
        for c in self.clusters:
            if c.aws_env:
                write_env_file(self.workdir / f"aws-{c.name}.env", c.aws_env)
        if self.aws_env:
            write_env_file(self.aws_env_file, self.aws_env)
        else:
            _write_private(self.aws_env_file, "# no nodes started: no AWS emulation\n")

    def _ensure_csidriver(self, c: ClusterRun) -> None:
        """The CSIDriver object the EBS CSI add-on installs with its controller, unless the
        cluster has it already (the agent may seed it)."""
        body = {"apiVersion": "storage.k8s.io/v1", "kind": "CSIDriver",
                "metadata": {"name": EBS_DRIVER,
                             "labels": {"app.kubernetes.io/name": "aws-ebs-csi-driver"}},
                "spec": {"attachRequired": True, "podInfoOnMount": False,
                         "fsGroupPolicy": "File"}}
        status, text = _request(c, "POST", "/apis/storage.k8s.io/v1/csidrivers", body)
        if status not in (200, 201, 409):
            raise ControlPlaneError(f"{c.name}: creating CSIDriver {EBS_DRIVER} answered "
                                    f"{status}: {text[:300]}")

    # -- stop -----------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop every component in order and remove the work directory (if ours)."""
        for _stage, names, grace in STOP_ORDER:
            group = [c.components[n] for c in self.clusters for n in names
                     if n in c.components]
            _stop_group(group, grace)
        # Anything started but not named in STOP_ORDER (none today) goes last.
        rest = [comp for c in self.clusters for comp in c.components.values()
                if comp.group_alive()]
        _stop_group(rest, 5.0)
        self.started = False
        if self.workdir is not None and self._given_workdir is None:
            shutil.rmtree(self.workdir, ignore_errors=True)
        self.workdir = None if self._given_workdir is None else self.workdir


def _stop_group(components: list[Component], grace: float) -> None:
    """SIGTERM each component's process group, wait up to `grace` seconds, then SIGKILL
    whatever of those groups is left."""
    live = [comp for comp in components if comp.group_alive()]
    for comp in live:
        comp.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + grace
    while live and time.monotonic() < deadline:
        live = [comp for comp in live if comp.group_alive()]
        if live:
            time.sleep(0.05)
    for comp in live:
        comp.signal_group(signal.SIGKILL)
    for comp in components:
        if comp.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                comp.proc.wait(timeout=5)
    end = time.monotonic() + 5
    while any(comp.group_alive() for comp in components) and time.monotonic() < end:
        time.sleep(0.05)


def _base_env() -> dict[str, str]:
    return {k: os.environ[k] for k in _PASSED_ENV if k in os.environ}


# -- readiness probes -------------------------------------------------------------------------
def _ssl_context(c: ClusterRun) -> ssl.SSLContext:
    assert c.pki is not None
    ctx = ssl.create_default_context(cafile=str(c.pki.ca.cert))
    admin = c.pki.client("admin")
    ctx.load_cert_chain(str(admin.cert), str(admin.key))
    return ctx


def _request(c: ClusterRun, method: str, path: str, body: Any = None,
             timeout: float = 5.0) -> tuple[int, str]:
    """One admin request to the cluster's API server: (status, text); (0, why) when the
    connection fails."""
    conn = http.client.HTTPSConnection("127.0.0.1", c.ports["apiserver"],
                                       context=_ssl_context(c), timeout=timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"} if data is not None else {}
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read().decode("utf-8", "replace")
    except (OSError, http.client.HTTPException) as err:
        return 0, str(err)
    finally:
        conn.close()


def _readyz(c: ClusterRun) -> bool:
    status, text = _request(c, "GET", "/readyz", timeout=2.0)
    return status == 200 and text.strip() == "ok"


_LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")


def _stream_port(c: ClusterRun) -> bool:
    match = _LISTENING.search(c.components["kubelet-stream"].log_text())
    if match:
        c.ports["stream"] = int(match.group(1))
    return match is not None


def _agent_ready(c: ClusterRun) -> bool:
    path = c.directory / "agent-ready.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False  # not there yet, or half written
    if not isinstance(data, dict):
        return False
    c.agent = data
    return True
