"""A small synchronous client of the real API server, from a kubeconfig.

Why not the official client: the sim's controllers expect a store whose writes return
the stored object at once (`Store.mutate`, `Store.create`), and they pass plain dicts
that the official client would turn into models and back. A urllib3 pool with the
kubeconfig's client certificate does exactly what is needed: JSON in, JSON out, the
API server's `Status` errors raised as the sim's `ApiError` (same code, reason and
message), so the sim's code that catches `ApiError` keeps working unchanged.

Thread-safe: the informers stream watches from their own threads while the agent's
event loop writes through the same pool.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import ssl
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import urllib3
import yaml

from ..api.errors import ApiError
from ..api.kinds import Kind

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"


class KubeUnreachable(Exception):
    """The API server did not answer (connection refused, reset, timed out)."""


def _material(entry: dict[str, Any], key: str, base: Path) -> bytes | None:
    """A kubeconfig field given inline (`<key>-data`, base64) or as a file (`<key>`)."""
    data = entry.get(f"{key}-data")
    if data:
        return base64.b64decode(data)
    path = entry.get(key)
    if path:
        full = Path(path) if Path(path).is_absolute() else base / path
        return full.read_bytes()
    return None


class Kube:
    """The API server of one kubeconfig context (its current one)."""

    def __init__(self, kubeconfig: Path, *, user_agent: str = "winstor-node-agent") -> None:
        doc = yaml.safe_load(kubeconfig.read_text(encoding="utf-8")) or {}
        context_name = doc.get("current-context") or (doc.get("contexts") or [{}])[0].get("name")
        context = next(c["context"] for c in doc.get("contexts") or []
                       if c.get("name") == context_name)
        cluster = next(c["cluster"] for c in doc.get("clusters") or []
                       if c.get("name") == context["cluster"])
        user = next((u.get("user") or {} for u in doc.get("users") or []
                     if u.get("name") == context.get("user")), {})
        base = kubeconfig.parent
        self.server = str(cluster["server"]).rstrip("/")
        ctx = ssl.create_default_context()
        ca = _material(cluster, "certificate-authority", base)
        if ca is not None:
            ctx = ssl.create_default_context(cadata=ca.decode())
        self._dir = tempfile.mkdtemp(prefix="winstor-agent-")
        cert, key = (_material(user, "client-certificate", base),
                     _material(user, "client-key", base))
        if cert is not None and key is not None:
            # ssl loads client certificates from files only: private copies, removed in close().
            cert_path, key_path = Path(self._dir) / "client.crt", Path(self._dir) / "client.key"
            for path, data in ((cert_path, cert), (key_path, key)):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
            ctx.load_cert_chain(str(cert_path), str(key_path))
        self.headers = {"User-Agent": user_agent, "Accept": JSON}
        if user.get("token"):
            self.headers["Authorization"] = f"Bearer {user['token']}"
        self.pool = urllib3.PoolManager(ssl_context=ctx, maxsize=16, block=False,
                                        retries=False)

    def close(self) -> None:
        self.pool.clear()
        shutil.rmtree(self._dir, ignore_errors=True)

    # -- paths ----------------------------------------------------------------------
    @staticmethod
    def path(kind: Kind, namespace: str | None = None, name: str | None = None,
             sub: str | None = None) -> str:
        root = f"/api/{kind.version}" if not kind.group else f"/apis/{kind.group}/{kind.version}"
        if kind.namespaced and namespace:
            root += f"/namespaces/{quote(namespace)}"
        root += f"/{kind.plural}"
        if name:
            root += f"/{quote(name)}"
        if sub:
            root += f"/{sub}"
        return root

    # -- requests -------------------------------------------------------------------
    def request(self, method: str, path: str, body: Any = None, *,
                query: dict[str, str] | None = None, content_type: str = JSON,
                timeout: float = 30.0) -> dict:
        """One request; the decoded answer, or `ApiError` as the server said it."""
        url = self.server + path + (f"?{urlencode(query)}" if query else "")
        headers = dict(self.headers)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = content_type
        try:
            resp = self.pool.request(method, url, body=data, headers=headers,
                                     timeout=urllib3.Timeout(connect=5.0, read=timeout))
        except (urllib3.exceptions.HTTPError, OSError) as err:
            raise KubeUnreachable(f"{method} {path}: {err}") from None
        return _decode(resp.status, resp.data, method, path)

    def get(self, kind: Kind, namespace: str | None, name: str) -> dict:
        return self.request("GET", self.path(kind, namespace, name))

    def list(self, kind: Kind, namespace: str | None = None,
             query: dict[str, str] | None = None) -> dict:
        return self.request("GET", self.path(kind, namespace), query=query)

    def watch(self, kind: Kind, resource_version: str, timeout_seconds: int = 240,
              ) -> Iterator[dict]:
        """The events of one watch from `resource_version` (bookmarks included), until the
        server ends it. A `410 Gone` arrives as `ApiError(410)`."""
        query = {"watch": "true", "resourceVersion": resource_version,
                 "allowWatchBookmarks": "true", "timeoutSeconds": str(timeout_seconds)}
        url = self.server + self.path(kind) + "?" + urlencode(query)
        try:
            resp = self.pool.request("GET", url, headers=self.headers, preload_content=False,
                                     timeout=urllib3.Timeout(connect=5.0,
                                                             read=timeout_seconds + 30))
        except (urllib3.exceptions.HTTPError, OSError) as err:
            raise KubeUnreachable(f"watch {kind.plural}: {err}") from None
        try:
            if resp.status != 200:
                _decode(resp.status, resp.read(), "GET", url)
            buffer = b""
            for chunk in resp.stream(65536):
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if event.get("type") == "ERROR":
                        status = event.get("object") or {}
                        raise ApiError(int(status.get("code") or 500),
                                       str(status.get("reason") or "InternalError"),
                                       str(status.get("message") or "watch error"))
                    yield event
        except (urllib3.exceptions.HTTPError, OSError) as err:
            raise KubeUnreachable(f"watch {kind.plural}: {err}") from None
        finally:
            resp.release_conn()

    def wait_ready(self, timeout: float = 60.0) -> None:
        """Until `/readyz` answers ok (the launcher starts us after it did; a hand-run
        agent may be quicker than its API server)."""
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                resp = self.pool.request("GET", self.server + "/readyz", headers=self.headers,
                                         timeout=urllib3.Timeout(connect=2.0, read=5.0))
                if resp.status == 200:
                    return
                last = f"{resp.status}: {resp.data[:200]!r}"
            except (urllib3.exceptions.HTTPError, OSError) as err:
                last = str(err)
            time.sleep(0.2)
        raise KubeUnreachable(f"the API server at {self.server} is not ready: {last}")


def _decode(status: int, data: bytes, method: str, path: str) -> dict:
    try:
        body = json.loads(data) if data else {}
    except ValueError:
        body = {"message": data.decode("utf-8", "replace")[:500]}
    if status >= 400:
        raise ApiError(status, str(body.get("reason") or "Unknown"),
                       str(body.get("message") or f"{method} {path} answered {status}"),
                       body.get("details"))
    return body if isinstance(body, dict) else {"items": body}
