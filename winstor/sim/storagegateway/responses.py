"""Handles Storage Gateway requests (JSON 1.1, `X-Amz-Target: StorageGateway_20130630.*`)."""

from __future__ import annotations

import json
from typing import Any

from moto.core.responses import BaseResponse

from .models import StorageGatewayBackend, storagegateway_backends


class StorageGatewayResponse(BaseResponse):
    def __init__(self) -> None:
        super().__init__(service_name="storagegateway")

    @property
    def backend(self) -> StorageGatewayBackend:
        return storagegateway_backends[self.current_account][self.region]

    def _params(self) -> dict[str, Any]:
        return json.loads(self.body or "{}")

    def list_gateways(self) -> str:
        return json.dumps({"Gateways": [g.summary() for g in self.backend.list_gateways()]})

    def describe_gateway_information(self) -> str:
        gateway = self.backend.gateway(self._params().get("GatewayARN", ""))
        return json.dumps(gateway.information())

    def describe_smb_settings(self) -> str:
        gateway = self.backend.gateway(self._params().get("GatewayARN", ""))
        return json.dumps(gateway.smb_settings())

    def list_file_shares(self) -> str:
        shares = self.backend.list_file_shares(self._params().get("GatewayARN"))
        return json.dumps({"FileShareInfoList": [s.info() for s in shares]})

    def describe_smb_file_shares(self) -> str:
        shares = self.backend.describe_smb_file_shares(
            self._params().get("FileShareARNList") or [])
        return json.dumps({"SMBFileShareInfoList": [s.describe() for s in shares]})
