"""Which AWS service serves an SMB share, and what it says about it, read with plain boto3.

A share is `\\\\server\\share`; the server is one of:

- an FSx for Windows File Server file system: its `DNSName`, an alias, or its preferred
  file server address;
- an FSx for NetApp ONTAP storage virtual machine joined to a directory: its SMB
  endpoint's `DNSName` or one of its addresses (`DescribeStorageVirtualMachines`);
- a File Gateway: one of the gateway's network interface addresses (or its name), with
  the share one of its SMB file shares by `FileShareName` (`ListFileShares` for the whole
  account, `DescribeSMBFileShares` ten at a time, `DescribeGatewayInformation` for the
  gateways holding a share of that name, `DescribeSMBSettings` for the domain join and
  guest password).

`Account.find()` returns every match of any kind, with the facts the checks judge; it knows
nothing of the sim (the embedded cluster's moto answers the same calls). The
credentials of a share may live in AWS Secrets Manager (`secret_credentials`); their
values are returned to the caller only, never logged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from winstor.aws.facts import _pages, _read, client

if TYPE_CHECKING:
    import boto3

__all__ = ["Account", "ShareFacts", "find", "secret_credentials"]


@dataclass(frozen=True)
class ShareFacts:
    """One AWS resource serving a share: its kind, its id and what AWS says of it."""

    kind: str  # fsx-windows | fsx-ontap | file-gateway
    resource: str  # fs-..., svm-..., share-...
    facts: dict[str, Any] = field(default_factory=dict)


def _marker_pages(fn: Any, next_key: str, **kwargs: Any) -> Any:
    """Storage Gateway's pagination: `Marker` in, `Marker` or `NextMarker` out."""
    marker: str | None = None
    while True:
        page = _read(fn, **kwargs, **({"Marker": marker} if marker else {}))
        yield page
        marker = page.get(next_key)
        if not marker:
            return


def _same(a: str | None, b: str) -> bool:
    return bool(a) and str(a).lower().rstrip(".") == b.lower().rstrip(".")


def _unsupported(err: ClientError) -> bool:
    """The endpoint does not offer the operation (an older or partial emulation)."""
    return err.response.get("Error", {}).get("Code") in ("UnknownOperationException",
                                                         "InvalidAction")


# DescribeSMBFileShares takes at most this many ARNs per call (Storage Gateway API reference).
DESCRIBE_SMB_BATCH = 10


class Account:
    """The share servers of one account and region, read once and matched many times.

    A check judges several shares; asking AWS afresh for each would read every file system,
    SVM and gateway of the account once per share, and a gateway's addresses cost one call
    per gateway. An `Account` reads each listing at most once, on first need, and describes
    only the gateways that hold a file share of a wanted name - so a fleet's account with
    many gateways costs a check a few calls instead of shares x gateways. Not shared between
    checks: each check sees AWS as it is when it runs."""

    def __init__(self, session: boto3.Session) -> None:
        self.session = session
        self._file_systems: list[dict] | None = None
        self._svms: list[dict] | None = None
        self._smb_shares: list[dict] | None = None
        self._gateways: dict[str, dict] = {}
        self._settings: dict[str, dict] = {}

    # -- listings, read once ---------------------------------------------------------------
    def file_systems(self) -> list[dict]:
        if self._file_systems is None:
            fsx = client(self.session, "fsx")
            self._file_systems = [fs for page in _pages(fsx.describe_file_systems)
                                  for fs in page.get("FileSystems") or []]
        return self._file_systems

    def svms(self) -> list[dict]:
        """Every ONTAP storage virtual machine ([] where the endpoint has no SVM calls)."""
        if self._svms is None:
            fsx = client(self.session, "fsx")
            try:
                self._svms = [svm for page in _pages(fsx.describe_storage_virtual_machines)
                              for svm in page.get("StorageVirtualMachines") or []]
            except ClientError as err:
                if not _unsupported(err):
                    raise
                self._svms = []
        return self._svms

    def smb_file_shares(self) -> list[dict]:
        """Every File Gateway SMB file share of the account, described ([] where the endpoint
        has no Storage Gateway)."""
        if self._smb_shares is None:
            sgw = client(self.session, "storagegateway")
            try:
                arns = [s["FileShareARN"]
                        for page in _marker_pages(sgw.list_file_shares, "NextMarker")
                        for s in page.get("FileShareInfoList") or []
                        if s.get("FileShareType") == "SMB"]
            except ClientError as err:
                if not _unsupported(err):
                    raise
                arns = []
            self._smb_shares = [
                fs for i in range(0, len(arns), DESCRIBE_SMB_BATCH)
                for fs in _read(sgw.describe_smb_file_shares,
                                FileShareARNList=arns[i:i + DESCRIBE_SMB_BATCH]).get(
                                    "SMBFileShareInfoList") or []]
        return self._smb_shares

    def gateway(self, arn: str) -> dict:
        if arn not in self._gateways:
            sgw = client(self.session, "storagegateway")
            self._gateways[arn] = _read(sgw.describe_gateway_information, GatewayARN=arn)
        return self._gateways[arn]

    def smb_settings(self, arn: str) -> dict:
        if arn not in self._settings:
            sgw = client(self.session, "storagegateway")
            self._settings[arn] = _read(sgw.describe_smb_settings, GatewayARN=arn)
        return self._settings[arn]

    # -- matching --------------------------------------------------------------------------
    def find(self, server: str, share: str) -> tuple[list[ShareFacts], list[dict]]:
        """Every AWS resource of any kind that serves `\\\\server\\share`, and the ONTAP
        SVMs of the account and region (to say why none matched, when none does)."""
        ontap = self._ontap(server)
        return [*self._fsx_windows(server), *ontap, *self._file_gateway(server, share)], \
            self.svms()

    def _fsx_windows(self, server: str) -> list[ShareFacts]:
        from winstor.aws.facts import fsx_windows_facts
        out = []
        for fs in fsx_windows_facts(self.file_systems()):
            names = [fs.dns_name, *fs.aliases, fs.preferred_file_server_ip]
            if any(_same(n, server) for n in names):
                out.append(ShareFacts("fsx-windows", fs.file_system_id, {
                    "file_system_id": fs.file_system_id, "type": fs.type,
                    "dns_name": fs.dns_name, "lifecycle": fs.lifecycle,
                    "active_directory_id": fs.active_directory_id,
                    "self_managed_domain": fs.self_managed_domain}))
        return out

    def _ontap(self, server: str) -> list[ShareFacts]:
        """SVMs whose SMB endpoint is `server`."""
        out = []
        for svm in self.svms():
            smb = (svm.get("Endpoints") or {}).get("Smb") or {}
            if not (_same(smb.get("DNSName"), server)
                    or any(_same(ip, server) for ip in smb.get("IpAddresses") or [])):
                continue
            fs_id = svm.get("FileSystemId", "")
            fs = next((f for f in self.file_systems() if f.get("FileSystemId") == fs_id), {})
            ad = svm.get("ActiveDirectoryConfiguration") or {}
            out.append(ShareFacts("fsx-ontap", svm.get("StorageVirtualMachineId", ""), {
                "svm_id": svm.get("StorageVirtualMachineId"), "svm_name": svm.get("Name"),
                "lifecycle": svm.get("Lifecycle"), "smb_dns_name": smb.get("DNSName"),
                "smb_addresses": smb.get("IpAddresses") or [],
                "netbios_name": ad.get("NetBiosName"),
                "domain": (ad.get("SelfManagedActiveDirectoryConfiguration") or {}).get(
                    "DomainName"),
                "file_system_id": fs_id, "file_system_type": fs.get("FileSystemType"),
                "file_system_lifecycle": fs.get("Lifecycle")}))
        return out

    def _file_gateway(self, server: str, share: str) -> list[ShareFacts]:
        """SMB file shares named `share` on a gateway that `server` names (one of its network
        interface addresses, or its name)."""
        out = []
        for fs in self.smb_file_shares():
            if not _same(fs.get("FileShareName"), share):
                continue
            arn = fs.get("GatewayARN") or ""
            info = self.gateway(arn)
            addresses = [i.get("Ipv4Address") for i in info.get("GatewayNetworkInterfaces")
                         or []]
            if not any(_same(a, server) for a in addresses) and \
                    not _same(info.get("GatewayName"), server):
                continue
            settings = self.smb_settings(arn)
            out.append(ShareFacts("file-gateway", fs.get("FileShareId", ""), {
                "file_share_id": fs.get("FileShareId"), "file_share_arn": fs.get("FileShareARN"),
                "file_share_name": fs.get("FileShareName"), "status": fs.get("FileShareStatus"),
                "authentication": fs.get("Authentication"), "read_only": fs.get("ReadOnly"),
                "location_arn": fs.get("LocationARN"), "gateway_arn": arn,
                "gateway_id": info.get("GatewayId"), "gateway_state": info.get("GatewayState"),
                "gateway_addresses": addresses,
                "active_directory_status": settings.get("ActiveDirectoryStatus"),
                "domain": settings.get("DomainName"),
                "guest_password_set": settings.get("SMBGuestPasswordSet")}))
        return out


def find(session: boto3.Session, server: str, share: str) -> tuple[list[ShareFacts], list[dict]]:
    """One share's `Account.find` (a check judging several shares keeps one `Account`)."""
    return Account(session).find(server, share)


def secret_credentials(session: boto3.Session, secret_id: str) -> dict[str, str]:
    """The JSON object (username, password, domain) of a Secrets Manager secret."""
    value = _read(client(session, "secretsmanager").get_secret_value, SecretId=secret_id)
    try:
        data = json.loads(value.get("SecretString") or "")
    except ValueError:
        raise ValueError(f"Secrets Manager secret {secret_id} is not a JSON object "
                         "(expected keys username, password, domain)") from None
    if not isinstance(data, dict) or not data.get("username") or not data.get("password"):
        raise ValueError(f"Secrets Manager secret {secret_id} has no username and password")
    return {k: str(v) for k, v in data.items() if k in ("username", "password", "domain")}
