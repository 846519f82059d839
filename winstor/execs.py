"""Run a command in a pod over the websocket exec protocol, exit code included.

The client's default `stream()` call returns the output and drops the exit
code; winstor needs both, so it keeps the websocket and reads the status
channel. A refused handshake (nothing ran yet) is retried; a command that
ran is never re-run here - probes decide their own idempotency.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from kubernetes import client as k8s_client
from kubernetes.client.rest import ApiException
from kubernetes.stream import stream
from tenacity import retry, retry_if_exception, stop_after_attempt, wait_exponential

from . import probes
from .kube import Api


class ExecError(Exception):
    """The exec session could not be established (not a command failure)."""


@dataclass
class ExecOutput:
    stdout: str
    stderr: str
    exit_code: int
    seconds: float


def _handshake_refused(exc: BaseException) -> bool:
    return isinstance(exc, ApiException) and (exc.status or 0) in (0, 429, 500, 502, 503, 504)


@retry(retry=retry_if_exception(_handshake_refused), stop=stop_after_attempt(6),
       wait=wait_exponential(multiplier=0.1, max=2), reraise=True)
def _open(api: Api, namespace: str, pod: str, container: str | None, command: list[str]):  # type: ignore[no-untyped-def]
    core = k8s_client.CoreV1Api(api.client)
    kwargs = {"container": container} if container else {}
    return stream(core.connect_get_namespaced_pod_exec, pod, namespace, command=command,
                  stderr=True, stdin=False, stdout=True, tty=False, _preload_content=False,
                  **kwargs)


def run(api: Api, namespace: str, pod: str, command: list[str], *,
        container: str | None = None, timeout: float = 120) -> ExecOutput:
    started = time.monotonic()
    try:
        ws = _open(api, namespace, pod, container, command)
    except AttributeError:
        # The client's websocket path fails to report some refusals (no body).
        raise ExecError(f"exec into pod {namespace}/{pod} was refused by the server") from None
    except ApiException as exc:
        raise ExecError(f"exec into pod {namespace}/{pod} failed: {exc.status} "
                        f"{(exc.body or exc.reason or '').strip()[:300]}") from None
    try:
        ws.run_forever(timeout=timeout)
        out, err = ws.read_stdout() or "", ws.read_stderr() or ""
        if ws.is_open():
            raise ExecError(f"exec in pod {namespace}/{pod} did not finish within "
                            f"{timeout:.0f}s")
        code = ws.returncode
    finally:
        ws.close()
    return ExecOutput(out, err, int(code if code is not None else 0),
                      time.monotonic() - started)


def run_probe(api: Api, namespace: str, pod: str, name: str, params: dict | None = None, *,
              container: str | None = None, shell: str = "powershell.exe",
              timeout: float = 120) -> probes.ProbeResult:
    """Run one probe; raise `probes.ProbeError` unless it printed one JSON line."""
    probe = probes.load_probe(name)
    command = probes.command(probe, params or {}, shell=shell)
    result = run(api, namespace, pod, command, container=container, timeout=timeout)
    return probes.parse_output(name, result.stdout, result.stderr, result.exit_code)
