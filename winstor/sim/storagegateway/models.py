"""Storage Gateway's File Gateway: gateways, SMB file shares and SMB settings.

Shapes follow the Storage Gateway API reference (2013-06-30): `ListGateways`,
`DescribeGatewayInformation`, `ListFileShares`, `DescribeSMBFileShares`,
`DescribeSMBSettings`, with the errors AWS returns for an unknown gateway or file
share (`InvalidGatewayRequestException` carrying an `error.errorCode`). The guest
password and the domain join password are kept, never returned (AWS returns only
`SMBGuestPasswordSet` and `ActiveDirectoryStatus`).
"""

from __future__ import annotations

import secrets
from typing import Any

from moto.core.base_backend import BackendDict, BaseBackend
from moto.core.common_models import BaseModel
from moto.core.exceptions import JsonRESTError

from .exceptions import InvalidGatewayRequest

__all__ = ["Gateway", "SmbFileShare", "StorageGatewayBackend", "storagegateway_backends"]

FILE_SHARE_STATUSES = frozenset({"CREATING", "UPDATING", "AVAILABLE", "DELETING",
                                 "FORCE_DELETING", "UNAVAILABLE", "ERROR"})
AUTHENTICATION_MODES = frozenset({"ActiveDirectory", "GuestAccess"})


def _id(prefix: str) -> str:
    return prefix + secrets.token_hex(4).upper()


class Gateway(BaseModel):
    """A File Gateway (FILE_S3) activated in the account."""

    def __init__(self, *, account_id: str, region: str, name: str, address: str,
                 ec2_instance_id: str | None, timezone: str = "GMT") -> None:
        self.gateway_id = _id("sgw-")
        self.arn = f"arn:aws:storagegateway:{region}:{account_id}:gateway/{self.gateway_id}"
        self.name = name
        self.region = region
        self.address = address
        self.ec2_instance_id = ec2_instance_id
        self.timezone = timezone
        self.state = "RUNNING"  # DescribeGatewayInformation's GatewayState: RUNNING or SHUTDOWN
        self.domain_name: str | None = None
        self.ad_status = "DETACHED"
        self.guest_password: str | None = None
        self.security_strategy = "MandatorySigning"
        self.tags: list[dict[str, str]] = []

    def summary(self) -> dict[str, Any]:
        """One entry of ListGateways."""
        out = {"GatewayId": self.gateway_id, "GatewayARN": self.arn, "GatewayType": "FILE_S3",
               "GatewayOperationalState": "ACTIVE" if self.state == "RUNNING" else "SHUTDOWN",
               "GatewayName": self.name, "HostEnvironment": "EC2",
               "SoftwareVersion": "2.3.0"}
        if self.ec2_instance_id:
            out.update(Ec2InstanceId=self.ec2_instance_id, Ec2InstanceRegion=self.region,
                       HostEnvironmentId=self.ec2_instance_id)
        return out

    def information(self) -> dict[str, Any]:
        """DescribeGatewayInformation."""
        out = {"GatewayARN": self.arn, "GatewayId": self.gateway_id, "GatewayName": self.name,
               "GatewayTimezone": self.timezone, "GatewayState": self.state,
               "GatewayNetworkInterfaces": [{"Ipv4Address": self.address,
                                             "MacAddress": "0a:1b:2c:3d:4e:5f"}],
               "GatewayType": "FILE_S3", "HostEnvironment": "EC2", "EndpointType": "STANDARD",
               "GatewayCapacity": "Medium", "SoftwareVersion": "2.3.0", "Tags": self.tags}
        if self.ec2_instance_id:
            out.update(Ec2InstanceId=self.ec2_instance_id, Ec2InstanceRegion=self.region,
                       HostEnvironmentId=self.ec2_instance_id)
        return out

    def smb_settings(self) -> dict[str, Any]:
        """DescribeSMBSettings (no password is ever part of it)."""
        out: dict[str, Any] = {"GatewayARN": self.arn,
                               "ActiveDirectoryStatus": self.ad_status,
                               "SMBGuestPasswordSet": self.guest_password is not None,
                               "SMBSecurityStrategy": self.security_strategy,
                               "FileSharesVisible": False}
        if self.domain_name:
            out["DomainName"] = self.domain_name
        return out


class SmbFileShare(BaseModel):
    """An SMB file share of a gateway, backed by an S3 location."""

    def __init__(self, *, account_id: str, region: str, gateway: Gateway, bucket: str,
                 role: str, authentication: str, name: str | None) -> None:
        self.share_id = _id("share-")
        self.arn = f"arn:aws:storagegateway:{region}:{account_id}:share/{self.share_id}"
        self.gateway_arn = gateway.arn
        self.location_arn = f"arn:aws:s3:::{bucket}"
        self.role = role
        self.authentication = authentication
        self.name = name or bucket
        self.status = "AVAILABLE"
        self.read_only = False
        self.tags: list[dict[str, str]] = []

    def info(self) -> dict[str, Any]:
        """One entry of ListFileShares."""
        return {"FileShareType": "SMB", "FileShareARN": self.arn, "FileShareId": self.share_id,
                "FileShareStatus": self.status, "GatewayARN": self.gateway_arn}

    def describe(self) -> dict[str, Any]:
        """One entry of DescribeSMBFileShares."""
        return {"FileShareARN": self.arn, "FileShareId": self.share_id,
                "FileShareStatus": self.status, "GatewayARN": self.gateway_arn,
                "EncryptionType": "SseS3", "KMSEncrypted": False, "Path": f"/{self.name}",
                "Role": self.role, "LocationARN": self.location_arn,
                "DefaultStorageClass": "S3_STANDARD", "ObjectACL": "bucket-owner-full-control",
                "ReadOnly": self.read_only, "GuessMIMETypeEnabled": True,
                "RequesterPays": False, "SMBACLEnabled": self.authentication ==
                "ActiveDirectory", "AccessBasedEnumeration": False, "AdminUserList": [],
                "ValidUserList": [], "InvalidUserList": [],
                "Authentication": self.authentication, "CaseSensitivity": "ClientSpecified",
                "Tags": self.tags, "FileShareName": self.name, "OplocksEnabled": True}


class StorageGatewayBackend(BaseBackend):
    """The gateways and file shares of one account and region."""

    def __init__(self, region_name: str, account_id: str) -> None:
        super().__init__(region_name, account_id)
        self.gateways: dict[str, Gateway] = {}
        self.file_shares: dict[str, SmbFileShare] = {}

    # -- seeding and mutation (what activation and the console do) --------------------
    def create_gateway(self, name: str, address: str,
                       ec2_instance_id: str | None = None) -> Gateway:
        gateway = Gateway(account_id=self.account_id, region=self.region_name, name=name,
                          address=address, ec2_instance_id=ec2_instance_id)
        self.gateways[gateway.arn] = gateway
        return gateway

    def gateway(self, arn: str) -> Gateway:
        found = self.gateways.get(arn)
        if found is None:
            raise InvalidGatewayRequest("GatewayNotFound",
                                        "The specified gateway was not found.", gateway_arn=arn)
        return found

    def join_domain(self, arn: str, domain: str) -> Gateway:
        gateway = self.gateway(arn)
        gateway.domain_name = domain
        gateway.ad_status = "JOINED"
        return gateway

    def set_smb_guest_password(self, arn: str, password: str) -> Gateway:
        gateway = self.gateway(arn)
        gateway.guest_password = password
        return gateway

    def create_smb_file_share(self, *, gateway_arn: str, bucket: str, role: str,
                              authentication: str = "ActiveDirectory",
                              name: str | None = None) -> SmbFileShare:
        if authentication not in AUTHENTICATION_MODES:
            raise InvalidGatewayRequest("InvalidParameters",
                                        f"Invalid Authentication: {authentication}")
        gateway = self.gateway(gateway_arn)
        share = SmbFileShare(account_id=self.account_id, region=self.region_name,
                             gateway=gateway, bucket=bucket, role=role,
                             authentication=authentication, name=name)
        self.file_shares[share.arn] = share
        return share

    # -- reads ------------------------------------------------------------------------
    def list_gateways(self) -> list[Gateway]:
        return list(self.gateways.values())

    def list_file_shares(self, gateway_arn: str | None) -> list[SmbFileShare]:
        if gateway_arn:
            self.gateway(gateway_arn)
        return [s for s in self.file_shares.values()
                if not gateway_arn or s.gateway_arn == gateway_arn]

    def describe_smb_file_shares(self, arns: list[str]) -> list[SmbFileShare]:
        if not 1 <= len(arns) <= 10:  # the API reference's bounds; botocore checks only the 1
            raise JsonRESTError(
                "ValidationException", "1 validation error detected: Value at "
                "'fileShareARNList' failed to satisfy constraint: Member must have length "
                "less than or equal to 10" if arns else "FileShareARNList must not be empty")
        out = []
        for arn in arns:
            share = self.file_shares.get(arn)
            if share is None:
                raise InvalidGatewayRequest("FileShareNotFound",
                                            "The specified file share was not found.",
                                            file_share_arn=arn)
            out.append(share)
        return out


storagegateway_backends = BackendDict(StorageGatewayBackend, "storagegateway")
