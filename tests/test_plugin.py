"""The plugin as users meet it before any check runs: help, markers,
collection with nothing reachable, and one clear line for bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from helpers import ROOT
from test_scenarios import ALL

NO_SIM = '''
import winstor.targets.embedded

def _refuse(self, timeout=60.0):
    raise AssertionError("the embedded cluster must not be started here")

winstor.targets.embedded.SimProcess.start = _refuse
'''


def pytest_run(*args: str, tmp_path: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = None
    extra: list[str] = []
    if tmp_path is not None:
        (tmp_path / "nosim_guard.py").write_text(NO_SIM)
        import os
        env = {**os.environ, "PYTHONPATH": str(tmp_path)}
        extra = ["-p", "nosim_guard"]
    return subprocess.run([sys.executable, "-m", "pytest", *extra, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120, env=env)


def test_help_groups_options_with_env_and_ini() -> None:
    out = pytest_run("--help").stdout
    assert "winstor: Windows storage conformance:" in out
    for option in ("--profile", "--context", "--kubeconfig", "--clusters", "--sim-clusters",
                   "--sim-scenario", "--windows-image", "--timeouts", "--keep-on-failure"):
        assert option in out, option
    assert "WINSTOR_SIM_SCENARIO" in out and "winstor_sim_scenario" in out


def test_help_lists_the_catalog_and_its_markers() -> None:
    """Every check id with its markers, and every winstor marker, after pytest's help."""
    from winstor.plugin.catalog import entries
    from winstor.plugin.checks import MARKERS

    out = pytest_run("--help").stdout
    assert "--opt-in=OPT_IN" in out and "WINSTOR_OPT_IN" in out and "winstor_opt_in" in out
    catalog = out.split("winstor checks (id, title, [markers]", 1)[1]
    listed = entries(ROOT / "suites")
    assert {e.id for e in listed} >= {"EBS-RESIZE-01", "EBS-RESIZE-02", "EBS-RETAIN-01",
                                      "EBS-MOVE-01", "EBS-MOVE-02", "EBS-PERSIST-01"}
    for e in listed:
        assert f"  {e.id} " in catalog, e.id
    assert "[ebs, aws, disruptive, drain (opt-in)]" in catalog  # EBS-MOVE-01
    for marker in MARKERS:
        assert f"\n  {marker}: " in catalog, marker


def test_readme_table_lists_every_check() -> None:
    from winstor.plugin.catalog import entries

    readme = (ROOT / "README.md").read_text()
    for e in entries(ROOT / "suites"):
        row = next((ln for ln in readme.splitlines() if ln.startswith(f"| `{e.id}` |")), None)
        assert row is not None, f"README's check table has no row for {e.id}"
        for marker in e.markers:
            assert f"`{marker}`" in row, (e.id, marker)


def test_markers_are_registered() -> None:
    out = pytest_run("--markers").stdout
    for marker in ("storageclass", "ebs", "persistence", "smb", "fsx", "csi_proxy", "nodes",
                   "aws", "disruptive", "drain", "winstor_check"):
        assert f"@pytest.mark.{marker}" in out, marker


def test_collect_only_lists_the_catalog_per_cluster_without_a_cluster(tmp_path: Path) -> None:
    proc = pytest_run("--collect-only", "-q", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ids = [line for line in proc.stdout.splitlines() if "::" in line]
    assert len(ids) == 2 * len(ALL)
    assert sum("[sim-1:" in i for i in ids) == sum("[sim-2:" in i for i in ids) == len(ALL)
    assert any(i.endswith("[sim-1:EBS-PERSIST-01]") for i in ids)


def test_a_kubeconfig_alone_checks_its_current_context(tmp_path: Path) -> None:
    """As kubectl reads it: `--kubeconfig` without `--context` is the file's current-context,
    not the embedded cluster (which would silently check something else)."""
    kc = _write(tmp_path, "kc", KUBECONFIG)
    proc = pytest_run("--collect-only", "-q", f"--kubeconfig={kc}", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ids = [line for line in proc.stdout.splitlines() if "::" in line]
    assert ids and all("[real:" in i for i in ids), ids[:3]
    assert "embedded cluster" not in proc.stdout


def test_dash_m_smb_selects_only_share_checks(tmp_path: Path) -> None:
    proc = pytest_run("--collect-only", "-q", "-m", "smb", tmp_path=tmp_path)
    ids = [line for line in proc.stdout.splitlines() if "::" in line]
    checks = {i.rsplit(":", 1)[1].rstrip("]") for i in ids}
    assert checks == {"SMB-MAP-01", "SMB-POD-01", "SMB-SHARED-01", "FSX-AWS-01", "SMB-PSA-01",
                      "SMB-CSI-01", "SMB-CSI-02", "SMB-CSI-03", "SHARE-AWS-01"}
    assert all(i.startswith(("suites/test_smb_fsx.py", "suites/test_smb_csi.py")) for i in ids)


def test_the_head_start_is_the_first_fixture_of_each_clusters_checks(tmp_path: Path) -> None:
    """pytest's setup plan (nothing runs): every check's first session fixture is the head
    start (fixtures/headstart.py), once per cluster, before the cluster's own objects -
    here the claim and Deployment EBS-PERSIST-01 needs - so that the first check of a
    cluster begins every slow object its selected checks need."""
    proc = pytest_run("--setup-plan", "-q", "-p", "no:randomly", "-k",
                      "EBS-PERSIST-01 or SMB-POD-01", tmp_path=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    setups = [line.split()[2] for line in proc.stdout.splitlines()
              if line.strip().startswith("SETUP    S")]
    assert setups.count("head_start['sim-1']") == setups.count("head_start['sim-2']") == 1
    for name in ("sim-1", "sim-2"):
        start = setups.index(f"head_start['{name}']")
        assert setups[start + 1] == f"cluster['{name}']", setups
        mine = setups[start:]
        assert mine.index("seed_workload") > 1 and mine.index("fsx_pod") > 1, setups


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


KUBECONFIG = """apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: 'https://127.0.0.1:9'}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: real, context: {cluster: c, user: u}}]
current-context: real
"""


@pytest.mark.parametrize(("args", "files", "expected"), [
    (["--context", "nope", "--kubeconfig={kc}"], {"kc": KUBECONFIG},
     "unknown context 'nope' in kubeconfig"),
    (["--context", "real", "--kubeconfig={dir}/missing"], {},
     "cannot read kubeconfig"),
    (["--clusters={cf}"], {"cf": "clusters: [oops"}, "malformed YAML"),
    (["--clusters={cf}"], {"cf": "clusters:\n  - context: real\n    colour: blue\n"},
     "unknown key 'colour'"),
    (["--clusters={cf}"], {"cf": "clusters:\n  - context: real\n    windows_build: 17763\n"},
     "windows_build: expected str, got int"),
    (["--clusters={cf}"], {"cf": "a: &a [x, x]\nb: &b [*a, *a]\nclusters: [*b]\n"},
     "YAML aliases are not allowed"),
    (["--sim-scenario", "no-such-thing"], {}, "unknown scenario 'no-such-thing'"),
    (["--timeouts", "fast"], {}, "--timeouts fast: not eks, sim, or a readable file"),
    (["--opt-in", "reboot"], {}, "--opt-in: 'reboot' is not an opt-in marker (known: drain)"),
    (["--clusters={cf}", "--kubeconfig={kc}"],
     {"cf": "clusters:\n  - context: real\n    opt_in: [drian]\n", "kc": KUBECONFIG},
     "cluster real: opt_in: 'drian' is not an opt-in marker"),
    (["--clusters={cf}"], {"cf": "clusters:\n  - context: real\n    opt_in: drain\n"},
     "opt_in: expected list, got str"),
    (["--kubeconfig={kc}"], {"kc": KUBECONFIG.replace("current-context: real\n", "")},
     "has no current-context; name the cluster with --context (known: real)"),
    (["--kubeconfig={kc}"], {"kc": KUBECONFIG.replace("context: real\n", "context: gone\n")},
     "current-context 'gone' is not one of its contexts (known: real)"),
    (["--kubeconfig={kc}", "--sim-scenario", "ebs-attach-fails"], {"kc": KUBECONFIG},
     "--sim-scenario applies to the embedded cluster only"),
])
def test_bad_input_is_one_line_and_a_usage_error(args: list[str], files: dict[str, str],
                                                 expected: str, tmp_path: Path) -> None:
    paths = {k: _write(tmp_path, k, v) for k, v in files.items()}
    rendered = [a.format(dir=tmp_path, **paths) for a in args]
    proc = pytest_run(*rendered, tmp_path=tmp_path)
    assert proc.returncode == 4, proc.stdout + proc.stderr
    err_lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(err_lines) == 1 and err_lines[0].startswith("ERROR: winstor: "), proc.stderr
    assert expected in err_lines[0]
    assert "Traceback" not in proc.stdout + proc.stderr
