"""Which store changes ask the embedded cluster's controllers for a pass.

Events are four in ten of a run's changes and no controller acts on one, except the
namespace controller, which removes the Events of a namespace being deleted: an Event
there must still ask for a pass, or a namespace whose last object is an Event recorded
after the last other change would stay Terminating for good.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from winstor.sim.api.store import Store
from winstor.sim.controllers import Controllers
from winstor.sim.controllers.base import EVENTS, NAMESPACES, PODS, WorkQueue


def _ns(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "finalizers": ["winstor.io/test"]}}


def _event(namespace: str) -> dict:
    return {"apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "e1", "namespace": namespace},
            "involvedObject": {"kind": "Pod", "name": "p", "namespace": namespace},
            "reason": "Pulled", "message": "pulled", "type": "Normal"}


def test_only_events_outside_a_terminating_namespace_ask_for_no_pass() -> None:
    async def go() -> list[bool]:
        store = Store()
        store.create(NAMESPACES, _ns("live"))
        store.create(NAMESPACES, _ns("going"))
        store.delete(NAMESPACES, None, "going")  # the namespace controller's to finish
        assert store.peek(NAMESPACES, None, "going")["metadata"]["deletionTimestamp"]
        me = WorkQueue()
        me.cluster = SimpleNamespace(store=store)  # type: ignore[attr-defined]
        seen = []
        for kind, obj in [(EVENTS, _event("live")), (EVENTS, _event("going")),
                          (EVENTS, _event("gone")), (PODS, {"metadata": {
                              "name": "p", "namespace": "live"}})]:
            me.dirty.clear()
            Controllers._changed(me, kind, "ADDED", obj)  # type: ignore[arg-type]
            seen.append(me.dirty.is_set())
        return seen

    # live namespace: no pass; terminating: a pass; namespace unknown: a pass (to be safe);
    # any other kind: a pass.
    assert asyncio.run(go()) == [False, True, True, True]


def test_work_waiting_for_the_next_change_wakes_at_the_change_not_at_its_safety_net() -> None:
    """A kubelet waiting for its volume's attachment (and a provisioner waiting for a
    detach) sleeps until the store changes - no look every few milliseconds - and a change
    the controllers are told of wakes it at once; with no change it still looks again
    after its safety net."""
    async def go() -> tuple[float, float, bool]:
        queue = WorkQueue()
        loop = asyncio.get_running_loop()
        started = loop.time()
        waiter = loop.create_task(queue.next_change(30.0))
        await asyncio.sleep(0.05)
        assert not waiter.done(), "it returned with no change"
        store = Store()
        store.add_listener(lambda *_: queue.changed())
        store.create(NAMESPACES, _ns("live"))
        await asyncio.wait_for(waiter, 5.0)
        woken = loop.time() - started
        quiet = loop.time()
        await queue.next_change(0.1)
        return woken, loop.time() - quiet, queue.dirty.is_set()

    woken, quiet, dirty = asyncio.run(go())
    assert woken < 5.0 and 0.09 < quiet < 5.0 and dirty
