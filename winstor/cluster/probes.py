"""Client side of the PowerShell probes: load, parameterise, encode, and read their answer.

A probe is a file `manifests/probes/<name>.ps1` whose first line is
`# winstor-probe: <name> v<N>`. To run one, the script is rebuilt as: that
header, then the parameters as JSON in a single-quoted here-string piped to
`ConvertFrom-Json` (data is never spliced into code, so no value can change
what the script does), then the rest of the probe. It travels as
`-EncodedCommand` (base64 of UTF-16LE), which needs no quoting on any exec path.

A probe prints exactly one line of JSON, `{"probe":..,"ok":..,"data":..}` or
`{"probe":..,"ok":false,"error":..}`; `parse_output` insists on that, so that
anything else (a stack trace, a half-written line, a shell that is not
PowerShell) becomes a `ProbeError` with the raw output attached.

This module knows nothing about how the command is executed (the exec
transport lives elsewhere) and nothing about the embedded cluster.
"""

from __future__ import annotations

import base64
import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from winstor.resources import data_dir

__all__ = [
    "MAX_COMMAND_LINE",
    "PROBES_DIR",
    "Probe",
    "ProbeError",
    "ProbeFailed",
    "ProbeResult",
    "available_probes",
    "build_script",
    "command",
    "decode_clixml",
    "encode_script",
    "load_probe",
    "parse_header",
    "parse_output",
]

PROBES_DIR = data_dir("manifests") / "probes"

# CreateProcess takes at most 32767 UTF-16 code units of command line, and the
# encoded script is 8/3 of the script's length: a probe must stay well below ~12 KB.
MAX_COMMAND_LINE = 32767

_HEADER = re.compile(r"^# winstor-probe: (?P<name>[a-z0-9][a-z0-9-]*) v(?P<version>[1-9][0-9]*)$")
_RAW_LIMIT = 2048


@dataclass(frozen=True)
class Probe:
    """One probe script: its name, contract version and full text (header included)."""

    name: str
    version: int
    text: str

    @property
    def header(self) -> str:
        return f"# winstor-probe: {self.name} v{self.version}"

    @property
    def body(self) -> str:
        """Everything after the header line."""
        return self.text.split("\n", 1)[1] if "\n" in self.text else ""


@dataclass(frozen=True)
class ProbeResult:
    """A probe's decoded answer and the raw output it came from."""

    probe: str
    ok: bool
    data: dict[str, Any] | None
    error: str | None
    raw_stdout: str
    raw_stderr: str
    exit_code: int


class ProbeError(Exception):
    """The probe's output is not a valid answer (wrong shell, crash, garbled output)."""

    def __init__(
        self, probe: str, reason: str, stdout: str = "", stderr: str = "", exit_code: int = -1
    ) -> None:
        self.probe = probe
        self.reason = reason
        self.stdout = stdout
        self.stderr = stderr
        self.exit_code = exit_code
        super().__init__(self._describe())

    def _describe(self) -> str:
        stderr = decode_clixml(self.stderr)
        return (
            f"probe {self.probe!r}: {self.reason} (exit code {self.exit_code})\n"
            f"--- stdout ---\n{_truncate(self.stdout)}\n--- stderr ---\n{_truncate(stderr)}"
        )


class ProbeFailed(ProbeError):
    """The probe ran and reported `ok: false`; `error` is its message."""

    def __init__(self, result: ProbeResult) -> None:
        self.result = result
        self.error = result.error or ""
        super().__init__(
            result.probe,
            f"failed: {self.error}",
            result.raw_stdout,
            result.raw_stderr,
            result.exit_code,
        )


def _truncate(text: str, limit: int = _RAW_LIMIT) -> str:
    if len(text) <= limit:
        return text
    return text[:limit] + f"... [{len(text) - limit} more characters]"


def parse_header(line: str) -> tuple[str, int] | None:
    """(name, version) from a `# winstor-probe: <name> v<N>` line, or None."""
    found = _HEADER.match(line.rstrip("\r\n").lstrip("\ufeff"))
    if found is None:
        return None
    return found.group("name"), int(found.group("version"))


def available_probes() -> list[str]:
    """Names of the probes shipped under `manifests/probes/`."""
    return sorted(path.stem for path in PROBES_DIR.glob("*.ps1"))


def load_probe(name: str) -> Probe:
    """Read `manifests/probes/<name>.ps1`; its header must name the same probe."""
    path = PROBES_DIR / f"{name}.ps1"
    if not path.is_file():
        raise FileNotFoundError(f"no probe {name!r} (looked for {path})")
    text = path.read_text(encoding="utf-8").replace("\r\n", "\n")
    header = parse_header(text.split("\n", 1)[0])
    if header is None:
        raise ValueError(f"{path}: first line must be '# winstor-probe: <name> v<N>'")
    if header[0] != name:
        raise ValueError(f"{path}: header names probe {header[0]!r}, file is {name!r}")
    return Probe(name=name, version=header[1], text=text)


def build_script(probe: Probe, params: dict[str, Any], libs: tuple[str, ...] = ()) -> str:
    """The script to run: header, parameters as a JSON here-string, the shared
    prelude of helper functions, the profile's extra `libs` (the kind profile
    adds `stand-in`, the Windows cmdlets a Linux stand-in lacks), then the
    probe body. The probe file itself is the same on every profile.

    The JSON is compact and ASCII-only (json.dumps escapes everything else), so
    it is one line that can never contain the here-string terminator `'@` at a
    line start, and it survives any code page.
    """
    payload = json.dumps(params, separators=(",", ":"), ensure_ascii=True, sort_keys=True)
    return (f"{probe.header}\n$WinstorParams = @'\n{payload}\n'@ | ConvertFrom-Json\n"
            f"{prelude()}{''.join(lib(name) for name in libs)}{probe.body}")


def prelude() -> str:
    """The helper functions every probe body may call (`lib/prelude.ps1`)."""
    return lib("prelude")


def lib(name: str) -> str:
    """The text of `lib/<name>.ps1` (functions only), with LF line ends."""
    path = PROBES_DIR / "lib" / f"{name}.ps1"
    if not path.is_file():
        raise FileNotFoundError(f"no probe library {name!r} (looked for {path})")
    return path.read_text(encoding="utf-8").replace("\r\n", "\n")


def encode_script(script: str) -> str:
    """Base64 of the script's UTF-16LE bytes: what `-EncodedCommand` takes."""
    return base64.b64encode(script.encode("utf-16-le")).decode("ascii")


def command(probe: Probe, params: dict[str, Any], shell: str = "powershell.exe",
            libs: tuple[str, ...] = ()) -> list[str]:
    """The exec command list that runs `probe` with `params` (and the extra `libs`)."""
    argv = [
        shell,
        "-NoLogo",
        "-NoProfile",
        "-NonInteractive",
        "-ExecutionPolicy",
        "Bypass",
        "-EncodedCommand",
        encode_script(build_script(probe, params, libs)),
    ]
    length = sum(len(arg) + 1 for arg in argv)
    if length > MAX_COMMAND_LINE:
        raise ValueError(
            f"probe {probe.name!r}: command line of {length} characters exceeds Windows' "
            f"limit of {MAX_COMMAND_LINE}; shorten the probe or its parameters"
        )
    return argv


def decode_clixml(text: str) -> str:
    """Readable text from PowerShell's `#< CLIXML` stderr (errors serialised as XML).

    `powershell -EncodedCommand` with redirected stderr writes its error stream
    that way; progress records are dropped. Text that is not CLIXML is returned
    unchanged.
    """
    marker = "#< CLIXML"
    start = text.find(marker)
    if start < 0:
        return text
    before = text[:start]
    xml_text = text[start + len(marker) :].strip()
    try:
        root = ET.fromstring(xml_text)
    except ET.ParseError:
        return text
    pieces: list[str] = []
    for element in root.iter():
        if element.tag.rsplit("}", 1)[-1] == "S" and element.get("S") in (
            "Error",
            "Warning",
            "Verbose",
            "Debug",
            "Information",
        ):
            pieces.append(_unescape_clixml(element.text or ""))
    return before + "".join(pieces)


def _unescape_clixml(text: str) -> str:
    return re.sub(r"_x([0-9A-Fa-f]{4})_", lambda m: chr(int(m.group(1), 16)), text)


def _as_text(value: str | bytes) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value


def parse_output(
    probe_name: str, stdout: str | bytes, stderr: str | bytes, exit_code: int
) -> ProbeResult:
    """Decode a probe's single JSON line; raise `ProbeError`/`ProbeFailed` otherwise."""
    out = _as_text(stdout)
    err = _as_text(stderr)

    def fail(reason: str) -> ProbeError:
        return ProbeError(probe_name, reason, out, err, exit_code)

    lines = [line.strip().lstrip("\ufeff") for line in out.splitlines()]
    lines = [line for line in lines if line]
    if len(lines) != 1:
        what = "no output" if not lines else f"{len(lines)} lines of output"
        raise fail(f"expected exactly one JSON line on stdout, got {what}")
    try:
        answer = json.loads(lines[0])
    except ValueError as exc:
        raise fail(f"stdout is not JSON ({exc})") from None
    if not isinstance(answer, dict):
        raise fail("stdout JSON is not an object")
    if answer.get("probe") != probe_name:
        raise fail(f"answer names probe {answer.get('probe')!r}")
    ok = answer.get("ok")
    if not isinstance(ok, bool):
        raise fail("answer has no boolean 'ok'")
    if ok:
        data = answer.get("data")
        if not isinstance(data, dict):
            raise fail("ok answer has no 'data' object")
        if exit_code != 0:
            raise fail("answer says ok but the exit code is not 0")
        return ProbeResult(probe_name, True, data, None, out, err, exit_code)
    error = answer.get("error")
    if not isinstance(error, str):
        raise fail("failed answer has no 'error' text")
    if exit_code == 0:
        raise fail(f"answer says failed ({error}) but the exit code is 0")
    raise ProbeFailed(ProbeResult(probe_name, False, None, error, out, err, exit_code))
