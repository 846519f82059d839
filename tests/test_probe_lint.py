"""Every probe parses, follows the Windows PowerShell 5.1 rules, and matches its sim twin.

The probes run on real ltsc2019 nodes, whose PowerShell is 5.1; a PowerShell 7
construct there is a syntax error that only shows up on a real cluster. So
each probe is parsed with tree-sitter-powershell and scanned for what 5.1
lacks. The linter lives here, and the second half of this file shows it can
fail: one small bad snippet per rule.

The last part runs every probe end to end against the sim: build the script,
encode it, hand it to the sim's PowerShell, parse the answer — and checks the
twin's keys against the keys the probe's own `[ordered]@{}` blocks define.
"""

from __future__ import annotations

import base64
import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from winstor.cluster import probes
from winstor.sim.nodes import powershell, twins
from winstor.sim.nodes.windows import ContainerView, SmbShare, Volume, WindowsNode

PROBE_FILES = sorted(probes.PROBES_DIR.glob("*.ps1"))

# ------------------------------------------------------------------------ linter


@dataclass(frozen=True)
class Finding:
    rule: str
    line: int  # 1-based
    column: int  # 1-based
    message: str

    def __str__(self) -> str:
        return f"{self.line}:{self.column}: [{self.rule}] {self.message}"


@functools.cache
def _parser() -> Any:
    """The PowerShell grammar, an optional extra: only the tests that lint (all go
    through `lint`) are skipped without it, not the runner and twin tests."""
    ts = pytest.importorskip("tree_sitter")
    tsp = pytest.importorskip("tree_sitter_powershell")
    return ts.Parser(ts.Language(tsp.language()))

# Parameters that exist only in PowerShell 6+/7 (5.1 rejects them).
_PS7_PARAMETERS = ("parallel", "asbytestream", "ashashtable", "asarray", "enumsasstrings")
# Cmdlets whose default encoding differs between 5.1 and 7 (write with [IO.File]).
_FILE_WRITERS = {"set-content", "add-content", "out-file", "sc", "ac", "tee-object", "tee"}
_STRINGY = {"comment", "string_literal"}
_HEADER = re.compile(r"^# winstor-probe: [a-z0-9][a-z0-9-]* v[1-9][0-9]*$")


def _walk(node: Any) -> Any:
    yield node
    for child in node.children:
        yield from _walk(child)


def _position(text: str, offset: int) -> tuple[int, int]:
    before = text.encode("utf-8")[:offset].decode("utf-8", errors="ignore")
    line = before.count("\n") + 1
    column = len(before) - (before.rfind("\n") + 1) + 1
    return line, column


def _code_only(source: bytes, root: Any) -> str:
    """The source with comments and string contents blanked (newlines kept)."""
    masked = bytearray(source)
    for node in _walk(root):
        if node.type in _STRINGY:
            for index in range(node.start_byte, node.end_byte):
                if masked[index] not in (0x0A, 0x0D):
                    masked[index] = 0x20
    return masked.decode("utf-8", errors="replace")


def lint(text: str, name: str | None = None) -> list[Finding]:
    """Findings for one probe (or snippet); an empty list means it is fit for 5.1."""
    findings: list[Finding] = []
    source = text.encode("utf-8")
    tree = _parser().parse(source)
    root = tree.root_node

    if name is not None:
        first = text.split("\n", 1)[0].rstrip("\r")
        if not _HEADER.match(first):
            findings.append(Finding("header", 1, 1, f"first line {first!r} is not a probe header"))
        elif probes.parse_header(first) is None or probes.parse_header(first)[0] != name:
            findings.append(Finding("header", 1, 1, f"header does not name probe {name!r}"))
        if not re.search(r"(?m)^\$ErrorActionPreference\s*=\s*'Stop'\s*$", text):
            findings.append(
                Finding("error-action", 1, 1, "missing top-level $ErrorActionPreference = 'Stop'")
            )

    # Token-level rules, on the code with strings and comments blanked out.
    code = _code_only(source, root)
    for line_no, line in enumerate(code.split("\n"), start=1):
        for match in re.finditer(r"&&|\|\||\?\?=?|\?\.|\?\[", line):
            token = match.group()
            rule = {
                "&&": "pipeline-chain",
                "||": "pipeline-chain",
                "??": "null-coalescing",
                "??=": "null-coalescing",
                "?.": "null-conditional",
                "?[": "null-conditional",
            }[token]
            findings.append(Finding(rule, line_no, match.start() + 1, f"{token!r} is not in 5.1"))
        for match in re.finditer(r"(?<=\s)\?(?=\s)", line):
            before = line[: match.start()].rstrip()
            if before and before[-1] not in "|;({=":
                findings.append(
                    Finding("ternary", line_no, match.start() + 1, "'? :' ternary is not in 5.1")
                )

    # Tree rules.
    for node in _walk(root):
        line, column = node.start_point[0] + 1, node.start_point[1] + 1
        if node.type == "command_parameter":
            parameter = node.text.decode().lstrip("-").rstrip(":").lower()
            for banned in _PS7_PARAMETERS:
                if len(parameter) >= 5 and banned.startswith(parameter):
                    findings.append(
                        Finding("ps7-parameter", line, column, f"-{banned} is not in 5.1")
                    )
        elif node.type == "command":
            name_node = node.child_by_field_name("command_name")
            command = name_node.text.decode().lower() if name_node is not None else ""
            if command in _FILE_WRITERS:
                findings.append(
                    Finding(
                        "file-write",
                        line,
                        column,
                        f"{command} writes a 5.1-specific encoding; use [IO.File]::WriteAllText",
                    )
                )
            if command == "convertto-json":
                parameters = [
                    child.text.decode().lstrip("-").rstrip(":").lower()
                    for child in _walk(node)
                    if child.type == "command_parameter"
                ]
                if not any(p and "depth".startswith(p) for p in parameters):
                    findings.append(
                        Finding("json-depth", line, column, "ConvertTo-Json without -Depth")
                    )
        elif node.type == "redirection":
            operator = next((c for c in node.children if "file_redirection" in c.type), None)
            target = next((c for c in node.children if c.type == "redirected_file_name"), None)
            if (
                operator is not None
                and target is not None
                and target.text.decode().strip().lower() != "$null"
            ):
                findings.append(Finding("file-write", line, column, "'>' writes UTF-16 in 5.1"))

    if root.has_error:
        for node in _walk(root):
            if node.type == "ERROR" or node.is_missing:
                line, column = node.start_point[0] + 1, node.start_point[1] + 1
                findings.append(Finding("syntax", line, column, "syntax error"))
                break
    return findings


# ------------------------------------------------------------- the probes themselves


@pytest.mark.parametrize("path", PROBE_FILES, ids=[p.stem for p in PROBE_FILES])
def test_probe_passes_lint(path: Path) -> None:
    findings = lint(path.read_text(encoding="utf-8"), name=path.stem)
    assert not findings, "\n".join(f"{path.name}:{f}" for f in findings)


@pytest.mark.parametrize("path", PROBE_FILES, ids=[p.stem for p in PROBE_FILES])
def test_script_as_sent_passes_lint(path: Path) -> None:
    """What the node parses: header, parameters, the shared prelude, the body."""
    script = probes.build_script(probes.load_probe(path.stem), {"path": "C:\\data"})
    findings = lint(script, name=path.stem)
    assert not findings, "\n".join(f"{path.name} (as sent):{f}" for f in findings)


def test_probes_exist() -> None:
    assert {p.stem for p in PROBE_FILES} >= {
        "write-marker",
        "read-marker",
        "list-dir",
        "os-info",
        "csi-proxy",
        "smb-mappings",
        "write-file",
        "read-file",
        "try-write",
    }


def test_every_probe_has_a_twin_and_every_twin_a_probe() -> None:
    shipped = {(p.name, p.version) for p in map(probes.load_probe, probes.available_probes())}
    assert shipped == twins.registered()


@pytest.mark.parametrize("path", PROBE_FILES, ids=[p.stem for p in PROBE_FILES])
def test_probe_is_ascii_and_fits_a_command_line(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert text.isascii(), "a probe must survive any code page"
    argv = probes.command(probes.load_probe(path.stem), {"path": "C:\\data\\" + "x" * 200})
    assert sum(len(a) + 1 for a in argv) < probes.MAX_COMMAND_LINE


# --------------------------------------------------- the linter catches each rule

BAD: dict[str, tuple[str, str]] = {
    # case id: (rule expected, snippet)
    "and-chain": ("pipeline-chain", "Get-Item x && Get-Item y\n"),
    "or-chain": ("pipeline-chain", "Get-Item x || Get-Item y\n"),
    "coalesce": ("null-coalescing", "$a = $b ?? 'default'\n"),
    "coalesce-assign": ("null-coalescing", "$a ??= 3\n"),
    "member": ("null-conditional", "$n = $service?.Name\n"),
    "index": ("null-conditional", "$n = $list?[0]\n"),
    "ternary": ("ternary", "$x = $ok ? 'yes' : 'no'\n"),
    "parallel": ("ps7-parameter", "1..3 | ForEach-Object -Parallel {\n    $_\n}\n"),
    "bytestream": ("ps7-parameter", "$b = Get-Content x -AsByteStream\n"),
    "hashtable": ("ps7-parameter", "$h = '{}' | ConvertFrom-Json -AsHashtable\n"),
    "set-content": ("file-write", "Set-Content -Path C:\\x.txt -Value 'a'\n"),
    "out-file": ("file-write", "'a' | Out-File C:\\x.txt\n"),
    "redirect": ("file-write", "Get-Date > C:\\x.txt\n"),
    "json-depth": ("json-depth", "$j = ConvertTo-Json -InputObject @{ a = 1 } -Compress\n"),
    "syntax": ("syntax", "function f {\n    param($x\n}\n"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_lint_catches(case: str) -> None:
    rule, snippet = BAD[case]
    findings = lint(snippet)
    assert rule in {f.rule for f in findings}, findings


def test_lint_catches_bad_header_and_missing_stop() -> None:
    rules = {f.rule for f in lint("# a probe\nGet-Date\n", name="os-info")}
    assert {"header", "error-action"} <= rules
    rules = {
        f.rule
        for f in lint(
            "# winstor-probe: other v1\n$ErrorActionPreference = 'Stop'\n", name="os-info"
        )
    }
    assert rules == {"header"}


def test_lint_reports_positions() -> None:
    findings = lint("$ErrorActionPreference = 'Stop'\n\n$a = $b ?? 1\n")
    chained = [f for f in findings if f.rule == "null-coalescing"]
    assert chained and (chained[0].line, chained[0].column) == (3, 9)


GOOD = [
    "Write-Output 'a && b || c ?? d ?. e'\n",
    "# comments may say && or ?? or ?.\n$x = 1\n",
    "Get-ChildItem | ? { $_.Length -gt 0 }\n",
    "Get-ChildItem 2>&1 > $null\n",
    "$j = ConvertTo-Json -InputObject $x -Compress -Depth 10\n",
    "[System.IO.File]::WriteAllText('C:\\x.txt', 'a')\n",
    "$h = @'\nnot code: && ?? x ? y : z\n'@\n",
]


@pytest.mark.parametrize("snippet", GOOD)
def test_lint_accepts_5_1_code(snippet: str) -> None:
    assert lint(snippet) == []


def test_one_line_function_is_a_parser_false_positive() -> None:
    # Why probes are written multi-line: the grammar rejects this valid PowerShell.
    assert {f.rule for f in lint("function f { param($x) $x }\n")} == {"syntax"}
    assert lint("function f {\n    param($x)\n    $x\n}\n") == []


# ------------------------------------------------- twins + runner, end to end


def _cluster() -> tuple[WindowsNode, ContainerView, ContainerView, Volume, SmbShare]:
    node = WindowsNode("ip-10-0-1-5.ec2.internal", revision=6414)
    node.install_csi_proxy("v1.1.1")
    share = SmbShare(r"\\amznfsxabcd1234.corp.example.com\share")
    share.fs.mkdir(r"Directory\app-state")
    node.map_smb("G:", share)
    volume = Volume("vol-0abc", 1)
    volume.format()
    readonly = Volume("vol-0ro", 1)
    readonly.format()
    pod = ContainerView(node, "windows-server-iis-7c5fc8f6d5-x2x9q")
    pod.mount_volume(r"C:\data", volume)
    pod.mount_volume(r"C:\readonly", readonly, read_only=True)
    pod.mount_host_path(r"C:\dotnetapp\app-state", r"G:\Directory\app-state")
    host = ContainerView(node, "csi-check", host_process=True)
    return node, pod, host, volume, share


def _run(name: str, params: dict[str, Any], view: ContainerView) -> probes.ProbeResult:
    argv = probes.command(probes.load_probe(name), params)
    result = powershell.run(argv, view)
    assert result.start_error is None
    return probes.parse_output(name, result.stdout, result.stderr, result.exit_code)


def _fails(name: str, params: dict[str, Any], view: ContainerView) -> str:
    with pytest.raises(probes.ProbeFailed) as caught:
        _run(name, params, view)
    assert caught.value.exit_code != 0
    return caught.value.error


def test_write_then_read_marker_survives_a_new_pod() -> None:
    _, pod, _, volume, _ = _cluster()
    wrote = _run(
        "write-marker", {"path": r"C:\data", "marker": "run-42 ✓", "payload_bytes": 4096}, pod
    ).data
    assert wrote is not None
    assert wrote["marker_path"] == r"C:\data\winstor-marker.txt"
    assert wrote["payload_path"] == r"C:\data\winstor-payload.bin"
    assert wrote["bytes"] == 4096 and re.fullmatch(r"[0-9a-f]{64}", wrote["sha256"])
    assert volume.fs.read("winstor-marker.txt") == "run-42 ✓".encode()

    other_node = WindowsNode("ip-10-0-2-9.ec2.internal")
    replacement = ContainerView(other_node, "windows-server-iis-7c5fc8f6d5-k7p2m")
    replacement.mount_volume(r"C:\data", volume)
    read = _run("read-marker", {"path": r"C:\data"}, replacement).data
    assert read == {
        "marker_exists": True,
        "marker": "run-42 ✓",
        "payload_exists": True,
        "sha256": wrote["sha256"],
        "bytes": 4096,
    }


def test_read_marker_missing_files_is_an_answer() -> None:
    _, pod, _, _, _ = _cluster()
    data = _run("read-marker", {"path": r"C:\data"}, pod).data
    assert data == {
        "marker_exists": False,
        "marker": None,
        "payload_exists": False,
        "sha256": None,
        "bytes": None,
    }
    assert _run("read-marker", {"path": r"C:\no\such"}, pod).data == data


def test_write_marker_failures() -> None:
    _, pod, _, _, _ = _cluster()
    assert _fails("write-marker", {"path": r"C:\readonly", "marker": "m"}, pod) == (
        r"Access to the path 'C:\readonly\winstor-marker.txt' is denied."
    )
    assert _fails("write-marker", {"path": r"C:\missing", "marker": "m"}, pod) == (
        r"Could not find a part of the path 'C:\missing\winstor-marker.txt'."
    )
    assert _fails("write-marker", {"marker": "m"}, pod) == "parameter 'path' is required"
    assert "negative" in _fails("write-marker", {"path": r"C:\data", "payload_bytes": -1}, pod)


def test_list_dir() -> None:
    _, pod, _, _, _ = _cluster()
    root = _run("list-dir", {"path": "C:\\"}, pod).data
    assert root is not None and root["exists"] is True and root["path"] == "C:\\"
    names = [e["name"] for e in root["entries"]]
    assert names == sorted(names, key=str.upper)
    assert {"name": "data", "type": "Directory", "length": None} in root["entries"]
    license_entry = next(e for e in root["entries"] if e["name"] == "License.txt")
    assert license_entry["type"] == "File" and license_entry["length"] > 0
    _run("write-file", {"path": r"C:\data\b.txt", "content": "12345"}, pod)
    data = _run("list-dir", {"path": r"C:\data"}, pod).data
    assert {"name": "b.txt", "type": "File", "length": 5} in data["entries"]
    assert _run("list-dir", {"path": r"C:\nope"}, pod).data == {
        "path": r"C:\nope",
        "exists": False,
        "entries": [],
    }


def test_os_info_build_matches_the_node_label_format() -> None:
    _, pod, host, _, _ = _cluster()
    data = _run("os-info", {}, pod).data
    assert data == {
        "build": "10.0.17763",
        "version": "10.0.17763.6414",
        "hostname": "windows-server-iis-7c5fc8f6d5-x2x9q",
        "powershell": "5.1.17763.6414",
        "edition": "Desktop",
    }
    assert _run("os-info", {}, host).data["hostname"] == "ip-10-0-1-5.ec2.internal"


def test_csi_proxy_present_absent_and_stopped() -> None:
    node, pod, host, _, _ = _cluster()
    data = _run("csi-proxy", {}, host).data
    assert data["service"] == {
        "name": "csiproxy",
        "status": "Running",
        "start_type": "Automatic",
        "path": r"C:\Program Files\Kubernetes\csi-proxy.exe",
        "command_line": node.services["csiproxy"].command_line,
    }
    assert data["version"] == "1.1.1"
    assert {f"csi-proxy-{g}-v1" for g in ("disk", "filesystem", "volume", "smb")} <= set(
        data["pipes"]
    )
    assert data["pipes"] == sorted(data["pipes"])
    # A plain pod sees neither the node's services nor its pipes.
    assert _run("csi-proxy", {}, pod).data == {"service": None, "version": None, "pipes": []}
    node.stop_service("csiproxy")
    stopped = _run("csi-proxy", {}, host).data
    assert stopped["service"]["status"] == "Stopped" and stopped["pipes"] == []
    node.uninstall_csi_proxy()
    assert _run("csi-proxy", {}, host).data == {"service": None, "version": None, "pipes": []}


def test_csi_proxy_first_run_emits_module_progress_on_stderr() -> None:
    _, _, host, _, _ = _cluster()
    argv = probes.command(probes.load_probe("csi-proxy"), {})
    first = powershell.run(argv, host)
    assert first.stderr.startswith(b"#< CLIXML") and first.exit_code == 0
    assert powershell.run(argv, host).stderr == b""
    assert probes.decode_clixml(first.stderr.decode()) == ""


def test_smb_mappings() -> None:
    node, _, host, _, share = _cluster()
    data = _run("smb-mappings", {}, host).data
    assert data == {
        "mappings": [
            {
                "local_path": "G:",
                "remote_path": share.remote_path,
                "status": 0,
                "status_name": "OK",
            }
        ]
    }
    node.mapping("G:").status = 2
    assert _run("smb-mappings", {}, host).data["mappings"][0]["status_name"] == "Disconnected"
    node.unmap_smb("G:")
    assert _run("smb-mappings", {}, host).data == {"mappings": []}


def test_write_and_read_file_through_the_smb_hostpath() -> None:
    _, pod, _, _, share = _cluster()
    path = r"C:\dotnetapp\app-state\hello.txt"
    wrote = _run("write-file", {"path": path, "content": "héllo\r\nworld"}, pod).data
    encoded = "héllo\r\nworld".encode()
    assert wrote["bytes"] == len(encoded)
    assert wrote["sha256"] == wrote["read_back_sha256"]
    assert share.fs.read(r"Directory\app-state\hello.txt") == encoded
    # A second pod on another node mapping the same share sees the file.
    other = WindowsNode("ip-10-0-3-3.ec2.internal")
    other.map_smb("G:", share)
    second = ContainerView(other, "test-fsx-2")
    second.mount_host_path(r"C:\dotnetapp\app-state", r"G:\Directory\app-state")
    read = _run("read-file", {"path": path}, second).data
    assert read == {
        "path": path,
        "exists": True,
        "content": "héllo\r\nworld",
        "sha256": wrote["sha256"],
        "bytes": len(encoded),
    }
    assert (
        _run("read-file", {"path": r"C:\dotnetapp\app-state\nope"}, second).data["exists"] is False
    )
    # The mapping dropping makes the share unreachable.
    other.mapping("G:").status = 2
    assert "network path" in _fails("write-file", {"path": path, "content": "x"}, second)


def test_write_file_read_only_mount_is_access_denied() -> None:
    _, pod, _, _, _ = _cluster()
    error = _fails("write-file", {"path": r"C:\readonly\x.txt", "content": "x"}, pod)
    assert error == r"Access to the path 'C:\readonly\x.txt' is denied."


def test_try_write_reports_the_refusal_and_undoes_a_write() -> None:
    """SMB-CSI-03's probe: a read-only mount refuses with ERROR_ACCESS_DENIED, whose
    system message is exactly what the upstream Windows e2e expects ("Access is
    denied."); a write that goes through leaves nothing behind."""
    _, pod, _, volume, _ = _cluster()
    refused = _run("try-write", {"path": r"C:\readonly\x.txt", "content": "x"}, pod).data
    assert refused == {"path": r"C:\readonly\x.txt", "written": False,
                       "message": r"Access to the path 'C:\readonly\x.txt' is denied.",
                       "exception": "UnauthorizedAccessException", "win32_error": 5,
                       "win32_message": "Access is denied."}
    missing = _run("try-write", {"path": r"C:\data\no\x.txt", "content": "x"}, pod).data
    assert missing["win32_error"] == 3 and not missing["written"]
    wrote = _run("try-write", {"path": r"C:\data\x.txt", "content": "x"}, pod).data
    assert wrote["written"] is True and wrote["win32_error"] is None
    assert not volume.fs.exists("x.txt")
    assert "parameter 'path' is required" in _fails("try-write", {}, pod)


def _ordered_keys(text: str) -> set[str]:
    """Keys the probe's [ordered]@{ ... } blocks define (its output contract)."""
    keys: set[str] = set()
    for start in (m.end() for m in re.finditer(r"\[ordered\]@\{", text)):
        depth, index = 1, start
        while depth and index < len(text):
            depth += {"{": 1, "}": -1}.get(text[index], 0)
            index += 1
        keys |= set(re.findall(r"(?:^|[{;\n])\s*([a-z_][a-z0-9_]*)\s*=", text[start:index]))
    return keys - {"probe", "ok", "data", "error"}


def _keys(value: Any) -> set[str]:
    if isinstance(value, dict):
        return set(value) | set().union(*(_keys(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_keys(v) for v in value))
    return set()


def test_twin_keys_equal_probe_keys() -> None:
    _, pod, host, _, _ = _cluster()
    _run("write-file", {"path": r"C:\data\f.txt", "content": "x"}, pod)
    runs = {
        "write-marker": ({"path": r"C:\data", "marker": "m", "payload_bytes": 1}, pod),
        "read-marker": ({"path": r"C:\data"}, pod),
        "list-dir": ({"path": r"C:\data"}, pod),
        "os-info": ({}, pod),
        "csi-proxy": ({}, host),
        "smb-mappings": ({}, host),
        "write-file": ({"path": r"C:\data\f.txt", "content": "x"}, pod),
        "read-file": ({"path": r"C:\data\f.txt"}, pod),
        "try-write": ({"path": r"C:\readonly\f.txt", "content": "x"}, pod),
        "volume-info": ({"path": r"C:\data"}, pod),
    }
    assert set(runs) == set(probes.available_probes())
    for name, (params, view) in runs.items():
        data = _run(name, params, view).data
        expected = _ordered_keys(probes.load_probe(name).text)
        assert _keys(data) == expected, name


def test_volume_info_follows_the_partition_not_the_disk() -> None:
    """A grown EBS disk shows at once; the NTFS volume only after csi-proxy's ResizeVolume
    (what EBS-RESIZE-01 reads in the pod), and the data stays."""
    node, pod, _, volume, _ = _cluster()
    _run("write-file", {"path": r"C:\data\keep.txt", "content": "kept"}, pod)
    before = _run("volume-info", {"path": r"C:\data"}, pod).data
    assert before["file_system"] == "NTFS" and before["disk_bytes"] == 1 << 30
    assert 0.95 * (1 << 30) < before["size_bytes"] <= before["partition_bytes"] < 1 << 30
    assert before["size_remaining_bytes"] < before["size_bytes"]
    volume.size_gib = 2
    grown_disk = _run("volume-info", {"path": r"C:\data"}, pod).data
    assert grown_disk["disk_bytes"] == 2 << 30 and grown_disk["size_bytes"] == before["size_bytes"]
    node.resize_volume(volume)
    after = _run("volume-info", {"path": r"C:\data"}, pod).data
    assert 1.95 * (1 << 30) < after["size_bytes"] < 2 << 30
    assert _run("read-file", {"path": r"C:\data\keep.txt"}, pod).data["content"] == "kept"
    assert "No MSFT_Volume objects found with property 'FilePath' equal to 'C:\\nope'" in \
        _fails("volume-info", {"path": r"C:\nope"}, pod)


def test_unknown_probe_version_fails_like_a_missing_command() -> None:
    _, pod, _, _, _ = _cluster()
    probe = probes.load_probe("os-info")
    newer = probes.Probe(probe.name, 99, probe.text.replace(" v1", " v99", 1))
    result = powershell.run(probes.command(newer, {}), pod)
    assert result.exit_code == 1 and result.stdout == b""
    stderr = probes.decode_clixml(result.stderr.decode())
    assert stderr.startswith("ConvertFrom-Json : The term 'ConvertFrom-Json' is not recognized")
    assert "At line:4 char:6" in stderr  # the line after the JSON
    with pytest.raises(probes.ProbeError) as caught:
        probes.parse_output("os-info", result.stdout, result.stderr, result.exit_code)
    assert "no output" in str(caught.value) and "ConvertFrom-Json" in str(caught.value)


def test_script_without_header_is_interpreted() -> None:
    _, pod, _, _, _ = _cluster()
    script = "Get-Unicorn -Name x\n"
    encoded = base64.b64encode(script.encode("utf-16-le")).decode()
    result = powershell.run(["powershell.exe", "-NoProfile", "-EncodedCommand", encoded], pod)
    assert result.exit_code == 1
    assert "Get-Unicorn : The term 'Get-Unicorn' is not recognized" in probes.decode_clixml(
        result.stderr.decode()
    )


def test_build_script_keeps_parameters_out_of_code() -> None:
    probe = probes.load_probe("write-file")
    hostile = {"path": "C:\\x'@\n; Remove-Item C:\\ -Recurse", "content": "$(evil) `n '@"}
    script = probes.build_script(probe, hostile)
    lines = script.split("\n")
    assert lines[0] == "# winstor-probe: write-file v1"
    assert lines[1] == "$WinstorParams = @'"
    assert json.loads(lines[2]) == hostile and lines[3] == "'@ | ConvertFrom-Json"
    assert "\n".join(lines[4:]) == probes.prelude() + probe.body
    argv = probes.command(probe, hostile)
    assert argv[:7] == [
        "powershell.exe",
        "-NoLogo",
        "-NoProfile",
        "-NonInteractive",
        "-ExecutionPolicy",
        "Bypass",
        "-EncodedCommand",
    ]
    assert base64.b64decode(argv[7]).decode("utf-16-le") == script


# ------------------------------------------------------------ the runner alone


def test_probe_runner_does_not_import_the_sim() -> None:
    import subprocess
    import sys

    code = (
        "import sys, winstor.cluster.probes\n"
        "sys.exit(any(m.startswith('winstor.sim') for m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_parse_output_accepts_one_line_with_crlf_and_noise_on_stderr() -> None:
    stdout = '\r\n{"probe":"os-info","ok":true,"data":{"build":"10.0.17763"}}\r\n\r\n'
    result = probes.parse_output("os-info", stdout, "#< CLIXML\r\n<Objs/>", 0)
    assert result.ok and result.data == {"build": "10.0.17763"} and result.error is None


@pytest.mark.parametrize(
    ("stdout", "code", "reason"),
    [
        ("", 1, "no output"),
        ('{"probe":"os-info","ok":true,"data":{}}\r\nWARNING: x\r\n', 0, "2 lines"),
        ("Windows PowerShell\r\n", 0, "not JSON"),
        ('{"probe":"list-dir","ok":true,"data":{}}', 0, "names probe 'list-dir'"),
        ('{"probe":"os-info","ok":true,"data":{}}', 1, "exit code is not 0"),
        ('{"probe":"os-info","ok":"yes","data":{}}', 0, "boolean 'ok'"),
        ('{"probe":"os-info","ok":false,"error":"boom"}', 0, "exit code is 0"),
        ("[1]", 0, "not an object"),
    ],
)
def test_parse_output_rejects_anything_else(stdout: str, code: int, reason: str) -> None:
    with pytest.raises(probes.ProbeError) as caught:
        probes.parse_output("os-info", stdout, "oops", code)
    assert not isinstance(caught.value, probes.ProbeFailed)
    message = str(caught.value)
    assert reason in message and "'os-info'" in message and f"exit code {code}" in message
    assert "oops" in message


def test_parse_output_failure_carries_the_error_and_truncates_raw_output() -> None:
    stdout = '{"probe":"read-file","ok":false,"error":"Access is denied."}'
    with pytest.raises(probes.ProbeFailed) as caught:
        probes.parse_output("read-file", stdout, "x" * 10_000, 1)
    assert caught.value.error == "Access is denied." and caught.value.exit_code == 1
    assert caught.value.result.raw_stdout == stdout
    assert len(str(caught.value)) < 3000 and "more characters" in str(caught.value)


def test_decode_clixml() -> None:
    text = (
        '#< CLIXML\r\n<Objs Version="1.1.0.1" xmlns="http://schemas.microsoft.com/powershell/'
        '2004/04"><S S="Error">boom_x000D__x000A_</S><S S="Error">At line:1 char:1'
        "_x000D__x000A_</S></Objs>"
    )
    assert probes.decode_clixml(text) == "boom\r\nAt line:1 char:1\r\n"
    assert probes.decode_clixml("plain") == "plain"


def test_load_probe_checks_the_header(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "good.ps1").write_text("# winstor-probe: good v3\r\n$x = 1\r\n")
    (tmp_path / "liar.ps1").write_text("# winstor-probe: other v1\n")
    (tmp_path / "bare.ps1").write_text("$x = 1\n")
    monkeypatch.setattr(probes, "PROBES_DIR", tmp_path)
    good = probes.load_probe("good")
    assert (good.name, good.version, good.body) == ("good", 3, "$x = 1\n")
    for name in ("liar", "bare"):
        with pytest.raises(ValueError):
            probes.load_probe(name)
    with pytest.raises(FileNotFoundError):
        probes.load_probe("absent")
    assert probes.available_probes() == ["bare", "good", "liar"]
