"""Run a command in a pod over the websocket exec protocol, exit code included.

The official client's `stream()` returns output and drops the exit code, and
it cannot report some handshake refusals at all; winstor speaks the protocol
itself with websocket-client (which the official client uses underneath):
subprotocols `v5.channel.k8s.io`/`v4.channel.k8s.io`, one channel byte per
frame, the final `Status` on channel 3. A refused handshake (nothing ran
yet) is retried; a command that ran is never re-run here.
"""

from __future__ import annotations

import json
import logging
import ssl
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import websocket
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from winstor.cluster import probes
from winstor.cluster.kube import Api

log = logging.getLogger("winstor.cluster.execs")

PROTOCOLS = ["v5.channel.k8s.io", "v4.channel.k8s.io"]
STDOUT, STDERR, STATUS, CLOSE = 1, 2, 3, 255


class ExecError(Exception):
    """The command could not be run (refused, not found, no answer)."""


class _Refused(Exception):
    """A handshake refused for a transient reason: safe to try again."""


@dataclass
class ExecOutput:
    stdout: str
    stderr: str
    exit_code: int
    seconds: float


def _sslopt(conf: Any) -> dict[str, Any]:
    if not conf.verify_ssl:
        return {"cert_reqs": ssl.CERT_NONE, "check_hostname": False}
    opt: dict[str, Any] = {"cert_reqs": ssl.CERT_REQUIRED}
    if conf.ssl_ca_cert:
        opt["ca_certs"] = conf.ssl_ca_cert
    if conf.cert_file:
        opt["certfile"] = conf.cert_file
    if conf.key_file:
        opt["keyfile"] = conf.key_file
    if conf.assert_hostname is False:
        opt["check_hostname"] = False
    return opt


def _url(api: Api, namespace: str, pod: str, container: str | None,
         command: list[str]) -> str:
    host = str(api.client.configuration.host)
    base = "wss://" + host[len("https://"):] if host.startswith("https://") else \
        "ws://" + host[len("http://"):]
    query = [("command", c) for c in command] + [("stdout", "true"), ("stderr", "true")]
    if container:
        query.append(("container", container))
    return f"{base}/api/v1/namespaces/{namespace}/pods/{pod}/exec?{urlencode(query)}"


@retry(retry=retry_if_exception(lambda e: isinstance(e, _Refused)), stop=stop_after_attempt(6),
       wait=wait_exponential(multiplier=0.1, max=2), reraise=True)
def _connect(api: Api, url: str, timeout: float) -> websocket.WebSocket:
    headers: dict[str, str] = {}
    api.client.update_params_for_auth(headers, [], ["BearerToken"])
    try:
        return websocket.create_connection(
            url, header=[f"{k}: {v}" for k, v in headers.items()], subprotocols=PROTOCOLS,
            sslopt=_sslopt(api.client.configuration), timeout=timeout)
    except websocket.WebSocketBadStatusException as exc:
        body = (exc.resp_body or b"").decode("utf-8", "replace") if isinstance(
            exc.resp_body, bytes) else str(exc.resp_body or "")
        try:
            message = json.loads(body).get("message") or body
        except ValueError:
            message = body
        if exc.status_code in (429, 500, 502, 503, 504):
            log.warning("exec handshake refused (%s), retrying: %s", exc.status_code, message)
            raise _Refused(f"{exc.status_code}: {message}") from None
        raise ExecError(f"{exc.status_code}: {message.strip()}") from None
    except (ConnectionError, websocket.WebSocketConnectionClosedException) as exc:
        raise _Refused(str(exc)) from None


def _exit_code(status: dict | None) -> int:
    if status is None or status.get("status") == "Success":
        return 0
    if status.get("reason") == "NonZeroExitCode":
        for cause in (status.get("details") or {}).get("causes") or []:
            if cause.get("reason") == "ExitCode":
                return int(cause.get("message", "1"))
        return 1
    raise ExecError(status.get("message") or "the command could not be run")


def run(api: Api, namespace: str, pod: str, command: list[str], *,
        container: str | None = None, timeout: float = 120) -> ExecOutput:
    started = time.monotonic()
    url = _url(api, namespace, pod, container, command)
    try:
        ws = _connect(api, url, timeout)
    except _Refused as exc:
        raise ExecError(f"exec into pod {namespace}/{pod} was refused: {exc}") from None
    except ExecError as exc:
        raise ExecError(f"exec into pod {namespace}/{pod}: {exc}") from None
    out, err = bytearray(), bytearray()
    status: dict | None = None
    deadline = started + timeout
    try:
        while True:
            if time.monotonic() > deadline:
                raise ExecError(f"exec in pod {namespace}/{pod} did not finish within "
                                f"{timeout:.0f}s")
            opcode, data = ws.recv_data(control_frame=False)
            if opcode == websocket.ABNF.OPCODE_CLOSE:
                break
            if not data:
                continue
            channel, payload = data[0], data[1:]
            if channel == STDOUT:
                out += payload
            elif channel == STDERR:
                err += payload
            elif channel == STATUS:
                try:
                    status = json.loads(payload)
                except ValueError:
                    status = {"status": "Failure", "message": payload.decode(errors="replace")}
    except websocket.WebSocketConnectionClosedException:
        pass
    finally:
        ws.close()
    try:
        code = _exit_code(status)
    except ExecError as exc:
        raise ExecError(f"exec in pod {namespace}/{pod}: {exc}") from None
    return ExecOutput(out.decode("utf-8", "replace"), err.decode("utf-8", "replace"), code,
                      time.monotonic() - started)


def run_probe(api: Api, namespace: str, pod: str, name: str, params: dict | None = None, *,
              container: str | None = None, shell: str = "powershell.exe",
              libs: tuple[str, ...] = (), timeout: float = 120) -> probes.ProbeResult:
    """Run one probe; raise `probes.ProbeError` unless it printed one JSON line."""
    probe = probes.load_probe(name)
    command = probes.command(probe, params or {}, shell=shell, libs=libs)
    result = run(api, namespace, pod, command, container=container, timeout=timeout)
    return probes.parse_output(name, result.stdout, result.stderr, result.exit_code)
