"""The Windows side of the embedded cluster: filesystems, volumes, shares, services, nodes.

What a process sees on a Windows node is modelled here as plain Python objects, so
that probes (answered by twins) and the handful of interactive commands act on
the same state, and so that state outlives pods: a `Volume` is one object that
moves between pods and nodes with its files, an `SmbShare` is one object that
every node mapping it sees.

Errors are raised as `WinError` carrying the wording Windows uses, because the
suite reports those strings verbatim and a check written against EKS must read
the same text here.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CSI_PROXY_BINARY",
    "SMB_STATUS_NAMES",
    "ContainerView",
    "Entry",
    "Filesystem",
    "Mount",
    "ResizeError",
    "Service",
    "SmbGlobalMapping",
    "SmbShare",
    "Volume",
    "WinError",
    "WindowsNode",
    "csi_proxy_pipes",
    "join_path",
    "split_path",
]

# --------------------------------------------------------------------------- errors

# Per kind: the .NET Framework exception message (what PowerShell and the probes
# show, `{p}` is the path) and the Win32 system message (what cmd.exe prints).
_MESSAGES: dict[str, tuple[str, str, str]] = {
    # kind: (.NET message template, Win32 message, .NET exception type)
    "file_not_found": (
        "Could not find file '{p}'.",
        "The system cannot find the file specified.",
        "FileNotFoundException",
    ),
    "path_not_found": (
        "Could not find a part of the path '{p}'.",
        "The system cannot find the path specified.",
        "DirectoryNotFoundException",
    ),
    "access_denied": (
        "Access to the path '{p}' is denied.",
        "Access is denied.",
        "UnauthorizedAccessException",
    ),
    "already_exists": (
        "Cannot create '{p}' because a file or directory with the same name already exists.",
        "Cannot create a file when that file already exists.",
        "IOException",
    ),
    "not_empty": (
        "The directory is not empty.",
        "The directory is not empty.",
        "IOException",
    ),
    "not_a_directory": (
        "The directory name is invalid.",
        "The directory name is invalid.",
        "IOException",
    ),
    "network_path_not_found": (
        "The network path was not found.",
        "The network path was not found.",
        "IOException",
    ),
}


class WinError(Exception):
    """A failed filesystem operation, worded as Windows words it.

    `message` is the .NET Framework exception message (what a probe's catch block
    and PowerShell cmdlets report), `win32` the system message (what cmd.exe
    prints, e.g. exactly `Access is denied.`), `exception` the .NET type name.
    """

    def __init__(self, kind: str, message: str, path: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.path = path

    @classmethod
    def of(cls, kind: str, path: str) -> WinError:
        """The error of `kind` for `path` (shown as given), with Windows' wording."""
        template = _MESSAGES[kind][0]
        return cls(kind, template.format(p=path), path)

    def at(self, path: str) -> WinError:
        """The same error reworded for another display path (e.g. a container path)."""
        return WinError.of(self.kind, path)

    @property
    def win32(self) -> str:
        return _MESSAGES.get(self.kind, (self.message, self.message, "IOException"))[1]

    @property
    def exception(self) -> str:
        return _MESSAGES.get(self.kind, ("", "", "IOException"))[2]


# --------------------------------------------------------------------------- paths


def dot_segments(pieces: Iterable[str]) -> list[str]:
    """Path components with empty ones and `.` dropped and `..` applied (never
    above the root): the part of path normalisation both platforms share."""
    parts: list[str] = []
    for part in pieces:
        if part in ("", "."):
            continue
        if part == "..":
            if parts:
                parts.pop()
            continue
        parts.append(part)
    return parts


def split_path(path: str) -> list[str]:
    """Components of a backslash (or slash) separated relative path; `.`/`..` applied."""
    return dot_segments(path.replace("/", "\\").split("\\"))


def join_path(*parts: str) -> str:
    """Join path pieces with single backslashes (Windows style), dropping empties."""
    out: list[str] = []
    for piece in parts:
        out.extend(split_path(piece))
    return "\\".join(out)


# ----------------------------------------------------------------------- filesystem


@dataclass(frozen=True)
class Entry:
    """One directory entry as a listing shows it."""

    name: str
    is_dir: bool
    length: int
    mtime: float
    attributes: str = ""  # letters from "rhsl": read-only, hidden, system, reparse point


@dataclass
class _Node:
    name: str
    is_dir: bool
    mtime: float
    data: bytes = b""
    attributes: str = ""
    children: dict[str, _Node] = field(default_factory=dict)  # key: name.upper()


class Filesystem:
    """An in-memory NTFS-like tree: case-insensitive, case-preserving, thread-safe.

    Paths are relative to the filesystem root (`Directory\\app-state\\x.txt`).
    Every method takes an optional `display`: the path to put in error messages
    (callers that know the user's path, like a container, pass it so the error
    reads `C:\\data\\x` rather than `x`). Without it, `label` + relative path is
    shown.
    """

    def __init__(self, label: str = "", clock: Callable[[], float] = time.time) -> None:
        self.label = label
        self._clock = clock
        self._lock = threading.RLock()
        self._root = _Node(name="", is_dir=True, mtime=clock())
        # The disk this filesystem is formatted on (a `Volume`), when it has one: what
        # Get-Volume / Get-Partition report about a path on it.
        self.device: Volume | None = None

    # -- helpers
    def _show(self, path: str, display: str | None) -> str:
        if display is not None:
            return display
        rel = join_path(path)
        return f"{self.label}{rel}" if self.label else rel

    def _lookup(self, parts: list[str]) -> _Node | None:
        node = self._root
        for part in parts:
            if not node.is_dir:
                return None
            child = node.children.get(part.upper())
            if child is None:
                return None
            node = child
        return node

    def _parent(self, parts: list[str], shown: str) -> _Node:
        parent = self._lookup(parts[:-1])
        if parent is None or not parent.is_dir:
            raise WinError.of("path_not_found", shown)
        return parent

    # -- queries
    def exists(self, path: str) -> bool:
        with self._lock:
            return self._lookup(split_path(path)) is not None

    def is_dir(self, path: str) -> bool:
        with self._lock:
            node = self._lookup(split_path(path))
            return node is not None and node.is_dir

    def is_file(self, path: str) -> bool:
        with self._lock:
            node = self._lookup(split_path(path))
            return node is not None and not node.is_dir

    def stat(self, path: str, display: str | None = None) -> Entry:
        with self._lock:
            parts = split_path(path)
            node = self._lookup(parts)
            if node is None:
                parent = self._lookup(parts[:-1])
                kind = (
                    "file_not_found" if parent is not None and parent.is_dir else "path_not_found"
                )
                raise WinError.of(kind, self._show(path, display))
            return _entry(node)

    def read(self, path: str, display: str | None = None) -> bytes:
        with self._lock:
            parts = split_path(path)
            node = self._lookup(parts)
            shown = self._show(path, display)
            if node is None:
                parent = self._lookup(parts[:-1])
                kind = (
                    "file_not_found" if parent is not None and parent.is_dir else "path_not_found"
                )
                raise WinError.of(kind, shown)
            if node.is_dir:
                # .NET opening a directory as a file: UnauthorizedAccessException.
                raise WinError.of("access_denied", shown)
            return node.data

    def listdir(self, path: str = "", display: str | None = None) -> list[Entry]:
        """Entries of a directory, sorted by name ignoring case (NTFS order)."""
        with self._lock:
            node = self._lookup(split_path(path))
            shown = self._show(path, display)
            if node is None:
                raise WinError.of("path_not_found", shown)
            if not node.is_dir:
                raise WinError.of("not_a_directory", shown)
            children = sorted(node.children.values(), key=lambda n: n.name.upper())
            return [_entry(child) for child in children]

    # -- changes
    def mkdir(
        self, path: str, parents: bool = True, display: str | None = None, attributes: str = ""
    ) -> None:
        """Create a directory.

        With `parents` it behaves like .NET `Directory.CreateDirectory`: missing
        parents are created and an existing directory is fine. Without it, like
        Win32 `CreateDirectory`: the parent must exist and the target must not.
        """
        with self._lock:
            parts = split_path(path)
            shown = self._show(path, display)
            if not parts:
                return
            if not parents:
                parent = self._parent(parts, shown)
                if parts[-1].upper() in parent.children:
                    raise WinError.of("already_exists", shown)
                self._add(parent, _Node(parts[-1], True, self._clock(), attributes=attributes))
                return
            node = self._root
            for index, part in enumerate(parts):
                child = node.children.get(part.upper())
                if child is None:
                    last = index == len(parts) - 1
                    child = _Node(part, True, self._clock(), attributes=attributes if last else "")
                    self._add(node, child)
                elif not child.is_dir:
                    raise WinError.of("already_exists", shown)
                node = child

    def write(
        self,
        path: str,
        data: bytes,
        display: str | None = None,
        append: bool = False,
        attributes: str | None = None,
    ) -> None:
        """Create or replace (or append to) a file; its directory must exist."""
        with self._lock:
            parts = split_path(path)
            shown = self._show(path, display)
            if not parts:
                raise WinError.of("access_denied", shown)
            parent = self._parent(parts, shown)
            now = self._clock()
            node = parent.children.get(parts[-1].upper())
            if node is not None and node.is_dir:
                raise WinError.of("access_denied", shown)
            if node is not None and "r" in node.attributes:
                raise WinError.of("access_denied", shown)
            if node is None:
                node = _Node(parts[-1], False, now, attributes="a" if attributes is None else "")
                self._add(parent, node)
            node.data = node.data + bytes(data) if append else bytes(data)
            node.mtime = now
            if attributes is not None:
                node.attributes = attributes

    def remove(self, path: str, recursive: bool = False, display: str | None = None) -> None:
        with self._lock:
            parts = split_path(path)
            shown = self._show(path, display)
            if not parts:
                raise WinError.of("access_denied", shown)
            node = self._lookup(parts)
            if node is None:
                parent = self._lookup(parts[:-1])
                kind = (
                    "file_not_found" if parent is not None and parent.is_dir else "path_not_found"
                )
                raise WinError.of(kind, shown)
            if node.is_dir and node.children and not recursive:
                raise WinError.of("not_empty", shown)
            parent = self._lookup(parts[:-1])
            assert parent is not None
            del parent.children[node.name.upper()]
            parent.mtime = self._clock()

    def set_attributes(self, path: str, attributes: str) -> None:
        """Set attribute letters (`a` archive, `r`, `h`, `s`, `l`) on an existing entry."""
        with self._lock:
            node = self._lookup(split_path(path))
            if node is None:
                raise WinError.of("file_not_found", self._show(path, None))
            node.attributes = attributes

    def clear(self) -> None:
        """Drop every entry (what formatting does to a volume)."""
        with self._lock:
            self._root = _Node(name="", is_dir=True, mtime=self._clock())

    def used_bytes(self) -> int:
        """Bytes held by file contents (for free-space figures)."""
        with self._lock:
            total = 0
            stack = [self._root]
            while stack:
                node = stack.pop()
                total += len(node.data)
                stack.extend(node.children.values())
            return total

    def _add(self, parent: _Node, child: _Node) -> None:
        parent.children[child.name.upper()] = child
        parent.mtime = child.mtime  # NTFS updates a directory's write time on create/delete


def _entry(node: _Node) -> Entry:
    return Entry(
        name=node.name,
        is_dir=node.is_dir,
        length=0 if node.is_dir else len(node.data),
        mtime=node.mtime,
        attributes=node.attributes,
    )


# ------------------------------------------------------------------ storage objects


MIB = 1 << 20
GIB = 1 << 30
# Where csi-proxy's PartitionDisk (Initialize-Disk -PartitionStyle GPT; New-Partition
# -UseMaximumSize) puts the data partition, and what GPT keeps at the disk's end: the
# partition's largest size (Get-PartitionSupportedSize's SizeMax) is the rest. These
# match the figures in csi-proxy issue 195 (a 3 GiB disk: SizeMax 3204431360).
PARTITION_OFFSET = 16 * MIB
GPT_BACKUP_BYTES = 16896
NTFS_CLUSTER = 4096
# What a fresh NTFS volume already holds (MFT, log file, bitmap) before any file.
NTFS_METADATA_BYTES = 6 * MIB


class ResizeError(Exception):
    """csi-proxy's ResizeVolume failed; the message is its error text."""


@dataclass
class Volume:
    """An EBS-like block device. The same object travels between pods and nodes.

    `size_gib` is the disk (EC2's size; it grows when the volume is modified);
    `partition_bytes` the NTFS data partition on it, set when it is formatted and
    grown only by a partition resize (csi-proxy's ResizeVolume): between the two, the
    disk is bigger than what the pod sees at its mount path.
    """

    volume_id: str
    size_gib: int
    formatted_fs: str | None = None
    fs: Filesystem = field(default_factory=Filesystem)
    partition_bytes: int | None = None

    def __post_init__(self) -> None:
        self.fs.device = self

    @property
    def disk_bytes(self) -> int:
        return self.size_gib * GIB

    def size_max(self) -> int:
        """Get-PartitionSupportedSize's SizeMax for the data partition: up to the GPT
        backup at the disk's end."""
        return self.disk_bytes - PARTITION_OFFSET - GPT_BACKUP_BYTES

    def partition(self) -> None:
        """The data partition a fresh disk gets (New-Partition -UseMaximumSize, which
        leaves the end 1 MiB-aligned), unless it has one."""
        if self.partition_bytes is None:
            self.partition_bytes = self.size_max() // MIB * MIB

    @property
    def volume_bytes(self) -> int:
        """Get-Volume's Size: the partition in whole NTFS clusters (the last sector holds
        the backup boot sector)."""
        part = self.partition_bytes or 0
        return max(0, (part - 512) // NTFS_CLUSTER * NTFS_CLUSTER)

    @property
    def free_bytes(self) -> int:
        """Get-Volume's SizeRemaining."""
        return max(0, self.volume_bytes - NTFS_METADATA_BYTES - self.fs.used_bytes())

    def format(self, fs_type: str = "NTFS") -> None:
        """Format the device: a fresh, empty filesystem with NTFS's hidden system folder."""
        self.fs.clear()  # in place: anything already holding the filesystem sees the format
        self.formatted_fs = fs_type
        self.partition()
        if fs_type.upper() == "NTFS":
            self.fs.mkdir("System Volume Information", attributes="hs")


@dataclass
class SmbShare:
    """A remote SMB share (`\\\\server\\share`); every node that maps it sees `fs`.

    `read_only`: the share's permissions grant the nodes Read only
    (`Grant-SmbShareAccess -AccessRight Read`): clients see `fs` through
    `client_fs()`, which refuses every change with ERROR_ACCESS_DENIED.
    """

    remote_path: str
    fs: Filesystem = field(default_factory=Filesystem)
    read_only: bool = False

    def client_fs(self) -> Filesystem:
        """The share's files as a node mapping it sees them, under its permissions."""
        return ReadOnlyAccess(self.fs) if self.read_only else self.fs

    @property
    def server(self) -> str:
        return split_path(self.remote_path)[0] if split_path(self.remote_path) else ""

    @property
    def share_name(self) -> str:
        parts = split_path(self.remote_path)
        return parts[1] if len(parts) > 1 else ""


class ReadOnlyAccess(Filesystem):
    """A filesystem seen through Read-only share permissions: reads go through,
    every change fails as Windows fails it (`Access to the path '...' is denied.`),
    after the same not-found checks the change would make first."""

    def __init__(self, inner: Filesystem) -> None:  # no tree of its own
        self.inner = inner
        self.label = inner.label

    def exists(self, path: str) -> bool:
        return self.inner.exists(path)

    def is_dir(self, path: str) -> bool:
        return self.inner.is_dir(path)

    def is_file(self, path: str) -> bool:
        return self.inner.is_file(path)

    def stat(self, path: str, display: str | None = None) -> Entry:
        return self.inner.stat(path, display=self._show(path, display))

    def read(self, path: str, display: str | None = None) -> bytes:
        return self.inner.read(path, display=self._show(path, display))

    def listdir(self, path: str = "", display: str | None = None) -> list[Entry]:
        return self.inner.listdir(path, display=self._show(path, display))

    def used_bytes(self) -> int:
        return self.inner.used_bytes()

    def _denied(self, path: str, display: str | None, parent_must_exist: bool) -> WinError:
        shown = self._show(path, display)
        parent = "\\".join(split_path(path)[:-1])
        if parent_must_exist and not self.inner.is_dir(parent):
            return WinError.of("path_not_found", shown)
        return WinError.of("access_denied", shown)

    def mkdir(
        self, path: str, parents: bool = True, display: str | None = None, attributes: str = ""
    ) -> None:
        if self.inner.is_dir(path) or not split_path(path):
            # An existing directory: CreateDirectory changes nothing (or reports it exists).
            self.inner.mkdir(path, parents=parents, display=self._show(path, display))
            return
        raise self._denied(path, display, parent_must_exist=not parents)

    def write(
        self,
        path: str,
        data: bytes,
        display: str | None = None,
        append: bool = False,
        attributes: str | None = None,
    ) -> None:
        raise self._denied(path, display, parent_must_exist=True)

    def remove(self, path: str, recursive: bool = False, display: str | None = None) -> None:
        self.inner.stat(path, display=self._show(path, display))  # missing: not found first
        raise self._denied(path, display, parent_must_exist=False)

    def set_attributes(self, path: str, attributes: str) -> None:
        self.inner.stat(path)
        raise self._denied(path, None, parent_must_exist=False)

    def clear(self) -> None:
        raise WinError.of("access_denied", self.label)


# MSFT_SmbGlobalMapping.Status values (Get-SmbGlobalMapping shows the names,
# 5.1's ConvertTo-Json the numbers).
SMB_STATUS_NAMES: tuple[str, ...] = (
    "OK",
    "Paused",
    "Disconnected",
    "NetworkError",
    "Connecting",
    "Reconnecting",
    "Unavailable",
)


@dataclass
class SmbGlobalMapping:
    """`New-SmbGlobalMapping -LocalPath G: -RemotePath \\\\server\\share` on a node."""

    local_path: str
    remote_path: str
    status: int = 0
    share: SmbShare | None = None

    @property
    def status_name(self) -> str:
        if 0 <= self.status < len(SMB_STATUS_NAMES):
            return SMB_STATUS_NAMES[self.status]
        return f"Unknown({self.status})"


@dataclass
class Service:
    """A Windows service as the Service Control Manager knows it."""

    name: str
    display_name: str
    status: str = "Running"  # ServiceControllerStatus name: Running, Stopped, ...
    start_type: str = "Automatic"  # ServiceStartMode name: Automatic, Manual, Disabled, ...
    path_name: str = ""  # the binary, e.g. C:\Program Files\Kubernetes\csi-proxy.exe
    file_version: str | None = None  # FileVersion of the binary's version resource
    arguments: str = ""

    @property
    def command_line(self) -> str:
        """The service's ImagePath as Win32_Service.PathName reports it."""
        binary = f'"{self.path_name}"' if " " in self.path_name else self.path_name
        return f"{binary} {self.arguments}".strip()


# ----------------------------------------------------------------------- csi-proxy

CSI_PROXY_BINARY = r"C:\Program Files\Kubernetes\csi-proxy.exe"

# (group, API version, first csi-proxy release serving it). Every v1.x release
# keeps serving the alpha/beta pipes next to v1 (kubernetes-csi/csi-proxy).
_CSI_PROXY_APIS: tuple[tuple[str, str, tuple[int, int, int]], ...] = (
    ("disk", "v1alpha1", (0, 1, 0)),
    ("disk", "v1beta1", (0, 2, 0)),
    ("disk", "v1beta2", (0, 2, 0)),
    ("disk", "v1beta3", (1, 0, 0)),
    ("disk", "v1", (1, 0, 0)),
    ("filesystem", "v1alpha1", (0, 1, 0)),
    ("filesystem", "v1beta1", (0, 2, 0)),
    ("filesystem", "v1beta2", (1, 0, 0)),
    ("filesystem", "v1", (1, 0, 0)),
    ("filesystem", "v2alpha1", (1, 1, 0)),
    ("volume", "v1alpha1", (0, 1, 0)),
    ("volume", "v1beta1", (0, 2, 0)),
    ("volume", "v1beta2", (0, 2, 0)),
    ("volume", "v1beta3", (1, 0, 0)),
    ("volume", "v1", (1, 0, 0)),
    ("volume", "v2alpha1", (1, 1, 0)),
    ("smb", "v1alpha1", (0, 1, 0)),
    ("smb", "v1beta1", (0, 2, 0)),
    ("smb", "v1beta2", (1, 0, 0)),
    ("smb", "v1", (1, 0, 0)),
    ("iscsi", "v1alpha1", (0, 2, 0)),
    ("iscsi", "v1alpha2", (1, 0, 0)),
    ("system", "v1alpha1", (0, 2, 0)),
)


def _release(version: str) -> tuple[int, int, int]:
    numbers = [int(p) for p in version.lstrip("v").split("-")[0].split(".")[:3] if p.isdigit()]
    while len(numbers) < 3:
        numbers.append(0)
    return numbers[0], numbers[1], numbers[2]


def csi_proxy_pipes(version: str) -> set[str]:
    """Pipe names (without `\\\\.\\pipe\\`) a csi-proxy release serves."""
    release = _release(version)
    return {f"csi-proxy-{g}-{v}" for g, v, since in _CSI_PROXY_APIS if release >= since}


# -------------------------------------------------------------------------- node


def _seed_system_drive(fs: Filesystem, build: str) -> None:
    """The folders of a Windows Server Core system drive, enough for a plausible `ls C:\\`."""
    for name, attrs in (
        ("PerfLogs", ""),
        ("Program Files", "r"),
        ("Program Files (x86)", ""),
        ("ProgramData", "h"),
        ("Users", "r"),
        ("Windows", ""),
    ):
        fs.mkdir(name, attributes=attrs)
    for sub in (
        r"Windows\System32\WindowsPowerShell\v1.0",
        r"Windows\System32\drivers\etc",
        r"Users\ContainerAdministrator",
        r"Users\Public",
        r"Program Files\WindowsPowerShell\Modules",
    ):
        fs.mkdir(sub)
    notice = (
        "MICROSOFT SOFTWARE SUPPLEMENTAL LICENSE TERMS\r\n"
        f"CONTAINER OS IMAGE (Windows Server Core, build {build})\r\n\r\n"
        "This file stands in for the image's license notice in the winstor emulated cluster.\r\n"
    )
    fs.write("License.txt", notice.encode("ascii"))


@dataclass
class WindowsNode:
    """One Windows worker: drives, services, named pipes, SMB Global Mappings, OS build."""

    name: str
    build: str = "10.0.17763"
    hostname: str = ""
    revision: int = 0  # the UBR (update build revision) of the node's OS
    drives: dict[str, Filesystem] = field(default_factory=dict)
    services: dict[str, Service] = field(default_factory=dict)
    pipes: set[str] = field(default_factory=set)
    smb_mappings: list[SmbGlobalMapping] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.hostname:
            self.hostname = self.name
        if "C:" not in self.drives:
            system = Filesystem(label="C:\\")
            _seed_system_drive(system, self.build)
            system.mkdir(r"Program Files\Kubernetes")
            system.mkdir(r"var\lib\kubelet")
            self.drives["C:"] = system
        # Optimize Drives: trigger-started by the storage stack, which needs it to size
        # partitions (Get-PartitionSupportedSize); hardening baselines disable it.
        self.services.setdefault("defragsvc", Service(
            name="defragsvc", display_name="Optimize drives", status="Stopped",
            start_type="Manual", path_name=r"C:\Windows\system32\svchost.exe",
            arguments="-k defragsvc"))

    @property
    def build_number(self) -> int:
        return int(self.build.split(".")[2]) if self.build.count(".") >= 2 else 0

    # -- csi-proxy
    def install_csi_proxy(self, version: str) -> Service:
        """Install csi-proxy as the upstream script does: service `csiproxy`, auto start."""
        binary = CSI_PROXY_BINARY
        rel = binary[3:]
        system = self.drives["C:"]
        system.mkdir(rel.rsplit("\\", 1)[0])
        # The binary's bytes stand in for the real file; its hash tracks the version.
        system.write(rel, b"MZ" + hashlib.sha256(f"csi-proxy {version}".encode()).digest())
        service = Service(
            name="csiproxy",
            display_name="csiproxy",
            status="Running",
            start_type="Automatic",
            path_name=binary,
            file_version=version.lstrip("v"),
            arguments="-windows-service -log_file=C:\\etc\\kubernetes\\logs\\csi-proxy.log "
            "-logtostderr=false",
        )
        self.services[service.name] = service
        self.pipes -= {p for p in self.pipes if p.startswith("csi-proxy-")}
        self.pipes |= csi_proxy_pipes(version)
        return service

    def stop_service(self, name: str) -> None:
        """Stop a service; csi-proxy's pipes go away with it."""
        service = self.services[name]
        service.status = "Stopped"
        if name == "csiproxy":
            self.pipes -= {p for p in self.pipes if p.startswith("csi-proxy-")}

    def uninstall_csi_proxy(self) -> None:
        self.services.pop("csiproxy", None)
        self.pipes -= {p for p in self.pipes if p.startswith("csi-proxy-")}
        system = self.drives["C:"]
        if system.exists(CSI_PROXY_BINARY[3:]):
            system.remove(CSI_PROXY_BINARY[3:])

    # -- csi-proxy's volume API, as the EBS CSI node plugin calls it
    def resize_volume(self, volume: Volume) -> None:
        """csi-proxy's ResizeVolume with size 0 ("as large as possible"), which the EBS CSI
        node plugin calls from NodeExpandVolume: grow the data partition to
        Get-PartitionSupportedSize's SizeMax (NTFS grows with it).

        Raises `ResizeError` with csi-proxy's own error text. Releases before v1.2.0 resize
        whenever SizeMax is larger, and Windows refuses a resize of less than 1 MB ("Size
        Not Supported", csi-proxy issue 195); v1.2.0 skips any resize under 100 MB (PR 364).
        Get-PartitionSupportedSize fails with StorageWMI 4 when defragsvc cannot run
        (aws-ebs-csi-driver issue 2877).
        """
        service = self.services.get("csiproxy")
        if service is None or service.status != "Running":
            raise ResizeError("rpc error: code = Unavailable desc = connection error: desc = "
                              '"transport: Error while dialing: open '
                              '\\\\.\\pipe\\csi-proxy-volume-v1: The system cannot find the file '
                              'specified."')
        volume.partition()
        current = volume.partition_bytes or 0
        defrag = self.services.get("defragsvc")
        if defrag is None or defrag.start_type == "Disabled":
            raise ResizeError(
                "error getting sizemin,sizemax from mount. cmd: Get-Volume -UniqueId "
                '"$Env:volumeID" | Get-partition | Get-PartitionSupportedSize | Select SizeMax '
                "| ConvertTo-Json, output: Get-PartitionSupportedSize : Failed\r\n"
                "Activity ID: {5d0b6f1e-3c2a-4e57-9a41-7f2c8b0e1d93}\r\n"
                "    + CategoryInfo          : NotSpecified: (StorageWMI:ROOT/Microsoft/.../"
                "MSFT_Partition) [Get-PartitionSupportedSize], CimException\r\n"
                "    + FullyQualifiedErrorId : StorageWMI 4,Get-PartitionSupportedSize\r\n"
                '\r\n{\r\n    "SizeMax":  null\r\n}, error: exit status 1')
        final = volume.size_max()
        if _release(service.file_version or "0") >= (1, 2, 0):
            if final - current < 100 * MIB:
                return  # "minimum resize difference(1GB) not met, skipping resize"
        elif current >= final:
            return
        if final - current < MIB:
            raise ResizeError(
                'error resizing volume. cmd: Get-Volume -UniqueId "$Env:volumeID" | '
                f"Get-Partition | Resize-Partition -Size {final}, output: Resize-Partition : "
                "Size Not Supported\r\n \r\nExtended information:\r\nThe size of the "
                "extent is less than the minimum of 1MB.\r\n \r\n    + "
                "FullyQualifiedErrorId : StorageWMI 4097,Resize-Partition\r\n, error: exit "
                "status 1")
        volume.partition_bytes = final

    # -- SMB
    def map_smb(self, local_path: str, share: SmbShare, status: int = 0) -> SmbGlobalMapping:
        """`New-SmbGlobalMapping -LocalPath <local_path> -RemotePath <share>`."""
        local = _drive_of(local_path)
        if any(m.local_path.upper() == local for m in self.smb_mappings):
            raise WinError("already_exists", "The local device name is already in use.", local)
        mapping = SmbGlobalMapping(
            local_path=local, remote_path=share.remote_path, status=status, share=share
        )
        self.smb_mappings.append(mapping)
        return mapping

    def unmap_smb(self, local_path: str) -> None:
        local = _drive_of(local_path)
        self.smb_mappings = [m for m in self.smb_mappings if m.local_path.upper() != local]

    def mapping(self, local_path: str) -> SmbGlobalMapping | None:
        local = _drive_of(local_path)
        return next((m for m in self.smb_mappings if m.local_path.upper() == local), None)

    def drive(self, letter: str, display: str = "") -> Filesystem | None:
        """The filesystem behind a drive letter: a local drive or an SMB mapping's share.

        A mapping whose status is not OK fails the access the way Windows does
        when it cannot reconnect (`The network path was not found.`).
        """
        letter = _drive_of(letter)
        if letter in self.drives:
            return self.drives[letter]
        mapping = self.mapping(letter)
        if mapping is None:
            return None
        if mapping.status != 0 or mapping.share is None:
            raise WinError.of("network_path_not_found", display or letter)
        return mapping.share.client_fs()

    def resolve_host_path(self, host_path: str) -> tuple[Filesystem, str]:
        """A node path like `G:\\Directory\\app-state` → (filesystem, path within it)."""
        drive, rest = _split_drive(host_path)
        fs = self.drive(drive, display=host_path)
        if fs is None:
            raise WinError.of("path_not_found", host_path)
        return fs, rest


def _drive_of(path: str) -> str:
    return path[:2].upper() if len(path) >= 2 and path[1] == ":" else path.upper()


def _split_drive(path: str) -> tuple[str, str]:
    path = path.replace("/", "\\")
    if len(path) >= 2 and path[1] == ":":
        return path[:2].upper(), join_path(path[2:])
    return "", join_path(path)


# --------------------------------------------------------------------- container


@dataclass
class Mount:
    """A volume mount inside a container.

    Either `fs` (+ `sub_path`) is given — an EBS volume, an emptyDir — or
    `host_path` on `node` — a hostPath, resolved on every access so that an SMB
    mapping going away is noticed like on a real node.
    """

    container_path: str
    fs: Filesystem | None = None
    sub_path: str = ""
    read_only: bool = False
    host_path: str | None = None
    node: WindowsNode | None = None

    def target(self) -> tuple[Filesystem, str]:
        if self.fs is not None:
            return self.fs, join_path(self.sub_path)
        if self.host_path is None or self.node is None:
            raise ValueError("a Mount needs fs, or host_path and node")
        fs, rel = self.node.resolve_host_path(self.host_path)
        return fs, join_path(rel, self.sub_path)


def _image_shells(image: str) -> frozenset[str]:
    lowered = image.lower()
    shells = {"cmd", "hostname"}
    if "nanoserver" not in lowered:
        shells.add("powershell")
    if "powershell" in lowered.split("/")[-1] or "pwsh" in lowered:
        shells.add("pwsh")
    return frozenset(shells)


class ViewFiles:
    """The read side of a container view, on container paths: the same for the
    Windows view and the Linux one (`winstor.sim.nodes.linux`), which differ in how a
    path resolves (`resolve`, and `_resolve_shown` for errors that name the
    path) and how it is shown (`full_path`)."""

    def resolve(self, path: str) -> tuple[Any, str, bool]:
        raise NotImplementedError

    def _resolve_shown(self, path: str) -> tuple[Any, str, bool]:
        return self.resolve(path)

    def full_path(self, path: str) -> str:
        raise NotImplementedError

    def _test(self, path: str, question: str) -> bool:
        """`question` (exists, is_dir, is_file) asked of the filesystem `path` resolves
        to; a path that does not resolve answers False, as the tests in Windows do."""
        try:
            fs, rel, _ = self.resolve(path)
        except WinError:
            return False
        return bool(getattr(fs, question)(rel))

    def exists(self, path: str) -> bool:
        return self._test(path, "exists")

    def is_dir(self, path: str) -> bool:
        return self._test(path, "is_dir")

    def is_file(self, path: str) -> bool:
        return self._test(path, "is_file")

    def stat(self, path: str) -> Entry:
        fs, rel, _ = self._resolve_shown(path)
        return fs.stat(rel, display=self.full_path(path))

    def read(self, path: str) -> bytes:
        fs, rel, _ = self._resolve_shown(path)
        return fs.read(rel, display=self.full_path(path))

    def listdir(self, path: str) -> list[Entry]:
        fs, rel, _ = self._resolve_shown(path)
        return fs.listdir(rel, display=self.full_path(path))


class ContainerView(ViewFiles):
    """What a process inside one Windows container sees.

    A process-isolated container has its own `C:` (the image layer: Server Core
    folders, `License.txt`) plus its mounts; it sees no other drive. A
    HostProcess container sees the node's drives (and so its SMB mappings),
    services and pipes directly. Paths are container paths (`C:\\data\\x`);
    relative ones are relative to `C:\\`, the working directory of a Server Core
    container.
    """

    def __init__(
        self,
        node: WindowsNode,
        hostname: str,
        build: str | None = None,
        host_process: bool = False,
        mounts: Iterable[Mount] = (),
        image: str = "mcr.microsoft.com/windows/servercore:ltsc2019",
        revision: int | None = None,
        pipe_mounts: Iterable[str] = (),
        container_id: str | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.node = node
        self.hostname = node.hostname if host_process else hostname
        self.host_process = host_process
        self.image = image
        # A HostProcess container runs on the host OS; others on their image's.
        self.build = node.build if host_process else (build or node.build)
        self.revision = node.revision if host_process or revision is None else revision
        self.pipe_mounts = {p.lower() for p in pipe_mounts}
        self.container_id = (
            container_id or hashlib.sha256(f"{node.name}/{hostname}/{image}".encode()).hexdigest()
        )
        self.shells = _image_shells(image) | ({"powershell"} if host_process else set())
        self.root = Filesystem(label="C:\\", clock=clock)
        _seed_system_drive(self.root, self.build)
        self.mounts: list[Mount] = []
        self.state: dict[str, object] = {}  # per-container process state (e.g. module cache)
        for mount in mounts:
            self.add_mount(mount)

    # -- mounts
    def add_mount(self, mount: Mount) -> Mount:
        drive, rel = _split_drive(mount.container_path)
        if drive not in ("", "C:"):
            raise ValueError(f"container mounts live on C:, not {mount.container_path!r}")
        mount.container_path = "C:\\" + rel
        self.mounts.append(mount)
        if not self.host_process:
            # The runtime creates the mount point; Windows shows it as a reparse point.
            self.root.mkdir(rel)
            self.root.set_attributes(rel, "l")
        return mount

    def mount_volume(self, container_path: str, volume: Volume, read_only: bool = False) -> Mount:
        return self.add_mount(Mount(container_path, fs=volume.fs, read_only=read_only))

    def mount_host_path(
        self, container_path: str, host_path: str, read_only: bool = False
    ) -> Mount:
        return self.add_mount(
            Mount(container_path, host_path=host_path, node=self.node, read_only=read_only)
        )

    @property
    def pipes(self) -> set[str]:
        """Named pipes visible here: the node's (HostProcess) or the mounted ones that exist."""
        if self.host_process:
            return set(self.node.pipes)
        return {p for p in self.node.pipes if p.lower() in self.pipe_mounts}

    @property
    def services(self) -> dict[str, Service]:
        """The SCM's services: the node's for HostProcess, a container's own otherwise."""
        return self.node.services if self.host_process else {}

    @property
    def smb_mappings(self) -> list[SmbGlobalMapping]:
        return list(self.node.smb_mappings) if self.host_process else []

    # -- paths
    def full_path(self, path: str) -> str:
        """`path` made absolute (drive + backslashes), as Windows would display it."""
        path = path.strip().replace("/", "\\")
        drive, rest = _split_drive(path)
        if not drive:
            drive = "C:"
        rel = join_path(rest)
        return f"{drive}\\{rel}"

    def resolve(self, path: str) -> tuple[Filesystem, str, bool]:
        """Container path → (filesystem, path within it, read_only). Longest mount wins."""
        full = self.full_path(path)
        drive, rel = _split_drive(full)
        parts = split_path(rel)
        upper = [p.upper() for p in parts]
        best: Mount | None = None
        best_len = -1
        for mount in self.mounts:
            m_parts = [p.upper() for p in split_path(_split_drive(mount.container_path)[1])]
            if drive == "C:" and upper[: len(m_parts)] == m_parts and len(m_parts) > best_len:
                best, best_len = mount, len(m_parts)
        if best is not None:
            fs, base = best.target()
            return fs, join_path(base, *parts[best_len:]), best.read_only
        if self.host_process:
            fs = self.node.drive(drive, display=full)
            if fs is None:
                raise WinError.of("path_not_found", full)
            return fs, rel, False
        if drive != "C:":
            raise WinError.of("path_not_found", full)
        return self.root, rel, False

    def is_mount_point(self, path: str) -> bool:
        full = self.full_path(path).upper()
        return any(self.full_path(m.container_path).upper() == full for m in self.mounts)

    # -- file operations on container paths (errors carry the container path)
    def write(self, path: str, data: bytes, append: bool = False) -> None:
        fs, rel, read_only = self._resolve_shown(path)
        shown = self.full_path(path)
        if read_only:
            # A read-only mount refuses writes: ERROR_ACCESS_DENIED, "Access is denied."
            # (a missing folder is still reported as missing first).
            if not fs.is_dir("\\".join(split_path(rel)[:-1])):
                raise WinError.of("path_not_found", shown)
            raise WinError.of("access_denied", shown)
        fs.write(rel, data, display=shown, append=append)

    def mkdir(self, path: str, parents: bool = True) -> None:
        fs, rel, read_only = self._resolve_shown(path)
        shown = self.full_path(path)
        if read_only and not fs.is_dir(rel):
            raise WinError.of("access_denied", shown)
        fs.mkdir(rel, parents=parents, display=shown)

    def remove(self, path: str, recursive: bool = False) -> None:
        fs, rel, read_only = self._resolve_shown(path)
        shown = self.full_path(path)
        if read_only or self.is_mount_point(path):
            fs.stat(rel, display=shown)
            raise WinError.of("access_denied", shown)
        fs.remove(rel, recursive=recursive, display=shown)

    def _resolve_shown(self, path: str) -> tuple[Filesystem, str, bool]:
        try:
            return self.resolve(path)
        except WinError as err:
            raise err.at(self.full_path(path)) if err.kind == "path_not_found" else err from None
