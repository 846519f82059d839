"""`report.html`: one file a person opens instead of reading results.json.

Self-contained on purpose: it is mailed, attached to CI runs and opened on
machines without network access, so it holds no link, script or stylesheet
from anywhere - inline CSS and inline SVG only, no `href` or `src` at all,
and `://` in any text is written as an entity so not even a pasted URL
appears in the markup. It shows the checks x clusters matrix coloured by
outcome, each cluster's facts, a timeline of the slow phases per cluster,
and each failure expandable with its reason, evidence and diagnostics.
"""

from __future__ import annotations

import html
import json
import time
from collections.abc import Callable
from typing import Any

DiagnosticsReader = Callable[[str], "str | None"]

MARK = {"passed": "pass", "failed": "FAIL", "error": "ERROR", "skipped": "skip",
        "not-run": "-"}
HTML_DIAG_LIMIT = 48 * 1024

CSS = """
:root { --pass:#1b7f3b; --pass-bg:#dff3e4; --fail:#b3261e; --fail-bg:#fbe0dd;
        --error:#8a3ffc; --error-bg:#eee2ff; --skip:#8a6d00; --skip-bg:#fdf3c4;
        --none:#777; --none-bg:#eee; --line:#d0d4d9; }
* { box-sizing: border-box; }
body { font: 14px/1.45 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       margin: 0; color: #1d2228; background: #f6f7f9; }
header { background: #1d2a3a; color: #fff; padding: 18px 28px; }
header h1 { margin: 0 0 4px; font-size: 22px; }
header .meta { opacity: .85; font-size: 13px; }
main { padding: 18px 28px 60px; max-width: 1400px; }
section { background: #fff; border: 1px solid var(--line); border-radius: 6px;
          padding: 14px 18px; margin: 0 0 18px; }
h2 { font-size: 17px; margin: 0 0 10px; }
h3 { font-size: 15px; margin: 14px 0 6px; }
table { border-collapse: collapse; }
th, td { border: 1px solid var(--line); padding: 4px 8px; text-align: left;
         vertical-align: top; }
th { background: #f0f2f5; font-weight: 600; }
table.matrix td.cell { text-align: center; font-weight: 700; min-width: 84px; }
td.passed { color: var(--pass); background: var(--pass-bg); }
td.failed { color: var(--fail); background: var(--fail-bg); }
td.error { color: var(--error); background: var(--error-bg); }
td.skipped { color: var(--skip); background: var(--skip-bg); }
td.not-run { color: var(--none); background: var(--none-bg); }
.badge { display: inline-block; padding: 1px 8px; border-radius: 10px; font-weight: 700;
         font-size: 12px; }
.badge.passed { color: var(--pass); background: var(--pass-bg); }
.badge.failed { color: var(--fail); background: var(--fail-bg); }
.badge.error { color: var(--error); background: var(--error-bg); }
.badge.skipped { color: var(--skip); background: var(--skip-bg); }
.counts span { margin-right: 14px; }
.verdict { font-size: 16px; font-weight: 700; padding: 8px 12px; border-radius: 6px; }
.verdict.passed { color: var(--pass); background: var(--pass-bg); }
.verdict.failed { color: var(--fail); background: var(--fail-bg); }
details { margin: 6px 0; }
details > summary { cursor: pointer; }
details.failure { border: 1px solid var(--line); border-radius: 6px; padding: 6px 10px; }
details.failure[open] { background: #fcfcfd; }
pre { background: #f3f4f6; border: 1px solid #e3e5e8; border-radius: 4px; padding: 8px;
      overflow: auto; max-height: 420px; white-space: pre-wrap; word-break: break-word;
      font: 12px/1.4 ui-monospace, Menlo, Consolas, monospace; }
.muted { color: #69707a; }
.facts td:first-child { color: #4a515a; white-space: nowrap; }
svg text { font: 11px -apple-system, "Segoe UI", Roboto, Arial, sans-serif; fill: #1d2228; }
"""

_PHASE_COLOURS = {"events": "#e59f00", "check": "#7aa6d8", "run": "#2f6db5"}
_NAME_COLOURS = {"volume provision": "#b15928", "attach": "#e31a1c", "image pull": "#6a3d9a",
                 "pod start": "#1f78b4", "node probes start": "#33a02c",
                 "pod replace": "#ff7f00", "cleanup": "#777777", "namespace": "#a6cee3",
                 "claim": "#fdbf6f"}


def esc(value: Any) -> str:
    """Escaped text, with `://` broken up so no URL appears in the markup."""
    return html.escape("" if value is None else str(value), quote=True).replace(
        "://", ":&#47;&#47;")


def _iso(ts: float | None) -> str:
    if not ts:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def render(doc: dict[str, Any], read_diagnostics: DiagnosticsReader | None = None) -> str:
    """The whole page for one results document; diagnostics files are inlined
    through `read_diagnostics(relative_path)` when given."""
    run = doc["run"]
    clusters = [c["name"] for c in doc["clusters"]]
    for c in doc["checks"]:
        if c["cluster"] not in clusters:
            clusters.append(c["cluster"])
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>winstor run {esc(run['id'])}</title>",
        f"<style>{CSS}</style></head><body>",
        _header(doc),
        "<main>",
        _certification(doc),
        _matrix(doc, clusters),
        _failures(doc, read_diagnostics),
        _clusters(doc),
        _skips(doc),
        "</main></body></html>",
    ]
    return "\n".join(p for p in parts if p)


def _header(doc: dict[str, Any]) -> str:
    run, s = doc["run"], doc["summary"]
    counts = " ".join(f'<span class="badge {o}">{s[o]} {o}</span>'
                      for o in ("passed", "failed", "error", "skipped") if s.get(o))
    return (f'<header><h1>winstor: Windows storage conformance</h1>'
            f'<div class="meta">run <b>{esc(run["id"])}</b> · started {esc(run["started"])} · '
            f'{run.get("duration", 0):.1f}s · winstor {esc(run["winstor_version"])} · '
            f'pytest {esc(run.get("pytest_version", "?"))} · '
            f'{len(doc["clusters"])} cluster(s), {s["total"]} check result(s)</div>'
            f'<div class="meta counts">{counts}</div></header>')


def _certification(doc: dict[str, Any]) -> str:
    cert = doc.get("certification")
    if not cert:
        return ""
    rows = []
    for name, v in cert["clusters"].items():
        reasons = "<br>".join(esc(r) for r in v["reasons"]) or "all checks passed"
        rows.append(f'<tr><td>{esc(name)}</td><td><span class="badge '
                    f'{"passed" if v["verdict"] == "passed" else "failed"}">'
                    f'{esc(v["verdict"])}</span></td><td>{reasons}</td>'
                    f'<td>{esc(v.get("bundle") or "-")}</td></tr>')
    amis = ", ".join(cert.get("expect_amis") or []) or "any"
    return (f'<section id="certification"><h2>Certification</h2>'
            f'<div class="verdict {esc(cert["verdict"])}">certification '
            f'{esc(cert["verdict"].upper())}</div><p class="muted">expected AMIs: {esc(amis)}'
            f'</p><table><tr><th>cluster</th><th>verdict</th><th>reasons</th>'
            f'<th>bundle</th></tr>{"".join(rows)}</table></section>')


def _matrix(doc: dict[str, Any], clusters: list[str]) -> str:
    by_key = {(c["id"], c["cluster"]): c for c in doc["checks"]}
    ids: list[str] = []
    titles: dict[str, str] = {}
    for c in doc["checks"]:
        if c["id"] not in titles:
            ids.append(c["id"])
            titles[c["id"]] = c["title"]
    head = "".join(f'<th class="cluster">{esc(n)}</th>' for n in clusters)
    rows = []
    for cid in ids:
        cells = []
        for name in clusters:
            c = by_key.get((cid, name))
            outcome = c["outcome"] if c else "not-run"
            tip = (c.get("reason") or outcome) if c else "not run on this cluster"
            duration = f" ({c['duration']:.2f}s)" if c else ""
            cells.append(f'<td class="cell {outcome}" data-check="{esc(cid)}" '
                         f'data-cluster="{esc(name)}" data-outcome="{outcome}" '
                         f'title="{esc(str(tip)[:300])}{esc(duration)}">{MARK[outcome]}</td>')
        rows.append(f'<tr><th scope="row">{esc(cid)}</th><td class="muted">'
                    f'{esc(titles[cid])}</td>{"".join(cells)}</tr>')
    per = []
    for name in clusters:
        mine = [c["outcome"] for c in doc["checks"] if c["cluster"] == name]
        per.append(f"<b>{esc(name)}</b>: " + ", ".join(
            f"{mine.count(o)} {o}" for o in ("passed", "failed", "error", "skipped")))
    return (f'<section id="matrix"><h2>Checks &times; clusters</h2>'
            f'<table class="matrix"><thead><tr><th>check</th><th>what it asserts</th>{head}'
            f'</tr></thead><tbody>{"".join(rows)}</tbody></table>'
            f'<p class="muted">{" · ".join(per)}</p></section>')


def _pre(text: str) -> str:
    return f"<pre>{esc(text)}</pre>"


def _failures(doc: dict[str, Any], read: DiagnosticsReader | None) -> str:
    bad = [c for c in doc["checks"] if c["outcome"] in ("failed", "error")]
    if not bad:
        return ('<section id="failures"><h2>Failures</h2><p>None: every check that ran '
                'passed or was skipped.</p></section>')
    items = []
    for c in bad:
        diag = []
        for rel in c.get("diagnostics") or []:
            text = read(rel) if read else None
            if text is None:
                diag.append(f"<details><summary>{esc(rel)}</summary>"
                            f'<p class="muted">not available</p></details>')
                continue
            if len(text) > HTML_DIAG_LIMIT:
                text = text[:HTML_DIAG_LIMIT] + "\n... [shortened here; the full file is in " \
                    "the run directory]"
            opened = " open" if rel.endswith(("summary.txt", "events.txt")) else ""
            diag.append(f"<details{opened}><summary>{esc(rel)} "
                        f'<span class="muted">({len(text)} chars)</span></summary>'
                        f"{_pre(text)}</details>")
        evidence = json.dumps(c.get("evidence") or {}, indent=2, sort_keys=True)
        first = (c.get("reason") or "").strip().splitlines()[:1]
        items.append(
            f'<details class="failure" data-check="{esc(c["id"])}" '
            f'data-cluster="{esc(c["cluster"])}"><summary><span class="badge {c["outcome"]}">'
            f'{esc(c["outcome"])}</span> <b>{esc(c["id"])}</b> on <b>{esc(c["cluster"])}</b>'
            f' - {esc(first[0][:240] if first else c["title"])}</summary>'
            f'<h3>Reason</h3>{_pre(c.get("reason") or "(none given)")}'
            f'<p class="muted">{esc(c["title"])} · {esc(c["nodeid"])} · decided in '
            f'{esc(c.get("when") or "?")} · {c["duration"]:.2f}s</p>'
            f'<details><summary>Evidence</summary>{_pre(evidence)}</details>'
            f'<h3>Diagnostics</h3>{"".join(diag) or "<p class=muted>none collected</p>"}'
            f'</details>')
    return f'<section id="failures"><h2>Failures ({len(bad)})</h2>{"".join(items)}</section>'


def _clusters(doc: dict[str, Any]) -> str:
    out = ['<section id="clusters"><h2>Clusters</h2>']
    for c in doc["clusters"]:
        out.append(f'<h3>{esc(c["name"])}</h3>')
        if c.get("error"):
            out.append(f'<p class="muted">{esc(c["error"])}</p>')
        aws = c.get("aws") or {}
        rows = [("context", c.get("context")),
                ("Kubernetes", c.get("server_version") or c.get("kubernetes_version")),
                ("zones", ", ".join(c.get("zones") or []) or "-"),
                ("AWS facts", ("yes" if aws.get("available") else "no")
                 + (f" ({aws['region']})" if aws.get("region") else "")),
                ("Linux nodes", c.get("linux_nodes", 0))]
        facts = c.get("facts") or {}
        if facts.get("target"):
            rows.insert(0, ("verdicts reached on", facts["target"]))
        if isinstance(facts.get("server"), dict):
            rows.append(("API server /version", ", ".join(
                f"{k} {v}" for k, v in facts["server"].items())))
        for key in ("default_class", "fsx", "hostpath_exposure"):
            if key in (c.get("facts") or {}):
                rows.append((key.replace("_", " "), json.dumps(c["facts"][key],
                                                               sort_keys=True)))
        out.append('<table class="facts">' + "".join(
            f"<tr><td>{esc(k)}</td><td>{esc(v)}</td></tr>" for k, v in rows) + "</table>")
        nodes = c.get("windows_nodes") or []
        if nodes:
            cols = ("name", "build", "zone", "instance_id", "instance_type", "ami_id",
                    "ami_name", "eks_optimized", "csi_proxy_version", "csi_proxy_expected",
                    "ready")
            out.append("<h3>Windows nodes</h3><table><tr>" + "".join(
                f"<th>{esc(col.replace('_', ' '))}</th>" for col in cols) + "</tr>" + "".join(
                "<tr>" + "".join(f"<td>{esc(n.get(col) if n.get(col) is not None else '-')}"
                                 f"</td>" for col in cols) + "</tr>" for n in nodes)
                + "</table>")
        else:
            out.append('<p class="muted">No Windows nodes recorded.</p>')
        notes = c.get("notes") or {}
        for kind in ("leftovers", "kept", "notes"):
            for line in notes.get(kind) or []:
                out.append(f'<p><b>{esc(kind)}</b>: {esc(line)}</p>')
        out.append("<h3>Timeline</h3>" + timeline_svg(c.get("timeline") or []))
    out.append("</section>")
    return "".join(out)


def timeline_svg(phases: list[dict[str, Any]], width: int = 1100) -> str:
    """The cluster's slow phases as bars on a shared time axis (inline SVG)."""
    timed = [p for p in phases if p.get("start")]
    if not timed:
        return '<p class="muted">No timed phases were recorded.</p>'
    t0 = min(p["start"] for p in timed)
    t1 = max((p.get("end") or p["start"]) for p in timed)
    span = max(t1 - t0, 0.001)
    label_w, right = 300, 20
    plot = width - label_w - right
    lanes: list[str] = []
    rows: list[tuple[int, dict[str, Any]]] = []
    for p in sorted(timed, key=lambda p: p["start"]):
        lane = "checks" if p.get("source") == "check" else f'{p["name"]}: {p.get("detail", "")}'
        if lane not in lanes:
            lanes.append(lane)
        rows.append((lanes.index(lane), p))
    row_h, top = 20, 24
    height = top + row_h * len(lanes) + 10
    svg = [f'<svg class="timeline" role="img" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" aria-label="timeline">']
    for i in range(6):
        x = label_w + plot * i / 5
        svg.append(f'<line x1="{x:.1f}" y1="{top - 6}" x2="{x:.1f}" y2="{height - 6}" '
                   f'stroke="#e3e5e8"/><text x="{x + 2:.1f}" y="{top - 10}">'
                   f'{span * i / 5:.2f}s</text>')
    for i, lane in enumerate(lanes):
        y = top + i * row_h
        if i % 2:
            svg.append(f'<rect x="0" y="{y}" width="{width}" height="{row_h}" '
                       f'fill="#f7f8fa"/>')
        svg.append(f'<text x="4" y="{y + 14}">{esc(lane[:48])}</text>')
    for i, p in rows:
        start = p["start"] - t0
        end = (p.get("end") or t1) - t0
        x = label_w + plot * start / span
        w = max(plot * (end - start) / span, 2.0)
        colour = _NAME_COLOURS.get(p["name"], _PHASE_COLOURS.get(p.get("source", "run"),
                                                                 "#2f6db5"))
        dur = p.get("duration")
        tip = (f'{p["name"]} {p.get("detail", "")}: '
               + (f"{dur:.3f}s" if isinstance(dur, (int, float)) else "did not end")
               + f' (from {p.get("source", "run")})')
        svg.append(f'<rect x="{x:.1f}" y="{top + i * row_h + 3}" width="{w:.1f}" '
                   f'height="{row_h - 6}" rx="2" fill="{colour}"><title>{esc(tip)}</title>'
                   f'</rect>')
    svg.append("</svg>")
    return "".join(svg)


def _skips(doc: dict[str, Any]) -> str:
    skipped = [c for c in doc["checks"] if c["outcome"] == "skipped"]
    if not skipped:
        return ""
    rows = "".join(f'<tr><td>{esc(c["id"])}</td><td>{esc(c["cluster"])}</td>'
                   f'<td>{esc(c.get("reason") or "")}</td></tr>' for c in skipped)
    return (f'<section id="skipped"><h2>Skipped ({len(skipped)})</h2><table><tr><th>check</th>'
            f'<th>cluster</th><th>reason</th></tr>{rows}</table></section>')
