"""AWS Storage Gateway (File Gateway SMB shares) for moto, which has no Storage Gateway.

Laid out as a moto service package - `models` (the backend), `responses` (the
JSON request handler), `urls` (what moto's server routes here) - and registered
with moto's server by `install()`, so that boto3's `storagegateway` client reaches
it over the endpoint exactly as it reaches EC2 or FSx. Only what a File Gateway's
SMB shares need is modelled: gateways, SMB file shares, the gateway's SMB settings
(domain join, guest password) and their reads.
"""

from __future__ import annotations

import re
import sys

from .models import storagegateway_backends

__all__ = ["install", "storagegateway_backends"]

SERVICE = "storagegateway"
URL_PATTERN = re.compile(r"https?://storagegateway\.(.+)\.amazonaws\.com")


def install() -> None:
    """Register the service with moto's server (idempotent).

    moto's server picks a backend by the request's signing name (`storagegateway`
    here) through `moto.backend_index.backend_url_patterns`, then imports
    `moto.<service>` for its `<service>_backends`; this package answers that import.
    """
    import moto.backend_index as backend_index

    sys.modules.setdefault(f"moto.{SERVICE}", sys.modules[__name__])
    if not any(name == SERVICE for name, _ in backend_index.backend_url_patterns):
        backend_index.backend_url_patterns.append((SERVICE, URL_PATTERN))
