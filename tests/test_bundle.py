"""Certification: partial runs are refused, a bundle round-trips through
`winstor verify-bundle`, and every kind of modification is rejected."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from test_reports import check_run_dir, minimal_doc, run_reported

from winstor.reports import bundle, results


def verify(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "winstor", "verify-bundle", str(path)],
                          capture_output=True, text=True, timeout=60)


def members(path: Path) -> dict[str, bytes]:
    with tarfile.open(path) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers()  # type: ignore[union-attr]
                if m.isfile()}


def repack(path: Path, files: dict[str, bytes], *, manifest: bool = False,
           link: str | None = None) -> Path:
    """Write `files` as a bundle at `path`; with `manifest`, a fresh SHA256SUMS."""
    files = dict(files)
    if manifest:
        files["SHA256SUMS"] = "".join(
            f"{hashlib.sha256(v).hexdigest()}  {k}\n" for k, v in sorted(files.items())
            if k != "SHA256SUMS").encode()
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if link:
            info = tarfile.TarInfo(link)
            info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            tar.addfile(info)
    return path


@pytest.mark.parametrize("args", [["-k", "EBS"], ["-m", "smb"],
                                  ["--deselect", "suites/test_nodes.py"],
                                  ["suites/test_nodes.py::test_windows_nodes_ready"],
                                  ["suites/test_smb_fsx.py"]])
def test_certify_refuses_partial_runs(args: list[str], tmp_path: Path) -> None:
    proc, run_dir = run_reported(["--certify", *args], tmp_path, "t-refused")
    assert proc.returncode == 4, proc.stdout[-2000:] + proc.stderr[-2000:]
    err = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(err) == 1 and "--certify runs the whole catalog" in err[0], proc.stderr
    assert not run_dir.exists()


@pytest.fixture(scope="module")
def certified(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    report_dir = tmp_path_factory.mktemp("cert")
    proc, run_dir = run_reported(["--certify", "--sim-clusters", "1"], report_dir, "t-cert")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    doc = check_run_dir(run_dir, proc.stdout)
    assert "winstor: certification PASSED for sim-1" in proc.stdout
    return run_dir, doc


def test_bundle_round_trips(certified: tuple[Path, dict]) -> None:
    run_dir, doc = certified
    assert doc["certification"]["verdict"] == "passed"
    name = doc["certification"]["clusters"]["sim-1"]["bundle"]
    assert name.startswith("winstor-cert-sim-1-") and name.endswith(".tar.gz")
    path = run_dir / name
    inside = members(path)
    assert {"results.json", "junit.xml", "report.html", "config.json", "SHA256SUMS"} <= \
        set(inside)
    assert json.loads(inside["config.json"])["settings"]["certify"] is True
    proc = verify(path)
    assert proc.returncode == 0, proc.stderr
    assert "certification PASSED (20/20 checks passed)" in proc.stdout
    assert "intact" in proc.stdout


def test_modified_bundles_are_rejected(certified: tuple[Path, dict], tmp_path: Path) -> None:
    run_dir, doc = certified
    original = members(run_dir / doc["certification"]["clusters"]["sim-1"]["bundle"])
    html = original["report.html"].replace(b"pass", b"PASS", 1)
    res = json.loads(original["results.json"])
    res["checks"][0]["outcome"] = "failed"
    res["summary"] = results.counts(c["outcome"] for c in res["checks"])
    cases = {
        "edited": ({**original, "report.html": html}, {}),
        "added": ({**original, "extra.txt": b"x"}, {}),
        "removed": ({k: v for k, v in original.items() if k != "junit.xml"}, {}),
        "rehashed": ({**original, "results.json": json.dumps(res).encode()},
                     {"manifest": True}),
        "linked": (original, {"link": "diagnostics/evil"}),
        "traversal": ({**original, "../escape.txt": b"x"}, {"manifest": True}),
    }
    for label, (files, kw) in cases.items():
        proc = verify(repack(tmp_path / f"{label}.tar.gz", files, **kw))
        assert proc.returncode == 2, (label, proc.stdout, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "rejected" in lines[0], (label, proc.stderr)
    (tmp_path / "junk.tar.gz").write_bytes(b"not a tarball")
    for bad in (tmp_path / "junk.tar.gz", tmp_path / "absent.tar.gz", tmp_path):
        proc = verify(bad)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1
        assert "Traceback" not in proc.stderr


def test_verdict_and_outcomes_must_agree(tmp_path: Path) -> None:
    """A bundle rebuilt with a fresh manifest still fails when its parts disagree."""
    doc = minimal_doc({"A-01": "passed", "B-01": "failed"})
    doc["certification"] = {"verdict": "passed", "expect_amis": [],
                            "clusters": {"c1": {"verdict": "passed", "reasons": []}}}
    junit = ('<?xml version="1.0"?><testsuites><testsuite name="pytest" tests="2" '
             'failures="1" errors="0" skipped="0"><testcase classname="m" '
             'name="test_x[c1:A-01]" time="1"/><testcase classname="m" name="test_x[c1:B-01]"'
             ' time="1"><failure message="m">x</failure></testcase></testsuite></testsuites>')
    files = {"results.json": bundle.dumps(doc), "junit.xml": junit.encode(),
             "report.html": b"<html></html>", "config.json": b"{}"}
    path = bundle.write(tmp_path, "lying.tar.gz", files)
    with pytest.raises(bundle.BundleError, match="verdict says passed"):
        bundle.verify(path)
    doc["certification"]["verdict"] = doc["certification"]["clusters"]["c1"]["verdict"] = \
        "failed"
    doc["certification"]["clusters"]["c1"]["reasons"] = ["B-01 failed"]
    path = bundle.write(tmp_path, "honest.tar.gz", {**files, "results.json": bundle.dumps(doc)})
    verdict = bundle.verify(path)
    assert verdict.verdict == "failed" and verdict.counts["failed"] == 1
    filtered = bundle.junit_for_cluster(junit.replace("c1:B-01", "c2:B-01"), "c1")
    assert 'tests="1"' in filtered and 'failures="0"' in filtered
    assert results.xunit2_problems(filtered) == []
