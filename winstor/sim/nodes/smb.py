"""SMB file servers as the cluster's nodes reach them: names, shares, logons and their errors.

A share lives on a file server (FSx for Windows, an FSx for ONTAP SVM, a File Gateway);
a client reaches it by a DNS name or an address, logs on with a user and password the
server checks (against an Active Directory for domain-joined servers, or the gateway's
guest password), and then sees the share's files. Each step fails the way Windows
reports it, because the suite reads those words from events: a name that does not
resolve is System error 53 (`The network path was not found.`), a wrong password
1326 (`The user name or password is incorrect.`), a share the server does not have 67
(`The network name cannot be found.`).

The same `SmbShare` object (`winstor.sim.nodes.windows`) is what a node's G: mapping,
the SMB CSI driver's mappings and its controller's working mounts see, so a file
written through one is found through the others.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from .windows import SmbShare, split_path

__all__ = ["ActiveDirectory", "SmbError", "SmbNetwork", "SmbServer", "split_unc"]

# Win32 system errors New-SmbGlobalMapping reports (message, PowerShell error category).
SYSTEM_ERRORS: dict[int, tuple[str, str]] = {
    5: ("Access is denied.", "PermissionDenied"),
    53: ("The network path was not found.", "NotSpecified"),
    67: ("The network name cannot be found.", "NotSpecified"),
    1326: ("The user name or password is incorrect.", "AuthenticationError"),
}


class SmbError(Exception):
    """A failed SMB connection, as a Win32 system error (`code`) with Windows' words."""

    def __init__(self, code: int, server: str = "") -> None:
        self.code = code
        self.message, self.category = SYSTEM_ERRORS[code]
        self.server = server
        super().__init__(f"System error {code}: {self.message}")


def split_unc(path: str) -> tuple[str, str, str]:
    """`\\\\server\\share\\sub\\dir` or `//server/share/sub` -> (server, share, sub path)."""
    parts = split_path(path.replace("/", "\\"))
    server = parts[0] if parts else ""
    share = parts[1] if len(parts) > 1 else ""
    return server, share, "\\".join(parts[2:])


@dataclass
class ActiveDirectory:
    """A directory that domain-joined file servers ask about logons.

    `accounts` maps a lower-cased sAMAccountName to its current password: rotating a
    password here is what makes every stored copy of the old one stale.
    """

    dns_domain: str
    netbios: str
    accounts: dict[str, str] = field(default_factory=dict)

    def knows_domain(self, domain: str) -> bool:
        return domain.lower() in (self.dns_domain.lower(), self.netbios.lower())


@dataclass
class SmbServer:
    """One SMB server: its DNS name, its address, its shares and whom it lets in.

    A domain-joined server (`directory` set) checks `DOMAIN\\user` against the
    directory; a server in guest mode (`guest_password` set, a File Gateway with
    GuestAccess) takes the user `smbguest` with the gateway's guest password, whatever
    domain part the client sends.
    """

    name: str
    address: str
    shares: dict[str, SmbShare] = field(default_factory=dict)  # key: upper-cased share name
    directory: ActiveDirectory | None = None
    guest_password: str | None = None

    def add_share(self, share: SmbShare) -> SmbShare:
        self.shares[share.share_name.upper()] = share
        return share

    def logon(self, user: str, password: str) -> None:
        """Accept the user or raise System error 1326 (ERROR_LOGON_FAILURE)."""
        domain, _, name = user.rpartition("\\")
        if self.guest_password is not None:
            if name.lower() == "smbguest" and password == self.guest_password:
                return
            raise SmbError(1326, self.name)
        directory = self.directory
        if directory is not None and directory.knows_domain(domain) and \
                directory.accounts.get(name.lower()) == password and password:
            return
        raise SmbError(1326, self.name)

    def share(self, name: str) -> SmbShare:
        found = self.shares.get(name.upper())
        if found is None:
            raise SmbError(67, self.name)
        return found


class SmbNetwork:
    """The SMB servers the cluster can reach and the names its DNS resolves.

    `unresolvable` holds names that have no DNS record (a name the nodes cannot
    resolve fails before any packet reaches a server). A server is found by its
    name or its address; an address needs no DNS.
    """

    def __init__(self) -> None:
        self.servers: dict[str, SmbServer] = {}  # lower-cased name and address -> server
        self.unresolvable: set[str] = set()

    def add_server(self, server: SmbServer) -> SmbServer:
        self.servers[server.name.lower()] = server
        self.servers[server.address] = server
        return server

    def resolve(self, name: str) -> SmbServer:
        """The server behind a name or address, or System error 53."""
        key = name.lower().rstrip(".")
        try:
            ipaddress.ip_address(key)
            is_address = True
        except ValueError:
            is_address = False
        if not is_address and key in self.unresolvable:
            raise SmbError(53, name)
        server = self.servers.get(key)
        if server is None:
            raise SmbError(53, name)
        return server

    def connect(self, remote_path: str, user: str, password: str) -> SmbShare:
        """What `New-SmbGlobalMapping -RemotePath \\\\server\\share` (or `mount -t cifs`)
        reaches with these credentials: the share, or the SmbError the client reports."""
        server_name, share_name, _ = split_unc(remote_path)
        server = self.resolve(server_name)
        server.logon(user, password)
        return server.share(share_name)
