"""Every numeric option refuses NaN and infinities with one line, before anything starts.

Python's float() reads "nan", "inf", "-Infinity" and "1e999" as numbers, YAML reads
`.nan` and `.inf`, and NaN fails every comparison: a `value <= 0` test let NaN through and
a timeout of inf never ends. One case per numeric option of `winstor`, of the pytest
plugin (options, environment, the --timeouts file) and of `python -m bench`.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from test_plugin import NO_SIM

from helpers import ROOT
from winstor.config import ConfigError
from winstor.plugin.settings import resolve

NOT_FINITE = ("nan", "NaN", "inf", "-inf", "Infinity", "1e999")

# (argv with {v} for the value, the option named in the error)
WINSTOR_OPTIONS = [
    (["sim", "up", "--kubeconfig", "{tmp}/kc", "--time-scale", "{v}"], "--time-scale"),
    (["sim", "up", "--kubeconfig", "{tmp}/kc", "--clusters", "{v}"], "--clusters"),
    (["sim", "up", "--kubeconfig", "{tmp}/kc", "--watch-history", "{v}"], "--watch-history"),
    (["sim", "up", "--kubeconfig", "{tmp}/kc", "--exit-with", "{v}"], "--exit-with"),
    (["kind", "up", "--wait", "{v}"], "--wait"),
    (["janitor", "--run", "r1", "--timeout", "{v}", "--kubeconfig", "{tmp}/kc"], "--timeout"),
    (["janitor", "--older-than", "{v}", "--kubeconfig", "{tmp}/kc"], "--older-than"),
]

BENCH_OPTIONS = ["--clusters", "--max-workers", "--eks-like-scale", "--poll-interval",
                 "--rounds", "--execs", "--fleet-clusters", "--fleet-workers"]


def _refuse_to_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """A value that got through must fail the test, not start a cluster or a kind run."""
    from winstor.cli import janitor, kind, sim

    def started(_args: Any) -> int:
        raise AssertionError("the option was accepted and the command started")
    monkeypatch.setattr(sim, "_sim_up", started)
    monkeypatch.setattr(kind, "_up", started)
    monkeypatch.setattr(janitor, "make_aws", started)


@pytest.mark.parametrize("value", NOT_FINITE)
@pytest.mark.parametrize(("argv", "option"), WINSTOR_OPTIONS,
                         ids=[" ".join(a[:2]) + " " + o for a, o in WINSTOR_OPTIONS])
def test_winstor_refuses(argv: list[str], option: str, value: str, tmp_path: Path,
                         monkeypatch: pytest.MonkeyPatch,
                         capsys: pytest.CaptureFixture[str]) -> None:
    from winstor.cli.main import main

    _refuse_to_start(monkeypatch)
    (tmp_path / "kc").write_text("apiVersion: v1\nkind: Config\ncontexts: []\n")
    args = [a.format(v=value, tmp=tmp_path) for a in argv]
    try:
        code = main(args)
    except SystemExit as stop:  # argparse's own refusal
        code = stop.code
    out, err = capsys.readouterr()
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and out == "", (code, out, err)
    assert option in lines[-1] and "Traceback" not in err, err
    assert all(ln.startswith(("usage:", " ")) for ln in lines[:-1]), err  # usage, then one line


@pytest.mark.parametrize("value", NOT_FINITE)
@pytest.mark.parametrize("option", BENCH_OPTIONS)
def test_bench_refuses(option: str, value: str, monkeypatch: pytest.MonkeyPatch,
                       capsys: pytest.CaptureFixture[str]) -> None:
    bench = pytest.importorskip("bench.__main__")

    def measure(*_a: Any) -> None:
        raise AssertionError("the option was accepted and measuring started")
    monkeypatch.setattr(bench, "measure", measure)
    with pytest.raises(SystemExit) as stop:
        bench.main([option, value])
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert stop.value.code == 2 and f"argument {option}:" in lines[-1], lines


class _Config:
    """What `settings.resolve` reads of a pytest config: options, then ini."""

    def __init__(self, **options: Any) -> None:
        self.options = options

    def getoption(self, name: str, default: Any = None) -> Any:
        return self.options.get(name, default)

    def getini(self, name: str) -> Any:
        return ""


@pytest.mark.parametrize("value", NOT_FINITE)
def test_sim_clusters_refuses(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="--sim-clusters must be a whole number"):
        resolve(_Config(sim_clusters=value), set())
    monkeypatch.setenv("WINSTOR_SIM_CLUSTERS", value)
    with pytest.raises(ConfigError, match="--sim-clusters must be a whole number"):
        resolve(_Config(), set())


TIMEOUT_VALUES = (".nan", ".NaN", ".inf", ".Inf", "-.inf", "1.0e999", "9" * 400)


@pytest.mark.parametrize("value", TIMEOUT_VALUES)
@pytest.mark.parametrize("key", ["pod_start", "claim_bound", "exec"])
def test_timeouts_file_refuses(key: str, value: str, tmp_path: Path) -> None:
    path = tmp_path / "timeouts.yaml"
    path.write_text(f"base: sim\n{key}: {value}\n")
    with pytest.raises(ConfigError, match=f"{key} must be a positive number of seconds"):
        resolve(_Config(timeouts=str(path)), set())


@pytest.mark.parametrize(("args", "env", "phrase"), [
    (["--sim-clusters", "nan"], {}, "--sim-clusters must be a whole number, not 'nan'"),
    (["--timeouts={tmp}/t.yaml"], {}, "pod_start must be a positive number of seconds"),
    ([], {"WINSTOR_SIM_CLUSTERS": "inf"}, "--sim-clusters must be a whole number, not 'inf'"),
])
def test_pytest_says_one_line(args: list[str], env: dict[str, str], phrase: str,
                              tmp_path: Path) -> None:
    """As a person meets it: a usage error (exit 4) in one line, no tests run."""
    (tmp_path / "t.yaml").write_text("pod_start: .nan\n")
    (tmp_path / "nosim_guard.py").write_text(NO_SIM)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "nosim_guard",
         *[a.format(tmp=tmp_path) for a in args]], cwd=ROOT, capture_output=True, text=True,
        timeout=120, env={**os.environ, "PYTHONPATH": str(tmp_path), **env})
    err = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 4, proc.stdout[-2000:] + proc.stderr
    assert len(err) == 1 and err[0].startswith("ERROR: winstor: ") and phrase in err[0], err


def test_finite_values_still_pass() -> None:
    """The refusals are of non-finite values, not of numbers."""
    from winstor.cleanup.select import parse_duration
    from winstor.cli import args

    assert args.time_scale("0.05") == 0.05 and args.positive_seconds("1e3") == 1000.0
    assert args.go_duration("1h30m") == "1h30m" and args.go_duration("0") == "0"
    assert parse_duration("36500d") == 36500 * 86400.0
    with pytest.raises(ValueError, match="longer than 100 years"):
        parse_duration("9" * 5000 + "s")
