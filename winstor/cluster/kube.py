"""A thin dict-based REST layer over the official client's `ApiClient`.

The official client handles kubeconfig, TLS and bearer tokens; winstor talks
to resources by path with plain dicts so that one code path serves every kind
(and the wait machinery can watch any of them). Only idempotent calls are
retried, on transient errors, honouring `Retry-After`; every retry is logged.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import urllib3
from tenacity import RetryCallState, retry, retry_if_exception, stop_after_attempt, stop_after_delay

if TYPE_CHECKING:
    from kubernetes.client import ApiClient
    from kubernetes.client.rest import ApiException

log = logging.getLogger("winstor.cluster.kube")

TRANSIENT = {429, 500, 502, 503, 504}


def load_official_client() -> None:
    """Import the parts of the official client this module uses now: the kubeconfig
    loader and `ApiClient`, not its model and API classes (`officialclient` says why and
    how). This module imports them on first use instead, since an xdist controller,
    `--help` or `--collect-only` import winstor without talking to a cluster; a process
    about to run checks loads them early (see the plugin's pytest_collection_finish)."""
    from winstor.cluster import officialclient

    officialclient.load()
    from kubernetes import config  # noqa: F401
    from kubernetes.client import ApiClient  # noqa: F401


class KubeError(Exception):
    """A Kubernetes API error, worded for a person (one line)."""

    def __init__(self, status: int, reason: str, message: str, verb: str = "",
                 path: str = "") -> None:
        self.status, self.reason, self.message, self.verb, self.path = (
            status, reason, message, verb, path)
        where = f"{verb} {path}: " if verb else ""
        super().__init__(f"{where}{status} {reason}: {message}")


class ConnectError(Exception):
    """The cluster could not be reached or could not be authenticated to."""


def _to_kube_error(exc: ApiException, verb: str, path: str) -> KubeError:
    raw = exc.body.decode("utf-8", "replace") if isinstance(exc.body, bytes) else exc.body
    try:
        body = json.loads(raw or "{}")
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    message = body.get("message") or (raw or exc.reason or "").strip()
    return KubeError(exc.status or 0, body.get("reason") or exc.reason or "", message, verb, path)


def _retry_after(state: RetryCallState) -> float:
    exc = state.outcome.exception() if state.outcome else None
    if isinstance(exc, KubeError) and exc.status == 429:
        return float(getattr(exc, "retry_after", 1) or 1)
    return min(0.1 * 2 ** (state.attempt_number - 1), 2.0)


def answered_transient(exc: BaseException) -> bool:
    """A 429 or a 5xx: the server is there and asks for another try."""
    return isinstance(exc, KubeError) and exc.status in TRANSIENT


def is_transient(exc: BaseException) -> bool:
    """A 429, a 5xx or a dropped connection: worth another try of an idempotent call."""
    return answered_transient(exc) or isinstance(
        exc, (urllib3.exceptions.HTTPError, ConnectionError))


def log_retry(state: RetryCallState) -> None:
    """tenacity's before_sleep for API retries: logged and counted (`Api.retries_total`)."""
    exc = state.outcome.exception() if state.outcome else None
    log.warning("retrying after transient error (attempt %d): %s", state.attempt_number, exc)
    Api.retries_total += 1


transient_retry = retry(
    retry=retry_if_exception(is_transient),
    wait=_retry_after,
    stop=stop_after_attempt(8) | stop_after_delay(60),
    before_sleep=log_retry,
    reraise=True,
)


# For the first request to a cluster: a server that answers 429 or 5xx is tried again,
# one that does not answer at all fails at once, so a dead or mistyped target is still
# reported in a moment rather than after a minute of back-off.
first_contact_retry = retry(
    retry=retry_if_exception(answered_transient),
    wait=_retry_after,
    stop=stop_after_attempt(5) | stop_after_delay(15),
    before_sleep=log_retry,
    reraise=True,
)


@dataclass(frozen=True)
class Resource:
    """Where a kind lives in the API: group/version and plural."""

    api_version: str
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None = None, name: str | None = None,
             sub: str | None = None) -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{namespace}"
        base += f"/{self.plural}"
        if name:
            base += f"/{name}"
        if sub:
            base += f"/{sub}"
        return base


NAMESPACES = Resource("v1", "namespaces", False)
NODES = Resource("v1", "nodes", False)
PODS = Resource("v1", "pods")
PVCS = Resource("v1", "persistentvolumeclaims")
PVS = Resource("v1", "persistentvolumes", False)
EVENTS = Resource("v1", "events")
DEPLOYMENTS = Resource("apps/v1", "deployments")
REPLICASETS = Resource("apps/v1", "replicasets")
DAEMONSETS = Resource("apps/v1", "daemonsets")
STORAGECLASSES = Resource("storage.k8s.io/v1", "storageclasses", False)
CSIDRIVERS = Resource("storage.k8s.io/v1", "csidrivers", False)
CSINODES = Resource("storage.k8s.io/v1", "csinodes", False)
VOLUMEATTACHMENTS = Resource("storage.k8s.io/v1", "volumeattachments", False)

BY_KIND = {"Namespace": NAMESPACES, "Node": NODES, "Pod": PODS,
           "PersistentVolumeClaim": PVCS, "PersistentVolume": PVS, "Event": EVENTS,
           "Deployment": DEPLOYMENTS, "ReplicaSet": REPLICASETS, "DaemonSet": DAEMONSETS,
           "StorageClass": STORAGECLASSES, "CSIDriver": CSIDRIVERS, "CSINode": CSINODES,
           "VolumeAttachment": VOLUMEATTACHMENTS}


def resource_for(obj: dict) -> Resource:
    return BY_KIND[obj["kind"]]


class Api:
    """One cluster's API: plain-dict CRUD, list and watch by resource path."""

    retries_total = 0

    def __init__(self, api_client: ApiClient, context: str) -> None:
        self.client = api_client
        self.context = context

    @classmethod
    def from_kubeconfig(cls, kubeconfig: str | None, context: str | None) -> Api:
        load_official_client()
        from kubernetes import client as k8s_client
        from kubernetes import config as k8s_config

        conf = k8s_client.Configuration()
        try:
            k8s_config.load_kube_config(config_file=kubeconfig, context=context,
                                        client_configuration=conf, persist_config=False)
        except k8s_config.ConfigException as err:
            raise ConnectError(str(err).splitlines()[0]) from None
        except OSError as err:
            raise ConnectError(f"cannot read kubeconfig {kubeconfig}: {err.strerror}") from None
        # Retries are ours (bounded, logged, idempotent calls only): urllib3 must not
        # retry underneath, or every attempt would silently become four.
        conf.retries = False
        return cls(k8s_client.ApiClient(conf), context or "")

    @property
    def server(self) -> str:
        return str(self.client.configuration.host)

    def _call(self, method: str, path: str, query: dict[str, Any] | None = None,
              body: Any = None, content_type: str | None = None,
              stream: bool = False, timeout: float | None = 60) -> Any:
        from kubernetes.client.rest import ApiException

        headers = {"Accept": "application/json"}
        if content_type:
            headers["Content-Type"] = content_type
        elif body is not None:
            headers["Content-Type"] = "application/json"
        params = [(k, v) for k, v in (query or {}).items() if v is not None]
        self.client.update_params_for_auth(headers, params, ["BearerToken"])
        url = self.client.configuration.host + path
        try:
            # The REST layer directly: ApiClient's wrapper cannot report errors of
            # streamed responses (it decodes a body that was never read).
            resp = self.client.rest_client.request(
                method, url, query_params=params, headers=headers, body=body,
                _preload_content=not stream, _request_timeout=timeout)
        except ApiException as exc:
            err = _to_kube_error(exc, method, path)
            if exc.status == 429 and exc.headers:
                err.retry_after = float(exc.headers.get("Retry-After", "1") or 1)  # type: ignore[attr-defined]
            if exc.status == 0:
                raise ConnectionError(f"cannot reach {self.server}: {exc.reason}") from None
            raise err from None
        except urllib3.exceptions.HTTPError as exc:
            raise ConnectionError(f"cannot reach {self.server}: {exc}") from None
        if stream:
            return resp
        data = resp.data
        return json.loads(data) if data else None

    # -- idempotent calls (retried) ---------------------------------------------------
    @transient_retry
    def get(self, res: Resource, name: str, namespace: str | None = None) -> dict:
        return self._call("GET", res.path(namespace, name))

    @transient_retry
    def dry_run_create(self, res: Resource, obj: dict, namespace: str | None = None) -> dict:
        """Admission's answer to creating `obj` (`dryRun=All`): nothing is created, so a
        transient error is retried like a read."""
        return self._call("POST", res.path(namespace), {"dryRun": "All"}, body=obj)

    def get_or_none(self, res: Resource, name: str, namespace: str | None = None) -> dict | None:
        try:
            return self.get(res, name, namespace)
        except KubeError as err:
            if err.status == 404:
                return None
            raise

    @transient_retry
    def list(self, res: Resource, namespace: str | None = None, *,
             label_selector: str | None = None, field_selector: str | None = None) -> dict:
        return self._call("GET", res.path(namespace), {"labelSelector": label_selector,
                                                       "fieldSelector": field_selector})

    def items(self, res: Resource, namespace: str | None = None, **kw: Any) -> list[dict]:
        return self.list(res, namespace, **kw).get("items") or []

    @transient_retry
    def delete(self, res: Resource, name: str, namespace: str | None = None, *,
               propagation: str = "Background", missing_ok: bool = True,
               resource_version: str | None = None) -> dict | None:
        """Delete; with `resource_version`, only if nobody changed it since (else 409)."""
        body: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1",
                                "propagationPolicy": propagation}
        if resource_version:
            body["preconditions"] = {"resourceVersion": resource_version}
        try:
            return self._call("DELETE", res.path(namespace, name), body=body)
        except KubeError as err:
            if err.status == 404 and missing_ok:
                return None
            raise

    @transient_retry
    def patch(self, res: Resource, name: str, patch: dict, namespace: str | None = None,
              content_type: str = "application/merge-patch+json") -> dict:
        return self._call("PATCH", res.path(namespace, name), body=patch,
                          content_type=content_type)

    # -- create: retried, and a retry that finds its own earlier success adopts it ----
    def create(self, res: Resource, obj: dict, namespace: str | None = None, *,
               strict: bool = True) -> dict:
        query = {"fieldValidation": "Strict"} if strict else None
        name = obj["metadata"].get("name")

        @transient_retry
        def attempt(first: list[bool]) -> dict:
            try:
                return self._call("POST", res.path(namespace), query, body=obj)
            except KubeError as err:
                if err.status == 409 and err.reason == "AlreadyExists" and not first[0] \
                        and name:
                    # An earlier attempt got through before its answer was lost.
                    mine = self.get(res, name, namespace)
                    if _same_owner(mine, obj):
                        return mine
                raise
            finally:
                first[0] = False

        return attempt([True])

    # -- watch --------------------------------------------------------------------
    def watch(self, res: Resource, namespace: str | None, resource_version: str, *,
              field_selector: str | None = None, label_selector: str | None = None,
              timeout_seconds: int = 30) -> WatchStream:
        resp = self._call("GET", res.path(namespace), {
            "watch": "true", "resourceVersion": resource_version,
            "allowWatchBookmarks": "true", "timeoutSeconds": timeout_seconds,
            "fieldSelector": field_selector, "labelSelector": label_selector},
            stream=True, timeout=timeout_seconds + 10)
        return WatchStream(resp)

    @first_contact_retry
    def version(self) -> dict:
        """`GET /version`, the first request winstor makes to a cluster."""
        return self._call("GET", "/version", timeout=15) or {}

    def raw(self, method: str, path: str, **kw: Any) -> Any:
        return self._call(method, path, **kw)


def _same_owner(existing: dict, wanted: dict) -> bool:
    want = (wanted["metadata"].get("labels") or {}).get("winstor.io/run")
    have = (existing["metadata"].get("labels") or {}).get("winstor.io/run")
    return bool(want) and want == have


class WatchStream:
    """Iterate watch events from a streaming response; `close()` from any thread.

    A stream that breaks (a dropped connection, a torn line) just ends, as one that the
    server closed; `error` then says what broke it, so that a watcher can tell a quiet
    watch from a failing one."""

    def __init__(self, resp: Any) -> None:
        self.resp = resp
        self.error: Exception | None = None

    def __iter__(self) -> Iterator[dict]:
        buf = b""
        try:
            for chunk in self.resp.stream(4096, decode_content=False):
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)
        except (urllib3.exceptions.HTTPError, ValueError, AttributeError, OSError) as err:
            self.error = err
            return
        finally:
            self.close()

    def close(self) -> None:
        # Never hand a half-read chunked stream back to the pool: the next request
        # on that connection would read the rest of the watch as its status line.
        # Closing twice, or mid-read: what the socket and urllib3 say then changes nothing
        # (the stream is over either way) - OSError, urllib3's HTTPError, and from
        # HTTPResponse.shutdown ValueError (no socket to shut) or RuntimeError (the
        # connection is back in the pool already).
        with contextlib.suppress(OSError, urllib3.exceptions.HTTPError, ValueError,
                                 RuntimeError, AttributeError):
            shutdown = getattr(self.resp, "shutdown", None)
            if shutdown is not None:
                shutdown()
            self.resp.close()
