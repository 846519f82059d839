"""The control plane's controllers and the kubelets, as one level-triggered loop.

Every store change (but an Event's, see `Controllers._changed`) marks the loop
dirty; each pass lets every controller look
at the whole (small) cluster and start whatever work is missing. Slow work -
provisioning, attaching, pulling - runs as keyed tasks so the same work is
never started twice, just as real controllers key their work queues
(`base.WorkQueue`).

The controllers get the cluster's parts through `base.ClusterParts`, so this
package imports nothing that imports it back: `winstor.sim.cluster` builds
`Controllers(self)` from outside.
"""

from __future__ import annotations

import asyncio
import logging

from ..api.kinds import Kind
from .apps import Apps
from .base import EVENTS, NAMESPACES, ClusterParts, Controller, WorkQueue, terminating
from .expansion import Expansion
from .kubelet import Kubelet
from .lifecycle import Lifecycle
from .scheduler import Scheduler
from .smbcsi import DRIVER as SMB_DRIVER
from .smbcsi import SmbCsi
from .volumes import Volumes

log = logging.getLogger("winstor.sim.controllers")


class Controllers(WorkQueue):
    def __init__(self, cluster: ClusterParts) -> None:
        super().__init__()
        self.cluster = cluster
        self.members: list[Controller] = [
            Lifecycle(cluster, self), Apps(cluster, self), Volumes(cluster, self),
            Expansion(cluster, self), Scheduler(cluster, self)]
        smb = SmbCsi(cluster, self)  # the SMB CSI driver; its node plugin serves the kubelet
        self.members += [smb, Kubelet(cluster, self, csi_plugins={SMB_DRIVER: smb})]
        self._loop_task: asyncio.Task[None] | None = None
        cluster.store.add_listener(self._changed)

    def _changed(self, kind: Kind, _type: str, obj: dict) -> None:
        """A store change asks for a pass - except an Event outside a terminating namespace.

        No controller acts on Events but the namespace controller, which removes those of
        a namespace being deleted; yet they are four in ten of a run's changes (each is
        recorded, and later removed), and a pass looks at the whole cluster: on the sim's
        one interpreter serving a fleet, passes that could find nothing to do delayed
        every cluster's requests."""
        if kind.kind == EVENTS.kind:
            ns = self.cluster.store.peek(NAMESPACES, None, obj["metadata"].get("namespace", ""))
            if ns is not None and not terminating(ns):
                return
        self.changed()

    def start(self) -> None:
        self.dirty.set()
        self._loop_task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        for task in [self._loop_task, *self.tasks.values()]:
            if task is not None:
                task.cancel()
        await asyncio.gather(*[t for t in [self._loop_task, *self.tasks.values()] if t],
                             return_exceptions=True)

    async def _run(self) -> None:
        while True:
            await self.dirty.wait()
            self.dirty.clear()
            self.cluster.metrics.controller_passes += 1
            for member in self.members:
                try:
                    member.reconcile()
                except Exception:
                    log.exception("%s reconcile failed", type(member).__name__)
            await asyncio.sleep(0)
