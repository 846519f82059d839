"""`results.json`: the machine-readable record of a run, and its versioned schema.

A nightly dashboard, a vendor's certification and `winstor report` all read
this file long after the run, with a winstor that may be newer than the one
that wrote it. So the document says which schema it follows
(`schema_version`), the schema below is the contract (every field has a
description; `winstor report --schema` prints it), and readers validate
before trusting. Adding an optional field keeps version 1; renaming,
removing or changing the meaning of one makes version 2.

Also here: the structural check of JUnit XML against the xunit2 rules, used
by the self-tests and by `winstor verify-bundle`.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1
KIND = "winstor-results"
OUTCOMES = ("passed", "failed", "error", "skipped")


class ResultsError(Exception):
    """A results file that cannot be read or does not follow the schema (one line)."""


def _s(description: str, **kw: Any) -> dict[str, Any]:
    return {"type": "string", "description": description, **kw}


def _ns(description: str) -> dict[str, Any]:
    return {"type": ["string", "null"], "description": description}


def _obj(description: str, props: dict[str, Any], required: Iterable[str] = (),
         extra: bool = False) -> dict[str, Any]:
    return {"type": "object", "description": description, "properties": props,
            "required": list(required), "additionalProperties": extra}


_COUNTS = _obj("Checks by outcome.", {o: {"type": "integer", "minimum": 0} for o in OUTCOMES}
               | {"total": {"type": "integer", "minimum": 0}}, required=OUTCOMES)

_NODE = _obj("A Windows node as the run found it.", {
    "name": _s("Node name."),
    "build": _ns("Its node.kubernetes.io/windows-build label."),
    "os_image": _ns("status.nodeInfo.osImage."),
    "kernel_version": _ns("status.nodeInfo.kernelVersion (the full Windows build)."),
    "kubelet_version": _ns("status.nodeInfo.kubeletVersion."),
    "ready": {"type": "boolean", "description": "Whether its Ready condition was True."},
    "zone": _ns("topology.kubernetes.io/zone label."),
    "provider_id": _ns("spec.providerID as the node reports it (aws:///<zone>/<instance>)."),
    "instance_id": _ns("EC2 instance id from spec.providerID; null when it names none."),
    "instance_type": _ns("node.kubernetes.io/instance-type label, else EC2's answer."),
    "ami_id": _ns("The AMI the instance was launched from (EC2); null without AWS facts."),
    "ami_name": _ns("That AMI's name (EC2)."),
    "ami_owner": _ns("That AMI's owner account."),
    "eks_optimized": {"type": ["boolean", "null"],
                      "description": "An EKS-optimized Windows AMI owned by Amazon; "
                                     "null when unknown."},
    "csi_proxy_version": _ns("csi-proxy version the csi-proxy probe found (null when the "
                             "csi-proxy checks did not run or found none)."),
    "csi_proxy_expected": _ns("csi-proxy version the node's AMI should ship, when known."),
}, required=("name", "build", "ami_id", "csi_proxy_version", "zone", "instance_id"))

_PHASE = _obj("A slow phase of the run on this cluster.", {
    "name": _s("What happened (pod start, volume provision, attach, image pull, probes...)."),
    "start": {"type": "number", "description": "Start, seconds since the epoch."},
    "end": {"type": ["number", "null"], "description": "End, seconds since the epoch; "
                                                      "null if it never ended."},
    "duration": {"type": ["number", "null"], "description": "Seconds."},
    "detail": _s("Which object or check."),
    "source": {"enum": ["run", "events", "check"],
               "description": "run: timed by winstor; events: from Kubernetes events "
                              "(1 s resolution); check: a check's own duration."},
}, required=("name", "start", "end", "detail", "source"))

_CLUSTER = _obj("One cluster of the run and its facts.", {
    "name": _s("Cluster name as in test ids (sim-1, a context, a clusters-file name)."),
    "context": _ns("kubeconfig context."),
    "reachable": {"type": "boolean", "description": "Whether the run could connect."},
    "error": _ns("Why facts are missing, when they are."),
    "kubernetes_version": _ns("major.minor from /version."),
    "server_version": _ns("gitVersion from /version."),
    "zones": {"type": "array", "items": {"type": "string"},
              "description": "Zones of the cluster's nodes."},
    "aws": _obj("AWS access for facts.", {
        "available": {"type": "boolean", "description": "Whether AWS facts could be read."},
        "region": _ns("Region used."),
        "error": _ns("Why AWS facts could not be read, when a session or a read failed.")},
        required=("available",)),
    "windows_nodes": {"type": "array", "items": _NODE, "description": "Windows nodes."},
    "linux_nodes": {"type": "integer", "minimum": 0, "description": "How many Linux nodes."},
    "facts": {"type": "object", "description": "Further facts checks recorded (default "
                                               "class, FSx, SMB mappings, hostPath exposure)."},
    "timeline": {"type": "array", "items": _PHASE, "description": "Slow phases, by start."},
    "notes": _obj("What teardown left, kept or noted.", {
        k: {"type": "array", "items": {"type": "string"}} for k in ("leftovers", "kept",
                                                                    "notes")}),
    "summary": _COUNTS,
}, required=("name", "reachable", "kubernetes_version", "zones", "windows_nodes", "timeline",
             "summary"))

_CHECK = _obj("One check on one cluster.", {
    "id": _s("Stable check id, e.g. EBS-PERSIST-01.", pattern=r"^[A-Z0-9]+(-[A-Z0-9]+)*$"),
    "title": _s("What the check asserts."),
    "cluster": _s("Cluster name."),
    "nodeid": _s("pytest node id (carries cluster and check id)."),
    "outcome": {"enum": list(OUTCOMES), "description": "error: a fixture or teardown failed; "
                                                       "skipped counts as failed when "
                                                       "certifying."},
    "when": {"enum": ["setup", "call", "teardown"], "description": "Phase that decided it."},
    "duration": {"type": "number", "minimum": 0, "description": "Seconds, all phases."},
    "start": {"type": ["number", "null"], "description": "Seconds since the epoch."},
    "stop": {"type": ["number", "null"], "description": "Seconds since the epoch."},
    "markers": {"type": "array", "items": {"type": "string"},
                "description": "Capability markers (ebs, smb, aws...)."},
    "reason": _ns("Failure, error or skip reason: one paragraph, no traceback."),
    "evidence": {"type": "object", "description": "What the check saw: probe outputs, "
                                                  "object names, versions (redacted)."},
    "diagnostics": {"type": "array", "items": {"type": "string"},
                    "description": "Files under the run directory (diagnostics/...) for a "
                                   "failed check; empty otherwise."},
    "worker": _ns("pytest-xdist worker that ran it (gw0, gw1...); null in a serial run."),
}, required=("id", "title", "cluster", "nodeid", "outcome", "duration", "reason", "evidence",
             "diagnostics"))

_CERT = _obj("Present for --certify runs.", {
    "verdict": {"enum": ["passed", "failed"], "description": "passed: every check passed on "
                                                             "every cluster, nothing skipped "
                                                             "or deselected, AWS facts "
                                                             "complete, AMIs as expected."},
    "expect_amis": {"type": "array", "items": {"type": "string"}},
    "clusters": {"type": "object", "additionalProperties": _obj("Verdict for one cluster.", {
        "verdict": {"enum": ["passed", "failed"]},
        "reasons": {"type": "array", "items": {"type": "string"}},
        "bundle": _ns("File name of its certification bundle.")},
        required=("verdict", "reasons"))},
}, required=("verdict", "clusters", "expect_amis"))

SCHEMA: dict[str, Any] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "urn:winstor:results:v1",
    "title": "winstor run results, version 1",
    "description": "What one winstor run checked, on which clusters, nodes and AMIs, what each "
                   "check saw, and why failures failed. Times are seconds since the epoch or "
                   "ISO 8601 UTC. Secrets are redacted.",
    "type": "object",
    "additionalProperties": False,
    "required": ["kind", "schema_version", "run", "clusters", "checks", "summary"],
    "properties": {
        "kind": {"const": KIND},
        "schema_version": {"const": SCHEMA_VERSION,
                           "description": "Bumped on incompatible changes."},
        "run": _obj("The run.", {
            "id": _s("Run id; also the winstor.io/run label on everything it created."),
            "started": _s("ISO 8601 UTC."),
            "finished": _s("ISO 8601 UTC."),
            "duration": {"type": "number", "minimum": 0},
            "winstor_version": _s("winstor's version."),
            "pytest_version": _s("pytest's version."),
            "python_version": _s("Python's version."),
            "exit_status": {"type": "integer", "description": "pytest's exit status."},
            "args": {"type": "array", "items": {"type": "string"},
                     "description": "Command-line arguments (redacted)."},
            "options": {"type": "object", "description": "Effective configuration: profile, "
                                                         "targets, timeouts, ... (redacted)."},
            "certify": {"type": "boolean"},
            "expect_amis": {"type": "array", "items": {"type": "string"}},
            "pytest_counts": {"type": "object", "additionalProperties": {"type": "integer"},
                              "description": "Outcomes as pytest's summary line counts them."},
        }, required=("id", "started", "finished", "winstor_version", "options", "certify")),
        "clusters": {"type": "array", "items": _CLUSTER},
        "checks": {"type": "array", "items": _CHECK},
        "summary": _COUNTS,
        "certification": {"oneOf": [{"type": "null"}, _CERT]},
    },
}


def validate(doc: Any) -> list[str]:
    """Schema violations, one line each (empty when valid)."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(SCHEMA)
    out = []
    for err in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
        where = "/" + "/".join(str(p) for p in err.absolute_path)
        out.append(f"{where}: {err.message[:300]}")
    return out


def loads(text: str, what: str = "results") -> dict[str, Any]:
    """Parse and validate; `ResultsError` names the first problem."""
    try:
        doc = json.loads(text)
    except ValueError as err:
        raise ResultsError(f"{what} is not JSON ({err})") from None
    if not isinstance(doc, dict) or doc.get("kind") != KIND:
        raise ResultsError(f"{what} is not a winstor results file (no \"kind\": \"{KIND}\")")
    if doc.get("schema_version") != SCHEMA_VERSION:
        raise ResultsError(f"{what} follows results schema version "
                           f"{doc.get('schema_version')!r}; this winstor reads version "
                           f"{SCHEMA_VERSION}")
    problems = validate(doc)
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        raise ResultsError(f"{what} does not follow the results schema: {problems[0]}{more}")
    return doc


def load(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ResultsError(f"{p}: no such file") from None
    except IsADirectoryError:
        raise ResultsError(f"{p} is a directory; give the results.json inside it") from None
    except (OSError, UnicodeDecodeError) as err:
        raise ResultsError(f"{p}: cannot read ({err})") from None
    return loads(text, str(p))


def counts(outcomes: Iterable[str]) -> dict[str, int]:
    c = Counter(outcomes)
    out = {o: c.get(o, 0) for o in OUTCOMES}
    out["total"] = sum(out.values())
    return out


def jsonable(obj: Any, limit: int = 64 * 1024) -> Any:
    """A JSON-safe, bounded copy of what a check recorded."""
    try:
        text = json.dumps(obj, default=str, sort_keys=True)
    except (TypeError, ValueError):
        text = json.dumps(str(obj))
    if len(text) <= limit:
        return json.loads(text)

    def shrink(v: Any) -> Any:
        if isinstance(v, str) and len(v) > 2000:
            return v[:2000] + f"... [{len(v) - 2000} more characters]"
        if isinstance(v, list):
            return [shrink(x) for x in v[:50]] + ([f"... [{len(v) - 50} more]"]
                                                  if len(v) > 50 else [])
        if isinstance(v, dict):
            return {k: shrink(x) for k, x in v.items()}
        return v
    smaller = shrink(json.loads(text))
    if len(json.dumps(smaller)) <= limit:
        return smaller
    return {"truncated": True, "preview": text[:limit // 2]}


def for_cluster(doc: dict[str, Any], name: str) -> dict[str, Any]:
    """The document restricted to one cluster (what its certification bundle holds)."""
    out = json.loads(json.dumps(doc))
    out["clusters"] = [c for c in out["clusters"] if c["name"] == name]
    out["checks"] = [c for c in out["checks"] if c["cluster"] == name]
    out["summary"] = counts(c["outcome"] for c in out["checks"])
    cert = out.get("certification")
    if cert:
        mine = {k: v for k, v in cert["clusters"].items() if k == name}
        cert["clusters"] = mine
        cert["verdict"] = "passed" if mine and all(
            v["verdict"] == "passed" for v in mine.values()) else "failed"
    return out


# ------------------------------------------------------------------------------ JUnit

# The xunit2 rules (the Jenkins/Surefire junit-10 schema that pytest's junit_family=xunit2
# targets): attributes per element, children per element, no <properties> in a testcase.
_JUNIT_ATTRS = {
    "testsuites": ({"name", "time", "tests", "failures", "errors", "skipped"}, set()),
    "testsuite": ({"name", "tests", "failures", "errors", "group", "time", "skipped",
                   "timestamp", "hostname", "id", "package", "file", "log", "url", "version"},
                  {"name", "tests", "failures", "errors"}),
    "testcase": ({"name", "time", "classname", "group"}, {"name"}),
    "properties": (set(), set()),
    "property": ({"name", "value"}, {"name", "value"}),
    "failure": ({"type", "message"}, set()),
    "error": ({"type", "message"}, set()),
    "skipped": ({"type", "message"}, set()),
    "system-out": (set(), set()),
    "system-err": (set(), set()),
}
_JUNIT_CHILDREN = {
    "testsuites": {"testsuite"},
    "testsuite": {"testsuite", "properties", "testcase", "system-out", "system-err"},
    "testcase": {"skipped", "error", "failure", "system-out", "system-err"},
    "properties": {"property"},
}


def xunit2_problems(xml_text: str) -> list[str]:
    """Where a JUnit XML document breaks the xunit2 rules (empty when it follows them).

    A structural check written from the schema's rules rather than an XSD
    validator, which would need lxml or xmlschema: element nesting, allowed
    and required attributes, numeric counts and times, and the count
    attributes agreeing with the test cases.
    """
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError as err:
        return [f"not well-formed XML: {err}"]
    problems: list[str] = []
    if root.tag not in ("testsuites", "testsuite"):
        return [f"root element is <{root.tag}>, not <testsuites> or <testsuite>"]

    def walk(el: ET.Element, path: str) -> None:
        allowed, required = _JUNIT_ATTRS.get(el.tag, (None, None))
        if allowed is None:
            problems.append(f"{path}: element <{el.tag}> is not part of xunit2")
            return
        for a in el.attrib:
            if a not in allowed:
                problems.append(f"{path}: attribute {a!r} is not allowed on <{el.tag}>")
        for a in required or ():
            if a not in el.attrib:
                problems.append(f"{path}: <{el.tag}> lacks required attribute {a!r}")
        for a in ("tests", "failures", "errors", "skipped"):
            if a in el.attrib and not el.attrib[a].isdigit():
                problems.append(f"{path}: {a}={el.attrib[a]!r} is not a count")
        if "time" in el.attrib:
            try:
                float(el.attrib["time"])
            except ValueError:
                problems.append(f"{path}: time={el.attrib['time']!r} is not a number")
        children = _JUNIT_CHILDREN.get(el.tag, set())
        for i, child in enumerate(el):
            if child.tag not in children:
                problems.append(f"{path}/{child.tag}[{i}]: <{child.tag}> is not allowed in "
                                f"<{el.tag}>")
                continue
            walk(child, f"{path}/{child.tag}[{i}]")
        if el.tag == "testsuite":
            cases = el.findall("testcase")
            # `tests` is left out: pytest counts a test that passes and then errors in
            # teardown twice there, with one <testcase>.
            got = {"failures": sum(1 for c in cases if c.find("failure") is not None),
                   "errors": sum(len(c.findall("error")) for c in cases),
                   "skipped": sum(1 for c in cases if c.find("skipped") is not None)}
            for a, n in got.items():
                declared = el.attrib.get(a, "")
                if declared.isdigit() and int(declared) != n:
                    problems.append(f"{path}: {a}={declared} but the suite holds {n}")

    walk(root, root.tag)
    return problems
