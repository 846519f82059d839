"""`winstor sim up`: serve N emulated clusters until told to stop.

The kubeconfig is the readiness signal: it is written (atomically) only after
every cluster has answered an HTTPS request verified against its CA, so a
process that waits for the file can use it at once.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import logging
import os
import signal
import ssl
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml
from aiohttp import ClientSession, TCPConnector, web

from . import scenarios as scenario_mod
from . import tls, topology
from .api.apiserver import ApiServer
from .cluster import Cluster

log = logging.getLogger("winstor.sim")


def write_private(path: Path, text: str) -> None:
    """Write atomically with owner-only permissions (it holds tokens)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class Sim:
    def __init__(self, clusters: int = 1, scenarios: list[str] | None = None,
                 flavour: str = "eks", time_scale: float = 0.002, watch_history: int = 5000,
                 region: str = "us-west-2") -> None:
        self.n = clusters
        self.flavour = flavour
        self.time_scale = time_scale
        self.watch_history = watch_history
        self.region = region
        self.per_cluster: dict[int, set[str]] = {i: set() for i in range(1, clusters + 1)}
        for spec in scenarios or []:
            req = scenario_mod.parse(spec, clusters)
            for i in ([req.cluster] if req.cluster else self.per_cluster):
                self.per_cluster[i].add(req.name)
        self.clusters: list[Cluster] = []
        self.ports: dict[str, int] = {}
        self.aws: Any = None
        self.cert = tls.issue()
        self._runner: web.AppRunner | None = None
        self._runners: list[web.AppRunner] = []

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        if self.flavour in ("eks", "kind"):  # kind: only the FSx its stand-in share plays
            from .cloud import SimCloud
            self.aws = SimCloud(self.region)
            await loop.run_in_executor(None, self.aws.start)
        for i in range(1, self.n + 1):
            plan = topology.plan(i, self.flavour, self.per_cluster[i], self.region)
            cluster = Cluster(plan, self.per_cluster[i], self.aws, time_scale=self.time_scale,
                              watch_history=self.watch_history)
            self.clusters.append(cluster)
        await asyncio.gather(*(c.start() for c in self.clusters))
        ctx = self.cert.ssl_context()
        for cluster in self.clusters:
            # Go's HTTP server allows 1 MiB of request line and headers; probe
            # commands travel in the exec URL and are several KiB long.
            runner = web.AppRunner(ApiServer(cluster).app, access_log=None,
                                   handle_signals=False, shutdown_timeout=0.5,
                                   max_line_size=1 << 20, max_field_size=1 << 16)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ctx)
            await site.start()
            server = site._server
            assert server is not None and server.sockets
            self.ports[cluster.name] = server.sockets[0].getsockname()[1]
            self._runners.append(runner)
        await self._check_answering()

    async def _check_answering(self) -> None:
        ctx = ssl.create_default_context(cadata=self.cert.ca_pem.decode())
        async with ClientSession(connector=TCPConnector(ssl=ctx)) as session:
            for cluster in self.clusters:
                url = f"https://127.0.0.1:{self.ports[cluster.name]}/api/v1/namespaces/default"
                headers = {"Authorization": f"Bearer {cluster.token}"}
                async with session.get(url, headers=headers) as resp:
                    if resp.status != 200:
                        raise RuntimeError(f"cluster {cluster.name} answered {resp.status}")

    def kubeconfig(self) -> dict:
        ca = base64.b64encode(self.cert.ca_pem).decode()
        return {
            "apiVersion": "v1", "kind": "Config", "preferences": {},
            "clusters": [{"name": c.name, "cluster": {
                "server": f"https://127.0.0.1:{self.ports[c.name]}",
                "certificate-authority-data": ca}} for c in self.clusters],
            "users": [{"name": f"{c.name}-admin", "user": {"token": c.token}}
                      for c in self.clusters],
            # The clusters are the run's own, so checks that disturb a whole node (drain)
            # may run on them: declared as winstor reads it from any kubeconfig context.
            "contexts": [{"name": c.name, "context": {
                "cluster": c.name, "user": f"{c.name}-admin",
                "extensions": [{"name": "winstor.io/opt-in",
                                "extension": {"markers": ["drain"]}}]}}
                         for c in self.clusters],
            "current-context": self.clusters[0].name,
        }

    def write(self, kubeconfig: Path, aws_env: Path | None) -> None:
        if aws_env is not None and self.aws is not None:
            self.aws.write_env_file(aws_env)
        elif aws_env is not None:
            write_private(aws_env, "# kind flavour: no AWS emulation\n")
        write_private(kubeconfig, yaml.safe_dump(self.kubeconfig(), sort_keys=False))

    async def stop(self) -> None:
        for cluster in self.clusters:
            await cluster.stop()
        for runner in self._runners:
            await runner.cleanup()
        if self.aws is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.aws.stop)


def _missing_folders(folder: Path) -> list[Path]:
    """`folder` and those of its parents that do not exist (yet)."""
    missing = []
    folder = folder.absolute()
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


async def _watch_parent(pid: int, stop: asyncio.Event) -> None:
    """Stop when the process that started us is gone (a killed CI job or
    pytest run must not leave emulated clusters running forever)."""
    while not stop.is_set():
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            log.warning("parent process %d is gone; stopping", pid)
            stop.set()
            return
        except PermissionError:
            pass
        await asyncio.sleep(1.0)


async def serve(sim: Sim, kubeconfig: Path, aws_env: Path | None, quiet: bool = False,
                parent_pid: int | None = None) -> None:
    started = time.monotonic()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    watcher = loop.create_task(_watch_parent(parent_pid, stop)) if parent_pid else None
    # Folders the kubeconfig and AWS settings need that are not there yet: made for them,
    # so removed with them.
    made = [d for path in (kubeconfig, aws_env) if path is not None
            for d in _missing_folders(path.parent)]
    try:
        await sim.start()
        sim.write(kubeconfig, aws_env)
        if not gc.isenabled():  # held off for the start (winstor sim up): what the start built
            gc.freeze()  # lives as long as the process, so later collections skip it (and the
            gc.enable()  # ~6000 garbage objects among it stay: cheaper than a 0.16 s collect)
        if sim.aws is not None:  # the EBS clients, made after the readiness signal
            loop.run_in_executor(None, sim.aws.warm)
        if not quiet:
            took = time.monotonic() - started
            names = ", ".join(f"{c.name} (Kubernetes {c.kube_version}"
                              + (f", scenarios: {', '.join(sorted(c.scenarios))}"
                                 if c.scenarios else "") + ")" for c in sim.clusters)
            print(f"winstor sim: {len(sim.clusters)} {sim.flavour} cluster(s) ready in "
                  f"{took:.2f}s: {names}", flush=True)
            print(f"winstor sim: kubeconfig {kubeconfig}"
                  + (f", AWS settings {aws_env}" if aws_env else ""), flush=True)
        await stop.wait()
    finally:
        if watcher is not None:
            watcher.cancel()
        await sim.stop()
        for path in (kubeconfig, aws_env):
            if path is not None:
                path.unlink(missing_ok=True)
        for folder in sorted(set(made), key=lambda d: len(d.parts), reverse=True):
            with contextlib.suppress(OSError):  # not empty: someone put something there
                folder.rmdir()
        if not quiet:
            print("winstor sim: stopped", flush=True)
