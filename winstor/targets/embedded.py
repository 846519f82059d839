"""Start and stop the embedded cluster as a separate process.

The run talks to it exactly as to EKS - through a kubeconfig and the AWS
environment variables - so nothing here imports `winstor.sim`. Readiness is
the kubeconfig file appearing; a sim that dies first is reported with the
last lines it printed.
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


class LaunchError(Exception):
    """The embedded cluster could not be started; one line says why."""


@dataclass
class SimProcess:
    clusters: int
    scenarios: list[str]
    flavour: str = "eks"
    time_scale: float = 0.002
    extra_args: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    workdir: Path | None = None
    aws_env: dict[str, str] = field(default_factory=dict)

    @property
    def kubeconfig(self) -> Path:
        assert self.workdir is not None
        return self.workdir / "kubeconfig"

    @property
    def contexts(self) -> list[str]:
        return [f"sim-{i}" for i in range(1, self.clusters + 1)]

    def start(self, timeout: float = 60.0) -> None:
        """Launch `winstor sim up` and wait for its kubeconfig. Whatever stops the wait -
        a sim that exits, the deadline, or a signal turned into KeyboardInterrupt while
        the sim starts - stops the sim and removes its directory before it propagates:
        the caller has no SimProcess to stop yet."""
        try:
            self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout: float) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="winstor-sim-"))
        env_file = self.workdir / "aws.env"
        cmd = [sys.executable, "-m", "winstor", "sim", "up", "--kubeconfig",
               str(self.kubeconfig), "--aws-env", str(env_file), "--clusters",
               str(self.clusters), "--flavour", self.flavour, "--time-scale",
               str(self.time_scale), "--quiet", "--exit-with", str(os.getpid()),
               # A launcher killed outright (SIGKILL) removes nothing: the sim, which
               # notices within a second, takes the directory with it.
               "--remove-if-orphaned", str(self.workdir)]
        for s in self.scenarios:
            cmd += ["--scenario", s]
        cmd += self.extra_args
        with (self.workdir / "sim.log").open("wb") as log:
            self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self.kubeconfig.exists():
            if self.proc.poll() is not None:
                raise LaunchError(f"the embedded cluster exited with code "
                                  f"{self.proc.returncode}: {self._tail()}")
            if time.monotonic() > deadline:
                raise LaunchError(f"the embedded cluster was not ready within {timeout:.0f}s: "
                                  f"{self._tail()}")
            time.sleep(0.01)  # a stat a poll; the sim is ready in ~1.5 s, so poll finely
        self.aws_env = read_env_file(env_file)

    def _tail(self) -> str:
        try:
            text = (self.workdir / "sim.log").read_text(errors="replace") if self.workdir else ""
        except OSError:
            return "(no output)"
        lines = [ln for ln in text.strip().splitlines() if ln.strip()]
        return " | ".join(lines[-3:]) or "(no output)"

    @property
    def log_path(self) -> Path | None:
        """The sim's own output (its controllers' warnings and crashes); it goes with the
        directory at `stop()`, so copy it first to keep it (`keep_log`)."""
        return self.workdir / "sim.log" if self.workdir is not None else None

    def keep_log(self, dest: Path, redact: Callable[[str], str] | None = None) -> Path | None:
        """Copy the sim's log to `dest` (through `redact`, when given); the copy's path,
        or None when there is no log."""
        path = self.log_path
        if path is None or not path.is_file():
            return None
        text = path.read_text(encoding="utf-8", errors="replace")
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_text(redact(text) if redact else text, encoding="utf-8")
        return dest

    def stop(self) -> None:
        self._terminate()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self.workdir = None

    def _terminate(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.proc = None


def read_env_file(path: Path) -> dict[str, str]:
    """Parse the `export K='V'` lines the sim writes."""
    out: dict[str, str] = {}
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export "):]
        key, _, value = line.partition("=")
        parts = shlex.split(value) if value else [""]
        out[key.strip()] = parts[0] if parts else ""
    return out
