"""The node side of `pods/exec` and `pods/log`: what `winstor-kubelet-stream` calls.

The real API server sends `pods/exec` and `pods/log` to the node's kubelet port, which
is `winstor-kubelet-stream` (the upstream kubelet streaming library, Go); it runs no
containers and asks this backend instead (contract in `controlplane/README.md`):

    POST /exec {"namespace","pod","container","command":[...],"stdin":"<base64>"|null,"tty":bool}
      -> {"stdout":"<base64>","stderr":"<base64>","exit_code":N}
    GET /logs?namespace=..&pod=..&container=..&tailLines=..&...  -> the log text

Exec runs the command in the container's view of its Windows node model (the same
`Workloads.run_exec` the embedded cluster's exec uses: probes answered by their twins,
interactive cmdlets, `exit N`, `throw`; a Linux container's `sh -c`), on a worker
thread, as the sim does. A container that
is not running answers 400 with the kubelet's words; a command that cannot start
(no such executable) answers 500 with the runtime's error, which the stream server
turns into the kubelet's `InternalError` status ("error executing command in
container: ...").

Logs: the modelled Windows containers print nothing (their commands sleep), so their
logs are empty, as a real `Start-Sleep` loop's are; a `sh -c` command's log is what it
prints before its first `sleep` (`Workloads.log_text`, as in the embedded cluster).
The `ebs-csi-controller` Deployment's containers stand for the EBS CSI controller
processes that really run beside the control plane: their logs are those processes'
log files, when the agent knows where the launcher keeps them (`--component-logs`).
"""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path

from aiohttp import web

from ..api.apiserver import cut_log
from ..api.errors import ApiError
from ..api.kinds import kind_of
from ..nodes.workloads import Workloads
from .store import RemoteStore

log = logging.getLogger("winstor.sim.agent.backend")

PODS = kind_of("v1", "Pod")
# ebs-csi-controller's containers -> the launcher's log file of the process it stands for.
CONTROLLER_LOGS = {"ebs-plugin": "ebs-csi-controller.log", "csi-provisioner":
                   "csi-provisioner.log", "csi-attacher": "csi-attacher.log",
                   "csi-resizer": "csi-resizer.log"}


class Backend:
    """The aiohttp app serving /exec and /logs on 127.0.0.1."""

    def __init__(self, store: RemoteStore, workloads: Workloads,
                 component_logs: Path | None = None,
                 on_exec: Callable[[], None] | None = None) -> None:
        self.store = store
        self.workloads = workloads
        self.component_logs = component_logs
        self.on_exec = on_exec
        self.app = web.Application(client_max_size=64 << 20)
        self.app.router.add_post("/exec", self.exec)
        self.app.router.add_get("/logs", self.logs)
        self.app.router.add_get("/healthz", lambda _: web.Response(text="ok"))
        self.runner: web.AppRunner | None = None
        self.port = 0

    async def start(self, port: int) -> int:
        self.runner = web.AppRunner(self.app, access_log=None, handle_signals=False,
                                    shutdown_timeout=0.5)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", port)
        await site.start()
        server = site._server
        assert server is not None and server.sockets
        self.port = int(server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    async def exec(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return web.Response(status=400, text="the body is not JSON")
        namespace, pod = str(body.get("namespace") or ""), str(body.get("pod") or "")
        container = body.get("container") or None
        argv = [str(a) for a in body.get("command") or []]
        stdin = base64.b64decode(body["stdin"]) if body.get("stdin") else b""
        try:
            target = self.workloads.exec_target(namespace, pod, container)
        except ApiError as err:
            return web.Response(status=err.code, text=err.message)
        if self.on_exec is not None:
            self.on_exec()
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(None, partial(
            self.workloads.run_exec, target, argv, tty=bool(body.get("tty")), stdin=stdin))
        start_error = getattr(result, "start_error", None)
        if start_error:
            return web.Response(status=500, text=start_error)
        return web.json_response({"stdout": base64.b64encode(result.stdout).decode(),
                                  "stderr": base64.b64encode(result.stderr).decode(),
                                  "exit_code": int(result.exit_code)})

    async def logs(self, request: web.Request) -> web.Response:
        q = request.query
        namespace, name = q.get("namespace", ""), q.get("pod", "")
        container = q.get("container") or None
        pod = self.store.peek(PODS, namespace, name)
        if pod is None:
            return web.Response(status=404, text=f'pods "{name}" not found')
        names = [c["name"] for c in pod["spec"].get("containers") or []]
        container = container or (names[0] if len(names) == 1 else None)
        if container not in names:
            return web.Response(status=400, text=f"container {container} is not valid for "
                                f"pod {name}")
        if (pod["metadata"]["uid"], container) not in self.workloads.views:
            reason = next((((cs.get("state") or {}).get("waiting") or {}).get("reason")
                           for cs in (pod.get("status") or {}).get("containerStatuses") or []
                           if cs.get("name") == container), None) or "ContainerCreating"
            return web.Response(status=400, text=f'container "{container}" in pod "{name}" '
                                f"is waiting to start: {reason}")
        text = cut_log(self._log_text(pod, container), q.get("tailLines"), q.get("limitBytes"))
        return web.Response(text=text, content_type="text/plain")

    def _log_text(self, pod: dict, container: str) -> str:
        labels = pod["metadata"].get("labels") or {}
        if (pod["metadata"].get("namespace") == "kube-system"
                and labels.get("app") == "ebs-csi-controller"
                and container in CONTROLLER_LOGS and self.component_logs is not None):
            path = self.component_logs / CONTROLLER_LOGS[container]
            try:
                return path.read_text(encoding="utf-8", errors="replace")
            except OSError:
                return ""
        return self.workloads.log_text(pod, container)
