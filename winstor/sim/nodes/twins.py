"""Python twins of the PowerShell probes in `manifests/probes/`.

The sim cannot run PowerShell, so each probe `(name, version)` has a twin here
that computes the probe's answer from the node model (`winstor.sim.nodes.windows`).
A twin returns exactly the keys its probe's `data` has, derived from the model
(never constants), and fails with the message the probe's catch block would
report — the .NET exception text, unwrapped from PowerShell's
`Exception calling ...` wrapper, because that is what the probes print.

On the kind flavour the view is a `LinuxContainerView` and the shell pwsh 7:
the twins then answer as the probe does on Linux - POSIX paths (`/` joins,
only NUL is illegal), .NET-on-Linux error texts (carried by the view), the
kernel's version where Windows has a build, and a Windows cmdlet that the
script does not define as a function (the kind profile's `stand-in` library
defines `Get-SmbGlobalMapping`) is "not recognized", as pwsh reports it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .windows import SMB_STATUS_NAMES, ContainerView, Volume, WinError

# The stand-in library's record of the node's SMB Global Mapping (manifests/probes/lib).
STAND_IN_MAPPINGS_FILE = "/winstor/smb-global-mappings.json"
PIPE_DIR = "\\\\.\\pipe\\"  # what the csi-proxy probe lists

__all__ = [
    "ProbeFailure",
    "Twin",
    "TwinContext",
    "lookup",
    "registered",
    "run_twin",
    "twin",
]


class ProbeFailure(Exception):
    """A probe ending in its catch block: `message` is what it reports as `error`."""


@dataclass
class TwinContext:
    """Where a twin runs: the container's view and the shell that ran the probe."""

    view: ContainerView  # or a linux.LinuxContainerView (kind)
    shell: str = "powershell"  # "powershell" (Windows PowerShell 5.1) or "pwsh"
    pwsh_version: str = "7.4.6"
    random_bytes: Callable[[int], bytes] = field(default=os.urandom)
    functions: frozenset[str] = frozenset()  # lower-cased names the script defines

    @property
    def linux(self) -> bool:
        return getattr(self.view, "platform", "windows") == "linux"

    def defines(self, command: str) -> bool:
        """Whether the script defines a function of that name (it beats any cmdlet)."""
        return command.lower() in self.functions

    def require(self, command: str) -> None:
        """Fail as the shell does if `command` - a Windows-only cmdlet - is missing here."""
        if self.linux and not self.defines(command):
            raise ProbeFailure(not_recognized(command, self.shell, linux=True))


def not_recognized(command: str, shell: str, linux: bool = False) -> str:
    """CommandNotFoundException's message, in 5.1's or pwsh 7's words."""
    if shell == "pwsh":
        newline = "\n" if linux else "\r\n"
        return (f"The term '{command}' is not recognized as a name of a cmdlet, function, "
                f"script file, or executable program.{newline}Check the spelling of the name, "
                "or if a path was included, verify that the path is correct and try again.")
    return (f"The term '{command}' is not recognized as the name of a cmdlet, function, script "
            "file, or operable program. Check the spelling of the name, or if a path was "
            "included, verify that the path is correct and try again.")


_FUNCTION = re.compile(r"^\s*(?:function|filter)\s+([A-Za-z_][\w-]*)", re.IGNORECASE | re.MULTILINE)


def defined_functions(script: str) -> frozenset[str]:
    """Lower-cased names of the functions a script defines at the start of a line."""
    return frozenset(name.lower() for name in _FUNCTION.findall(script))


TwinFn = Callable[[dict[str, Any], TwinContext], dict[str, Any]]


@dataclass(frozen=True)
class Twin:
    name: str
    version: int
    fn: TwinFn
    autoloads_modules: bool = False  # the probe calls cmdlets from modules loaded on first use


_TWINS: dict[tuple[str, int], Twin] = {}


def twin(name: str, version: int, autoloads_modules: bool = False) -> Callable[[TwinFn], TwinFn]:
    """Register `fn` as the twin of probe `name` v`version`."""

    def register(fn: TwinFn) -> TwinFn:
        _TWINS[(name, version)] = Twin(name, version, fn, autoloads_modules)
        return fn

    return register


def lookup(name: str, version: int) -> Twin | None:
    return _TWINS.get((name, version))


def registered() -> set[tuple[str, int]]:
    """Every (probe name, version) that has a twin."""
    return set(_TWINS)


def run_twin(found: Twin, params: dict[str, Any], ctx: TwinContext) -> tuple[str, int]:
    """Run a twin; return the probe's one JSON line (no newline) and its exit code."""
    try:
        data = found.fn(params, ctx)
        result: dict[str, Any] = {"probe": found.name, "ok": True, "data": data}
        code = 0
    except (ProbeFailure, WinError) as err:
        message = err.message if isinstance(err, WinError) else str(err)
        result = {"probe": found.name, "ok": False, "error": message}
        code = 1
    # ConvertTo-Json -Compress, then the probe's \uXXXX escaping of non-ASCII text.
    return json.dumps(result, separators=(",", ":"), ensure_ascii=True), code


# ------------------------------------------------------- PowerShell value semantics


def _ps_string(value: Any) -> str:
    """`[string]$value` as PowerShell converts JSON-born values."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "True" if value else "False"
    if isinstance(value, list):
        return " ".join(_ps_string(v) for v in value)
    if isinstance(value, dict):
        return "@{" + "; ".join(f"{k}={_ps_string(v)}" for k, v in value.items()) + "}"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _ps_int(value: Any) -> int:
    """`[int]$value`: null is 0, doubles round half to even, numeric strings parse."""
    number = _ps_int_unchecked(value)
    if not -(2**31) <= number < 2**31:
        raise ProbeFailure(
            f'Cannot convert value "{_ps_string(value)}" to type "System.Int32". '
            'Error: "Value was either too large or too small for an Int32."'
        )
    return number


def _ps_int_unchecked(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise ProbeFailure(f'Cannot convert value "{value}" to type "System.Int32".')
        return round(value)
    text = _ps_string(value).strip()
    try:
        return int(text)
    except ValueError:
        try:
            return round(float(text))
        except ValueError:
            raise ProbeFailure(
                f'Cannot convert value "{text}" to type "System.Int32". '
                'Error: "Input string was not in a correct format."'
            ) from None


def _required(params: dict[str, Any], key: str) -> str:
    value = _ps_string(params.get(key))
    if not value:
        raise ProbeFailure(f"parameter '{key}' is required")
    return value


_INVALID_PATH_CHARS = set('"<>|') | {chr(c) for c in range(32)}


def _check_path(path: str, ctx: TwinContext | None = None) -> None:
    """.NET Framework refuses `"<>|` and control characters in paths; .NET on Linux
    only NUL, and only where the path is used (the view raises that)."""
    if ctx is not None and ctx.linux:
        return
    if any(ch in _INVALID_PATH_CHARS for ch in path):
        raise ProbeFailure("Illegal characters in path.")


def _combine(first: str, second: str, ctx: TwinContext | None = None) -> str:
    """.NET `Path.Combine`: add a separator unless `first` ends with one (or, on
    Windows, a drive colon); on Linux the separator is `/` and a `\\` is a name."""
    _check_path(first, ctx)
    _check_path(second, ctx)
    if not first:
        return second
    if ctx is not None and ctx.linux:
        if second.startswith("/"):
            return second
        return first + second if first.endswith("/") else first + "/" + second
    if first[-1] in "\\/:":
        return first + second
    return first + "\\" + second


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_all_text(data: bytes) -> str:
    """.NET `File.ReadAllText`: the BOM decides the encoding, UTF-8 otherwise."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace")
    if data.startswith(b"\xff\xfe\x00\x00"):
        return data[4:].decode("utf-32-le", errors="replace")
    if data.startswith(b"\x00\x00\xfe\xff"):
        return data[4:].decode("utf-32-be", errors="replace")
    if data.startswith(b"\xff\xfe"):
        return data[2:].decode("utf-16-le", errors="replace")
    if data.startswith(b"\xfe\xff"):
        return data[2:].decode("utf-16-be", errors="replace")
    return data.decode("utf-8", errors="replace")


def _utf8(text: str) -> bytes:
    # .NET encodes lone surrogates (possible after JSON \ud800 escapes) as U+FFFD.
    return text.encode("utf-8", errors="replace")


# ---------------------------------------------------------------------------- twins


@twin("write-marker", 1)
def write_marker(params: dict[str, Any], ctx: TwinContext) -> dict[str, Any]:
    directory = _required(params, "path")
    marker = _ps_string(params.get("marker"))
    count = _ps_int(params.get("payload_bytes"))
    if count < 0:
        raise ProbeFailure("parameter 'payload_bytes' must not be negative")
    marker_path = _combine(directory, "winstor-marker.txt", ctx)
    payload_path = _combine(directory, "winstor-payload.bin", ctx)
    ctx.view.write(marker_path, _utf8(marker))
    payload = ctx.random_bytes(count)
    ctx.view.write(payload_path, payload)
    return {
        "marker_path": marker_path,
        "payload_path": payload_path,
        "marker": marker,
        "sha256": _sha256(payload),
        "bytes": len(payload),
    }


@twin("read-marker", 1)
def read_marker(params: dict[str, Any], ctx: TwinContext) -> dict[str, Any]:
    directory = _required(params, "path")
    marker_path = _combine(directory, "winstor-marker.txt", ctx)
    payload_path = _combine(directory, "winstor-payload.bin", ctx)
    data: dict[str, Any] = {
        "marker_exists": False,
        "marker": None,
        "payload_exists": False,
        "sha256": None,
        "bytes": None,
    }
    if ctx.view.is_file(marker_path):
        data["marker_exists"] = True
        data["marker"] = _read_all_text(ctx.view.read(marker_path))
    if ctx.view.is_file(payload_path):
        payload = ctx.view.read(payload_path)
        data["payload_exists"] = True
        data["sha256"] = _sha256(payload)
        data["bytes"] = len(payload)
    return data


@twin("list-dir", 1)
def list_dir(params: dict[str, Any], ctx: TwinContext) -> dict[str, Any]:
    directory = _required(params, "path")
    _check_path(directory, ctx)
    entries: list[dict[str, Any]] = []
    exists = ctx.view.is_dir(directory)
    if exists:
        # StringComparer.OrdinalIgnoreCase: compare upper-cased names ordinally.
        for entry in sorted(ctx.view.listdir(directory), key=lambda e: e.name.upper()):
            entries.append(
                {
                    "name": entry.name,
                    "type": "Directory" if entry.is_dir else "File",
                    "length": None if entry.is_dir else entry.length,
                }
            )
    return {"path": directory, "exists": exists, "entries": entries}


@twin("os-info", 1)
def os_info(params: dict[str, Any], ctx: TwinContext) -> dict[str, Any]:
    view = ctx.view
    if ctx.linux:
        return _os_info_linux(ctx)
    # The registry inside the container is the image's (the node's for HostProcess).
    build = view.build
    version = f"{build}.{view.revision}"
    if ctx.shell == "pwsh":
        powershell, edition = ctx.pwsh_version, "Core"
    else:
        build_number = build.split(".")[2] if build.count(".") >= 2 else "0"
        powershell, edition = f"5.1.{build_number}.{view.revision}", "Desktop"
    return {
        "build": build,
        "version": version,
        "hostname": view.hostname,
        "powershell": powershell,
        "edition": edition,
    }


def _os_info_linux(ctx: TwinContext) -> dict[str, Any]:
    """pwsh on Linux: `Test-Path HKLM:\\...` is False (no registry drive), so the probe
    reports `[Environment]::OSVersion.Version`, which .NET on Unix builds from the
    first four numbers of the kernel release (`uname -r`): 6.8.0-52-generic is
    6.8.0.52. The host name is the container's (`[Dns]::GetHostName()`)."""
    view = ctx.view
    numbers = [int(n) for n in re.findall(r"\d+", view.kernel_release)[:4]]
    numbers += [0] * (4 - len(numbers))
    build = "{}.{}.{}".format(*numbers[:3])
    return {
        "build": build,
        "version": f"{build}.{numbers[3]}",
        "hostname": view.hostname,
        "powershell": getattr(view, "pwsh_version", None) or ctx.pwsh_version,
        "edition": "Core",
    }


def _service_binary(command_line: str) -> str:
    """The executable of a service's ImagePath, as the csi-proxy probe extracts it."""
    text = command_line.strip()
    if text.startswith('"'):
        text = text[1:]
        quote = text.find('"')
        return text[:quote] if quote >= 0 else text
    lowered = text.lower()
    index = 0
    while True:
        found = lowered.find(".exe", index)
        if found < 0:
            return text
        end = found + 4
        if end == len(text) or text[end].isspace():
            return text[:end]
        index = found + 1


@twin("csi-proxy", 1, autoloads_modules=True)
def csi_proxy(params: dict[str, Any], ctx: TwinContext) -> dict[str, Any]:
    view = ctx.view
    if ctx.linux:
        # Get-Service and Get-CimInstance do not exist in pwsh on Linux (-ErrorAction
        # cannot silence a command that is not found), and with stand-ins for both the
        # pipe listing fails next: `\\.\pipe\` is a relative file name there.
        ctx.require("Get-Service")
        ctx.require("Get-CimInstance")
        raise ProbeFailure(f"Could not find a part of the path '{view.full_path(PIPE_DIR)}'.")
    services = {name.lower(): svc for name, svc in view.services.items()}
    svc = services.get("csiproxy")
    service: dict[str, Any] | None = None
    version: str | None = None
    if svc is not None:
        command_line = svc.command_line
        binary = _service_binary(command_line)
        service = {
            "name": svc.name,
            "status": svc.status,
            "start_type": svc.start_type,
            "path": binary,
            "command_line": command_line,
        }
        if view.is_file(binary) and svc.file_version:
            version = svc.file_version.strip()
    pipes = sorted(p for p in view.pipes if p.lower().startswith("csi-proxy-"))
    return {"service": service, "version": version, "pipes": pipes}


@twin("smb-mappings", 1, autoloads_modules=True)
def smb_mappings(params: dict[str, Any], ctx: TwinContext) -> dict[str, Any]:
    if ctx.defines("Get-SmbGlobalMapping"):
        records = _stand_in_mappings(ctx)
    else:
        ctx.require("Get-SmbGlobalMapping")
        records = [(m.local_path, m.remote_path, m.status) for m in ctx.view.smb_mappings]
    mappings = []
    for local_path, remote_path, raw in records:
        if isinstance(raw, str):
            code = SMB_STATUS_NAMES.index(raw) if raw in SMB_STATUS_NAMES else -1
        else:
            code = _ps_int(raw)
        name = SMB_STATUS_NAMES[code] if 0 <= code < len(SMB_STATUS_NAMES) else f"Unknown({code})"
        mappings.append(
            {
                "local_path": local_path,
                "remote_path": remote_path,
                "status": code,
                "status_name": name,
            }
        )
    return {"mappings": mappings}


def _stand_in_mappings(ctx: TwinContext) -> list[tuple[str, str, Any]]:
    """What the stand-in library's `Get-SmbGlobalMapping` returns: the records in
    the node's mapping file as the container sees it, none when it is absent
    (a pod that does not mount /winstor, or a node without the record)."""
    if not ctx.view.is_file(STAND_IN_MAPPINGS_FILE):
        return []
    text = _read_all_text(ctx.view.read(STAND_IN_MAPPINGS_FILE))
    if not text.strip():
        return []
    try:
        value = json.loads(text)
    except ValueError as err:
        raise ProbeFailure(f"Conversion from JSON failed with error: {err}") from None
    records = value if isinstance(value, list) else [value]
    out: list[tuple[str, str, Any]] = []
    for record in records:
        fields = record if isinstance(record, dict) else {}
        out.append((_ps_string(fields.get("LocalPath")), _ps_string(fields.get("RemotePath")),
                    fields.get("Status")))
    return out


@twin("write-file", 1)
def write_file(params: dict[str, Any], ctx: TwinContext) -> dict[str, Any]:
    path = _required(params, "path")
    _check_path(path, ctx)
    encoded = _utf8(_ps_string(params.get("content")))
    ctx.view.write(path, encoded)
    back = ctx.view.read(path)
    return {
        "path": path,
        "bytes": len(encoded),
        "sha256": _sha256(encoded),
        "read_back_sha256": _sha256(back),
    }


@twin("read-file", 1)
def read_file(params: dict[str, Any], ctx: TwinContext) -> dict[str, Any]:
    path = _required(params, "path")
    data: dict[str, Any] = {
        "path": path,
        "exists": False,
        "content": None,
        "sha256": None,
        "bytes": None,
    }
    if ctx.view.is_file(path):
        raw = ctx.view.read(path)
        data["exists"] = True
        data["content"] = _read_all_text(raw)
        data["sha256"] = _sha256(raw)
        data["bytes"] = len(raw)
    return data


# A container's own C: is its scratch VHD (containerd's Windows snapshotter: 20 GB).
SCRATCH_GIB = 20


@twin("volume-info", 1, autoloads_modules=True)
def volume_info(params: dict[str, Any], ctx: TwinContext) -> dict[str, Any]:
    path = _required(params, "path")
    _check_path(path, ctx)
    ctx.require("Get-Volume")
    view = ctx.view
    try:
        fs, rel, _ = view.resolve(path)
        found = fs.exists(rel)
    except WinError:
        found = False
    if not found:
        # Get-Volume -FilePath resolves the path first: a missing one has no volume.
        raise ProbeFailure(f"No MSFT_Volume objects found with property 'FilePath' equal to "
                           f"'{path}'.  Verify the value of the property and retry.")
    device = getattr(fs, "device", None)
    if device is None:  # the container layer, not a mounted volume
        device = Volume("scratch", SCRATCH_GIB, formatted_fs="NTFS", fs=fs)
        device.partition()
    elif device.partition_bytes is None:
        raise ProbeFailure("No MSFT_Partition objects found with property 'Volume' equal to "
                           f"'{path}'.  Verify the value of the property and retry.")
    return {
        "path": path,
        "file_system": device.formatted_fs or "",
        "size_bytes": device.volume_bytes,
        "size_remaining_bytes": device.free_bytes,
        "partition_bytes": device.partition_bytes,
        "disk_bytes": device.disk_bytes,
    }


# The Win32 error behind each kind of WinError (the low word of the .NET exception's
# HResult, 0x8007xxxx): what the try-write probe reports beside the .NET message.
WIN32_CODES: dict[str, int] = {
    "file_not_found": 2, "path_not_found": 3, "access_denied": 5, "network_path_not_found": 53,
    "not_empty": 145, "already_exists": 183, "not_a_directory": 267,
}


@twin("try-write", 1)
def try_write(params: dict[str, Any], ctx: TwinContext) -> dict[str, Any]:
    path = _required(params, "path")
    _check_path(path, ctx)
    data: dict[str, Any] = {"path": path, "written": True, "message": None, "exception": None,
                            "win32_error": None, "win32_message": None}
    try:
        ctx.view.write(path, _utf8(_ps_string(params.get("content"))))
    except WinError as err:
        code = WIN32_CODES.get(err.kind)
        data.update(written=False, message=err.message, exception=err.exception,
                    win32_error=code, win32_message=err.win32 if code is not None else None)
        return data
    ctx.view.remove(path)
    return data
