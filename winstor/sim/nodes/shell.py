"""`sh -c SCRIPT` in a Linux container: the shell words a person types at a pod.

Every Linux image the suite meets carries a POSIX shell at /bin/sh (dash on
Debian and Ubuntu, ash in busybox and Alpine), and `kubectl exec POD -- sh -c '...'`
is how one runs more than one command there - or how a container's command prints a
line and then sleeps. Without a model of it, every such exec would fail as if the
image had no shell at all, which no real image the suite uses does.

The model runs a script of simple commands separated by newlines, `;`, `&&`, `||`
or `&` (run in the foreground: nothing here takes time): the builtins `echo`
(dash's backslash escapes; busybox's only with `-e`), `printf` (`%s`, `%d`, `%%`,
escapes, the format reused for extra arguments), `exit [N]`, `true`, `false`, `:`,
`sleep`, `hostname`, output sent to stderr by `>&2`/`1>&2` or discarded by
`>/dev/null`/`2>/dev/null`, and `$?`. A container model with files (the kind
flavour's `LinuxContainerView`) lends its native tools (`ls`, `cat`, ...) through
`natives`. Any other command word fails as the shell fails on a command it cannot
find - `sh: 1: X: not found` (dash) or `sh: X: not found` (ash), exit 127 - and
the script goes on, as shells do. A pipe or another redirection is beyond the
model and fails the same way on its first word, so a script the model cannot run
says so instead of printing made-up output.

`sleep` does not wait in an exec (the model has no use for the time). What a
container's own command prints before it first blocks in `sleep` is its log
(`container_log`): the modelled containers stay up by sleeping, as real ones do.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = ["SHELLS", "Natives", "container_log", "is_shell", "run"]

SHELLS = ("sh", "bash", "ash", "dash")
"""The names a Linux image's shell answers to (bash only where the image has it)."""

Natives = Callable[[list[str]], "tuple[bytes, bytes, int] | None"]
"""Runs a native tool of the container model, or answers None: no such tool."""

_BUILTINS = frozenset({"echo", "printf", "exit", "true", "false", ":", "sleep", "hostname"})
_STDERR_REDIRECTS = frozenset({">&2", "1>&2"})
_DISCARDS = {">/dev/null": 1, "1>/dev/null": 1, "2>/dev/null": 2}


def is_shell(program: str, image: str) -> bool:
    """Whether `program` (argv[0]) names the image's shell: /bin/sh is in every image
    the suite runs; bash only in the Debian/Ubuntu-based ones, not in busybox/Alpine."""
    base = program.rsplit("/", 1)[-1]
    if "/" in program and program not in (f"/bin/{base}", f"/usr/bin/{base}"):
        return False
    if base == "sh":
        return True
    if base == "bash":
        return _flavour(image) == "dash"
    return base == _flavour(image)


def _flavour(image: str) -> str:
    """dash (Debian, Ubuntu, Amazon Linux's sh is bash but words alike) or ash."""
    name = image.rsplit("/", 1)[-1].lower()
    return "ash" if name.startswith(("busybox", "alpine")) else "dash"


@dataclass
class _Run:
    """One script's state: what it wrote (in order, per stream) and its last status."""

    program: str
    flavour: str
    hostname: str
    natives: Natives | None
    stop_at_sleep: bool
    writes: list[tuple[int, bytes]] = field(default_factory=list)
    status: int = 0

    def write(self, stream: int, data: bytes) -> None:
        if data:
            self.writes.append((stream, data))

    def not_found(self, word: str, line: int) -> int:
        where = f"{line}: " if self.flavour == "dash" else ""
        self.write(2, f"{self.program}: {where}{word}: not found\n".encode())
        return 127


class _Exit(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


class _Blocked(Exception):
    """The script reached a `sleep`: a container's command blocks there."""


def _segments(script: str) -> list[tuple[int, str, str]]:
    """Split a script into (line, command text, operator before it) at unquoted
    newlines, `;`, `&&`, `||` and `&`; a lone `|` stays in the text (a pipe)."""
    out: list[tuple[int, str, str]] = []
    line, start_line, quote, buf, op = 1, 1, "", [], ";"
    i = 0
    while i < len(script):
        ch = script[i]
        if quote:
            if ch == quote:
                quote = ""
            elif ch == "\\" and quote == '"' and i + 1 < len(script):
                buf.append(ch)
                i += 1
                ch = script[i]
            buf.append(ch)
            line += ch == "\n"
            i += 1
            continue
        two = script[i:i + 2]
        if ch in "'\"":
            quote = ch
        elif ch == "\\" and i + 1 < len(script):
            buf.extend(two)
            i += 2
            continue
        elif ch == "#" and (not buf or buf[-1] in " \t"):
            while i < len(script) and script[i] != "\n":
                i += 1
            continue
        if two in ("&&", "||") or (ch in ";\n&" and two not in (">&", "&>")
                                   and not (ch == "&" and buf and buf[-1] in "<>")):
            out.append((start_line, "".join(buf), op))
            op = two if two in ("&&", "||") else ";"
            buf = []
            i += len(two) if two in ("&&", "||") else 1
            line += ch == "\n"
            start_line = line
            continue
        buf.append(ch)
        i += 1
    out.append((start_line, "".join(buf), op))
    return [(n, text, o) for n, text, o in out if text.strip()]


def _unescape(text: str) -> tuple[str, bool]:
    """echo/printf escapes: \\n \\t \\\\ \\a \\r; \\c ends the output (True)."""
    out, i = [], 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            nxt = text[i + 1]
            if nxt == "c":
                return "".join(out), True
            out.append({"n": "\n", "t": "\t", "\\": "\\", "a": "\a", "r": "\r"}.get(
                nxt, "\\" + nxt))
            i += 2
            continue
        out.append(ch)
        i += 1
    return "".join(out), False


def _printf(fmt: str, args: list[str]) -> str:
    """POSIX printf for %s/%d/%%: the format is reused while arguments remain."""
    out: list[str] = []
    pending = list(args)
    while True:
        values = iter(pending)
        used = 0
        pieces = re.split(r"(%[sd%])", fmt)
        text = []
        for piece in pieces:
            if piece == "%%":
                text.append("%")
            elif piece in ("%s", "%d"):
                value = next(values, "")
                used += 1
                if piece == "%d":
                    value = str(int(value)) if re.fullmatch(r"-?\d+", value) else "0"
                text.append(value)
            else:
                text.append(piece)
        out.append(_unescape("".join(text))[0])
        pending = pending[used:]
        if not pending or used == 0:
            return "".join(out)


def _run_command(run: _Run, words: list[str], line: int) -> int:
    """One simple command: builtins, the model's native tools, or "not found"."""
    stream, discard = 1, set()
    kept = []
    for word in words:
        if word in _STDERR_REDIRECTS:
            stream = 2
        elif word in _DISCARDS:
            discard.add(_DISCARDS[word])
        elif word == "2>&1":
            pass  # both streams are the terminal's or the log's here
        else:
            kept.append(word)
    if not kept:
        return 0
    name, args = kept[0], kept[1:]
    out: list[tuple[int, bytes]] = []
    code = 0
    if name in _BUILTINS:
        code = _builtin(run, name, args, out)
    else:
        answer = run.natives([name, *args]) if run.natives is not None else None
        if answer is None:
            return run.not_found(name, line)
        stdout, stderr, code = answer
        out += [(1, stdout), (2, stderr)]
    for fd, data in out:
        target = stream if fd == 1 else 2
        if target not in discard and fd not in discard:
            run.write(target, data)
    return code


def _builtin(run: _Run, name: str, args: list[str], out: list[tuple[int, bytes]]) -> int:
    if name in ("true", ":"):
        return 0
    if name == "false":
        return 1
    if name == "exit":
        if not args:
            raise _Exit(run.status)
        if not re.fullmatch(r"\d+", args[0]):
            run.write(2, f"{run.program}: {'1: ' if run.flavour == 'dash' else ''}exit: "
                         f"Illegal number: {args[0]}\n".encode())
            raise _Exit(2)
        raise _Exit(int(args[0]) & 0xFF)
    if name == "sleep":
        if run.stop_at_sleep:
            raise _Blocked
        return 0
    if name == "hostname":
        out.append((1, (run.hostname + "\n").encode()))
        return 0
    if name == "printf":
        if not args:
            out.append((2, b"printf: usage: printf format [arg ...]\n"))
            return 2
        out.append((1, _printf(args[0], args[1:]).encode()))
        return 0
    # echo
    newline, escapes = True, run.flavour == "dash"
    while args and args[0] in ("-n", "-e", "-ne", "-en"):
        newline = newline and "n" not in args[0]
        escapes = escapes or (run.flavour == "ash" and "e" in args[0])
        args = args[1:]
    text = " ".join(args)
    stop = False
    if escapes:
        text, stop = _unescape(text)
    out.append((1, (text + ("\n" if newline and not stop else "")).encode()))
    return 0


def _script(run: _Run, script: str) -> int:
    for line, text, op in _segments(script):
        if (op == "&&" and run.status != 0) or (op == "||" and run.status == 0):
            continue
        text = text.replace("$?", str(run.status))
        try:
            words = shlex.split(text, comments=False, posix=True)
        except ValueError:
            run.write(2, f"{run.program}: {line}: Syntax error: Unterminated quoted "
                         "string\n".encode())
            return 2
        if not words:
            continue
        if any(w in ("|", "<", ">", ">>") or (w.startswith((">", "<")) and
               w not in _STDERR_REDIRECTS and w not in _DISCARDS) for w in words[1:]):
            run.status = run.not_found(words[0], line)  # a pipe or redirection: beyond it
            continue
        run.status = _run_command(run, words, line)
    return run.status


def _execute(argv: list[str], hostname: str, image: str, natives: Natives | None,
             stdin: bytes, stop_at_sleep: bool) -> _Run:
    program = argv[0].rsplit("/", 1)[-1]
    run = _Run(program=program, flavour=_flavour(image), hostname=hostname, natives=natives,
               stop_at_sleep=stop_at_sleep)
    args = argv[1:]
    try:
        if args and args[0] == "-c":
            if len(args) < 2:
                where = "0: " if run.flavour == "dash" else ""
                run.write(2, f"{program}: {where}-c requires an argument\n".encode())
                run.status = 2
            else:
                _script(run, args[1])
        elif args and args[0].startswith("-"):
            run.write(2, f"{program}: 0: Illegal option {args[0][:2]}\n".encode())
            run.status = 2
        elif args:  # sh FILE: the model has no script files
            where = "0: " if run.flavour == "dash" else ""
            run.write(2, f"{program}: {where}cannot open {args[0]}: No such file\n".encode())
            run.status = 2
        else:
            _script(run, stdin.decode("utf-8", errors="replace"))
    except _Exit as done:
        run.status = done.code
    except _Blocked:
        pass
    return run


def run(argv: list[str], *, hostname: str, image: str, natives: Natives | None = None,
        stdin: bytes = b"") -> tuple[bytes, bytes, int]:
    """Run `sh ...` as an exec: (stdout, stderr, exit code)."""
    done = _execute(argv, hostname, image, natives, stdin, stop_at_sleep=False)
    stdout = b"".join(d for s, d in done.writes if s == 1)
    stderr = b"".join(d for s, d in done.writes if s == 2)
    return stdout, stderr, done.status


def container_log(command: list[str], hostname: str, image: str,
                  natives: Natives | None = None) -> str:
    """What a container whose command is `sh -c SCRIPT` has written to its log: both
    streams, in order, up to its first `sleep` (or its end). Any other command: ""
    (the modelled containers' PowerShell loops and pause images print nothing)."""
    if not command or not is_shell(command[0], image) or command[1:2] != ["-c"]:
        return ""
    done = _execute(command, hostname, image, natives, b"", stop_at_sleep=True)
    return b"".join(d for _, d in done.writes).decode("utf-8", errors="replace")
