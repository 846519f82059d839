"""Storage Gateway's client error, with the `error` detail AWS adds to it."""

from __future__ import annotations

import json

from moto.core.exceptions import JsonRESTError


class InvalidGatewayRequest(JsonRESTError):
    """`InvalidGatewayRequestException`: AWS puts the specific code in `error.errorCode`
    (GatewayNotFound, FileShareNotFound, InvalidParameters) beside the message."""

    def __init__(self, code: str, message: str, **details: str) -> None:
        super().__init__("InvalidGatewayRequestException", message)
        self.description = json.dumps({
            "__type": "InvalidGatewayRequestException", "message": message,
            "error": {"errorCode": code, "errorDetails": details}})
