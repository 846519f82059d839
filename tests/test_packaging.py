"""winstor as a package: the wheel carries everything a run needs, and runs anywhere.

A user's CI installs a wheel and runs the catalog from its own directory; nothing
there is a checkout. The slow test below does exactly that: build the wheel, install
it alone into a fresh venv, and run the whole catalog from an empty directory.
"""

from __future__ import annotations

import configparser
import fnmatch
import os
import re
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest
import tomllib

from helpers import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SETUPTOOLS = PYPROJECT["tool"]["setuptools"]


def _source_dir(package: str) -> Path:
    """Where a distribution package's files live in the repository."""
    mapping = SETUPTOOLS["package-dir"]
    parts = package.split(".")
    for i in range(len(parts), 0, -1):
        prefix = ".".join(parts[:i])
        if prefix in mapping:
            return ROOT / mapping[prefix] / Path(*parts[i:])
    return ROOT / Path(*parts)


def test_every_python_package_is_listed() -> None:
    """`packages` is a list (mapped folders cannot be found): a new subpackage that is
    not in it would silently be missing from the wheel."""
    listed = set(SETUPTOOLS["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts)
             for p in (ROOT / "winstor").rglob("__init__.py") if "__pycache__" not in p.parts}
    assert found <= listed, f"add to pyproject's packages: {sorted(found - listed)}"
    data_only = set(SETUPTOOLS["package-data"]) - found
    for package in listed:
        if package in data_only:  # a folder of data files, listed for setuptools' sake
            assert _source_dir(package).is_dir(), package
        else:
            assert (_source_dir(package) / "__init__.py").is_file(), package


def test_run_ini_matches_the_checkout_settings() -> None:
    """`winstor run` uses run.ini where a checkout uses pyproject: the same settings."""
    ini = configparser.ConfigParser()
    ini.read(ROOT / "winstor" / "cli" / "run.ini")
    ours = dict(ini["pytest"])
    checkout = {k: v for k, v in PYPROJECT["tool"]["pytest"]["ini_options"].items()
                if k != "testpaths"}
    assert ours == {k: str(v).lower() if isinstance(v, bool) else v
                    for k, v in checkout.items()}


def test_data_is_found_through_the_package() -> None:
    from winstor.cluster import manifests, probes
    from winstor.targets import kindconfig

    assert (manifests.ROOT / "storageclass-gp2-windows.yaml").is_file()
    assert "write-marker" in probes.available_probes()
    assert kindconfig.DEFAULT_CONFIG.is_file()


# What a checkout holds beside its sources: git, venvs, build outputs, run reports.
_LOCAL = (".git", ".venv*", "build", "dist", "*.egg-info", "winstor-*", ".pytest_cache",
          "reports")


def _not_source(folder: str, names: list[str]) -> set[str]:
    ignored = {n for n in names if n == "__pycache__"}
    if Path(folder) == ROOT:
        ignored |= {n for n in names if any(fnmatch.fnmatch(n, p) for p in _LOCAL)}
    return ignored


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`python -m build`, as the README says: the sdist, then the wheel built from it,
    so what a wheel holds is what the sdist carries (and no stale build/ of the
    checkout leaks in). From a copy of the checkout: a build writes into the tree it
    builds (winstor.egg-info, the sdist's winstor-<version>/ staging folder), and under
    xdist each worker that runs a test of this module builds its own wheel - two
    builds in one tree took each other's files away ("No such file or directory:
    'winstor-0.1.0/winstor/sim/api/selectors.py'")."""
    source = tmp_path_factory.mktemp("source") / "winstor"
    shutil.copytree(ROOT, source, ignore=_not_source)
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, "-m", "build", "--outdir", str(out), str(source)],
                          capture_output=True, text=True, timeout=600, cwd=out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert next(out.glob("winstor-*.tar.gz"), None) is not None, "no sdist"
    return next(out.glob("winstor-*.whl"))


def test_wheel_carries_suites_fixtures_manifests_and_probes(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for suite in (ROOT / "suites").glob("*.py"):
        assert f"winstor/suites/{suite.name}" in names
    for fixture in (ROOT / "fixtures").glob("*.py"):
        assert f"winstor/fixtures/{fixture.name}" in names
    for data in (ROOT / "manifests").rglob("*"):
        if data.is_file() and "__pycache__" not in data.parts:
            rel = data.relative_to(ROOT / "manifests").as_posix()
            assert f"winstor/manifests/{rel}" in names, rel
    assert "winstor/kind_config/cluster.yaml" in names
    assert "winstor/cli/run.ini" in names
    for go_file in (ROOT / "controlplane").rglob("*"):
        if go_file.name in ("go.mod", "go.sum") or go_file.suffix == ".go":
            rel = go_file.relative_to(ROOT / "controlplane").as_posix()
            assert f"winstor/controlplane/{rel}" in names, rel
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "winstor = winstor.plugin.hooks" in text and "winstor = winstor.cli.main:main" in text


def test_wheel_holds_nothing_the_checkout_lacks(wheel: Path) -> None:
    """Every file of the wheel comes from a file of the checkout (a module that moved
    away must not live on in the package)."""
    stale = []
    for name in zipfile.ZipFile(wheel).namelist():
        if ".dist-info/" in name:
            continue
        parts = name.split("/")
        package = ".".join(parts[:-1])
        if not (_source_dir(package) / parts[-1]).is_file():
            stale.append(name)
    assert not stale, stale


def test_installed_wheel_runs_the_catalog_from_an_empty_directory(
        wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    # Nothing of the checkout on sys.path (a PYTHONPATH, or the working directory that
    # `python -m` adds): a checkout's winstor.egg-info there makes pip take winstor as
    # installed already.
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("WINSTOR_", "PYTHON", "VIRTUAL_ENV"))}
    install = subprocess.run([str(py), "-m", "pip", "install", "-q", str(wheel)],
                             capture_output=True, text=True, timeout=900, cwd=tmp_path, env=env)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    assert (env_dir / "bin" / "winstor").is_file(), "the wheel installed no winstor command"
    work = tmp_path / "empty"
    work.mkdir()
    env["PATH"] = f"{env_dir / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    proc = subprocess.run([str(env_dir / "bin" / "winstor"), "run", "-q", "-n", "2"], cwd=work,
                          capture_output=True, text=True, timeout=600, env=env)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    checks = {m for f in (ROOT / "suites").glob("test_*.py")
              for m in re.findall(r'winstor_check\(\s*"([A-Z0-9-]+)"', f.read_text())}
    assert f"{2 * len(checks)} passed" in out, out[-2000:]
    assert "PytestAssertRewriteWarning" not in out, out[-2000:]
    latest = work / "reports" / "latest"
    assert (latest / "results.json").is_file() and (latest / "junit.xml").is_file()
    results = (latest / "results.json").read_text()
    # The same test ids as in a checkout, and nothing read from the checkout.
    assert "suites/test_ebs_persistence.py::" in results
    assert str(ROOT) not in results.replace(str(tmp_path), "")
