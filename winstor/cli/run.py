"""`winstor run [pytest args...]`: the catalog from an installed wheel, from any directory.

In a checkout, `pytest` finds the suites through pyproject's `testpaths`. An
installed winstor has no checkout: this command hands pytest the installed suites
(`winstor.suites`), winstor's own pytest settings (`run.ini`, the same as the
checkout's `[tool.pytest.ini_options]`) and a root directory that gives the same
test ids as a checkout (`suites/test_x.py::...`), so junit.xml and results.json read
alike wherever winstor ran. Everything else - options, reports, exit codes - is
pytest's and the plugin's, unchanged. Reports go to `./reports` of the directory it
is run from unless `--report-dir` or `WINSTOR_REPORT_DIR` says otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from winstor.resources import data_dir

__all__ = ["pytest_args", "register", "run_pytest"]

INI = Path(__file__).with_name("run.ini")


def pytest_args(extra: list[str]) -> list[str]:
    """The pytest command line `winstor run EXTRA...` stands for."""
    suites = data_dir("suites")
    return ["-c", str(INI), "--rootdir", str(suites.parent), str(suites), *extra]


def run_pytest(extra: list[str]) -> int:
    """Become `python -m pytest` with the installed suites (never returns on POSIX).

    Replacing the process, rather than calling `pytest.main()` here, gives pytest a fresh
    interpreter: the `winstor` package is not imported yet, so pytest can rewrite the
    plugin's asserts as it does for `pytest` in a checkout (no "already imported"
    warning), and signals (Ctrl-C, a CI system's SIGTERM) reach pytest directly.
    """
    if extra[:1] == ["--"]:
        extra = extra[1:]
    # Relative to where the person runs it, not to the installed package.
    os.environ.setdefault("WINSTOR_REPORT_DIR", str(Path.cwd() / "reports"))
    argv = [sys.executable, "-m", "pytest", *pytest_args(extra)]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, argv)
    return 1  # not reached: execv replaced the process


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run", help="run the conformance checks (pytest with winstor's installed suites)",
        description="Run the check catalog with pytest, from any directory: every argument "
                    "after `run` goes to pytest, so winstor's options (`pytest --help`, "
                    "section winstor) work as in a checkout: `winstor run --context my-eks "
                    "-n 2`, `winstor run -m smb`. With no --context or --clusters it runs "
                    "against the embedded cluster. Reports go to ./reports (or --report-dir). "
                    "Exit status is pytest's: 0 all passed, 1 a check failed, 2 interrupted, "
                    "3 internal error, 4 usage error, 5 nothing selected.",
        add_help=False)
    p.add_argument("pytest_args", nargs=argparse.REMAINDER, metavar="PYTEST_ARGS",
                   help="passed to pytest as they are")
    p.set_defaults(func=lambda a: run_pytest(list(a.pytest_args)))
