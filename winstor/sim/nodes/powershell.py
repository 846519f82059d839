"""The sim's answer to `kubectl exec` on a Windows container: PowerShell and cmd.exe.

`run(argv, view)` takes the exec command list and acts on a `ContainerView`:

* a script whose first line is `# winstor-probe: <name> v<N>` (via
  `-EncodedCommand`, `-Command` or `-File`) is answered by the probe's twin
  (`winstor.sim.nodes.twins`), with the parameters read from the JSON here-string the
  runner put after the header;
* anything else is run by a small interpreter of the commands a person types
  while following the seed walkthrough (`ls`, `Get-Content`, `Set-Content`,
  `New-Item`, `Remove-Item`, `Test-Path`, `hostname`, `echo`, `cd`, `cmd /c`,
  `exit N`, `throw`), with Windows PowerShell 5.1's output and error formats.

A statement the interpreter cannot model fails the way PowerShell fails on a
command that does not exist: `X : The term 'X' is not recognized ...`, naming
the first command word of that statement, exit code 1, and nothing after it
runs. So a probe the sim has no twin for (unknown name or version) fails loudly
instead of returning made-up data.

Faithful details that the suite may observe: `-EncodedCommand` with redirected
stderr serialises the error stream as CLIXML (`#< CLIXML`), module auto-loading
emits a "Preparing modules for first use." progress record there, stdout goes
through the OEM code page (437) so non-ASCII becomes `?`, and lines end in CRLF.

In a Linux container (the kind flavour's `LinuxContainerView`) the executables
are `pwsh` (PowerShell images only), the image's shell (`sh -c`, see
`winstor.sim.nodes.shell`) and a few GNU tools (`ls`, `cat`, `mkdir`,
`rm`, `hostname`, see `winstor.sim.nodes.linux`); anything else fails as runc does
(`executable file not found in $PATH`, exit 126). pwsh there behaves as on
Linux: POSIX paths relative to `/`, LF line ends, UTF-8, the Unix listing
columns, and the aliases that shadow native tools (`ls`, `cat`, `rm`, `mkdir`,
...) gone, so those words run the native tools.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import fnmatch
import json
import os
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from xml.sax.saxutils import escape as xml_escape

from . import linux, shell, twins
from .linux import LinuxContainerView
from .windows import ContainerView, Entry, WinError, join_path, split_path

View = ContainerView | LinuxContainerView

__all__ = ["ExecResult", "run"]


@dataclass(frozen=True)
class ExecResult:
    """The outcome of one exec.

    `start_error` is set when the process could not be started at all (no such
    executable). containerd then returns an error instead of an exit code, and
    its streaming server reports it as a `Failure` Status with reason
    `InternalError` and message `Internal error occurred: error executing command
    in container: <start_error>` (through the API server's v5 translator, with a
    second "Internal error occurred: " in front) — kubectl prints
    `error: Internal error occurred: ...` and exits 1. `exit_code` is
    126 in that case (the code runc-based runtimes give for "cannot execute")
    only for callers that look at nothing else.
    """

    stdout: bytes
    stderr: bytes
    exit_code: int
    start_error: str | None = None


_EXECUTABLES: dict[str, str] = {
    "powershell": r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe",
    "pwsh": r"C:\Program Files\PowerShell\7\pwsh.exe",
    "cmd": r"C:\Windows\System32\cmd.exe",
    "hostname": r"C:\Windows\System32\HOSTNAME.EXE",
}

_BAD_COMMAND_LINE = 64  # powershell's exit code for an unusable command line


def run(
    argv: list[str],
    view: View,
    *,
    tty: bool = False,
    stdin: bytes = b"",
    random_bytes: Callable[[int], bytes] = os.urandom,
) -> ExecResult:
    """Run an exec command list in a container and return what the process produced."""
    if isinstance(view, LinuxContainerView):
        return _run_linux(argv, view, tty=tty, stdin=stdin, random_bytes=random_bytes)
    if not argv:
        return _not_found(view)
    program = _program(argv[0], view)
    if program is None:
        return _not_found(view)
    if program == "hostname":
        return ExecResult(_oem(view.hostname + "\r\n"), b"", 0)
    if program == "cmd":
        return _Cmd(view).run(argv[1:])
    shell = "pwsh" if program == "pwsh" else "powershell"
    return _powershell(argv[1:], view, shell, tty=tty, stdin=stdin, random_bytes=random_bytes)


def _run_linux(
    argv: list[str],
    view: LinuxContainerView,
    *,
    tty: bool,
    stdin: bytes,
    random_bytes: Callable[[int], bytes],
) -> ExecResult:
    if argv and shell.is_shell(argv[0], view.image):
        def natives(words: list[str]) -> tuple[bytes, bytes, int] | None:
            tool = linux.find_program(view, words[0])
            if tool is None or tool == "pwsh":
                return None
            return linux.run_native([tool, *words[1:]], view, tty=tty)
        return ExecResult(*shell.run(argv, hostname=view.hostname, image=view.image,
                                     natives=natives, stdin=stdin))
    program = linux.find_program(view, argv[0]) if argv else None
    if program is None:
        return ExecResult(*linux.exec_not_found(argv[0] if argv else ""))
    if program == "pwsh":
        return _powershell(argv[1:], view, "pwsh", tty=tty, stdin=stdin,
                           random_bytes=random_bytes)
    return ExecResult(*linux.run_native([program, *argv[1:]], view, tty=tty))


def _program(arg0: str, view: ContainerView) -> str | None:
    """Which known executable `arg0` names, if the container has it."""
    text = arg0.strip().strip('"')
    base = re.split(r"[\\/]", text)[-1].lower()
    if base.endswith(".exe"):
        base = base[:-4]
    if base not in _EXECUTABLES or base not in view.shells:
        return None
    if ("\\" in text or "/" in text) and view.full_path(text).lower() != _EXECUTABLES[base].lower():
        return None
    return base


def _not_found(view: ContainerView) -> ExecResult:
    exec_id = secrets.token_hex(32)
    message = (
        f'failed to exec in container: failed to start exec "{exec_id}": '
        f"hcs::System::CreateProcess {view.container_id}: "
        "The system cannot find the file specified.: unknown"
    )
    return ExecResult(b"", b"", 126, start_error=message)


def _oem(text: str, shell: str = "powershell") -> bytes:
    """Console output bytes: OEM code page 437 for Windows PowerShell, UTF-8 for pwsh."""
    if shell == "pwsh":
        return text.encode("utf-8")
    return text.encode("cp437", errors="replace")


# ------------------------------------------------------------------ command line


_PS_SWITCHES: tuple[tuple[str, str, bool], ...] = (
    # (name, shortest accepted prefix, takes a value)
    ("nologo", "nol", False),
    ("noexit", "noe", False),
    ("noprofile", "nop", False),
    ("noninteractive", "noni", False),
    ("sta", "s", False),
    ("mta", "mta", False),
    ("command", "c", True),
    ("encodedcommand", "e", True),
    ("ec", "ec", True),
    ("executionpolicy", "ex", True),
    ("file", "f", True),
    ("inputformat", "in", True),
    ("outputformat", "o", True),
    ("windowstyle", "w", True),
    ("version", "v", True),
    ("configurationname", "config", True),
)


def _powershell(
    args: list[str],
    view: View,
    shell: str,
    *,
    tty: bool,
    stdin: bytes,
    random_bytes: Callable[[int], bytes],
) -> ExecResult:
    session = _Session(view, shell, tty=tty, random_bytes=random_bytes)
    index = 0
    while index < len(args):
        arg = args[index]
        if not arg or arg[0] not in "-/":
            break
        key = arg[1:].lower()
        if shell == "pwsh" and key == "ep":
            key = "executionpolicy"
        match = next(
            (s for s in _PS_SWITCHES if s[0].startswith(key) and key.startswith(s[1])), None
        )
        if match is None:
            break  # 5.1: an unknown switch starts the command text
        name, _, takes_value = match
        if name == "noninteractive":
            session.noninteractive = True
        if not takes_value:
            index += 1
            continue
        if index + 1 >= len(args):
            return session.bad_command_line(f"Missing parameter argument for -{name}.")
        value = args[index + 1]
        if name == "command":
            text = " ".join(args[index + 1 :])
            if text.strip() == "-":
                text = stdin.decode("utf-8", errors="replace")
            return session.execute(text, origin="command")
        if name in ("encodedcommand", "ec"):
            try:
                text = base64.b64decode(value, validate=True).decode("utf-16-le")
            except (binascii.Error, UnicodeDecodeError, ValueError):
                return session.bad_command_line(
                    "Cannot process the command because the value specified with "
                    "-EncodedCommand is not properly encoded. The value must be Base64 encoded."
                )
            session.encoded = True
            return session.execute(text, origin="encoded")
        if name == "file":
            return session.execute_file(value)
        index += 2
    if index < len(args):
        if shell == "pwsh":
            return session.execute_file(args[index])  # pwsh: the first argument is -File's
        return session.execute(" ".join(args[index:]), origin="command")
    # No command: an interactive shell reading stdin, which exec closed.
    text = stdin.decode("utf-8", errors="replace")
    return session.execute(text, origin="command") if text.strip() else session.result(0)


# ------------------------------------------------------------------------- lexer


@dataclass
class _Token:
    kind: str  # word, string, param, var, op, sep
    text: str  # as written
    value: str  # after unquoting
    line: int  # 1-based
    col: int  # 0-based column in its line
    end: int  # 0-based end column (same line as start)
    expand: bool = False  # "double quoted" or $var\text: variables expand in it


_OPS = ("2>&1", "2>>", "2>", ">>", "@(", "@{", "|", ">", "(", ")", "{", "}", "=", ",")
_WORD_STOP = set(" \t\r\n;|(){}>")


def _lex(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    line, line_start, i = 1, 0, 0
    n = len(text)

    def add(kind: str, start: int, end: int, value: str, expand: bool = False) -> None:
        tokens.append(
            _Token(kind, text[start:end], value, line, start - line_start, end - line_start, expand)
        )

    while i < n:
        ch = text[i]
        if ch in " \t":
            i += 1
        elif ch == "`" and i + 1 < n and text[i + 1] in "\r\n":
            i += 2 if text[i + 1] == "\r" and i + 2 < n and text[i + 2] == "\n" else 1
            i += 1
            line, line_start = line + 1, i
        elif ch in "\r\n":
            add("sep", i, i + 1, "\n")
            i += 2 if ch == "\r" and i + 1 < n and text[i + 1] == "\n" else 1
            line, line_start = line + 1, i
        elif ch == ";":
            add("sep", i, i + 1, ";")
            i += 1
        elif ch == "#":
            while i < n and text[i] not in "\r\n":
                i += 1
        elif text.startswith("<#", i):
            end = text.find("#>", i + 2)
            end = n if end < 0 else end + 2
            line += text.count("\n", i, end)
            if "\n" in text[i:end]:
                line_start = text.rfind("\n", i, end) + 1
            i = end
        elif text.startswith("@'", i) or text.startswith('@"', i):
            quote = text[i + 1]
            close = re.compile(r"\r?\n" + quote + "@")
            found = close.search(text, i + 2)
            end = n if found is None else found.end()
            body_start = text.find("\n", i) + 1 if "\n" in text[i:end] else i + 2
            body_end = found.start() if found is not None else n
            value = text[body_start:body_end] if body_start <= body_end else ""
            add("string", i, min(end, text.find("\n", i) if "\n" in text[i:end] else end), value)
            line += text.count("\n", i, end)
            if "\n" in text[i:end]:
                line_start = text.rfind("\n", i, end) + 1
            i = end
        elif ch == "'":
            j, chars = i + 1, []
            while j < n:
                if text[j] == "'" and j + 1 < n and text[j + 1] == "'":
                    chars.append("'")
                    j += 2
                elif text[j] == "'":
                    j += 1
                    break
                else:
                    chars.append(text[j])
                    j += 1
            add("string", i, j, "".join(chars))
            i = j
        elif ch == '"':
            j, chars = i + 1, []
            escapes = {"n": "\n", "r": "\r", "t": "\t", "0": "\0", "`": "`", '"': '"', "$": "$"}
            while j < n:
                if text[j] == "`" and j + 1 < n:
                    chars.append(escapes.get(text[j + 1], text[j + 1]))
                    j += 2
                elif text[j] == '"' and j + 1 < n and text[j + 1] == '"':
                    chars.append('"')
                    j += 2
                elif text[j] == '"':
                    j += 1
                    break
                else:
                    chars.append(text[j])
                    j += 1
            add("string", i, j, "".join(chars), expand=True)
            i = j
        elif ch == "$" and i + 1 < n and (text[i + 1].isalnum() or text[i + 1] in "_{?:"):
            j = i + 1
            while j < n and (text[j].isalnum() or text[j] in "_:?{}"):
                j += 1
            if j < n and text[j] not in _WORD_STOP and text[j] not in "=,":
                while j < n and text[j] not in _WORD_STOP:
                    j += 1
                add("word", i, j, text[i:j], expand=True)  # $dir\sub: one expandable argument
            else:
                add("var", i, j, text[i + 1 : j])
            i = j
        elif (
            ch == "-"
            and i + 1 < n
            and text[i + 1].isalpha()
            and tokens
            and tokens[-1].kind != "sep"
            and tokens[-1].line == line
        ):
            j = i + 1
            while j < n and text[j] not in _WORD_STOP and text[j] != ":":
                j += 1
            add("param", i, j, text[i + 1 : j])
            if j < n and text[j] == ":":
                j += 1  # -Param:value binds the next token as its value
            i = j
        else:
            op = next((o for o in _OPS if text.startswith(o, i)), None)
            if op is not None:
                add("op", i, i + len(op), op)
                i += len(op)
                continue
            j = i
            while j < n and text[j] not in _WORD_STOP:
                if text[j] == "`" and j + 1 < n:
                    j += 2
                    continue
                j += 1
            add("word", i, j, text[i:j].replace("`", ""))
            i = j
    return tokens


def _statements(tokens: list[_Token]) -> list[list[_Token]]:
    out: list[list[_Token]] = []
    current: list[_Token] = []
    for token in tokens:
        if token.kind == "sep":
            if current:
                out.append(current)
            current = []
        else:
            current.append(token)
    if current:
        out.append(current)
    return out


# ---------------------------------------------------------------------- commands

_ALIASES = {
    "ls": "Get-ChildItem",
    "dir": "Get-ChildItem",
    "gci": "Get-ChildItem",
    "get-childitem": "Get-ChildItem",
    "cat": "Get-Content",
    "type": "Get-Content",
    "gc": "Get-Content",
    "get-content": "Get-Content",
    "set-content": "Set-Content",
    "sc": "Set-Content",
    "add-content": "Add-Content",
    "ac": "Add-Content",
    "new-item": "New-Item",
    "ni": "New-Item",
    "mkdir": "mkdir",
    "md": "mkdir",
    "remove-item": "Remove-Item",
    "rm": "Remove-Item",
    "del": "Remove-Item",
    "erase": "Remove-Item",
    "rd": "Remove-Item",
    "rmdir": "Remove-Item",
    "ri": "Remove-Item",
    "test-path": "Test-Path",
    "hostname": "hostname",
    "hostname.exe": "hostname",
    "echo": "Write-Output",
    "write": "Write-Output",
    "write-output": "Write-Output",
    "write-host": "Write-Host",
    "cd": "Set-Location",
    "chdir": "Set-Location",
    "sl": "Set-Location",
    "set-location": "Set-Location",
    "pwd": "Get-Location",
    "gl": "Get-Location",
    "get-location": "Get-Location",
    "cmd": "cmd",
    "cmd.exe": "cmd",
}

_CMDLET_CLASS = {
    "Get-ChildItem": "GetChildItemCommand",
    "Get-Content": "GetContentCommand",
    "Set-Content": "SetContentCommand",
    "Add-Content": "AddContentCommand",
    "New-Item": "NewItemCommand",
    "mkdir": "NewItemCommand",
    "Remove-Item": "RemoveItemCommand",
    "Test-Path": "TestPathCommand",
    "Set-Location": "SetLocationCommand",
    "Get-Location": "GetLocationCommand",
    "Write-Output": "WriteOutputCommand",
    "Write-Host": "WriteHostCommand",
    "Out-File": "OutFileCommand",
}

# Parameters each cmdlet takes: name → takes a value. Positional names in order.
_PARAMS: dict[str, tuple[dict[str, bool], tuple[str, ...]]] = {
    "Get-ChildItem": (
        {
            "path": True,
            "literalpath": True,
            "force": False,
            "recurse": False,
            "name": False,
            "file": False,
            "directory": False,
            "filter": True,
        },
        ("path", "filter"),
    ),
    "Get-Content": (
        {
            "path": True,
            "literalpath": True,
            "raw": False,
            "encoding": True,
            "totalcount": True,
            "tail": True,
        },
        ("path",),
    ),
    "Set-Content": (
        {
            "path": True,
            "literalpath": True,
            "value": True,
            "encoding": True,
            "force": False,
            "nonewline": False,
        },
        ("path", "value"),
    ),
    "Add-Content": (
        {
            "path": True,
            "literalpath": True,
            "value": True,
            "encoding": True,
            "force": False,
            "nonewline": False,
        },
        ("path", "value"),
    ),
    "New-Item": (
        {"path": True, "itemtype": True, "type": True, "value": True, "force": False, "name": True},
        ("path",),
    ),
    "mkdir": ({"path": True, "force": False, "name": True}, ("path",)),
    "Remove-Item": (
        {"path": True, "literalpath": True, "recurse": False, "force": False, "confirm": False},
        ("path",),
    ),
    "Test-Path": ({"path": True, "literalpath": True, "pathtype": True}, ("path",)),
    "Set-Location": ({"path": True, "literalpath": True}, ("path",)),
    "Get-Location": ({}, ()),
}

# pwsh on Linux and macOS removes these aliases so that the native tools run.
_UNIX_SHADOWED = frozenset({"ac", "cat", "clear", "compare", "cp", "cpp", "diff", "kill", "ls",
                            "man", "mkdir", "mount", "mv", "ps", "rm", "rmdir", "sleep", "sort",
                            "start", "tee", "write"})
_NATIVE = "<native>"

_PROGRESS_CLIXML = (
    '<Obj S="progress" RefId="0"><TN RefId="0"><T>System.Management.Automation.PSCustomObject'
    '</T><T>System.Object</T></TN><MS><I64 N="SourceId">1</I64><PR N="Record">'
    "<AV>Preparing modules for first use.</AV><AI>0</AI><Nil /><PI>-1</PI><PC>-1</PC>"
    "<T>Completed</T><SR>-1</SR><SD> </SD></PR></MS></Obj>"
)

_HEADER = re.compile(r"^#\s*winstor-probe:\s*(?P<name>[A-Za-z0-9][A-Za-z0-9_-]*)\s+v(?P<v>\d+)\s*$")


class _Stop(Exception):
    """A statement failed in a way that ends the script (beyond what the sim models)."""


class _Silent(Exception):
    """A native command failed; its own stderr already says why (only $? turns false)."""


class _Exit(Exception):
    """`exit [N]`: the script ends here and the process exits with N (0 without one)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


_KEYWORDS = frozenset(
    {
        "begin",
        "break",
        "catch",
        "class",
        "continue",
        "data",
        "do",
        "dynamicparam",
        "else",
        "elseif",
        "end",
        "exit",
        "filter",
        "finally",
        "for",
        "foreach",
        "from",
        "function",
        "if",
        "in",
        "param",
        "process",
        "return",
        "switch",
        "throw",
        "trap",
        "try",
        "until",
        "using",
        "var",
        "while",
    }
)


@dataclass
class _Failure(Exception):
    """A cmdlet error: becomes a 5.1 error record."""

    message: str
    category: str
    target: str
    target_type: str
    exception: str
    fqid: str  # without the ",Microsoft.PowerShell.Commands.X" suffix
    suffix: bool = True


def _require_path(bound: dict[str, Any]) -> None:
    """-Path is mandatory; with -NonInteractive 5.1 fails instead of prompting."""
    if "path" not in bound:
        raise _Failure(
            "Cannot process command because of one or more missing mandatory parameters: Path.",
            "InvalidArgument",
            "",
            "",
            "ParameterBindingException",
            "MissingMandatoryParameter",
        )


@dataclass
class _Session:
    view: View
    shell: str
    tty: bool = False
    random_bytes: Callable[[int], bytes] = os.urandom
    encoded: bool = False
    noninteractive: bool = False
    cwd: str = "C:\\"
    script_path: str | None = None
    out: list[str] = field(default_factory=list)
    err: list[str] = field(default_factory=list)
    progress: bool = False
    variables: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.linux:
            self.cwd = "/"

    @property
    def linux(self) -> bool:
        return isinstance(self.view, LinuxContainerView)

    @property
    def nl(self) -> str:
        """[Environment]::NewLine of the container's OS."""
        return "\n" if self.linux else "\r\n"

    # -- results
    def result(self, code: int) -> ExecResult:
        # The interpreter writes CRLF throughout; on Linux every line ends in LF.
        text = "".join(self.out)
        stdout = _oem(text.replace("\r\n", "\n") if self.linux else text, self.shell)
        return ExecResult(stdout, self._stderr(), code)

    def _stderr(self) -> bytes:
        if not self.err and not self.progress:
            return b""
        eol = "_x000A_" if self.linux else "_x000D__x000A_"
        if self.encoded and not self.tty:
            # 5.1 (and pwsh) serialise the error stream when the command was encoded
            # and stderr is redirected, as kubectl exec without -t redirects it.
            parts = [
                '#< CLIXML\r\n<Objs Version="1.1.0.1" '
                'xmlns="http://schemas.microsoft.com/powershell/2004/04">'
            ]
            if self.progress:
                parts.append(_PROGRESS_CLIXML)
            for record in self.err:
                for line in record.split("\r\n")[:-1] or [record]:
                    parts.append(f'<S S="Error">{_clixml_text(line)}{eol}</S>')
            parts.append("</Objs>")
            return _oem("".join(parts), self.shell)
        text = "".join(self.err)
        return _oem(text.replace("\r\n", "\n") if self.linux else text, self.shell)

    def bad_command_line(self, message: str) -> ExecResult:
        return ExecResult(b"", _oem(message + self.nl, self.shell), _BAD_COMMAND_LINE)

    # -- entry points
    def execute_file(self, path: str) -> ExecResult:
        full = self._full(path)
        if self.shell == "pwsh" and not self.view.is_file(full):
            return self.bad_command_line(
                f"The argument '{path}' is not recognized as the name of a script file. Check "
                "the spelling of the name, or if a path was included, verify that the path is "
                "correct and try again."
            )
        if not full.lower().endswith(".ps1") or not self.view.is_file(full):
            return self.bad_command_line(
                f"The argument '{path}' to the -File parameter does not exist. Provide the path "
                "to an existing '.ps1' file as an argument to the -File parameter."
            )
        self.script_path = full
        text = _decode_script(self.view.read(full))
        return self.execute(text, origin="file")

    def execute(self, text: str, origin: str) -> ExecResult:
        text = text.lstrip("\ufeff")
        first = text.split("\n", 1)[0].strip()
        header = _HEADER.match(first)
        if header is not None:
            found = twins.lookup(header.group("name"), int(header.group("v")))
            if found is not None:
                return self._run_twin(found, text)
            return self._unknown_probe(text)
        return self._interpret(text)

    # -- probes
    def _run_twin(self, found: twins.Twin, text: str) -> ExecResult:
        params = self._probe_params(text)
        if found.autoloads_modules and not self.linux and not self.view.state.get(
                "modules_loaded"):
            self.view.state["modules_loaded"] = True
            self.progress = True
        ctx = twins.TwinContext(view=self.view, shell=self.shell,  # type: ignore[arg-type]
                                random_bytes=self.random_bytes,
                                functions=twins.defined_functions(text))
        line, code = twins.run_twin(found, params, ctx)
        self.out.append(line + "\r\n")
        return self.result(code)

    def _probe_params(self, text: str) -> dict[str, Any]:
        """`$WinstorParams` as the runner's here-string + ConvertFrom-Json makes it."""
        lines = text.replace("\r\n", "\n").split("\n")
        if len(lines) < 2 or lines[1].strip() != "$WinstorParams = @'":
            return {}
        body: list[str] = []
        closing = None
        for index in range(2, len(lines)):
            if lines[index].startswith("'@"):
                closing = index
                break
            body.append(lines[index])
        if closing is None:
            return {}
        raw = "\n".join(body)
        try:
            value = json.loads(raw)
        except ValueError:
            column = len(lines[closing]) - len(lines[closing].lstrip())
            self.err.append(
                self._record(
                    "ConvertFrom-Json",
                    _Failure(
                        f"Invalid JSON primitive: {raw[:40]}.",
                        "NotSpecified",
                        "",
                        "",
                        "ArgumentException",
                        "System.ArgumentException,Microsoft.PowerShell.Commands."
                        "ConvertFromJsonCommand",
                        suffix=False,
                    ),
                    closing + 1,
                    lines[closing],
                    column,
                    len(lines[closing]),
                )
            )
            return {}
        return value if isinstance(value, dict) else {}

    # -- interpreter
    def _interpret(self, text: str) -> ExecResult:
        source_lines = text.replace("\r\n", "\n").split("\n")
        ok = True
        for statement in _statements(_lex(text)):
            line_text = source_lines[statement[0].line - 1]
            try:
                ok = self._statement(statement, line_text)
            except _Stop:
                return self.result(1)
            except _Exit as done:
                return self.result(done.code)
        return self.result(0 if ok else 1)

    def _statement(self, tokens: list[_Token], line_text: str) -> bool:
        first = tokens[0]
        if (
            first.kind == "var"
            and len(tokens) == 3
            and tokens[1].text == "="
            and tokens[2].kind in ("string", "word")
        ):
            self.variables[first.value.lower()] = tokens[2].value
            return True
        if first.kind == "word" and first.value.lower() == "exit" and len(tokens) <= 2:
            code = self._value(tokens[1]) if len(tokens) == 2 else "0"
            if re.fullmatch(r"-?\d+", code.strip()):
                raise _Exit(int(code))
        if first.kind == "word" and first.value.lower() == "throw" and len(tokens) <= 2:
            self.err.append(self._thrown(tokens, line_text))
            raise _Stop
        if first.kind != "word" or first.value.lower() in _KEYWORDS:
            return self._unsupported(tokens, line_text)
        command = self._command(first.value)
        if command is None:
            return self._not_recognized(first, line_text)
        # Only "cmd | ..." pipes and "> file" redirections of simple commands are modelled.
        if any(t.kind == "op" and t.text == "|" for t in tokens):
            return self._unsupported(tokens, line_text)
        redirect: tuple[str, bool] | None = None
        for index, token in enumerate(tokens):
            if token.kind == "op" and token.text in (">", ">>"):
                if index + 1 >= len(tokens) or index + 2 != len(tokens):
                    return self._unsupported(tokens, line_text)
                redirect = (tokens[index + 1].value, token.text == ">>")
                tokens = tokens[:index]
                break
            if token.kind == "op" and token.text not in (",",):
                return self._unsupported(tokens, line_text)
        start = first.col
        end = tokens[-1].end if tokens[-1].line == first.line else len(line_text)
        output_mark = len(self.out)
        try:
            if command == _NATIVE:
                self._native(first.value, tokens[1:])
            else:
                self._dispatch(command, tokens[1:])
        except _Silent:
            return False
        except _Failure as failure:
            self.err.append(self._record(command, failure, first.line, line_text, start, end))
            return False
        if redirect is not None:
            captured = "".join(self.out[output_mark:])
            del self.out[output_mark:]
            target, append = redirect
            if self.shell == "pwsh":  # Out-File's default in pwsh: UTF-8 without a BOM
                data = (captured.replace("\r\n", "\n") if self.linux else captured).encode()
            else:  # and in 5.1: UTF-16LE with a BOM
                data = captured.encode("utf-16-le")
                if not append or not self.view.exists(self._full(target)):
                    data = b"\xff\xfe" + data
            try:
                self.view.write(self._full(target), data, append=append)
            except WinError as err:
                self.err.append(
                    self._record(
                        "Out-File",
                        _out_file_failure(err, self._full(target)),
                        first.line,
                        line_text,
                        start,
                        end,
                    )
                )
                return False
        return True

    def _not_recognized(self, token: _Token, line_text: str) -> bool:
        self.err.append(self._not_found_record(token, line_text))
        raise _Stop

    def _command(self, word: str) -> str | None:
        """What a command word runs: a modelled cmdlet, a native tool (`_NATIVE`), or None.

        pwsh on Linux drops the aliases that would shadow native tools, and native
        names are case-sensitive there; Windows executables do not exist."""
        if not self.linux:
            return _ALIASES.get(word.lower())
        if word in self.view.shells and word != "pwsh":
            return _NATIVE
        lowered = word.lower()
        if lowered in _UNIX_SHADOWED or lowered.endswith(".exe") or lowered == "cmd":
            return None
        return _ALIASES.get(lowered)

    def _native(self, word: str, args: list[_Token]) -> None:
        """Run a native tool with the arguments' values; its stderr passes straight through."""
        values = [self._value(t) for t in args if not (t.kind == "op" and t.text == ",")]
        assert isinstance(self.view, LinuxContainerView)
        stdout, stderr, code = linux.run_native([word, *values], self.view, cwd=self.cwd,
                                                tty=self.tty)
        text = stdout.decode("utf-8", errors="replace")
        self.out.extend(line + "\r\n" for line in text.splitlines())
        if stderr:
            self.err.append(stderr.decode("utf-8", errors="replace"))
        if code != 0:
            raise _Silent

    def _not_found_record(self, token: _Token, line_text: str) -> str:
        failure = _Failure(
            twins.not_recognized(token.value, self.shell, linux=self.linux),
            "ObjectNotFound",
            token.value,
            "String",
            "CommandNotFoundException",
            "CommandNotFoundException",
            suffix=False,
        )
        return self._record(
            token.value, failure, token.line, line_text, token.col, token.end, bracket=""
        )

    def _thrown(self, tokens: list[_Token], line_text: str) -> str:
        """`throw [value]`: a terminating error that ends the script with exit code 1.

        5.1 prints the thrown text itself as the record's first line (no "command :"),
        a RuntimeException of category OperationStopped whose id is the text; a bare
        `throw` throws "ScriptHalted". pwsh's concise view is one line."""
        first = tokens[0]
        value = self._value(tokens[1]) if len(tokens) == 2 else ""
        message = value or "ScriptHalted"
        if self.shell == "pwsh":
            return f"Exception: {message}\r\n"
        end = tokens[-1].end if tokens[-1].line == first.line else len(line_text)
        where = f"At {self.script_path}:{first.line}" if self.script_path else (
            f"At line:{first.line}")
        lines = [
            message,
            f"{where} char:{first.col + 1}",
            f"+ {line_text}",
            f"+ {' ' * first.col}{'~' * max(1, end - first.col)}",
            f"    + CategoryInfo          : OperationStopped: ({value}:"
            f"{'String' if value else ''}) [], RuntimeException",
            f"    + FullyQualifiedErrorId : {message}",
            " ",
        ]
        return "\r\n".join(lines) + "\r\n"

    def _unsupported(self, tokens: list[_Token], line_text: str) -> bool:
        """Something beyond the model: report its first unknown command word as not found."""
        return self._not_recognized(_first_unknown_command(tokens) or tokens[0], line_text)

    def _unknown_probe(self, text: str) -> ExecResult:
        """A probe the sim has no twin for: its first command the model lacks is "not found"."""
        source_lines = text.replace("\r\n", "\n").split("\n")
        statements = _statements(_lex(text))
        found = next(
            (t for t in map(_first_unknown_command, statements) if t is not None),
            statements[0][0] if statements else _Token("word", "", "", 1, 0, 0),
        )
        self.err.append(self._not_found_record(found, source_lines[found.line - 1]))
        return self.result(1)

    def _record(
        self,
        command: str,
        failure: _Failure,
        line: int,
        line_text: str,
        start: int,
        end: int,
        bracket: str | None = None,
    ) -> str:
        fqid = failure.fqid
        if failure.suffix and command in _CMDLET_CLASS:
            fqid += f",Microsoft.PowerShell.Commands.{_CMDLET_CLASS[command]}"
        if self.shell == "pwsh":
            return f"{command}: {failure.message}\r\n"
        shown = command if bracket is None else bracket
        where = f"At {self.script_path}:{line}" if self.script_path else f"At line:{line}"
        lines = [
            f"{command} : {failure.message}",
            f"{where} char:{start + 1}",
            f"+ {line_text}",
            f"+ {' ' * start}{'~' * max(1, end - start)}",
            f"    + CategoryInfo          : {failure.category}: "
            f"({failure.target}:{failure.target_type}) [{shown}], {failure.exception}",
            f"    + FullyQualifiedErrorId : {fqid}",
            " ",
        ]
        return "\r\n".join(lines) + "\r\n"

    def _value(self, token: _Token) -> str:
        """An argument's value: `$name` reads a variable set earlier in the script."""
        if token.kind == "var":
            return str(self.variables.get(token.value.lower(), ""))
        if token.expand:
            return re.sub(
                r"\$(\w+)",
                lambda m: str(self.variables.get(m.group(1).lower(), "")),
                token.value,
            )
        return token.value

    # -- parameter binding
    def _bind(self, command: str, args: list[_Token]) -> dict[str, Any]:
        spec, positional = _PARAMS.get(command, ({}, ()))
        bound: dict[str, Any] = {}
        queue = list(positional)
        index = 0
        while index < len(args):
            token = args[index]
            if token.kind == "param":
                key = token.value.lower()
                matches = [name for name in spec if name.startswith(key)]
                exact = [name for name in matches if name == key]
                if exact:
                    matches = exact
                if len(matches) != 1:
                    raise _Failure(
                        f"A parameter cannot be found that matches parameter name '{token.value}'.",
                        "InvalidArgument",
                        "",
                        "",
                        "ParameterBindingException",
                        "NamedParameterNotFound",
                    )
                name = matches[0]
                if spec[name]:
                    if index + 1 >= len(args):
                        raise _Failure(
                            f"Missing an argument for parameter '{name.capitalize()}'. Specify a "
                            "parameter of type 'System.String' and try again.",
                            "InvalidArgument",
                            "",
                            "",
                            "ParameterBindingException",
                            "MissingArgument",
                        )
                    bound[name] = self._value(args[index + 1])
                    index += 2
                else:
                    bound[name] = True
                    index += 1
                if name in queue:
                    queue.remove(name)
                continue
            if token.kind == "op" and token.text == ",":
                index += 1
                continue
            if not queue:
                raise _Failure(
                    "A positional parameter cannot be found that accepts argument "
                    f"'{token.value}'.",
                    "InvalidArgument",
                    "",
                    "",
                    "ParameterBindingException",
                    "PositionalParameterNotFound",
                )
            bound[queue.pop(0)] = self._value(token)
            index += 1
        if "literalpath" in bound:
            bound["path"] = bound.pop("literalpath")
        return bound

    # -- paths
    def _full(self, path: str) -> str:
        if self.linux:
            # The FileSystem provider takes either slash on Linux too; ~ is the home.
            path = path.strip().replace("\\", "/")
            if path.lower().startswith("microsoft.powershell.core/filesystem::"):
                path = path.split("::", 1)[1]
            if path == "~" or path.startswith("~/"):
                path = "/root" + path[1:]
            return linux.absolute(path, self.cwd)
        path = path.strip().replace("/", "\\")
        if path.lower().startswith("microsoft.powershell.core\\filesystem::"):
            path = path.split("::", 1)[1]
        if re.match(r"^[A-Za-z]:", path):
            drive, rest = path[:2].upper(), path[2:]
            if not rest.startswith("\\"):
                base = self.cwd if self.cwd.upper().startswith(drive) else drive + "\\"
                return self.view.full_path(base + "\\" + rest)
            return self.view.full_path(drive + rest)
        if path.startswith("\\"):
            return self.view.full_path(self.cwd[:2] + path)
        if path in ("", "."):
            return self.cwd
        return self.view.full_path(self.cwd.rstrip("\\") + "\\" + path)

    def _drives(self) -> set[str]:
        if self.view.host_process:
            node = self.view.node
            return {d[0].upper() for d in node.drives} | {
                m.local_path[0].upper() for m in node.smb_mappings
            }
        return {"C"}

    def _parent(self, full: str) -> str:
        if self.linux:
            return full.rsplit("/", 1)[0] or "/"
        return self.view.full_path(full + "\\..")

    def _join(self, directory: str, name: str) -> str:
        sep = "/" if self.linux else "\\"
        return directory.rstrip(sep) + sep + name

    def _check_drive(self, full: str) -> None:
        if self.linux:
            return  # one root, no drives
        if full[0].upper() not in self._drives():
            raise _Failure(
                f"Cannot find drive. A drive with the name '{full[0].upper()}' does not exist.",
                "ObjectNotFound",
                full[0].upper(),
                "String",
                "DriveNotFoundException",
                "DriveNotFound",
            )

    def _entry_or_missing(self, full: str) -> Entry:
        self._check_drive(full)
        try:
            return self.view.stat(full)
        except WinError as err:
            if err.kind in ("file_not_found", "path_not_found"):
                raise _missing(full) from None
            raise _io_failure(err, full, "", writing=False) from None

    # -- dispatch
    def _dispatch(self, command: str, args: list[_Token]) -> None:
        if command == "cmd":
            result = _Cmd(self.view).run([t.value for t in args])
            self.out.append(result.stdout.decode("cp437", errors="replace"))
            if result.stderr:
                self.err.append(result.stderr.decode("cp437", errors="replace"))
            if result.exit_code != 0:
                raise _Silent
            return
        if command == "hostname":
            self.out.append(self.view.hostname + "\r\n")
            return
        if command in ("Write-Output", "Write-Host"):
            values = [self._value(t) for t in args if not (t.kind == "op" and t.text == ",")]
            if command == "Write-Host":
                self.out.append(" ".join(values) + "\r\n")
            else:
                self.out.extend(v + "\r\n" for v in values)
            return
        bound = self._bind(command, args)
        handler: Callable[[dict[str, Any]], None] = getattr(
            self, "_cmd_" + command.replace("-", "_")
        )
        handler(bound)

    def _cmd_Get_Location(self, bound: dict[str, Any]) -> None:
        self.out.append(f"\r\nPath\r\n----\r\n{self.cwd}\r\n\r\n\r\n")

    def _cmd_Set_Location(self, bound: dict[str, Any]) -> None:
        full = self._full(bound.get("path", "~" if self.linux else "C:\\"))
        entry = self._entry_or_missing(full)
        if not entry.is_dir:
            raise _missing(full)
        self.cwd = full

    def _cmd_Get_ChildItem(self, bound: dict[str, Any]) -> None:
        raw = bound.get("path", ".")
        full = self._full(raw)
        pattern = bound.get("filter")
        if self.linux:
            last = full.rsplit("/", 1)[-1]
            if any(ch in last for ch in "*?"):
                pattern = last
                full = self._parent(full)
        else:
            last = split_path(full[2:])[-1] if split_path(full[2:]) else ""
            if any(ch in last for ch in "*?"):
                pattern = last
                full = self.view.full_path(
                    full[:2] + "\\" + join_path(*split_path(full[2:])[:-1]))
        entry = self._entry_or_missing(full)
        show_hidden = bool(bound.get("force"))
        groups: list[tuple[str, list[Entry]]] = []
        if not entry.is_dir:
            groups.append((self._parent(full), [entry]))
        else:
            self._collect(full, pattern, show_hidden, bool(bound.get("recurse")), bound, groups)
        if bound.get("name"):
            sep = "/" if self.linux else "\\"
            for directory, entries in groups:
                prefix = directory[len(full) :].strip(sep)
                for item in entries:
                    self.out.append((prefix + sep if prefix else "") + item.name + "\r\n")
            return
        self.out.append(_format_unix_listing(groups) if self.linux else _format_listing(groups))

    def _collect(
        self,
        directory: str,
        pattern: str | None,
        show_hidden: bool,
        recurse: bool,
        bound: dict[str, Any],
        groups: list[tuple[str, list[Entry]]],
    ) -> None:
        try:
            entries = self.view.listdir(directory)
        except WinError as err:
            raise _io_failure(err, directory, "Get-ChildItem", writing=False) from None
        visible = [e for e in entries if show_hidden or "h" not in e.attributes]
        shown = [
            e
            for e in visible
            if (pattern is None or fnmatch.fnmatch(e.name.lower(), pattern.lower()))
            and not (bound.get("file") and e.is_dir)
            and not (bound.get("directory") and not e.is_dir)
        ]
        groups.append((directory, shown))
        if recurse:
            for item in visible:
                if item.is_dir:
                    self._collect(
                        self._join(directory, item.name),
                        pattern,
                        show_hidden,
                        recurse,
                        bound,
                        groups,
                    )

    def _cmd_Get_Content(self, bound: dict[str, Any]) -> None:
        _require_path(bound)
        full = self._full(bound["path"])
        entry = self._entry_or_missing(full)
        if entry.is_dir:
            raise _Failure(
                f"Access to the path '{full}' is denied.",
                "PermissionDenied",
                full,
                "String",
                "UnauthorizedAccessException",
                "GetContentReaderUnauthorizedAccessError",
            )
        try:
            data = self.view.read(full)
        except WinError as err:
            raise _io_failure(err, full, "Get-Content", writing=False) from None
        text = _decode_powershell(data, self.shell)
        if bound.get("raw"):
            if text:
                self.out.append(text + "\r\n")
            return
        lines = re.split(r"\r\n|\n|\r", text)
        if lines and lines[-1] == "":
            lines.pop()
        if "totalcount" in bound:
            lines = lines[: int(bound["totalcount"])]
        if "tail" in bound:
            lines = lines[-int(bound["tail"]) :] if int(bound["tail"]) else []
        self.out.extend(line + "\r\n" for line in lines)

    def _cmd_Set_Content(self, bound: dict[str, Any], append: bool = False) -> None:
        name = "Add-Content" if append else "Set-Content"
        _require_path(bound)
        full = self._full(bound["path"])
        self._check_drive(full)
        value = str(bound.get("value", ""))
        text = value if bound.get("nonewline") else value + self.nl
        data = _encode_powershell(
            text,
            bound.get("encoding"),
            self.shell,
            new_file=not (append and self.view.exists(full)),
        )
        try:
            self.view.write(full, data, append=append)
        except WinError as err:
            raise _io_failure(err, full, name, writing=True) from None

    def _cmd_Add_Content(self, bound: dict[str, Any]) -> None:
        self._cmd_Set_Content(bound, append=True)

    def _cmd_mkdir(self, bound: dict[str, Any]) -> None:
        bound["itemtype"] = "Directory"
        self._cmd_New_Item(bound)

    def _cmd_New_Item(self, bound: dict[str, Any]) -> None:
        path = bound.get("path", ".")
        if "name" in bound:
            path = self._join(path, bound["name"])
        full = self._full(path)
        self._check_drive(full)
        kind = str(bound.get("itemtype", bound.get("type", "File"))).lower()
        force = bool(bound.get("force"))
        if kind not in ("file", "directory"):
            raise _Failure(
                'The type is not a known type for the file system. Only "file" and '
                '"directory" can be created.',
                "InvalidArgument",
                full,
                "String",
                "ArgumentException",
                "Argument",
            )
        parent = self._parent(full)
        try:
            if kind == "directory":
                if self.view.exists(full):
                    if self.view.is_dir(full) and force:
                        self._show_item(full)
                        return
                    raise _Failure(
                        f"An item with the specified name {full} already exists.",
                        "ResourceExists",
                        full,
                        "String",
                        "IOException",
                        "DirectoryExist",
                    )
                self.view.mkdir(full, parents=True)
            else:
                if self.view.exists(full) and not force:
                    raise _Failure(
                        f"The file '{full}' already exists.",
                        "WriteError",
                        full,
                        "String",
                        "IOException",
                        "NewItemIOError",
                    )
                if force and not self.view.exists(parent):
                    self.view.mkdir(parent, parents=True)
                value = bound.get("value")
                self.view.write(full, b"" if value is None else str(value).encode("utf-8"))
        except WinError as err:
            raise _io_failure(err, full, "New-Item", writing=True) from None
        self._show_item(full)

    def _show_item(self, full: str) -> None:
        entry = self.view.stat(full)
        groups = [(self._parent(full), [entry])]
        self.out.append(_format_unix_listing(groups) if self.linux else _format_listing(groups))

    def _cmd_Remove_Item(self, bound: dict[str, Any]) -> None:
        _require_path(bound)
        full = self._full(bound["path"])
        entry = self._entry_or_missing(full)
        if entry.is_dir and not bound.get("recurse") and self.view.listdir(full):
            # The confirmation prompt cannot be shown: exec has no console input.
            raise _Failure(
                ("PowerShell" if self.shell == "pwsh" else "Windows PowerShell")
                + " is in NonInteractive mode. Read and Prompt functionality is not available.",
                "InvalidOperation",
                "",
                "",
                "PSInvalidOperationException",
                "InvalidOperation",
            )
        if ("r" in entry.attributes or "h" in entry.attributes) and not bound.get("force"):
            raise _Failure(
                "You do not have sufficient access rights to perform this operation.",
                "PermissionDenied",
                full,
                "FileInfo",
                "IOException",
                "RemoveFileSystemItemUnAuthorizedAccess",
            )
        try:
            self.view.remove(full, recursive=True)
        except WinError as err:
            if err.kind == "access_denied":
                raise _Failure(
                    f"Cannot remove item {full}: Access to the path '{full}' is denied.",
                    "PermissionDenied",
                    full,
                    "DirectoryInfo" if entry.is_dir else "FileInfo",
                    "UnauthorizedAccessException",
                    "RemoveFileSystemItemUnAuthorizedAccess",
                ) from None
            raise _io_failure(err, full, "Remove-Item", writing=True) from None

    def _cmd_Test_Path(self, bound: dict[str, Any]) -> None:
        if "path" not in bound:
            raise _Failure(
                "Cannot bind argument to parameter 'Path' because it is null.",
                "InvalidData",
                "",
                "",
                "ParameterBindingValidationException",
                "ParameterArgumentValidationErrorNullNotAllowed",
            )
        full = self._full(bound["path"])
        kind = str(bound.get("pathtype", "Any")).lower()
        exists = (self.linux or full[0].upper() in self._drives()) and self.view.exists(full)
        if exists and kind == "leaf":
            exists = self.view.is_file(full)
        elif exists and kind == "container":
            exists = self.view.is_dir(full)
        self.out.append(("True" if exists else "False") + "\r\n")


def _first_unknown_command(tokens: list[_Token]) -> _Token | None:
    """The first word in command position that is neither a keyword nor a modelled command."""
    command_position = True
    after_function = False
    for token in tokens:
        if token.kind == "word" and command_position and not after_function:
            lowered = token.value.lower()
            if lowered not in _KEYWORDS and lowered not in _ALIASES:
                return token
        after_function = token.kind == "word" and token.value.lower() in ("function", "filter")
        if token.kind == "op" and token.text in ("|", "=", "(", "{", "@(", "@{"):
            command_position = True
        elif token.kind == "word" and token.value.lower() in _KEYWORDS:
            command_position = token.value.lower() in ("else", "try", "finally", "do")
        elif token.kind in ("word", "string", "var", "param"):
            command_position = False
    return None


def _decode_script(data: bytes) -> str:
    """A script file's text: BOM-aware, UTF-8 otherwise (5.1 would use ANSI without a BOM)."""
    if data.startswith(b"\xff\xfe"):
        return data[2:].decode("utf-16-le", errors="replace")
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="replace")
    return data.decode("utf-8", errors="replace")


def _clixml_text(text: str) -> str:
    escaped = xml_escape(text.replace("_x", "_x005F_x"))
    return "".join(c if c >= " " or c == "\t" else f"_x{ord(c):04X}_" for c in escaped)


def _missing(full: str) -> _Failure:
    return _Failure(
        f"Cannot find path '{full}' because it does not exist.",
        "ObjectNotFound",
        full,
        "String",
        "ItemNotFoundException",
        "PathNotFound",
    )


def _io_failure(err: WinError, full: str, command: str, writing: bool) -> _Failure:
    """A filesystem error as the FileSystem provider reports it."""
    action = "Writer" if writing else "Reader"
    if err.kind == "access_denied":
        return _Failure(
            f"Access to the path '{full}' is denied.",
            "PermissionDenied",
            full,
            "String",
            "UnauthorizedAccessException",
            f"GetContent{action}UnauthorizedAccessError",
        )
    if err.kind == "path_not_found":
        return _Failure(
            err.at(full).message,
            "ObjectNotFound",
            full,
            "String",
            "DirectoryNotFoundException",
            f"GetContent{action}DirectoryNotFoundError",
        )
    if err.kind == "file_not_found":
        return _missing(full)
    return _Failure(
        err.message,
        "WriteError" if writing else "ReadError",
        full,
        "String",
        err.exception,
        f"GetContent{action}IOError",
    )


def _out_file_failure(err: WinError, full: str) -> _Failure:
    """Out-File (the `>` redirection) failing to open its file."""
    message = err.at(full).message if err.kind == "path_not_found" else err.message
    return _Failure(message, "OpenError", "", "", err.exception, "FileOpenFailure")


def _decode_powershell(data: bytes, shell: str) -> str:
    """Get-Content's decoding: the BOM, else ANSI (1252) in 5.1 and UTF-8 in pwsh."""
    if data.startswith((b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")):
        return (
            _decode_script(data)
            if not data.startswith(b"\xfe\xff")
            else data[2:].decode("utf-16-be", errors="replace")
        )
    return data.decode("utf-8" if shell == "pwsh" else "cp1252", errors="replace")


def _encode_powershell(text: str, encoding: str | None, shell: str, new_file: bool) -> bytes:
    """Set-Content's encoding: 5.1 defaults to ANSI; `-Encoding UTF8` adds a BOM in 5.1."""
    name = (encoding or ("utf8NoBOM" if shell == "pwsh" else "Default")).lower()
    if name in ("unicode",):
        data, bom = text.encode("utf-16-le"), b"\xff\xfe"
    elif name == "bigendianunicode":
        data, bom = text.encode("utf-16-be"), b"\xfe\xff"
    elif name in ("utf8", "utf8bom"):
        data, bom = (
            text.encode("utf-8"),
            b"\xef\xbb\xbf" if shell != "pwsh" or name == "utf8bom" else b"",
        )
    elif name in ("utf8nobom",):
        data, bom = text.encode("utf-8"), b""
    elif name == "ascii":
        data, bom = text.encode("ascii", errors="replace"), b""
    elif name == "utf32":
        data, bom = text.encode("utf-32-le"), b"\xff\xfe\x00\x00"
    else:
        data, bom = text.encode("cp1252", errors="replace"), b""
    return (bom if new_file else b"") + data


# ---------------------------------------------------------------------- formatting


def _mode(entry: Entry) -> str:
    attrs = entry.attributes
    return "".join(
        (
            "d" if entry.is_dir else "-",
            "a" if "a" in attrs else "-",
            "r" if "r" in attrs else "-",
            "h" if "h" in attrs else "-",
            "s" if "s" in attrs else "-",
            "l" if "l" in attrs else "-",
        )
    )


def _stamp(mtime: float) -> str:
    """LastWriteTime as 5.1's FileSystem view shows it: `{0,10}  {1,8}` of date and time."""
    moment = dt.datetime.fromtimestamp(mtime, tz=dt.timezone.utc)
    date = f"{moment.month}/{moment.day}/{moment.year}"
    hour = moment.hour % 12 or 12
    time = f"{hour}:{moment.minute:02d} {'AM' if moment.hour < 12 else 'PM'}"
    return f"{date:>10}  {time:>8}"


def _format_listing(groups: list[tuple[str, list[Entry]]]) -> str:
    """Get-ChildItem's table in Windows PowerShell 5.1, one block per directory."""
    out: list[str] = []
    for directory, entries in groups:
        if not entries:
            continue
        out.append(f"\r\n\r\n    Directory: {directory}\r\n\r\n\r\n")
        out.append(f"{'Mode':<7} {'LastWriteTime':>25} {'Length':>14} Name\r\n")
        out.append(f"{'----':<7} {'-------------':>25} {'------':>14} ----\r\n")
        for entry in entries:
            length = "" if entry.is_dir else str(entry.length)
            out.append(f"{_mode(entry):<7} {_stamp(entry.mtime):>25} {length:>14} {entry.name}\r\n")
    if out:
        out.append("\r\n\r\n")
    return "".join(out)


def _format_unix_listing(groups: list[tuple[str, list[Entry]]]) -> str:
    """Get-ChildItem's table in pwsh 7.4 on Linux: the Unix mode, owner and size columns."""
    out: list[str] = []
    for directory, entries in groups:
        if not entries:
            continue
        out.append(f"\r\n    Directory: {directory}\r\n\r\n")
        out.append(f"{'UnixMode':<10} {'User':<4} {'Group':<5} {'LastWriteTime':>16} "
                   f"{'Size':>10} Name\r\n")
        out.append(f"{'--------':<10} {'----':<4} {'-----':<5} {'-------------':>16} "
                   f"{'----':>10} ----\r\n")
        for entry in entries:
            moment = dt.datetime.fromtimestamp(entry.mtime, tz=dt.timezone.utc)
            stamp = f"{moment.month}/{moment.day}/{moment.year} {moment:%H:%M}"
            mode = "drwxr-xr-x" if entry.is_dir else "-rw-r--r--"
            out.append(f"{mode:<10} {'root':<4} {'root':<5} {stamp:>16} {entry.length:>10} "
                       f"{entry.name}\r\n")
    if out:
        out.append("\r\n")
    return "".join(out)


# --------------------------------------------------------------------------- cmd


class _Cmd:
    """`cmd /c ...` for the few built-ins people use to poke at a volume."""

    def __init__(self, view: ContainerView) -> None:
        self.view = view

    def run(self, args: list[str]) -> ExecResult:
        index = 0
        while index < len(args) and args[index].lower() in ("/s", "/q", "/d", "/a", "/u"):
            index += 1
        if index >= len(args) or args[index].lower() not in ("/c", "/k"):
            return ExecResult(b"", b"", 0)  # an interactive cmd whose stdin exec closed
        line = " ".join(args[index + 1 :]).strip()
        if len(line) >= 2 and line[0] == '"' and line[-1] == '"':
            line = line[1:-1]
        return self.line(line)

    def line(self, line: str) -> ExecResult:
        redirect: tuple[str, bool] | None = None
        found = re.search(r"(>>?)\s*(\"[^\"]*\"|\S+)\s*$", line)
        if found is not None:
            redirect = (found.group(2).strip('"'), found.group(1) == ">>")
            line = line[: found.start()]
        word, _, rest = line.strip().partition(" ")
        verb = word.lower()
        body = line.lstrip()[len(word) :]
        if verb in ("echo", "echo."):
            text = body[1:] if body.startswith(" ") else body
            if not redirect:
                text = text.rstrip()  # only the redirection keeps the trailing space
            return self._emit(
                (text if text.strip() or verb == "echo." else "ECHO is on.") + "\r\n", redirect
            )
        if verb in ("hostname", "hostname.exe"):
            return self._emit(self.view.hostname + "\r\n", redirect)
        if verb == "type":
            return self._type(rest.strip().strip('"'), redirect)
        if verb == "dir":
            return self._dir(rest.strip().strip('"') or "C:\\", redirect)
        if verb in ("mkdir", "md"):
            return self._mkdir(rest.strip().strip('"'))
        if verb in ("del", "erase"):
            return self._del(rest.strip().strip('"'))
        if verb == "ver":
            return self._emit(
                f"\r\nMicrosoft Windows [Version {self.view.build}.{self.view.revision}]\r\n",
                redirect,
            )
        return ExecResult(
            b"",
            _oem(
                f"'{word}' is not recognized as an internal or external command,\r\n"
                "operable program or batch file.\r\n"
            ),
            9009,
        )

    def _full(self, path: str) -> str:
        return self.view.full_path(path if re.match(r"^[A-Za-z]:", path) else "C:\\" + path)

    def _fail(self, err: WinError) -> ExecResult:
        return ExecResult(b"", _oem(err.win32 + "\r\n"), 1)

    def _emit(self, text: str, redirect: tuple[str, bool] | None) -> ExecResult:
        if redirect is None:
            return ExecResult(_oem(text), b"", 0)
        target, append = redirect
        try:
            self.view.write(self._full(target), text.encode("cp1252", errors="replace"), append)
        except WinError as err:
            return self._fail(err)
        return ExecResult(b"", b"", 0)

    def _type(self, path: str, redirect: tuple[str, bool] | None) -> ExecResult:
        try:
            data = self.view.read(self._full(path))
        except WinError as err:
            return self._fail(err)
        if redirect is not None:
            return self._emit(data.decode("cp1252", errors="replace"), redirect)
        return ExecResult(data, b"", 0)

    def _mkdir(self, path: str) -> ExecResult:
        full = self._full(path)
        if self.view.exists(full):
            return ExecResult(b"", _oem(f"A subdirectory or file {path} already exists.\r\n"), 1)
        try:
            self.view.mkdir(full, parents=True)
        except WinError as err:
            return self._fail(err)
        return ExecResult(b"", b"", 0)

    def _del(self, path: str) -> ExecResult:
        full = self._full(path)
        if not self.view.exists(full):
            return ExecResult(b"", _oem(f"Could Not Find {full}\r\n"), 1)
        try:
            self.view.remove(full)
        except WinError as err:
            return ExecResult(b"", _oem(f"{full}\r\n{err.win32}\r\n"), 1)
        return ExecResult(b"", b"", 0)

    def _dir(self, path: str, redirect: tuple[str, bool] | None) -> ExecResult:
        full = self._full(path)
        try:
            if self.view.is_file(full):
                entries = [self.view.stat(full)]
                directory = self.view.full_path(full + "\\..")
            else:
                entries = self.view.listdir(full)
                directory = full
        except WinError:
            return ExecResult(b"", _oem("File Not Found\r\n"), 1)
        serial = int.from_bytes(self.view.container_id[:8].encode()[:4], "big")
        lines = [
            f" Volume in drive {directory[0]} has no label.",
            f" Volume Serial Number is {serial >> 16 & 0xFFFF:04X}-{serial & 0xFFFF:04X}",
            "",
            f" Directory of {directory}",
            "",
        ]
        visible = [e for e in entries if "h" not in e.attributes]
        if len(split_path(directory[2:])) > 0 and not self.view.is_file(full):
            try:
                stamp = self.view.stat(directory).mtime
            except WinError:
                stamp = 0.0
            visible = [Entry(".", True, 0, stamp), Entry("..", True, 0, stamp), *visible]
        files = [e for e in visible if not e.is_dir]
        for entry in visible:
            moment = dt.datetime.fromtimestamp(entry.mtime, tz=dt.timezone.utc)
            when = moment.strftime("%m/%d/%Y  %I:%M %p")
            if entry.is_dir:
                kind = "<SYMLINKD>" if "l" in entry.attributes else "<DIR>     "
                lines.append(f"{when}    {kind}     {entry.name}")
            else:
                lines.append(f"{when} {entry.length:>17,} {entry.name}")
        total = sum(e.length for e in files)
        free = 20 * 1024**3 - self.view.root.used_bytes()
        lines.append(f"{len(files):>16} File(s) {total:>14,} bytes")
        lines.append(f"{len(visible) - len(files):>16} Dir(s) {free:>15,} bytes free")
        return self._emit("\r\n".join(lines) + "\r\n", redirect)
