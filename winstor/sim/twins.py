"""Python twins of the PowerShell probes in `manifests/probes/`.

The sim cannot run PowerShell, so each probe `(name, version)` has a twin here
that computes the probe's answer from the node model (`winstor.sim.windows`).
A twin returns exactly the keys its probe's `data` has, derived from the model
(never constants), and fails with the message the probe's catch block would
report — the .NET exception text, unwrapped from PowerShell's
`Exception calling ...` wrapper, because that is what the probes print.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from winstor.sim.windows import SMB_STATUS_NAMES, ContainerView, WinError

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

    view: ContainerView
    shell: str = "powershell"  # "powershell" (Windows PowerShell 5.1) or "pwsh"
    pwsh_version: str = "7.4.6"
    random_bytes: Callable[[int], bytes] = field(default=os.urandom)


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


def _check_path(path: str) -> None:
    if any(ch in _INVALID_PATH_CHARS for ch in path):
        raise ProbeFailure("Illegal characters in path.")


def _combine(first: str, second: str) -> str:
    """.NET `Path.Combine`: add a separator unless `first` ends with one (or a drive colon)."""
    _check_path(first)
    _check_path(second)
    if not first:
        return second
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
    marker_path = _combine(directory, "winstor-marker.txt")
    payload_path = _combine(directory, "winstor-payload.bin")
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
    marker_path = _combine(directory, "winstor-marker.txt")
    payload_path = _combine(directory, "winstor-payload.bin")
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
    _check_path(directory)
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
    mappings = []
    for mapping in ctx.view.smb_mappings:
        code = mapping.status
        name = SMB_STATUS_NAMES[code] if 0 <= code < len(SMB_STATUS_NAMES) else f"Unknown({code})"
        mappings.append(
            {
                "local_path": mapping.local_path,
                "remote_path": mapping.remote_path,
                "status": code,
                "status_name": name,
            }
        )
    return {"mappings": mappings}


@twin("write-file", 1)
def write_file(params: dict[str, Any], ctx: TwinContext) -> dict[str, Any]:
    path = _required(params, "path")
    _check_path(path)
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
