"""The Linux side of the kind flavour: POSIX filesystems, stand-in nodes, containers.

On kind a "Windows pod" is a Linux pod running PowerShell 7 (`pwsh`) that runs
the very probe files the EKS pods run. Their twins (`winstor.sim.nodes.twins`) act on
a `LinuxContainerView` here instead of a Windows `ContainerView`: POSIX paths,
case-sensitive names, the container's own root filesystem, its mounts found by
longest prefix, and hostPath mounts resolved on the node's filesystem at every
access (so a node directory that changes is seen at once, as with a real bind
mount).

A stand-in node carries the node directory `/winstor` (in a real kind cluster
an `extraMounts` host directory): `/winstor/share` is the SMB share stand-in -
one filesystem every stand-in node of the cluster sees, exactly as every
Windows node sees the same FSx share through its `G:` mapping - and
`/winstor/smb-global-mappings.json` records the "mapping" the probes' stand-in
`Get-SmbGlobalMapping` reads.

Failures are raised as `PosixError` (a `WinError`, so twins and the PowerShell
front end handle both alike) worded as .NET on Linux words them - the text a
probe's catch block prints - with the C library's `strerror` text beside it for
the native commands (`ls`, `cat`, ...) that print that instead.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from .windows import Entry, SmbGlobalMapping, ViewFiles, WinError, dot_segments

__all__ = [
    "MAPPINGS_FILE",
    "NODE_DIR",
    "SHARE_DIR",
    "LinuxContainerView",
    "LinuxMount",
    "LinuxNode",
    "PosixError",
    "PosixFilesystem",
    "join_posix",
    "pwsh_version_for",
    "split_posix",
]

NODE_DIR = "/winstor"
SHARE_DIR = f"{NODE_DIR}/share"
MAPPINGS_FILE = f"{NODE_DIR}/smb-global-mappings.json"
POWERSHELL_REPOSITORY = "mcr.microsoft.com/powershell"

# --------------------------------------------------------------------------- errors

# kind: (.NET-on-Linux message template, strerror text). The .NET texts are
# what System.IO throws on Unix (Interop.GetExceptionForIoErrno): the ENOENT
# family and EACCES read as on Windows, every other errno as
# "<strerror> : '<path>'".
_POSIX_MESSAGES: dict[str, tuple[str, str]] = {
    "file_not_found": ("Could not find file '{p}'.", "No such file or directory"),
    "path_not_found": ("Could not find a part of the path '{p}'.", "No such file or directory"),
    "access_denied": ("Access to the path '{p}' is denied.", "Permission denied"),
    "is_a_directory": ("Is a directory : '{p}'", "Is a directory"),
    "not_a_directory": ("Not a directory : '{p}'", "Not a directory"),
    "read_only": ("Read-only file system : '{p}'", "Read-only file system"),
    "already_exists": ("The file '{p}' already exists.", "File exists"),
    "not_empty": ("Directory not empty : '{p}'", "Directory not empty"),
    "busy": ("Device or resource busy : '{p}'", "Device or resource busy"),
    "null_char": ("Null character in path. (Parameter 'path')", "Invalid argument"),
}


class PosixError(WinError):
    """A failed filesystem operation in a Linux container, worded as .NET on Linux words it.

    `message` is the .NET exception message (what a probe reports), `strerror`
    the C library's text for the errno (what `ls`/`cat`/`rm` print).
    """

    @classmethod
    def of(cls, kind: str, path: str) -> PosixError:
        return cls(kind, _POSIX_MESSAGES[kind][0].format(p=path), path)

    def at(self, path: str) -> PosixError:
        return PosixError.of(self.kind, path)

    @property
    def strerror(self) -> str:
        return _POSIX_MESSAGES[self.kind][1]

    @property
    def win32(self) -> str:  # the "system message" slot: on Linux, strerror
        return self.strerror

    @property
    def exception(self) -> str:
        if self.kind == "file_not_found":
            return "FileNotFoundException"
        if self.kind == "path_not_found":
            return "DirectoryNotFoundException"
        if self.kind == "access_denied":
            return "UnauthorizedAccessException"
        return "ArgumentException" if self.kind == "null_char" else "IOException"


# --------------------------------------------------------------------------- paths


def split_posix(path: str) -> list[str]:
    """Components of a `/`-separated path with `.` and `..` applied (a backslash is
    an ordinary character on Linux)."""
    return dot_segments(path.split("/"))


def join_posix(*pieces: str) -> str:
    """Pieces joined into one relative path (no leading slash)."""
    out: list[str] = []
    for piece in pieces:
        out.extend(split_posix(piece))
    return "/".join(out)


def absolute(path: str, cwd: str = "/") -> str:
    """`path` made absolute against `cwd` and normalised, as `Path.GetFullPath` does."""
    base = path if path.startswith("/") else cwd.rstrip("/") + "/" + path
    return "/" + join_posix(base)


# ----------------------------------------------------------------------- filesystem


@dataclass
class _Inode:
    name: str
    is_dir: bool
    mtime: float
    data: bytes = b""
    children: dict[str, _Inode] = field(default_factory=dict)  # key: the exact name


class PosixFilesystem:
    """An in-memory ext4-like tree: case-sensitive, thread-safe.

    Paths are relative to the filesystem's root (`Directory/app-state/x.txt`);
    callers that know the path a process used pass it as `display`, so that an
    error reads `/dotnetapp/app-state/x` rather than `Directory/app-state/x`.
    """

    def __init__(self, label: str = "/", clock: Callable[[], float] = time.time) -> None:
        self.label = label
        self._clock = clock
        self._lock = threading.RLock()
        self._root = _Inode(name="", is_dir=True, mtime=clock())

    def _show(self, path: str, display: str | None) -> str:
        if display is not None:
            return display
        return self.label.rstrip("/") + "/" + join_posix(path)

    def _walk(self, parts: list[str]) -> tuple[_Inode | None, bool]:
        """(the inode, or None; whether a non-directory stood in the way: ENOTDIR)."""
        node = self._root
        for index, part in enumerate(parts):
            if not node.is_dir:
                return None, True
            child = node.children.get(part)
            if child is None:
                return None, False
            node = child
            if index < len(parts) - 1 and not node.is_dir:
                return None, True
        return node, False

    def _missing(self, parts: list[str], shown: str, creating: bool = False) -> PosixError:
        """ENOENT as .NET reports it: the file is blamed only if its directory exists."""
        _, blocked = self._walk(parts)
        if blocked:
            return PosixError.of("not_a_directory", shown)
        parent, _ = self._walk(parts[:-1])
        if creating or parent is None or not parent.is_dir:
            return PosixError.of("path_not_found", shown)
        return PosixError.of("file_not_found", shown)

    # -- queries
    def exists(self, path: str) -> bool:
        with self._lock:
            return self._walk(split_posix(path))[0] is not None

    def is_dir(self, path: str) -> bool:
        with self._lock:
            node = self._walk(split_posix(path))[0]
            return node is not None and node.is_dir

    def is_file(self, path: str) -> bool:
        with self._lock:
            node = self._walk(split_posix(path))[0]
            return node is not None and not node.is_dir

    def stat(self, path: str, display: str | None = None) -> Entry:
        with self._lock:
            parts = split_posix(path)
            node = self._walk(parts)[0]
            if node is None:
                raise self._missing(parts, self._show(path, display))
            return _entry(node)

    def read(self, path: str, display: str | None = None) -> bytes:
        with self._lock:
            parts = split_posix(path)
            shown = self._show(path, display)
            node = self._walk(parts)[0]
            if node is None:
                raise self._missing(parts, shown)
            if node.is_dir:
                # open(2) succeeds on a directory; .NET's fstat check then refuses it.
                raise PosixError.of("access_denied", shown)
            return node.data

    def listdir(self, path: str = "", display: str | None = None) -> list[Entry]:
        """Entries of a directory in byte order of their names."""
        with self._lock:
            parts = split_posix(path)
            shown = self._show(path, display)
            node, blocked = self._walk(parts)
            if node is None:
                raise PosixError.of("not_a_directory" if blocked else "path_not_found", shown)
            if not node.is_dir:
                raise PosixError.of("not_a_directory", shown)
            return [_entry(node.children[name]) for name in sorted(node.children)]

    # -- changes
    def mkdir(self, path: str, parents: bool = True, display: str | None = None) -> None:
        """Create a directory: like `Directory.CreateDirectory` with `parents`
        (missing parents made, an existing directory fine), else like mkdir(2)."""
        with self._lock:
            parts = split_posix(path)
            shown = self._show(path, display)
            if not parts:
                return
            node = self._root
            for index, part in enumerate(parts):
                last = index == len(parts) - 1
                child = node.children.get(part)
                if child is None:
                    if not parents and not last:
                        raise PosixError.of("path_not_found", shown)
                    child = _Inode(part, True, self._clock())
                    self._add(node, child)
                elif not child.is_dir:
                    raise PosixError.of("already_exists" if last else "not_a_directory", shown)
                elif last and not parents:
                    raise PosixError.of("already_exists", shown)
                node = child

    def write(self, path: str, data: bytes, display: str | None = None,
              append: bool = False) -> None:
        """Create or replace (or append to) a file; its directory must exist."""
        with self._lock:
            parts = split_posix(path)
            shown = self._show(path, display)
            if not parts:
                raise PosixError.of("is_a_directory", shown)
            parent, blocked = self._walk(parts[:-1])
            if parent is None or not parent.is_dir:
                raise PosixError.of("not_a_directory" if blocked or parent is not None
                                    else "path_not_found", shown)
            now = self._clock()
            node = parent.children.get(parts[-1])
            if node is not None and node.is_dir:
                raise PosixError.of("is_a_directory", shown)
            if node is None:
                node = _Inode(parts[-1], False, now)
                self._add(parent, node)
            node.data = node.data + bytes(data) if append else bytes(data)
            node.mtime = now

    def remove(self, path: str, recursive: bool = False, display: str | None = None) -> None:
        with self._lock:
            parts = split_posix(path)
            shown = self._show(path, display)
            if not parts:
                raise PosixError.of("access_denied", shown)
            node = self._walk(parts)[0]
            if node is None:
                raise self._missing(parts, shown)
            if node.is_dir and node.children and not recursive:
                raise PosixError.of("not_empty", shown)
            parent = self._walk(parts[:-1])[0]
            assert parent is not None
            del parent.children[node.name]
            parent.mtime = self._clock()

    def clear(self) -> None:
        """Drop every entry (what mkfs does)."""
        with self._lock:
            self._root = _Inode(name="", is_dir=True, mtime=self._clock())

    def used_bytes(self) -> int:
        with self._lock:
            total, stack = 0, [self._root]
            while stack:
                node = stack.pop()
                total += len(node.data)
                stack.extend(node.children.values())
            return total

    @staticmethod
    def _add(parent: _Inode, child: _Inode) -> None:
        parent.children[child.name] = child
        parent.mtime = child.mtime


def _entry(node: _Inode) -> Entry:
    # Entry.length of a directory is its ext4 block (what ls -l shows); hidden = a dot name.
    return Entry(name=node.name, is_dir=node.is_dir,
                 length=4096 if node.is_dir else len(node.data), mtime=node.mtime,
                 attributes="h" if node.name.startswith(".") else "")


# ------------------------------------------------------------------------- nodes


@dataclass
class LinuxNode:
    """One kind node: its root filesystem and what is mounted into it.

    `mounts` maps node paths to filesystems that live elsewhere - the share
    every stand-in node sees at `/winstor/share`, local-path volumes - so that a
    hostPath reaching into them lands on the same object from every pod.
    """

    name: str
    kernel_release: str
    hostname: str = ""
    stand_in: bool = False
    fs: PosixFilesystem = field(default_factory=PosixFilesystem)
    mounts: dict[str, PosixFilesystem] = field(default_factory=dict)  # "/winstor/share" -> fs

    def __post_init__(self) -> None:
        if not self.hostname:
            self.hostname = self.name
        for directory in ("etc/kubernetes/manifests", "var/lib/kubelet/pods",
                          "var/local-path-provisioner", "kind", "tmp", "root"):
            self.fs.mkdir(directory)
        self.fs.write("etc/hostname", (self.hostname + "\n").encode())

    def mount(self, path: str, fs: PosixFilesystem) -> None:
        """Mount `fs` at node path `path` (the mount point is created)."""
        self.fs.mkdir(join_posix(path))
        self.mounts["/" + join_posix(path)] = fs

    def resolve_host_path(self, host_path: str) -> tuple[PosixFilesystem, str]:
        """A node path → (filesystem, path within it); the longest mount wins."""
        parts = split_posix(host_path)
        best, best_len = None, -1
        for point, fs in self.mounts.items():
            p_parts = split_posix(point)
            if parts[: len(p_parts)] == p_parts and len(p_parts) > best_len:
                best, best_len = fs, len(p_parts)
        if best is not None:
            return best, "/".join(parts[best_len:])
        return self.fs, "/".join(parts)

    def write_mappings(self, records: list[dict[str, Any]] | None) -> None:
        """Record (or, with None, remove) the node's SMB Global Mapping stand-in."""
        rel = join_posix(MAPPINGS_FILE)
        if records is None:
            if self.fs.exists(rel):
                self.fs.remove(rel)
            return
        self.fs.mkdir(join_posix(NODE_DIR))
        self.fs.write(rel, (json.dumps(records, indent=2) + "\n").encode())


# --------------------------------------------------------------------- containers


@dataclass
class LinuxMount:
    """A volume mount inside a Linux container: a filesystem (claim, emptyDir)
    or a hostPath on `node`, resolved on every access."""

    container_path: str
    fs: PosixFilesystem | None = None
    sub_path: str = ""
    read_only: bool = False
    host_path: str | None = None
    node: LinuxNode | None = None

    def target(self, rest: list[str]) -> tuple[PosixFilesystem, str]:
        if self.fs is not None:
            return self.fs, join_posix(self.sub_path, *rest)
        if self.host_path is None or self.node is None:
            raise ValueError("a LinuxMount needs fs, or host_path and node")
        return self.node.resolve_host_path("/" + join_posix(self.host_path, self.sub_path,
                                                            *rest))


_PWSH_RELEASES = {"7.2": "7.2.24", "7.4": "7.4.6", "7.5": "7.5.0"}
PWSH_DIR = "/opt/microsoft/powershell/7"
# Executables the sim can run in a Linux container; `pwsh` only in PowerShell images.
NATIVES = ("ls", "cat", "mkdir", "rm", "hostname")


def pwsh_version_for(image: str) -> str | None:
    """The PowerShell an image ships (`mcr.microsoft.com/powershell:lts-7.4-...` → 7.4.6),
    or None for an image without PowerShell."""
    repository, _, tag = image.rpartition(":") if ":" in image.rsplit("/", 1)[-1] else (
        image, "", "latest")
    if repository.lower() != POWERSHELL_REPOSITORY:
        return None
    exact = re.search(r"(?<![\d.])(\d+\.\d+\.\d+)(?![\d.])", tag)
    if exact:
        return exact.group(1)
    minor = re.search(r"(?<![\d.])(\d+\.\d+)(?![\d.])", tag)
    return _PWSH_RELEASES.get(minor.group(1) if minor else "7.4", _PWSH_RELEASES["7.4"])


def _seed_root(fs: PosixFilesystem, hostname: str, pwsh: str | None) -> None:
    """An Ubuntu 22.04 image's top level, enough for a plausible `ls /`."""
    for name in ("bin", "boot", "dev", "etc", "home", "lib", "lib64", "media", "mnt", "opt",
                 "proc", "root", "run", "sbin", "srv", "sys", "tmp", "usr/bin", "usr/lib",
                 "usr/share", "var/lib", "var/tmp"):
        fs.mkdir(name)
    fs.write("etc/hostname", (hostname + "\n").encode())
    fs.write("etc/os-release", (
        b'PRETTY_NAME="Ubuntu 22.04.5 LTS"\nNAME="Ubuntu"\nVERSION_ID="22.04"\n'
        b'VERSION="22.04.5 LTS (Jammy Jellyfish)"\nVERSION_CODENAME=jammy\nID=ubuntu\n'
        b"ID_LIKE=debian\n"))
    for name in NATIVES:
        # The bytes stand in for the ELF binaries (usr-merged: /bin is /usr/bin).
        fs.write(f"usr/bin/{name}", b"\x7fELF" + hashlib.sha256(name.encode()).digest())
    if pwsh is not None:
        fs.mkdir(PWSH_DIR)
        binary = b"\x7fELF" + hashlib.sha256(f"pwsh {pwsh}".encode()).digest()
        fs.write(f"{PWSH_DIR.lstrip('/')}/pwsh", binary)
        fs.write("usr/bin/pwsh", binary)


class LinuxContainerView(ViewFiles):
    """What a process inside one Linux container sees.

    Its own root filesystem (the image: Ubuntu folders, PowerShell under
    /opt/microsoft/powershell/7 when the image has it) plus its mounts, found
    by longest prefix of the path's components (case-sensitive). Relative
    paths are relative to `/`, the working directory of the PowerShell images.
    """

    platform = "linux"
    host_process = False  # the Windows notion; Linux pods reach the node through hostPath

    def __init__(self, node: LinuxNode, hostname: str, image: str,
                 mounts: Iterable[LinuxMount] = (), container_id: str | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.node = node
        self.hostname = hostname
        self.image = image
        self.pwsh_version = pwsh_version_for(image)
        self.container_id = container_id or hashlib.sha256(
            f"{node.name}/{hostname}/{image}".encode()).hexdigest()
        self.shells = frozenset(NATIVES) | ({"pwsh"} if self.pwsh_version else frozenset())
        self.root = PosixFilesystem(clock=clock)
        _seed_root(self.root, hostname, self.pwsh_version)
        self.mounts: list[LinuxMount] = []
        self.state: dict[str, object] = {}
        for mount in mounts:
            self.add_mount(mount)

    # What the Windows-only probes ask about: a Linux container has none of it.
    @property
    def smb_mappings(self) -> list[SmbGlobalMapping]:
        return []

    @property
    def services(self) -> dict[str, Any]:
        return {}

    @property
    def pipes(self) -> set[str]:
        return set()

    @property
    def kernel_release(self) -> str:
        """`uname -r`: a container shares its node's kernel (on kind: the host's)."""
        return self.node.kernel_release

    # -- mounts
    def add_mount(self, mount: LinuxMount) -> LinuxMount:
        mount.container_path = absolute(mount.container_path)
        self.mounts.append(mount)
        self.root.mkdir(join_posix(mount.container_path))  # the runtime makes the mount point
        return mount

    # -- paths
    def full_path(self, path: str) -> str:
        return absolute(path.strip())

    def resolve(self, path: str) -> tuple[PosixFilesystem, str, bool]:
        """Container path → (filesystem, path within it, read_only). Longest mount wins."""
        if "\0" in path:
            raise PosixError.of("null_char", path)
        parts = split_posix(self.full_path(path))
        best: LinuxMount | None = None
        best_len = -1
        for mount in self.mounts:
            m_parts = split_posix(mount.container_path)
            if parts[: len(m_parts)] == m_parts and len(m_parts) > best_len:
                best, best_len = mount, len(m_parts)
        if best is not None:
            fs, rel = best.target(parts[best_len:])
            return fs, rel, best.read_only
        return self.root, "/".join(parts), False

    def is_mount_point(self, path: str) -> bool:
        full = self.full_path(path)
        return any(m.container_path == full for m in self.mounts)

    # -- file operations on container paths (errors carry the full container path);
    # exists/is_dir/is_file/stat/read/listdir come from ViewFiles
    def write(self, path: str, data: bytes, append: bool = False) -> None:
        fs, rel, read_only = self.resolve(path)
        shown = self.full_path(path)
        if read_only:
            # EROFS comes after the lookup: a missing directory is still reported as such.
            parent = rel.rsplit("/", 1)[0] if "/" in rel else ""
            if not fs.is_dir(parent):
                raise PosixError.of("path_not_found", shown)
            if fs.is_dir(rel):
                raise PosixError.of("is_a_directory", shown)
            raise PosixError.of("read_only", shown)
        fs.write(rel, data, display=shown, append=append)

    def mkdir(self, path: str, parents: bool = True) -> None:
        fs, rel, read_only = self.resolve(path)
        shown = self.full_path(path)
        if read_only and not fs.is_dir(rel):
            raise PosixError.of("read_only", shown)
        fs.mkdir(rel, parents=parents, display=shown)

    def remove(self, path: str, recursive: bool = False) -> None:
        fs, rel, read_only = self.resolve(path)
        shown = self.full_path(path)
        if self.is_mount_point(path):
            fs.stat(rel, display=shown)
            raise PosixError.of("busy", shown)  # a mount point cannot be unlinked
        if read_only:
            fs.stat(rel, display=shown)
            raise PosixError.of("read_only", shown)
        fs.remove(rel, recursive=recursive, display=shown)


# ------------------------------------------------------------------ native commands


def exec_not_found(program: str) -> tuple[bytes, bytes, int]:
    """runc refusing an exec whose executable is not in the image: what containerd
    returns for a Linux container (kubectl shows it and exits 126)."""
    return (b"", ("OCI runtime exec failed: exec failed: unable to start container process: "
                  f'exec: "{program}": executable file not found in $PATH: unknown\r\n'
                  ).encode(), 126)


def find_program(view: LinuxContainerView, arg0: str) -> str | None:
    """Which modelled executable `arg0` names ($PATH lookup, or a path to it)."""
    if "/" not in arg0:
        return arg0 if arg0 in view.shells else None
    full = view.full_path(arg0)
    base = full.rsplit("/", 1)[-1]
    if base not in view.shells:
        return None
    candidates = {f"/usr/bin/{base}", f"/bin/{base}"}
    if base == "pwsh":
        candidates.add(f"{PWSH_DIR}/pwsh")
    return base if full in candidates else None


class _Usage(Exception):
    """A bad option: the tool's usage message, exit code 2 (ls) or 1."""


def _strerror(err: WinError) -> str:
    return err.strerror if isinstance(err, PosixError) else err.win32


def run_native(argv: list[str], view: LinuxContainerView, cwd: str = "/",
               tty: bool = False) -> tuple[bytes, bytes, int]:
    """Run one of the GNU coreutils the sim models (C locale: byte order, 'quotes')."""
    program, args = argv[0].rsplit("/", 1)[-1], argv[1:]
    tool = _Natives(view, cwd, tty)
    handler: Callable[[list[str]], int] = getattr(tool, "_" + program)
    try:
        code = handler(args)
    except _Usage as usage:
        tool.err.append(f"{program}: {usage}\nTry '{program} --help' for more information.\n")
        code = 2 if program == "ls" else 1
    return "".join(tool.out).encode(), "".join(tool.err).encode(), code


def _flags(args: list[str], known: str) -> tuple[set[str], list[str]]:
    flags: set[str] = set()
    operands: list[str] = []
    long_names = {"--all": "a", "--recursive": "R", "--force": "f", "--parents": "p"}
    for index, arg in enumerate(args):
        if arg == "--":
            operands.extend(args[index + 1:])
            break
        if arg.startswith("--"):
            if arg not in long_names or long_names[arg] not in known:
                raise _Usage(f"unrecognized option '{arg}'")
            flags.add(long_names[arg])
        elif arg.startswith("-") and len(arg) > 1:
            for letter in arg[1:]:
                if letter not in known:
                    raise _Usage(f"invalid option -- '{letter}'")
                flags.add(letter)
        else:
            operands.append(arg)
    return flags, operands


class _Natives:
    def __init__(self, view: LinuxContainerView, cwd: str, tty: bool) -> None:
        self.view = view
        self.cwd = cwd
        self.tty = tty
        self.out: list[str] = []
        self.err: list[str] = []

    def _path(self, operand: str) -> str:
        return absolute(operand, self.cwd)

    def _hostname(self, args: list[str]) -> int:
        if args and not all(a in ("-s", "--short", "-f", "--fqdn") for a in args):
            self.err.append("hostname: you must be root to change the host name\n")
            return 1
        self.out.append(self.view.hostname + "\n")
        return 0

    def _cat(self, args: list[str]) -> int:
        _, operands = _flags(args, "")
        code = 0
        for operand in operands or ["-"]:
            if operand == "-":
                continue  # stdin: exec closed it
            path = self._path(operand)
            if self.view.is_dir(path):
                self.err.append(f"cat: {operand}: Is a directory\n")
                code = 1
                continue
            try:
                self.out.append(self.view.read(path).decode("utf-8", errors="replace"))
            except WinError as err:
                self.err.append(f"cat: {operand}: {_strerror(err)}\n")
                code = 1
        return code

    def _mkdir(self, args: list[str]) -> int:
        flags, operands = _flags(args, "pv")
        if not operands:
            raise _Usage("missing operand")
        code = 0
        for operand in operands:
            path = self._path(operand)
            if "p" in flags and self.view.is_dir(path):
                continue
            try:
                self.view.mkdir(path, parents="p" in flags)
            except WinError as err:
                self.err.append(f"mkdir: cannot create directory '{operand}': "
                                f"{_strerror(err)}\n")
                code = 1
                continue
            if "v" in flags:
                self.out.append(f"mkdir: created directory '{operand}'\n")
        return code

    def _rm(self, args: list[str]) -> int:
        flags, operands = _flags(args, "rRfdv")
        if not operands:
            if "f" in flags:
                return 0
            raise _Usage("missing operand")
        code = 0
        for operand in operands:
            path = self._path(operand)
            if not self.view.exists(path):
                if "f" not in flags:
                    self.err.append(f"rm: cannot remove '{operand}': No such file or directory\n")
                    code = 1
                continue
            if self.view.is_dir(path) and not flags & {"r", "R"} and (
                    "d" not in flags or self.view.listdir(path)):
                self.err.append(f"rm: cannot remove '{operand}': Is a directory\n")
                code = 1
                continue
            try:
                self.view.remove(path, recursive=True)
            except WinError as err:
                self.err.append(f"rm: cannot remove '{operand}': {_strerror(err)}\n")
                code = 1
        return code

    def _ls(self, args: list[str]) -> int:
        flags, operands = _flags(args, "alA1dR")
        code = 0
        files: list[tuple[str, Entry]] = []
        dirs: list[tuple[str, str]] = []
        for operand in operands or ["."]:
            path = self._path(operand)
            try:
                entry = self.view.stat(path)
            except WinError as err:
                self.err.append(f"ls: cannot access '{operand}': {_strerror(err)}\n")
                code = 2
                continue
            if entry.is_dir and "d" not in flags:
                dirs.append((operand, path))
            else:
                files.append((operand, entry))
        blocks: list[str] = []
        if files:
            blocks.append(self._listing(sorted(files, key=lambda f: f[0].encode()), flags,
                                        total=False))
        for operand, path in sorted(dirs, key=lambda d: d[0].encode()):
            try:
                entries = self.view.listdir(path)
            except WinError as err:
                self.err.append(f"ls: cannot open directory '{operand}': {_strerror(err)}\n")
                code = 2
                continue
            shown = [(e.name, e) for e in entries
                     if flags & {"a", "A"} or not e.name.startswith(".")]
            if "a" in flags:
                here = self.view.stat(path)
                shown = [(".", here), ("..", here), *shown]
            shown.sort(key=lambda f: f[0].encode())
            header = f"{operand}:\n" if len(operands) > 1 or files else ""
            blocks.append(header + self._listing(shown, flags, total=True))
        self.out.append("\n".join(blocks))
        return code

    def _listing(self, items: list[tuple[str, Entry]], flags: set[str], total: bool) -> str:
        if "l" in flags:
            width = max((len(str(e.length)) for _, e in items), default=1)
            lines = [f"total {sum(4 if e.is_dir else -(-e.length // 4096) * 4 for _, e in items)}"
                     ] if total else []
            for name, e in items:
                mode = "drwxr-xr-x" if e.is_dir else "-rw-r--r--"
                stamp = time.strftime("%b %e %H:%M", time.gmtime(e.mtime))
                lines.append(f"{mode} {2 if e.is_dir else 1} root root {e.length:>{width}} "
                             f"{stamp} {name}")
            return "".join(line + "\n" for line in lines)
        if not items:
            return ""
        if self.tty and "1" not in flags:
            return "  ".join(name for name, _ in items) + "\n"
        return "".join(name + "\n" for name, _ in items)
