"""Kubernetes REST over HTTPS for one emulated cluster.

Only the wire protocol lives here - routing, auth, content types, watch
streaming, websocket exec, discovery and `Status` errors. What an object
*means* (admission, controllers, the Windows nodes) belongs to the cluster
model this server fronts, the way moto keeps backends apart from its HTTP
layer. The server knows that model only as a `Backend`, so it imports nothing
above the API machinery (`winstor.sim.cluster.Cluster` is the one backend).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import Counter
from typing import Any, Protocol
from urllib.parse import parse_qs

import yaml
from aiohttp import WSMsgType, web

from . import discovery, tables
from .errors import ApiError
from .faults import Faults
from .impersonation import wants_impersonation
from .kinds import Kind, lookup
from .managedfields import default_manager
from .rbac import UserInfo
from .schema import SchemaRegistry
from .selectors import field_selector, label_selector
from .store import Store

log = logging.getLogger("winstor.sim.api")

PUBLIC_PATHS = ("/healthz", "/livez", "/readyz", "/metrics", "/version")
EXEC_PROTOCOLS = ("v5.channel.k8s.io", "v4.channel.k8s.io", "channel.k8s.io")


def _json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(text=json.dumps(body), status=status, content_type="application/json",
                        headers=headers)


def _error(err: ApiError) -> web.Response:
    return _json(err.body(), err.code, err.headers)


def cut_log(text: str, tail_lines: str | None, limit_bytes: str | None) -> str:
    """A log cut as the kubelet cuts it: its last `tail_lines` lines, then at most
    `limit_bytes` bytes (values already checked; anything else leaves it whole)."""
    if tail_lines is not None and tail_lines.isdigit():
        lines = text.splitlines(keepends=True)
        text = "".join(lines[len(lines) - int(tail_lines):]) if int(tail_lines) else ""
    if limit_bytes and limit_bytes.isdigit():
        text = text.encode()[: int(limit_bytes)].decode("utf-8", "ignore")
    return text


def exec_status(command: list[str], exit_code: int, start_error: str | None,
                translated: bool) -> dict[str, Any]:
    """The Status an exec ends with on its error channel.

    The container runtime's streaming server (containerd's copy of the kubelet's)
    writes it: a process that could not start is an InternalError ("Internal error
    occurred: error executing command in container: ..."), a non-zero exit a
    NonZeroExitCode whose message names the command. That is what a `v4` client reads.
    A `v5.channel.k8s.io` client (kubectl and the Python client offer it first) is
    served by the API server's stream translator, which speaks SPDY to the runtime and
    re-makes the Status from the error it got back: an exit code becomes "command
    terminated with exit code N", and anything else is wrapped in a second
    InternalError, so the message carries "Internal error occurred: " twice.
    """
    if start_error:
        # The runtime could not start the process: no exit code exists.
        inner = f"error executing command in container: {start_error}"
        status: dict[str, Any] = {
            "metadata": {}, "status": "Failure",
            "message": f"Internal error occurred: {inner}", "reason": "InternalError",
            "details": {"causes": [{"message": inner}]}, "code": 500}
        if translated:
            wrapped = status["message"]
            status["message"] = f"Internal error occurred: {wrapped}"
            status["details"] = {"causes": [{"message": wrapped}]}
        return status
    if exit_code == 0:
        return {"metadata": {}, "status": "Success"}
    detail = (f"command terminated with exit code {exit_code}" if translated else
              f"error executing command [{' '.join(command)[:200]}], exit code {exit_code}")
    return {"metadata": {}, "status": "Failure",
            "message": f"command terminated with non-zero exit code: {detail}",
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": str(exit_code)}]}}


class Route:
    """A parsed resource URL: /api/v1/namespaces/ns/pods/name/sub."""

    def __init__(self, kind: Kind, namespace: str | None, name: str | None,
                 sub: str | None) -> None:
        self.kind, self.namespace, self.name, self.sub = kind, namespace, name, sub


def parse_path(path: str) -> Route | None:
    segs = [s for s in path.split("/") if s]
    if len(segs) >= 2 and segs[0] == "api" and segs[1] == "v1":
        group, rest = "", segs[2:]
    elif len(segs) >= 3 and segs[0] == "apis":
        group, rest = segs[1], segs[3:]
        if lookup(group, rest[0] if rest else "") is None and not (
                rest and rest[0] == "namespaces"):
            return None
    else:
        return None
    if not rest:
        return None
    namespace = None
    if rest[0] == "namespaces" and len(rest) >= 3 and rest[2] not in ("status", "finalize"):
        namespace, rest = rest[1], rest[2:]
    kind = lookup(group, rest[0])
    if kind is None:
        return None
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    if len(rest) > 3:
        return None
    return Route(kind, namespace, name, sub)


def parse_bool(value: str | None) -> bool:
    """Go's strconv.ParseBool, which the apiserver uses for query flags."""
    return value in ("1", "t", "T", "true", "TRUE", "True")


def _verb(method: str, route: Route, query: dict[str, str]) -> str:
    if method == "GET":
        if parse_bool(query.get("watch")):
            return "watch"
        return "get" if route.name else "list"
    return {"POST": "create", "PUT": "update", "PATCH": "patch",
            "DELETE": "delete" if route.name else "deletecollection"}.get(method, method.lower())


class RequestMetrics(Protocol):
    """The counters the server adds to as requests pass (served at /metrics)."""

    exec_sessions: int
    faults: Counter[str]

    def record(self, verb: str, group: str, resource: str, code: int) -> None: ...


class ExecOutput(Protocol):
    """What one exec produced; a `start_error` attribute, when present and set,
    means the process never started (see `winstor.sim.nodes.powershell.ExecResult`)."""

    @property
    def stdout(self) -> bytes: ...

    @property
    def stderr(self) -> bytes: ...

    @property
    def exit_code(self) -> int: ...


class Backend(Protocol):
    """The cluster model behind the wire: what the server asks of it per request."""

    @property
    def kube_version(self) -> str: ...

    @property
    def store(self) -> Store:
        """Read directly for watches, which stream the store's changes."""

    @property
    def schemas(self) -> SchemaRegistry: ...

    @property
    def faults(self) -> Faults: ...

    @property
    def metrics(self) -> RequestMetrics: ...

    @property
    def bookmark_interval(self) -> float: ...

    def authenticate(self, header: str) -> UserInfo: ...

    def impersonate(self, user: UserInfo, headers: Any) -> UserInfo:
        """The identity a request with Impersonate-* headers runs as (or a 403)."""

    def authorize(self, user: UserInfo | None, verb: str, kind: Kind, sub: str | None,
                  namespace: str | None, name: str | None,
                  query: dict[str, str] | None = None) -> None: ...

    async def handle(self, verb: str, kind: Kind, namespace: str | None, name: str | None,
                     sub: str | None, query: dict[str, str], body: Any,
                     content_type: str, user: UserInfo | None = None,
                     ) -> tuple[dict, int, list[str]]: ...

    def exec_target(self, namespace: str | None, name: str, container: str | None) -> Any:
        """Check that the container can be exec'd into (errors as `ApiError`); the
        result is opaque here and goes back to `run_exec`."""

    async def run_exec(self, target: Any, argv: list[str], stdin: bytes = b"",
                       ) -> ExecOutput: ...

    def pod_logs(self, namespace: str | None, name: str, container: str | None) -> str: ...

    def render_metrics(self) -> str: ...


STDIN_IDLE_S = 2.0
"""Exec stdin counts as closed after this long without data, as the controlplane
target's stream server has it: the model runs a command to completion, so it needs
stdin whole, and a v4 client cannot half-close it."""


async def _read_stdin(ws: web.WebSocketResponse) -> tuple[bytes, bool]:
    """An exec's stdin (channel 0 frames) until the client closes it (v5's close
    signal, 255 0), closes the socket, or stays quiet for `STDIN_IDLE_S`; True when
    the socket itself is closing."""
    data = bytearray()
    while True:
        try:
            msg = await asyncio.wait_for(ws.receive(), STDIN_IDLE_S)
        except asyncio.TimeoutError:
            return bytes(data), False
        if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED,
                        WSMsgType.ERROR):
            return bytes(data), True
        frame = msg.data if msg.type == WSMsgType.BINARY else str(msg.data).encode()
        if frame[:2] == b"\xff\x00":
            return bytes(data), False
        if frame[:1] == b"\x00":
            data += frame[1:]


class _Bookmarks:
    """When a watch with allowWatchBookmarks gets a BOOKMARK, as the watch cache sends
    them: roughly every `every` seconds (a minute on a real server) and once more 2 s
    before the watch's deadline, never after that; each carries only the
    resourceVersion of the newest change of the watched kind, and is sent only when
    that is newer than the version the watch started from (a quiet kind gets none).
    A watch shorter than 2 s therefore gets no bookmark at all."""

    def __init__(self, store: Store, kind: Kind, resource_version: str | None,
                 deadline: float, every: float) -> None:
        self.store, self.kind, self.deadline, self.every = store, kind, deadline, every
        self.newest = max((int(o["metadata"]["resourceVersion"]) for o in store.iter(kind)),
                          default=0)
        rv = resource_version or ""
        self.start = int(rv) if rv.isdigit() and rv != "0" else self.newest
        # Every change of the kind, in any namespace, to know the newest version.
        self.changes = store.watch(kind, None, lambda _: True, str(store.rv))
        self.due = self._next(time.monotonic())

    def _next(self, now: float) -> float:
        due = min(now + self.every, self.deadline - 2.0)
        return due if due > now else float("inf")

    def take(self, now: float) -> dict | None:
        """The bookmark due now, if any (None when it is not due or nothing changed)."""
        if now < self.due:
            return None
        self.due = self._next(now)
        while not self.changes.queue.empty():
            change = self.changes.queue.get_nowait()
            if change is not None:
                self.newest = max(self.newest, change.rv)
        if self.newest <= self.start:
            return None
        return {"kind": self.kind.kind, "apiVersion": self.kind.api_version,
                "metadata": {"resourceVersion": str(self.newest)}}

    def close(self) -> None:
        self.store.unwatch(self.changes)


class ApiServer:
    def __init__(self, cluster: Backend) -> None:
        self.cluster = cluster
        self.app = web.Application(middlewares=[self._middleware], client_max_size=16 << 20)
        self.app.router.add_route("*", "/{tail:.*}", self._dispatch)

    # -- middleware: auth, faults, metrics --------------------------------
    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        query = {k: v[-1] for k, v in parse_qs(request.query_string).items()}
        route = parse_path(request.path)
        verb = _verb(request.method, route, query) if route else request.method.lower()
        if route and route.sub == "exec":
            verb = "create"
        resource = (route.kind.plural + (f"/{route.sub}" if route.sub else "")) if route else ""
        group = route.kind.group if route else ""
        try:
            credentials = request.headers.get("Authorization", "")
            # Public paths serve anonymous callers, but a presented token that is
            # wrong is a 401 everywhere, as the apiserver's authenticator does.
            if credentials or request.path not in PUBLIC_PATHS:
                request["user"] = self.cluster.authenticate(credentials)
            if request.get("user") is not None and wants_impersonation(request.headers):
                request["user"] = self.cluster.impersonate(request["user"], request.headers)
            if route is not None:
                self.cluster.authorize(request.get("user"), verb, route.kind, route.sub,
                                       route.namespace, route.name, query)
            fault = self.cluster.faults.before_request(verb, route is not None and
                                                       route.sub == "exec")
            if fault is not None:
                self.cluster.metrics.faults[f"{fault.code}"] += 1
                raise fault
            resp = await handler(request)
        except ApiError as err:
            resp = _error(err)
        except web.HTTPException:
            raise
        except Exception as exc:  # the server must answer, never hang up
            log.exception("internal error on %s %s", request.method, request.path)
            resp = _error(ApiError(500, "InternalError", f"Internal error occurred: {exc}"))
        if not request.get("recorded"):
            self.cluster.metrics.record(verb.upper(), group, resource, resp.status)
        return resp

    # -- dispatch ----------------------------------------------------------
    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        query = {k: v[-1] for k, v in parse_qs(request.query_string).items()}
        if path in ("/healthz", "/livez", "/readyz"):
            return web.Response(text="ok")
        if path == "/metrics":
            return web.Response(text=self.cluster.render_metrics(),
                                content_type="text/plain", charset="utf-8")
        if path == "/version":
            return _json(discovery.version(self.cluster.kube_version))
        static = discovery.static(path, request.headers.get("Accept", ""),
                                  self.cluster.schemas)
        if static is not None:
            body, ctype = static
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            return web.Response(body=raw, headers={"Content-Type": ctype})
        route = parse_path(path)
        if route is None:
            raise ApiError(404, "NotFound", "the server could not find the requested resource")
        if route.sub == "exec":
            return await self._exec(request, route)
        if route.sub == "log":
            return self._logs(route, query)
        verb = _verb(request.method, route, query)
        if verb == "watch":
            return await self._watch(request, route, query)
        # DELETE carries DeleteOptions (dryRun, preconditions, propagationPolicy) in its
        # body: kubectl and the client send them there, not only as query parameters.
        body = (await self._body(request)
                if request.method in ("POST", "PUT", "PATCH", "DELETE") else None)
        if verb in ("create", "update", "delete"):
            self._check_body_target(route, body, verb)
        ctype = request.headers.get("Content-Type", "")
        if verb in ("create", "update", "patch") and not query.get("fieldManager") and \
                not ctype.startswith("application/apply-patch"):
            # A write that names no field manager is recorded under its client's product
            # (the User-Agent up to '/'), as the real server does; apply must name one.
            query["fieldManager"] = default_manager(request.headers.get("User-Agent", ""))
        result, code, warnings = await self.cluster.handle(
            verb, route.kind, route.namespace, route.name, route.sub, query, body,
            request.headers.get("Content-Type", ""), user=request.get("user"))
        headers = {}
        if warnings:
            headers["Warning"] = ", ".join(
                '299 - "' + w.replace("\\", "\\\\").replace('"', '\\"') + '"'
                for w in warnings)
        accept = request.headers.get("Accept", "")
        if "as=Table" in accept and verb in ("get", "list"):
            result = tables.render(route.kind, result, query.get("includeObject"))
        return _json(result, code, headers)

    async def _body(self, request: web.Request) -> Any:
        raw = await request.read()
        if not raw:
            return None
        ctype = request.headers.get("Content-Type", "")
        if ctype.startswith("application/json-patch") or ctype.endswith("patch+json"):
            return raw
        try:
            if "yaml" in ctype:
                return yaml.safe_load(raw)
            return json.loads(raw)
        except (ValueError, yaml.YAMLError) as exc:
            raise ApiError.bad_request(f"the body of the request was in an unknown format - "
                                       f"accepted media types include: application/json, "
                                       f"application/yaml ({exc})") from None

    @staticmethod
    def _check_body_target(route: Route, body: Any, verb: str) -> None:
        if verb == "create" and route.name and route.sub is None:
            raise ApiError.method_not_allowed("the server does not allow this method on the "
                                              "requested resource")
        if not isinstance(body, dict) or verb == "delete":
            return
        meta = body.get("metadata") or {}
        ns = meta.get("namespace")
        if route.namespace and ns and ns != route.namespace:
            raise ApiError.bad_request("the namespace of the provided object does not match "
                                       "the namespace sent on the request")
        if verb == "update" and route.name and meta.get("name") not in (None, route.name):
            raise ApiError.bad_request("the name of the object "
                                       f"({meta.get('name')}) does not match the name on the "
                                       f"URL ({route.name})")

    # -- logs --------------------------------------------------------------
    def _logs(self, route: Route, query: dict[str, str]) -> web.Response:
        """GET pods/log: PodLogOptions checked as the API server checks them (before it
        asks the kubelet), then the container's log cut by tailLines and limitBytes."""
        name = route.name or ""
        tail, limit = query.get("tailLines"), query.get("limitBytes")
        for field, value, least in (("tailLines", tail, 0), ("limitBytes", limit, 1)):
            if value is None:
                continue
            try:
                number = int(value)
            except ValueError:
                raise ApiError.bad_request(
                    f'strconv.ParseInt: parsing "{value}": invalid syntax') from None
            if number < least:
                rule = f"must be greater than {'or equal to ' if least == 0 else ''}0"
                cause = {"reason": "FieldValueInvalid", "field": field,
                         "message": f"Invalid value: {number}: {rule}"}
                raise ApiError(422, "Invalid", f'PodLogOptions "{name}" is invalid: '
                               f"{field}: {cause['message']}",
                               {"name": name, "kind": "PodLogOptions", "causes": [cause]})
        text = self.cluster.pod_logs(route.namespace, name, query.get("container"))
        return web.Response(text=cut_log(text, tail, limit), content_type="text/plain")

    # -- watch -------------------------------------------------------------
    async def _watch(self, request: web.Request, route: Route,
                     query: dict[str, str]) -> web.StreamResponse:
        match_labels = label_selector(query.get("labelSelector"))
        match_fields = field_selector(query.get("fieldSelector"))
        if route.name:
            name = route.name

            def match(o: dict) -> bool:
                return o["metadata"]["name"] == name
        else:
            def match(o: dict) -> bool:
                return match_labels(o) and match_fields(o)

        store = self.cluster.store
        resp = web.StreamResponse(headers={"Content-Type": "application/json",
                                           "Transfer-Encoding": "chunked"})
        await resp.prepare(request)
        # Counted when the stream opens, as the apiserver's metrics do: a long watch
        # still open when someone reads /metrics is a request made.
        self.cluster.metrics.record("WATCH", route.kind.group, route.kind.plural, 200)
        request["recorded"] = True
        try:
            watcher = store.watch(route.kind, route.namespace, match,
                                  query.get("resourceVersion"))
        except ApiError as err:
            # Watch errors travel inside the stream, as an ERROR event.
            await resp.write((json.dumps({"type": "ERROR", "object": err.body()}) + "\n").encode())
            await resp.write_eof()
            return resp
        timeout = float(query.get("timeoutSeconds") or 1800)
        deadline = time.monotonic() + timeout
        marks = _Bookmarks(store, route.kind, query.get("resourceVersion"), deadline,
                           self.cluster.bookmark_interval,
                           ) if parse_bool(query.get("allowWatchBookmarks")) else None
        drop_at = self.cluster.faults.watch_drop_deadline()
        try:
            while True:
                now = time.monotonic()
                wait = deadline - now
                if drop_at is not None:
                    wait = min(wait, drop_at - now)
                if marks is not None:
                    wait = min(wait, marks.due - now)
                if wait <= 0 and (marks is None or now >= deadline):
                    break
                try:
                    change = await asyncio.wait_for(watcher.queue.get(), max(wait, 0))
                except asyncio.TimeoutError:
                    if drop_at is not None and time.monotonic() >= drop_at:
                        self.cluster.metrics.faults["watch-drop"] += 1
                        break
                    mark = marks.take(time.monotonic()) if marks is not None else None
                    if mark is not None:
                        await resp.write((json.dumps({"type": "BOOKMARK", "object": mark})
                                          + "\n").encode())
                    continue
                if change is None:
                    break
                line = json.dumps({"type": change.type, "object": change.obj}) + "\n"
                await resp.write(line.encode())
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            store.unwatch(watcher)
            if marks is not None:
                marks.close()
        with contextlib.suppress(ConnectionResetError):
            await resp.write_eof()
        return resp

    # -- exec --------------------------------------------------------------
    async def _exec(self, request: web.Request, route: Route) -> web.StreamResponse:
        params = parse_qs(request.query_string)
        command = params.get("command", [])
        container = (params.get("container") or [None])[0]
        target = self.cluster.exec_target(route.namespace, route.name or "", container)
        if not command:
            raise ApiError.bad_request("you must specify at least 1 command")
        ws = web.WebSocketResponse(protocols=EXEC_PROTOCOLS, autoping=True)
        if not ws.can_prepare(request).ok:
            raise ApiError.bad_request("Upgrade request required")
        await ws.prepare(request)
        self.cluster.metrics.exec_sessions += 1
        proto = ws.ws_protocol or ""
        closed = False
        stdin = b""
        if parse_bool((params.get("stdin") or [None])[0]):
            stdin, closed = await _read_stdin(ws)
        result = await self.cluster.run_exec(target, command, stdin)
        if result.stdout:
            await ws.send_bytes(b"\x01" + result.stdout)
        if result.stderr:
            await ws.send_bytes(b"\x02" + result.stderr)
        status = exec_status(command, result.exit_code, getattr(result, "start_error", None),
                             translated=proto.startswith("v5"))
        if proto.startswith(("v4", "v5")):
            await ws.send_bytes(b"\x03" + json.dumps(status).encode())
        elif result.exit_code != 0:
            await ws.send_bytes(b"\x03" + status["message"].encode())
        # Drain anything the client sends (stdin close on v5) without blocking.
        if not closed:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(ws.receive(), 0.001)
        await ws.close()
        return ws
