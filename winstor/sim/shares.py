"""The SMB shares of an emulated cluster, one of each kind, as AWS (moto) holds them.

- `fsx-windows`: a second share (`k8s`) on the cluster's FSx for Windows file system
  (the seed's `share`, mapped at G:, stays the nodes'), joined to the directory
  `corp.example.com`;
- `fsx-ontap`: an FSx for NetApp ONTAP file system with an SVM joined to the same
  directory; clients map `\\\\<NETBIOS>.corp.example.com\\winstor`;
- `file-gateway`: a File Gateway whose SMB file share `winstor-fgw` uses guest access;
  clients map it by the gateway's address.

Credentials live where a cluster keeps them: the directory's service account and the
gateway's guest password in AWS Secrets Manager (`winstor/<cluster>/smb-ad`,
`winstor/<cluster>/smb-file-gateway`), and the same values in the cluster's Secrets
(`bootstrap_smb`). What this returns is plain data; the node side (`nodes.smb`) builds
the servers clients reach from it.

Scenario switches: `file-gateway-not-joined` gives the File Gateway share Active
Directory authentication on a gateway that never joined a domain.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import string
from collections.abc import Set
from dataclasses import dataclass
from typing import Any

from . import fsx_ontap, storagegateway
from .aws import AwsBackend, ClusterAws

__all__ = ["AD_DOMAIN", "AD_NETBIOS", "ShareSeed", "SharesSeed", "seed_shares"]

AD_DOMAIN = "corp.example.com"
AD_NETBIOS = "CORP"
AD_USER = "winstor-smb"
GUEST_USER = "smbguest"


@dataclass(frozen=True)
class ShareSeed:
    """One SMB share: its kind, where clients reach it and the credentials they use."""

    kind: str  # fsx-windows | fsx-ontap | file-gateway
    server: str  # the name (or address) clients map
    address: str  # the server's IP address
    share: str  # the share name
    username: str
    password: str
    domain: str  # the domain part clients send (the NetBIOS domain, or the gateway id)
    secret_name: str  # the Secrets Manager secret holding username/password/domain
    authentication: str  # ActiveDirectory | GuestAccess
    joined: bool = True  # the server is joined to the directory it authenticates against

    @property
    def source(self) -> str:
        """The SMB CSI driver's `source`: `//server/share`."""
        return f"//{self.server}/{self.share}"


@dataclass(frozen=True)
class SharesSeed:
    """The cluster's shares and the directory account behind the domain-joined ones."""

    shares: tuple[ShareSeed, ...]
    ad_user: str
    ad_password: str


def _password() -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(16)) + "!a7"


def seed_shares(backend: AwsBackend, cluster: ClusterAws, index: int,
                scenarios: Set[str]) -> SharesSeed:
    """Create the ONTAP file system and SVM, the File Gateway and its share, and the
    credentials' secrets in the backend's account (in-process, like the rest of the seed)."""
    fsx_ontap.install()
    storagegateway.install()
    account, region = backend.account_id, backend.region
    ad_password = _password()
    subnet_id = next(iter(cluster.subnets.values()))
    net = ipaddress.ip_network(backend._ec2().get_subnet(subnet_id).cidr_block)
    shares: list[ShareSeed] = []

    ad_secret = f"winstor/{cluster.cluster_name}/smb-ad"
    _secret(backend, ad_secret, {"username": AD_USER, "password": ad_password,
                                 "domain": AD_NETBIOS})
    if cluster.fsx is not None:
        fs = backend._fsx().file_systems[cluster.fsx.file_system_id]
        windows: dict[str, Any] = fs.to_dict().get("WindowsConfiguration") or {}
        shares.append(ShareSeed(
            kind="fsx-windows", server=cluster.fsx.dns_name,
            address=str(windows.get("PreferredFileServerIp") or net.network_address + 250),
            share="k8s", username=AD_USER, password=ad_password, domain=AD_NETBIOS,
            secret_name=ad_secret, authentication="ActiveDirectory"))

    ontap = backend._fsx().create_file_system(
        client_request_token=secrets.token_hex(8), file_system_type="ONTAP",
        storage_capacity=1024, storage_type="SSD", subnet_ids=[subnet_id],
        security_group_ids=[],
        tags=[{"Key": "Name", "Value": f"{cluster.cluster_name}-ontap"},
              {"Key": f"kubernetes.io/cluster/{cluster.cluster_name}", "Value": "shared"}],
        kms_key_id=None, windows_configuration=None, lustre_configuration=None,
        ontap_configuration={"DeploymentType": "SINGLE_AZ_1", "ThroughputCapacity": 128,
                             "PreferredSubnetId": subnet_id},
        file_system_type_version=None, open_zfs_configuration=None)
    plain = ontap.to_dict  # moto's shape lacks what DescribeFileSystems returns on AWS
    ontap.to_dict = lambda: {**plain(), "Lifecycle": "AVAILABLE", "OwnerId": account,
                             "VpcId": cluster.vpc_id}
    netbios = f"WINSTORSVM{index}"[:15]
    svm_address = str(net.network_address + 240)
    svm = fsx_ontap.svm_backends[account][region].create_storage_virtual_machine(
        file_system_id=ontap.file_system_id, name=f"svm-{cluster.cluster_name}",
        active_directory={"NetBiosName": netbios, "SelfManagedActiveDirectoryConfiguration": {
            "DomainName": AD_DOMAIN, "UserName": "Admin", "Password": ad_password,
            "DnsIps": ["10.0.0.10", "10.0.0.11"],
            "OrganizationalUnitDistinguishedName": "OU=Computers,OU=corp,DC=corp,DC=example,"
                                                   "DC=com"}},
        tags=[{"Key": "Name", "Value": f"{cluster.cluster_name}-svm"}], smb_address=svm_address)
    shares.append(ShareSeed(
        kind="fsx-ontap", server=(svm.smb_dns_name or netbios).lower(), address=svm_address,
        share="winstor", username=AD_USER, password=ad_password, domain=AD_NETBIOS,
        secret_name=ad_secret, authentication="ActiveDirectory"))

    sgw = storagegateway.storagegateway_backends[account][region]
    gateway_address = str(net.network_address + 230)
    gateway = sgw.create_gateway(f"{cluster.cluster_name}-file-gateway", gateway_address)
    guest_password = _password()
    not_joined = "file-gateway-not-joined" in scenarios
    if not not_joined:
        sgw.set_smb_guest_password(gateway.arn, guest_password)
    share = sgw.create_smb_file_share(
        gateway_arn=gateway.arn, bucket=f"winstor-{cluster.cluster_name}-file-gateway",
        role=f"arn:aws:iam::{account}:role/winstor-file-gateway",
        authentication="ActiveDirectory" if not_joined else "GuestAccess", name="winstor-fgw")
    fgw_secret = f"winstor/{cluster.cluster_name}/smb-file-gateway"
    _secret(backend, fgw_secret, {"username": GUEST_USER, "password": guest_password,
                                  "domain": gateway.gateway_id})
    shares.append(ShareSeed(
        kind="file-gateway", server=gateway_address, address=gateway_address, share=share.name,
        username=GUEST_USER, password=guest_password, domain=gateway.gateway_id,
        secret_name=fgw_secret, authentication=share.authentication,
        joined=gateway.ad_status == "JOINED" or share.authentication == "GuestAccess"))
    return SharesSeed(tuple(shares), AD_USER, ad_password)


def _secret(backend: AwsBackend, name: str, value: dict[str, str]) -> None:
    from moto.secretsmanager.models import secretsmanager_backends

    secretsmanager_backends[backend.account_id][backend.region].create_secret(
        name=name, secret_string=json.dumps(value), secret_binary=None,
        description="SMB credentials of a winstor emulated cluster's share", tags=None,
        kms_key_id=None, client_request_token=None, replica_regions=[], force_overwrite=False)
