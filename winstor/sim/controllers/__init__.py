"""The control plane's controllers and the kubelets, as one level-triggered loop.

Every store change marks the loop dirty; each pass lets every controller look
at the whole (small) cluster and start whatever work is missing. Slow work -
provisioning, attaching, pulling - runs as keyed tasks so the same work is
never started twice, just as real controllers key their work queues.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..cluster import Cluster

log = logging.getLogger("winstor.sim.controllers")


class Controllers:
    def __init__(self, cluster: Cluster) -> None:
        from .apps import Apps
        from .kubelet import Kubelet
        from .lifecycle import Lifecycle
        from .scheduler import Scheduler
        from .volumes import Volumes

        self.cluster = cluster
        self.dirty = asyncio.Event()
        self.tasks: dict[str, asyncio.Task[Any]] = {}
        self.members = [Lifecycle(cluster, self), Apps(cluster, self),
                        Volumes(cluster, self), Scheduler(cluster, self),
                        Kubelet(cluster, self)]
        self._loop_task: asyncio.Task[None] | None = None
        cluster.store.add_listener(lambda *_: self.dirty.set())

    def start(self) -> None:
        self.dirty.set()
        self._loop_task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        for task in [self._loop_task, *self.tasks.values()]:
            if task is not None:
                task.cancel()
        await asyncio.gather(*[t for t in [self._loop_task, *self.tasks.values()] if t],
                             return_exceptions=True)

    def spawn(self, key: str, coro: Coroutine[Any, Any, Any]) -> bool:
        """Start keyed work unless the same key is already running."""
        task = self.tasks.get(key)
        if task is not None and not task.done():
            coro.close()
            return False
        task = asyncio.get_running_loop().create_task(self._guard(key, coro))
        self.tasks[key] = task
        return True

    def running(self, key: str) -> bool:
        task = self.tasks.get(key)
        return task is not None and not task.done()

    async def _guard(self, key: str, coro: Coroutine[Any, Any, Any]) -> None:
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("controller task %s failed", key)
        finally:
            self.dirty.set()

    def later(self, delay: float) -> None:
        """Ask for another pass after `delay` seconds (a requeue with backoff)."""
        loop = asyncio.get_running_loop()
        loop.call_later(delay, self.dirty.set)

    async def _run(self) -> None:
        while True:
            await self.dirty.wait()
            self.dirty.clear()
            for member in self.members:
                try:
                    member.reconcile()
                except Exception:
                    log.exception("%s reconcile failed", type(member).__name__)
            await asyncio.sleep(0)
