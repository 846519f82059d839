"""Start and stop the control plane as a separate supervisor process.

`ControlPlaneProcess` is to the `controlplane` target what `SimProcess` is to the
embedded cluster: it builds the binaries in this process (so their progress reaches
the person waiting), starts `python -m winstor.targets.controlplane.serve` in a session
of its own, relays its progress lines, and reads back the ready file - a kubeconfig
with one context per cluster and each cluster's AWS settings - exactly as a person
would use them. A supervisor that fails to start is reported in its one error line.

With `owned=True` (pytest) the supervisor is told `--exit-with` this process and
removes its work directory when it ends, so a killed run leaves nothing behind; with
`owned=False` (`winstor controlplane up`) it outlives this process until
`winstor controlplane down`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from winstor.targets.controlplane.build import BuildError, ensure_built
from winstor.targets.embedded import LaunchError

__all__ = ["SERVE_MODULE", "ControlPlaneProcess", "is_supervisor", "stop_supervisor"]

SERVE_MODULE = "winstor.targets.controlplane.serve"
READY_FILE = "ready.json"
LOG_FILE = "serve.log"
ERROR_PREFIX = "winstor controlplane: error: "
STOP_WAIT_S = 90.0
"""The ordered stop takes ~5 s; etcd and API servers that hang get SIGKILL sooner."""


def is_supervisor(pid: int | None, workdir: str | Path | None = None) -> bool:
    """Whether `pid` is a running control-plane supervisor (of `workdir`, if given):
    pids get reused, and only ever ours is signalled."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc (macOS): trust the recorded pid
    if SERVE_MODULE.encode() not in argv:
        return False
    return workdir is None or str(workdir).encode() in argv


def stop_supervisor(pid: int, wait: float = STOP_WAIT_S) -> bool:
    """SIGTERM the supervisor and wait for its ordered stop; SIGKILL its group (its
    children follow by the parent-death signal) when it takes longer. True if it ran."""
    if not is_supervisor(pid):
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if not is_supervisor(pid):
            return True
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    return True


@dataclass
class ControlPlaneProcess:
    clusters: int = 2
    scenarios: list[str] = field(default_factory=list)
    time_scale: float | None = None
    nodes: bool = True
    workdir: Path | None = None
    owned: bool = True
    proc: subprocess.Popen[bytes] | None = None
    info: dict[str, Any] = field(default_factory=dict)
    _made_workdir: bool = False

    # -- what the run reads ------------------------------------------------------------
    @property
    def kubeconfig(self) -> Path:
        return Path(self.info["kubeconfig"])

    @property
    def contexts(self) -> list[str]:
        return list(self.info.get("contexts") or [])

    @property
    def aws_envs(self) -> dict[str, dict[str, str]]:
        """Each cluster's AWS settings (its node agent's moto), by context."""
        return {name: dict(c.get("aws_env") or {})
                for name, c in (self.info.get("clusters") or {}).items()}

    @property
    def aws_env(self) -> dict[str, str]:
        """The first cluster's AWS settings."""
        envs = self.aws_envs
        return envs[self.contexts[0]] if self.contexts and self.contexts[0] in envs else {}

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def log(self) -> Path:
        assert self.workdir is not None
        return self.workdir / LOG_FILE

    # -- start and stop ----------------------------------------------------------------
    def command(self) -> list[str]:
        assert self.workdir is not None
        cmd = [sys.executable, "-m", SERVE_MODULE, "--workdir", str(self.workdir),
               "--clusters", str(self.clusters)]
        for s in self.scenarios:
            cmd += ["--scenario", s]
        if self.time_scale is not None:
            cmd += ["--time-scale", repr(self.time_scale)]
        if not self.nodes:
            cmd.append("--no-nodes")
        if self.owned:
            cmd += ["--exit-with", str(os.getpid()), "--remove-workdir"]
        return cmd

    def start(self, timeout: float = 300.0,
              progress: Callable[[str], None] | None = None) -> None:
        """Build if needed (progress to `progress`), start the supervisor, wait until
        every cluster is ready; one-line `LaunchError` otherwise."""
        say = progress or (lambda line: print(line, file=sys.stderr, flush=True))
        try:
            ensure_built(say)
        except BuildError as err:
            raise LaunchError(f"building the control plane failed: {err}") from None
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="winstor-cp-"))
            self._made_workdir = True
        self.workdir.mkdir(parents=True, exist_ok=True)
        ready = self.workdir / READY_FILE
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.command(), stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        seen = 0
        try:
            while True:
                seen = self._relay(seen, say)
                if ready.exists():
                    try:
                        self.info = json.loads(ready.read_text(encoding="utf-8"))
                        break
                    except ValueError:
                        pass  # written as we read; the rename makes this rare
                if self.proc.poll() is not None:
                    self._relay(seen, say)
                    raise LaunchError(self._failure())
                if time.monotonic() > deadline:
                    raise LaunchError(f"the control plane was not ready within {timeout:.0f} s: "
                                      f"{self._tail()}")
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise

    def _lines(self) -> list[str]:
        try:
            return self.log.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return []

    def _relay(self, seen: int, say: Callable[[str], None]) -> int:
        lines = self._lines()
        for line in lines[seen:]:
            if line.startswith("controlplane:"):
                say(line)
        return len(lines)

    def _failure(self) -> str:
        errors = [ln[len(ERROR_PREFIX):] for ln in self._lines() if ln.startswith(ERROR_PREFIX)]
        if errors:
            line = errors[-1]
            if self.owned and self.workdir is not None:
                # The logs go with the work directory: do not point at a file about to vanish.
                head, sep, _ = line.rpartition(f" (log {self.workdir}/")
                line = head if sep else line
            return line
        return f"the control plane's supervisor exited with code {self.proc.returncode if self.proc else '?'}: {self._tail()}"  # noqa: E501

    def _tail(self, n: int = 3) -> str:
        lines = [ln.strip() for ln in self._lines() if ln.strip()]
        return " | ".join(lines[-n:]) or "(no output)"

    def stop(self) -> None:
        """Stop the supervisor (it stops the clusters in order) and remove what it left."""
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.send_signal(signal.SIGTERM)
                try:
                    self.proc.wait(STOP_WAIT_S)
                except subprocess.TimeoutExpired:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                    self.proc.wait(10)
            self.proc = None
        if self.workdir is not None and self.owned:
            shutil.rmtree(self.workdir, ignore_errors=True)
            if self._made_workdir:
                self.workdir = None


def describe(info: dict[str, Any], names: Iterable[str] | None = None) -> list[str]:
    """One line per cluster of a ready file: context, server, AWS endpoint, CSI."""
    out = []
    for name, c in (info.get("clusters") or {}).items():
        if names is not None and name not in names:
            continue
        aws = (c.get("aws_env") or {}).get("AWS_ENDPOINT_URL") or "none (no nodes)"
        csi = "EBS CSI controller" if c.get("csi_controller") else "no CSI controller"
        scen = f", scenarios {', '.join(c['scenarios'])}" if c.get("scenarios") else ""
        out.append(f"{name}: {c.get('server')}, AWS (moto) {aws}, {csi}{scen}")
    return out
