"""Which AWS service serves an SMB share, and what it says about it, read with plain boto3.

A share is `\\\\server\\share`; the server is one of:

- an FSx for Windows File Server file system: its `DNSName`, an alias, or its preferred
  file server address;
- an FSx for NetApp ONTAP storage virtual machine joined to a directory: its SMB
  endpoint's `DNSName` or one of its addresses (`DescribeStorageVirtualMachines`);
- a File Gateway: one of the gateway's network interface addresses, with the share one
  of its SMB file shares by `FileShareName` (`ListFileShares`, `DescribeSMBFileShares`,
  `DescribeSMBSettings` for the domain join and guest password).

`find()` returns every match of any kind, with the facts the checks judge; it knows
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

__all__ = ["ShareFacts", "find", "secret_credentials"]


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


def _fsx_windows(session: boto3.Session, server: str) -> list[ShareFacts]:
    from winstor.aws.facts import fsx_windows_file_systems
    out = []
    for fs in fsx_windows_file_systems(session):
        names = [fs.dns_name, *fs.aliases, fs.preferred_file_server_ip]
        if any(_same(n, server) for n in names):
            out.append(ShareFacts("fsx-windows", fs.file_system_id, {
                "file_system_id": fs.file_system_id, "type": fs.type, "dns_name": fs.dns_name,
                "lifecycle": fs.lifecycle, "active_directory_id": fs.active_directory_id,
                "self_managed_domain": fs.self_managed_domain}))
    return out


def _ontap(session: boto3.Session, server: str) -> tuple[list[ShareFacts], list[dict]]:
    """SVMs whose SMB endpoint is `server`, and every SVM seen (for the reasons none is)."""
    fsx = client(session, "fsx")
    svms: list[dict] = []
    try:
        for page in _pages(fsx.describe_storage_virtual_machines):
            svms.extend(page.get("StorageVirtualMachines") or [])
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("UnknownOperationException",
                                                         "InvalidAction"):
            return [], []
        raise
    systems: dict[str, dict] = {}
    out = []
    for svm in svms:
        smb = (svm.get("Endpoints") or {}).get("Smb") or {}
        if not (_same(smb.get("DNSName"), server)
                or any(_same(ip, server) for ip in smb.get("IpAddresses") or [])):
            continue
        fs_id = svm.get("FileSystemId", "")
        if fs_id not in systems:
            found = _read(fsx.describe_file_systems, FileSystemIds=[fs_id]).get(
                "FileSystems") or [{}]
            systems[fs_id] = found[0]
        fs = systems[fs_id]
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
    return out, svms


def _file_gateway(session: boto3.Session, server: str, share: str) -> list[ShareFacts]:
    sgw = client(session, "storagegateway")
    out = []
    try:
        gateways = [g for page in _marker_pages(sgw.list_gateways, "Marker")
                    for g in page.get("Gateways") or []]
    except ClientError as err:
        if err.response.get("Error", {}).get("Code") in ("UnknownOperationException",
                                                         "InvalidAction"):
            return []
        raise
    for gw in gateways:
        arn = gw["GatewayARN"]
        info = _read(sgw.describe_gateway_information, GatewayARN=arn)
        addresses = [i.get("Ipv4Address") for i in info.get("GatewayNetworkInterfaces") or []]
        if not any(_same(a, server) for a in addresses) and not _same(gw.get("GatewayName"),
                                                                       server):
            continue
        arns = [s["FileShareARN"]
                for page in _marker_pages(sgw.list_file_shares, "NextMarker", GatewayARN=arn)
                for s in page.get("FileShareInfoList") or [] if s.get("FileShareType") == "SMB"]
        if not arns:
            continue
        described = _read(sgw.describe_smb_file_shares, FileShareARNList=arns)
        settings = _read(sgw.describe_smb_settings, GatewayARN=arn)
        for fs in described.get("SMBFileShareInfoList") or []:
            if not _same(fs.get("FileShareName"), share):
                continue
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
    """Every AWS resource of any kind that serves `\\\\server\\share`, and the ONTAP SVMs
    of the account and region (to say why none matched, when none does)."""
    ontap, svms = _ontap(session, server)
    return [*_fsx_windows(session, server), *ontap, *_file_gateway(session, server, share)], svms


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
