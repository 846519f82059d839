"""Run reports: junit.xml, results.json and report.html after real runs of the suite,
serial and under xdist (with one cluster broken, so diagnostics must travel from
the worker that ran the check), and report.html as Chromium renders it."""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import pytest

from helpers import ROOT
from test_scenarios import ALL, EBS_WORKLOAD
from winstor.reports import html as htmlreport
from winstor.reports import results


def run_reported(args: list[str], report_dir: Path, run_id: str,
                 env: dict[str, str] | None = None,
                 timeout: float = 600) -> tuple[subprocess.CompletedProcess[str], Path]:
    """`pytest ARGS` in the project, reports into `report_dir`; returns the run dir."""
    cmd = [sys.executable, "-m", "pytest", "-q", f"--report-dir={report_dir}",
           f"--run-id={run_id}", *args]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})
    return proc, report_dir / run_id


def pytest_counts(output: str) -> dict[str, int]:
    """Outcome counts from pytest's closing line."""
    last = [ln for ln in output.splitlines() if re.search(r"\d+ (passed|failed|error)", ln)]
    counts = dict.fromkeys(results.OUTCOMES, 0)
    for n, word in re.findall(r"(\d+) (passed|failed|errors?|skipped)", last[-1] if last else ""):
        counts["error" if word.startswith("error") else word] = int(n)
    return counts


def check_run_dir(run_dir: Path, output: str) -> dict:
    """The three files exist and validate; results agree with pytest's own counts."""
    for name in ("junit.xml", "results.json", "report.html"):
        assert (run_dir / name).is_file(), f"{name} missing; {output[-2000:]}"
    junit = (run_dir / "junit.xml").read_text()
    assert results.xunit2_problems(junit) == []
    assert "<properties" not in junit.split("<testcase", 1)[-1]
    doc = json.loads((run_dir / "results.json").read_text())
    assert results.validate(doc) == []
    counts = pytest_counts(output)
    assert {o: doc["summary"][o] for o in results.OUTCOMES} == counts
    assert {o: doc["run"]["pytest_counts"][o] for o in results.OUTCOMES} == counts
    latest = run_dir.parent / "latest"
    assert latest.is_symlink() and latest.resolve() == run_dir.resolve()
    html = (run_dir / "report.html").read_text()
    assert_self_contained(html)
    return doc


def assert_self_contained(html: str) -> None:
    """No markup that loads anything, no CSS that does, no URL even as text."""
    assert "://" not in html
    tags: list[tuple[str, list[tuple[str, str | None]]]] = []
    styles: list[str] = []

    class Tags(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            tags.append((tag, attrs))

        def handle_data(self, data: str) -> None:
            if tags and tags[-1][0] == "style":
                styles.append(data)

    Tags().feed(html)
    for name, attrs in tags:
        assert name not in ("link", "script", "iframe", "img", "object", "embed", "base",
                            "image", "use", "audio", "video", "source", "form"), name
        for attr, _ in attrs:
            assert attr not in ("href", "src", "srcset", "xlink:href", "action", "data",
                                "poster", "background"), f"<{name} {attr}=...>"
    assert styles and all("url(" not in css and "@import" not in css for css in styles)


@pytest.fixture(scope="module")
def bare_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path, dict]:
    report_dir = tmp_path_factory.mktemp("reports")
    proc, run_dir = run_reported([], report_dir, "t-bare")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    return proc.stdout, run_dir, check_run_dir(run_dir, proc.stdout)


def test_bare_run_writes_valid_reports(bare_run: tuple[str, Path, dict]) -> None:
    output, run_dir, doc = bare_run
    assert doc["run"]["id"] == "t-bare" and doc["run"]["certify"] is False
    assert {(c["cluster"], c["id"]) for c in doc["checks"]} == {
        (f"sim-{i}", c) for i in (1, 2) for c in ALL}
    assert all(c["outcome"] == "passed" and c["diagnostics"] == [] for c in doc["checks"])
    assert not (run_dir / "diagnostics").exists()
    assert f"winstor: reports in {run_dir}" in output
    probe_checks = [c for c in doc["checks"] if c["id"] == "EBS-PERSIST-01"]
    assert all(p["evidence"]["probes"][0]["probe"] == "write-marker" for p in probe_checks)
    for cluster in doc["clusters"]:
        assert cluster["reachable"] and cluster["kubernetes_version"]
        assert cluster["zones"] and cluster["aws"]["available"]
        assert cluster["windows_nodes"]
        for node in cluster["windows_nodes"]:
            assert node["build"] and node["instance_id"] and node["zone"]
            assert node["ami_id"].startswith("ami-") and "EKS_Optimized" in node["ami_name"]
            assert node["csi_proxy_version"]
        names = {p["name"] for p in cluster["timeline"]}
        assert {"pod start", "node probe start", "check", "image pull"} <= names
        # Where the verdicts were reached, in results.json and on the page.
        assert cluster["facts"]["target"].startswith("embedded cluster (EKS flavour")
        assert "not EKS" in cluster["facts"]["target"]
    assert "verdicts reached on" in (run_dir / "report.html").read_text()


def test_where_a_verdict_is_reached_is_said_for_every_kind_of_target() -> None:
    from winstor.plugin.runstate import RunState

    def where(profile: str, use_sim: bool) -> str:
        settings = SimpleNamespace(profile=profile, use_sim=use_sim)
        return RunState.where(SimpleNamespace(settings=settings), "ctx")  # type: ignore[arg-type]

    assert where("eks", False) == "kubeconfig context ctx: the cluster itself"
    assert where("eks", True).startswith("embedded cluster (EKS flavour")
    assert where("kind", True).startswith("embedded cluster (kind flavour")
    assert where("kind", False).startswith("kind cluster, context ctx")
    assert where("controlplane", False).startswith("control-plane profile: real kube-apiserver")
    assert all("not EKS" in where(p, s) for p, s in
               (("eks", True), ("kind", True), ("kind", False), ("controlplane", False)))


def test_report_renders_again_from_results(bare_run: tuple[str, Path, dict],
                                           tmp_path: Path) -> None:
    _, run_dir, doc = bare_run
    out = tmp_path / "again.html"
    proc = subprocess.run([sys.executable, "-m", "winstor", "report",
                           str(run_dir / "results.json"), "-o", str(out)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    html = out.read_text()
    assert html.count('class="cell passed"') == len(doc["checks"])
    assert_self_contained(html)
    bad = tmp_path / "bad.json"
    for content in ("{not json", json.dumps({"kind": "winstor-results", "schema_version": 9}),
                    json.dumps({**doc, "summary": {"passed": -1}})):
        bad.write_text(content)
        proc = subprocess.run([sys.executable, "-m", "winstor", "report", str(bad)],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert "Traceback" not in proc.stderr


def test_parallel_run_with_a_broken_cluster(tmp_path: Path) -> None:
    """`-n 2`: reports are written by the controller, evidence and facts come from the
    workers, and the failed checks carry diagnostics read on their worker that name the
    event that ended the wait; passing checks have none."""
    proc, run_dir = run_reported(["-n", "2", "--sim-scenario", "2:ebs-attach-fails"],
                                 tmp_path, "t-par")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    doc = check_run_dir(run_dir, proc.stdout)
    by = {(c["cluster"], c["id"]): c for c in doc["checks"]}
    assert set(by) == {(f"sim-{i}", c) for i in (1, 2) for c in ALL}
    failed = {k for k, c in by.items() if c["outcome"] == "failed"}
    assert failed == {("sim-2", c) for c in EBS_WORKLOAD}
    assert all(c["evidence"] for k, c in by.items() if k not in failed)
    assert {c["name"] for c in doc["clusters"]} == {"sim-1", "sim-2"}
    assert all(c["windows_nodes"] and c["timeline"] for c in doc["clusters"])
    for key, c in by.items():
        check_dir = run_dir / "diagnostics" / key[0] / key[1]
        if key not in failed:
            assert c["diagnostics"] == [] and not check_dir.exists()
            continue
        assert c["diagnostics"] and all((run_dir / p).is_file() for p in c["diagnostics"])
        events = (check_dir / "events.txt").read_text()
        assert re.search(r"^THE WAIT ENDED ON: .*Warning FailedAttachVolume on pod/", events,
                         re.M), events[:2000]
        summary = (check_dir / "summary.txt").read_text()
        assert "ended by event: Warning FailedAttachVolume" in summary
        assert any(p.name.startswith("pvc-") for p in check_dir.iterdir())
        assert any(p.name.startswith("pod-") for p in check_dir.iterdir())
        assert sum(p.stat().st_size for p in check_dir.rglob("*") if p.is_file()) < 600_000
    html = (run_dir / "report.html").read_text()
    assert html.count('<details class="failure"') == len(failed)
    assert "THE WAIT ENDED ON" in html


# ------------------------------------------------------------------------------ Chromium


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("no headless Chromium installed (Debian: apt-get install chromium)")


def png_rgb(data: bytes) -> tuple[int, int, list[bytes], int]:
    """Decode an 8-bit RGB/RGBA PNG (what Chromium's screenshots are) into rows."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, b""
    width = height = bpp = 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, chunk = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", chunk[:10])
            assert depth == 8 and colour in (2, 6), (depth, colour)
            bpp = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += chunk
    raw = zlib.decompress(idat)
    stride, rows, prev, i = width * bpp, [], bytearray(width * bpp), 0
    for _ in range(height):
        kind, line = raw[i], bytearray(raw[i + 1:i + 1 + stride])
        i += 1 + stride
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b, c = prev[x], (prev[x - bpp] if x >= bpp else 0)
            if kind == 1:
                line[x] = (line[x] + a) & 255
            elif kind == 2:
                line[x] = (line[x] + b) & 255
            elif kind == 3:
                line[x] = (line[x] + ((a + b) >> 1)) & 255
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) \
                    & 255
        rows.append(bytes(line))
        prev = line
    return width, height, rows, bpp


def test_report_in_headless_chromium(bare_run: tuple[str, Path, dict], tmp_path: Path) -> None:
    browser = chromium()
    _, run_dir, doc = bare_run
    page = (run_dir / "report.html").resolve().as_uri()
    base = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile'}", "--no-first-run"]
    dom = subprocess.run([*base, "--dump-dom", page], capture_output=True, text=True,
                         timeout=120).stdout
    cells = re.findall(r'<td class="cell (\w+)" data-check="([^"]+)" data-cluster="([^"]+)"',
                       dom)
    assert sorted((ch, cl) for _, ch, cl in cells) == sorted(
        (c["id"], c["cluster"]) for c in doc["checks"])
    assert len(cells) == len(ALL) * 2
    assert {o for o, _, _ in cells} == {"passed"}
    shot = tmp_path / "shot.png"
    subprocess.run([*base, f"--screenshot={shot}", "--window-size=900,700", page],
                   capture_output=True, timeout=120)
    width, height, rows, bpp = png_rgb(shot.read_bytes())
    assert (width, height) == (900, 700)
    background = rows[-1][:3]
    pixels = [row[x:x + 3] for row in rows[::4] for x in range(0, len(row), 4 * bpp)]
    differing = sum(1 for p in pixels if p != background)
    assert differing > 0.05 * len(pixels), "the screenshot is blank"
    assert len(set(pixels)) > 20, "the screenshot has almost no colours"


# ------------------------------------------------------------------------ in-process


def minimal_doc(outcomes: dict[str, str]) -> dict:
    checks = [{"id": cid, "title": cid.lower(), "cluster": "c1",
               "nodeid": f"suites/test_x.py::test_x[c1:{cid}]", "outcome": o, "when": "call",
               "duration": 0.5, "start": 1.0, "stop": 1.5, "markers": [],
               "reason": None if o == "passed" else f"{cid} went wrong", "evidence": {},
               "diagnostics": []} for cid, o in outcomes.items()]
    return {"kind": results.KIND, "schema_version": 1,
            "run": {"id": "r1", "started": "2025-01-01T00:00:00Z",
                    "finished": "2025-01-01T00:00:09Z", "duration": 9.0,
                    "winstor_version": "0", "pytest_version": "8", "options": {},
                    "certify": False},
            "clusters": [{"name": "c1", "context": "c1", "reachable": True,
                          "kubernetes_version": "1.31", "zones": ["z1"],
                          "windows_nodes": [], "timeline": [
                              {"name": "pod start", "start": 1.0, "end": 3.0, "duration": 2.0,
                               "detail": "p <script>", "source": "run"}],
                          "summary": results.counts(outcomes.values())}],
            "checks": checks, "summary": results.counts(outcomes.values()),
            "certification": None}


def test_schema_rejects_what_readers_cannot_trust() -> None:
    doc = minimal_doc({"A-01": "passed", "B-01": "failed"})
    assert results.validate(doc) == []
    broken = json.loads(json.dumps(doc))
    broken["checks"][0]["outcome"] = "sort-of"
    del broken["checks"][1]["reason"]
    problems = results.validate(broken)
    assert any(p.startswith("/checks/0/outcome") for p in problems)
    assert any("reason" in p for p in problems)
    with pytest.raises(results.ResultsError, match="schema version 2"):
        results.loads(json.dumps({**doc, "schema_version": 2}))


def test_xunit2_check_refuses_testcase_properties() -> None:
    ok = ('<testsuites><testsuite name="s" tests="1" failures="1" errors="0" skipped="0">'
          '<properties><property name="run" value="x"/></properties>'
          '<testcase classname="m" name="t[c:A-01]" time="0.1"><failure message="m">x'
          '</failure></testcase></testsuite></testsuites>')
    assert results.xunit2_problems(ok) == []
    bad = ok.replace('<failure message="m">x</failure>',
                     '<properties><property name="a" value="b"/></properties>')
    problems = results.xunit2_problems(bad)
    assert any("<properties> is not allowed in <testcase>" in p for p in problems)
    assert any("failures=1 but the suite holds 0" in p for p in problems)
    assert results.xunit2_problems("<testsuites><oops") != []


def test_html_matrix_escapes_and_marks_every_cell() -> None:
    doc = minimal_doc({"A-01": "passed", "B-01": "failed", "C-01": "skipped"})
    doc["checks"][1]["reason"] = 'see https://evil.example/x <img src="x">'
    html = htmlreport.render(doc)
    assert_self_contained(html)
    assert html.count('class="cell ') == 3
    assert 'data-outcome="failed"' in html and "&lt;img" in html
    assert "<svg" in html and "<rect" in html


def test_long_phases_are_announced_once_in_a_while() -> None:
    from types import SimpleNamespace

    from winstor.cluster.target import Phase
    from winstor.plugin.reports import PhaseTicker

    slow = Phase("pod start", 100.0, detail="windows-server-ltsc2019")
    done = Phase("claim", 90.0, end=91.0)
    state = SimpleNamespace(clusters={"sim-1": SimpleNamespace(timeline=[done, slow])})
    ticker = PhaseTicker(state, print, notice=15.0)
    assert ticker.lines(110.0) == []
    assert ticker.lines(116.0) == ["winstor: sim-1: pod start (windows-server-ltsc2019) for 16s"]
    assert ticker.lines(130.0) == []
    assert ticker.lines(147.0) == ["winstor: sim-1: pod start (windows-server-ltsc2019) for 47s"]
