"""FSx for NetApp ONTAP storage virtual machines (SVMs) for moto, which has none.

moto 5.2's FSx creates ONTAP file systems but has no SVM calls, and an SVM is what
serves SMB: its `Endpoints.Smb` is the name clients map (`\\\\<NETBIOS>.<domain>\\share`)
once the SVM is joined to an Active Directory. This module adds the SVM calls the
suite makes - `CreateStorageVirtualMachine`, `DescribeStorageVirtualMachines`,
`DeleteStorageVirtualMachine` - the way moto adds a service: a model, a per-account
and per-region backend, and response methods on the FSx request handler, routed by
moto's server like every other FSx action (`install()` points moto's FSx URL at the
extended handler). boto3 reaches them over the endpoint; nothing in the suite knows.

Response shape (FSx API reference, DescribeStorageVirtualMachines): `Lifecycle`
CREATED, `Subtype` DEFAULT, `Endpoints` with `Management`, `Nfs`, `Iscsi` named after
the SVM and file system ids, and `Smb` only for an SVM joined to a directory, named
`<NetBiosName>.<DomainName>` (as the FSx console shows it; the API reference's pattern
for `SvmEndpoint.DNSName` covers the id-named endpoints). The directory's service
account password is stored, never returned, as on AWS.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from typing import Any

from moto.core.base_backend import BackendDict, BaseBackend
from moto.core.common_models import BaseModel
from moto.core.exceptions import JsonRESTError
from moto.fsx import urls as fsx_urls
from moto.fsx.models import fsx_backends
from moto.fsx.responses import FSxResponse

__all__ = ["FSxWithSvmResponse", "StorageVirtualMachine", "install", "svm_backends"]

SVM_LIFECYCLES = frozenset({"CREATED", "CREATING", "DELETING", "FAILED", "MISCONFIGURED",
                            "PENDING"})


class StorageVirtualMachineNotFound(JsonRESTError):
    def __init__(self, svm_id: str) -> None:
        super().__init__("StorageVirtualMachineNotFound",
                         f"Storage virtual machine {svm_id} does not exist.")


class BadRequest(JsonRESTError):
    def __init__(self, message: str) -> None:
        super().__init__("BadRequest", message)


class StorageVirtualMachine(BaseModel):
    """One SVM of an ONTAP file system."""

    def __init__(self, *, account_id: str, region: str, file_system_id: str, name: str,
                 active_directory: dict[str, Any] | None, security_style: str | None,
                 tags: list[dict[str, str]] | None, smb_address: str) -> None:
        self.svm_id = "svm-" + secrets.token_hex(9)[:17]
        self.file_system_id = file_system_id
        self.name = name
        self.region = region
        self.uuid = str(uuid.uuid4())
        self.arn = (f"arn:aws:fsx:{region}:{account_id}:storage-virtual-machine/"
                    f"{file_system_id}/{self.svm_id}")
        self.creation_time = time.time()
        self.lifecycle = "CREATED"
        self.security_style = security_style or "NTFS"
        self.tags = list(tags or [])
        self.smb_address = smb_address
        self.active_directory: dict[str, Any] | None = None
        if active_directory:
            self.join(active_directory)

    def join(self, config: dict[str, Any]) -> None:
        """Join a directory (CreateStorageVirtualMachine's or UpdateStorageVirtualMachine's
        ActiveDirectoryConfiguration); the password is kept out of every response."""
        self_managed = dict(config.get("SelfManagedActiveDirectoryConfiguration") or {})
        self_managed.pop("Password", None)
        self.active_directory = {"NetBiosName": config.get("NetBiosName", ""),
                                 "SelfManagedActiveDirectoryConfiguration": self_managed}

    @property
    def smb_dns_name(self) -> str | None:
        ad = self.active_directory
        if not ad:
            return None
        domain = (ad.get("SelfManagedActiveDirectoryConfiguration") or {}).get("DomainName")
        return f"{ad['NetBiosName']}.{domain}".upper() if domain and ad["NetBiosName"] else None

    def to_dict(self) -> dict[str, Any]:
        base = f"{self.svm_id}.{self.file_system_id}.fsx.{self.region}.amazonaws.com"
        endpoints: dict[str, Any] = {
            "Management": {"DNSName": base, "IpAddresses": [self.smb_address]},
            "Nfs": {"DNSName": base, "IpAddresses": [self.smb_address]},
            "Iscsi": {"DNSName": f"iscsi.{base}", "IpAddresses": [self.smb_address]},
        }
        if self.smb_dns_name:
            endpoints["Smb"] = {"DNSName": self.smb_dns_name, "IpAddresses": [self.smb_address]}
        out: dict[str, Any] = {
            "CreationTime": self.creation_time,
            "Endpoints": endpoints,
            "FileSystemId": self.file_system_id,
            "Lifecycle": self.lifecycle,
            "Name": self.name,
            "ResourceARN": self.arn,
            "StorageVirtualMachineId": self.svm_id,
            "Subtype": "DEFAULT",
            "UUID": self.uuid,
            "Tags": self.tags,
            "RootVolumeSecurityStyle": self.security_style,
        }
        if self.active_directory:
            out["ActiveDirectoryConfiguration"] = self.active_directory
        return out


class SvmBackend(BaseBackend):
    """The SVMs of one account and region (beside moto's own FSx backend)."""

    def __init__(self, region_name: str, account_id: str) -> None:
        super().__init__(region_name, account_id)
        self.svms: dict[str, StorageVirtualMachine] = {}

    def create_storage_virtual_machine(
            self, *, file_system_id: str, name: str, active_directory: dict[str, Any] | None,
            security_style: str | None = None, tags: list[dict[str, str]] | None = None,
            smb_address: str | None = None) -> StorageVirtualMachine:
        fs = fsx_backends[self.account_id][self.region_name].file_systems.get(file_system_id)
        if fs is None:
            raise JsonRESTError("FileSystemNotFound",
                                f"File system '{file_system_id}' does not exist.")
        if fs.file_system_type != "ONTAP":
            raise BadRequest(f"File system {file_system_id} is not an ONTAP file system.")
        svm = StorageVirtualMachine(
            account_id=self.account_id, region=self.region_name, file_system_id=file_system_id,
            name=name, active_directory=active_directory, security_style=security_style,
            tags=tags, smb_address=smb_address or "10.0.0.100")
        self.svms[svm.svm_id] = svm
        return svm

    def describe_storage_virtual_machines(
            self, svm_ids: list[str] | None, filters: list[dict[str, Any]] | None,
    ) -> list[StorageVirtualMachine]:
        found = list(self.svms.values())
        if svm_ids:
            missing = [i for i in svm_ids if i not in self.svms]
            if missing:
                raise StorageVirtualMachineNotFound(missing[0])
            found = [self.svms[i] for i in svm_ids]
        for f in filters or []:
            if f.get("Name") == "file-system-id":
                found = [s for s in found if s.file_system_id in (f.get("Values") or [])]
        return found

    def delete_storage_virtual_machine(self, svm_id: str) -> StorageVirtualMachine:
        svm = self.svms.pop(svm_id, None)
        if svm is None:
            raise StorageVirtualMachineNotFound(svm_id)
        svm.lifecycle = "DELETING"
        return svm


svm_backends = BackendDict(SvmBackend, "fsx")


class FSxWithSvmResponse(FSxResponse):
    """moto's FSx handler plus the SVM actions (JSON protocol, X-Amz-Target)."""

    @property
    def svm_backend(self) -> SvmBackend:
        return svm_backends[self.current_account][self.region]

    def create_storage_virtual_machine(self) -> str:
        params = json.loads(self.body)
        svm = self.svm_backend.create_storage_virtual_machine(
            file_system_id=params.get("FileSystemId", ""), name=params.get("Name", ""),
            active_directory=params.get("ActiveDirectoryConfiguration"),
            security_style=params.get("RootVolumeSecurityStyle"), tags=params.get("Tags"))
        return json.dumps({"StorageVirtualMachine": svm.to_dict()})

    def describe_storage_virtual_machines(self) -> str:
        params = json.loads(self.body or "{}")
        svms = self.svm_backend.describe_storage_virtual_machines(
            params.get("StorageVirtualMachineIds"), params.get("Filters"))
        return json.dumps({"StorageVirtualMachines": [s.to_dict() for s in svms]})

    def delete_storage_virtual_machine(self) -> str:
        params = json.loads(self.body)
        svm = self.svm_backend.delete_storage_virtual_machine(
            params.get("StorageVirtualMachineId", ""))
        return json.dumps({"StorageVirtualMachineId": svm.svm_id, "Lifecycle": svm.lifecycle})


def install() -> None:
    """Route moto's FSx endpoint to the handler with the SVM actions (idempotent; before
    the server's first FSx request, which builds the FSx app from these paths)."""
    for path in list(fsx_urls.url_paths):
        fsx_urls.url_paths[path] = FSxWithSvmResponse.dispatch
