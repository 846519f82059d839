"""Waits that watch, with deadlines, and stop at the first terminal event.

The upstream e2e framework polls every 2 s and sits out the full timeout
(15 minutes for a Windows pod) even when the kubelet said minutes ago that
the image does not exist. A winstor wait watches the object and its events;
it returns when the condition holds, and fails as soon as an event shows
the outcome is settled (`ProvisioningFailed`, `FailedAttachVolume`,
`FailedMount`, image pull back-off, an OS mismatch, no fitting node), naming
that event. Watches resume from the last seen resourceVersion and relist
after `410 Gone`, so dropped connections cost nothing but a reconnect. A
watch that keeps failing (the API is down, answers 5xx, or drops every watch
at once) reconnects with growing pauses and gives up after `WATCH_FAILURES`
failures in a row, naming the last cause (`WatchGaveUp`); a wait whose
deadline comes first names it too.

For benchmarks only, `WINSTOR_WAIT_STRATEGY=poll` swaps every wait for the
upstream framework's loop - a GET every `WINSTOR_POLL_INTERVAL` seconds
(default 2) until the condition holds or the timeout passes - so `bench` can
count the API requests polling would have cost on the same run. Unset (or
`watch`), nothing changes.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from winstor.cluster.kube import EVENTS, Api, KubeError, Resource, answered_transient

log = logging.getLogger("winstor.cluster.waits")

Condition = Callable[[dict], bool]
TerminalState = Callable[[dict], "str | None"]
TerminalEvent = Callable[[dict], "str | None"]

_TRANSIENT_SCHEDULING = ("not-ready", "unschedulable", "Insufficient", "unbound immediate",
                         "not found", "being deleted", "Too many pods")


def describe_event(ev: dict) -> str:
    inv = ev.get("involvedObject") or {}
    count = ev.get("count") or 1
    times = f" (x{count})" if count > 1 else ""
    return (f"{ev.get('type', '')} {ev.get('reason', '')} on {inv.get('kind', '').lower()}/"
            f"{inv.get('name', '')}{times}: {ev.get('message', '')}")


def default_terminal_event(ev: dict) -> str | None:
    """The events after which waiting longer cannot change the outcome."""
    reason, msg = ev.get("reason", ""), ev.get("message", "")
    if ev.get("type") != "Warning" and reason not in ("BackOff",):
        return None
    if reason == "ProvisioningFailed":
        return "volume provisioning failed"
    if reason == "FailedAttachVolume" and not msg.startswith("Multi-Attach error"):
        return "the volume could not be attached"
    if reason == "FailedMount":
        return "the volume could not be mounted"
    if reason == "Failed" and "ImagePullBackOff" in msg:
        return "the image cannot be pulled (kubelet is backing off)"
    if reason == "Failed" and "does not match the host operating system" in msg:
        return "the container image targets another Windows build than the node runs"
    if reason == "FailedScheduling" and "nodes are available" in msg and not any(
            t in msg for t in _TRANSIENT_SCHEDULING):
        return "no node can run the pod"
    if reason == "FailedCreate" and "forbidden" in msg:
        return "the pod was rejected by admission"
    return None


def scheduling_terminal_event(ev: dict) -> str | None:
    """`default_terminal_event` for the scheduler's verdicts only. They are about the
    whole pod, where kubelet's events may be about one container of several (a wait for
    one container must not end on a sibling's failing pull)."""
    if ev.get("reason") != "FailedScheduling":
        return None
    return default_terminal_event(ev)


def no_terminal_event(ev: dict) -> None:
    """For waits no event can settle (a deletion); polling then reads no events."""
    return None


class WaitFailed(AssertionError):
    """A wait ended without its condition: by a terminal event or by the deadline."""

    def __init__(self, message: str, *, event: dict | None = None, elapsed: float = 0.0,
                 timeout: float = 0.0, obj: dict | None = None,
                 events: list[dict] | None = None) -> None:
        super().__init__(message)
        self.event = event
        self.elapsed = elapsed
        self.timeout = timeout
        self.obj = obj
        self.events = events or []


@dataclass
class WaitResult:
    obj: dict
    elapsed: float
    events: list[dict] = field(default_factory=list)


#: Failed watches in a row (no event in between) after which a feed gives up, and the
#: pauses between them: 0.2 s doubling to 5 s, about 16 s in all before the last try.
WATCH_FAILURES = 8
WATCH_RETRY_FIRST = 0.2
WATCH_RETRY_MAX = 5.0
#: A watch the server ends sooner than this, without a single event, failed.
WATCH_MIN_SECONDS = 1.0


class WatchGaveUp(ConnectionError):
    """A watch failed `WATCH_FAILURES` times in a row: the API is down, or answers every
    watch with an error, or drops it at once. The message names the last cause."""


class _Feed(threading.Thread):
    """List, then watch from the list's version; re-watch after drops, relist after 410;
    give up (`WatchGaveUp`) after `WATCH_FAILURES` failed watches in a row."""

    def __init__(self, api: Api, res: Resource, namespace: str | None,
                 field_selector: str | None, out: queue.Queue[tuple[str, Any]], tag: str,
                 label_selector: str | None = None, listed_at: str | None = None,
                 watch_seconds: int = 20) -> None:
        super().__init__(daemon=True, name=f"winstor-watch-{tag}")
        self.api, self.res, self.namespace = api, res, namespace
        self.field_selector, self.out, self.tag = field_selector, out, tag
        self.label_selector = label_selector
        self.listed_at = listed_at  # the caller listed already: watch from that version
        self.watch_seconds = watch_seconds
        self.stopped = threading.Event()
        self.stream: Any = None
        self.reconnects = 0
        self.failures = 0  # failed watches since the last event
        self.last_failure: str | None = None  # what broke the latest of them

    def stop(self) -> None:
        self.stopped.set()
        if self.stream is not None:
            self.stream.close()

    def _relist(self) -> str:
        listed = self.api.list(self.res, self.namespace, field_selector=self.field_selector,
                               label_selector=self.label_selector)
        items = listed.get("items") or []
        for item in items:
            self.out.put((self.tag, item))
        # Say what the list held, so a wait for deletion that starts after the
        # object went away does not sit out its deadline.
        self.out.put((self.tag + ":synced", len(items)))
        return listed["metadata"]["resourceVersion"]

    def run(self) -> None:
        try:
            rv = self.listed_at or self._relist()
            pause = WATCH_RETRY_FIRST
            first_failure = 0.0
            while not self.stopped.is_set():
                opened = time.monotonic()
                cause: str | None = None
                delivered = False
                try:
                    self.stream = self.api.watch(self.res, self.namespace, rv,
                                                 field_selector=self.field_selector,
                                                 label_selector=self.label_selector,
                                                 timeout_seconds=self.watch_seconds)
                except KubeError as err:
                    if err.status == 410:
                        rv = self._relist()
                        continue
                    if not answered_transient(err):
                        raise
                    cause = str(err)
                except ConnectionError as err:
                    cause = str(err)
                else:
                    relisted = False
                    for ev in self.stream:
                        if self.stopped.is_set():
                            return
                        obj = ev.get("object") or {}
                        if ev.get("type") == "ERROR":
                            if obj.get("code") == 410:
                                rv = self._relist()
                                relisted = True
                                break
                            err = KubeError(obj.get("code", 0), obj.get("reason", ""),
                                            obj.get("message", ""), "WATCH", self.res.plural)
                            if not answered_transient(err):
                                raise err
                            cause = str(err)
                            break
                        delivered = True
                        rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
                        if ev.get("type") in ("ADDED", "MODIFIED", "DELETED"):
                            self.out.put((self.tag if ev["type"] != "DELETED"
                                          else self.tag + ":deleted", obj))
                    if relisted or self.stopped.is_set():
                        continue
                    self.reconnects += 1
                    broke = self.stream.error
                    # A watch that lived a while and then ended or broke (an idle proxy, an
                    # apiserver rolling) had a working API: watch again. One that ends at
                    # once, with nothing delivered, failed.
                    if cause is None and not delivered and \
                            time.monotonic() - opened < WATCH_MIN_SECONDS:
                        cause = (f"the watch broke at once: {type(broke).__name__}: {broke}"
                                 if broke is not None else
                                 "the server ended the watch at once, with no events")
                if delivered or cause is None:
                    # Events arrived, or a watch ran a while: the API works.
                    self.failures, pause = 0, WATCH_RETRY_FIRST
                if cause is None:
                    continue  # at most one new watch a second (WATCH_MIN_SECONDS)
                if self.failures == 0:
                    first_failure = opened
                self.failures += 1
                self.last_failure = cause
                if self.failures >= WATCH_FAILURES:
                    raise WatchGaveUp(
                        f"the watch of {self.res.plural} failed {self.failures} times in a row "
                        f"over {time.monotonic() - first_failure:.0f}s; last: {cause}")
                log.info("watch of %s failed (%d in a row), again in %.1fs: %s",
                         self.res.plural, self.failures, pause, cause)
                self.stopped.wait(pause)
                pause = min(pause * 2, WATCH_RETRY_MAX)
        except Exception as exc:  # surfaced to the waiting thread, never lost
            if not self.stopped.is_set():
                self.out.put(("error", exc))


HUB_WATCH_SECONDS = 300  # a shared events watch is re-opened this often, not per wait
HUB_IDLE_SECONDS = 60.0  # ... and closed once no wait has used it for this long


class _EventHub:
    """One events LIST+WATCH per (API, namespace) for the whole run, shared by
    every wait in that namespace: each wait gets every event the namespace has
    had since the hub started, then the new ones, as a feed of its own would
    give it. The watch is long; the hub closes after an error (the next wait
    starts a new one) or when no wait has used it for `HUB_IDLE_SECONDS`.
    """

    _hubs: dict[tuple[int, str], _EventHub] = {}
    _hubs_lock = threading.Lock()

    def __init__(self, api: Api, namespace: str) -> None:
        self.key = (id(api), namespace)
        self.lock = threading.Lock()
        self.subscribers: list[queue.Queue[tuple[str, Any]]] = []
        self.backlog: list[tuple[str, Any]] = []
        self.inbox: queue.Queue[tuple[str, Any]] = queue.Queue()
        self.feed = _Feed(api, EVENTS, namespace, "", self.inbox, "event",
                          watch_seconds=HUB_WATCH_SECONDS)
        self.done = threading.Event()
        self.idle_since = time.monotonic()
        self.pump = threading.Thread(target=self._pump, daemon=True,
                                     name=f"winstor-events-{namespace}")

    @classmethod
    def subscribe(cls, api: Api, namespace: str,
                  out: queue.Queue[tuple[str, Any]]) -> _EventHub:
        with cls._hubs_lock:
            hub = cls._hubs.get((id(api), namespace))
            if hub is None or hub.done.is_set():
                hub = cls(api, namespace)
                cls._hubs[hub.key] = hub
                hub.feed.start()
                hub.pump.start()
            with hub.lock:
                for message in hub.backlog:
                    out.put(message)
                hub.subscribers.append(out)
            return hub

    def unsubscribe(self, out: queue.Queue[tuple[str, Any]]) -> None:
        with self.lock:
            if out in self.subscribers:
                self.subscribers.remove(out)
            self.idle_since = time.monotonic()

    def _close(self) -> None:
        self.done.set()
        self.feed.stop()
        if _EventHub._hubs.get(self.key) is self:
            del _EventHub._hubs[self.key]

    def _pump(self) -> None:
        while not self.done.is_set():
            try:
                message = self.inbox.get(timeout=0.5)
            except queue.Empty:
                with _EventHub._hubs_lock, self.lock:
                    if not self.subscribers and \
                            time.monotonic() - self.idle_since > HUB_IDLE_SECONDS:
                        self._close()
                continue
            with _EventHub._hubs_lock, self.lock:
                if message[0] == "error":
                    self._close()  # the next waiter starts afresh
                else:
                    self.backlog.append(message)
                for out in self.subscribers:
                    out.put(message)


def wait_for(api: Api, res: Resource, name: str | None, namespace: str | None, *,
             condition: Condition, what: str, timeout: float,
             label_selector: str | None = None,
             terminal_state: TerminalState | None = None,
             terminal_event: TerminalEvent = default_terminal_event,
             event_objects: tuple[str, ...] = (),
             on_event: Callable[[dict], None] | None = None,
             gone_ok: bool = False) -> WaitResult:
    """Wait until `condition(obj)`; fail fast on a terminal event or state.

    Watches the object `name`, or with `name=None` every object matching
    `label_selector`. `event_objects` adds name prefixes of other objects
    whose events also count (a Deployment's wait listens to its ReplicaSet's
    and pods' events, which carry its name as prefix).
    """
    if wait_strategy() == "poll":
        return _poll_for(api, res, name, namespace, condition=condition, what=what,
                         timeout=timeout, label_selector=label_selector,
                         terminal_event=terminal_event, event_objects=event_objects,
                         on_event=on_event, gone_ok=gone_ok)
    out: queue.Queue[tuple[str, Any]] = queue.Queue()
    started = time.monotonic()
    deadline = started + timeout
    selector = f"metadata.name={name}" if name else None

    def judge(item: dict, events: list[dict]) -> WaitResult | None:
        """The object as it is now: the wait's result, its failure, or None (go on)."""
        if condition(item):
            return WaitResult(item, time.monotonic() - started, events)
        why = terminal_state(item) if terminal_state is not None else None
        if why:
            raise WaitFailed(f"{what} cannot happen: {why}", elapsed=time.monotonic() - started,
                             timeout=timeout, obj=item, events=events)
        return None

    # One LIST first: a wait whose condition already holds (or whose object is
    # already gone, or already cannot get there) ends on it, without a watch or
    # the events at all - most waits of a healthy run, one request each.
    listed = api.list(res, namespace, field_selector=selector, label_selector=label_selector)
    latest: dict | None = None
    for item in listed.get("items") or []:
        latest = item
        done = judge(item, [])
        if done is not None:
            return done
    if not listed.get("items") and gone_ok and name:
        return WaitResult({}, time.monotonic() - started, [])
    feed = _Feed(api, res, namespace, selector, out, "obj", label_selector,
                 listed_at=listed["metadata"]["resourceVersion"])
    feed.start()
    hub = _EventHub.subscribe(api, namespace or "default", out)
    seen_events: dict[str, dict] = {}
    prefixes = tuple(p for p in (name, *event_objects) if p)
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                tail = _last_events(seen_events)
                raise WaitFailed(
                    f"timed out after {timeout:.0f}s waiting for {what}"
                    + (f"; last events: {tail}" if tail else "; no events were recorded")
                    + _failing_watches(feed, hub.feed),
                    elapsed=time.monotonic() - started, timeout=timeout, obj=latest,
                    events=list(seen_events.values()))
            try:
                tag, item = out.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                continue
            if tag == "error":
                if isinstance(item, WatchGaveUp):
                    raise WatchGaveUp(f"gave up waiting for {what} after "
                                      f"{time.monotonic() - started:.0f}s: {item}") from None
                raise item
            if tag.endswith(":synced"):
                if tag == "obj:synced" and item == 0 and gone_ok and name:
                    return WaitResult({}, time.monotonic() - started,
                                      list(seen_events.values()))
                continue
            if tag == "obj:deleted":
                if gone_ok:
                    return WaitResult(item, time.monotonic() - started,
                                      list(seen_events.values()))
                if not name:
                    continue
                raise WaitFailed(f"{what}: {res.plural[:-1]} {name} was deleted while waiting",
                                 elapsed=time.monotonic() - started, timeout=timeout,
                                 obj=item, events=list(seen_events.values()))
            if tag == "obj":
                latest = item
                done = judge(item, list(seen_events.values()))
                if done is not None:
                    return done
                continue
            if tag.startswith("event"):
                inv = item.get("involvedObject") or {}
                if not str(inv.get("name", "")).startswith(prefixes):
                    continue
                seen_events[item["metadata"]["name"]] = item
                if on_event is not None:
                    on_event(item)
                why = terminal_event(item)
                if why:
                    raise WaitFailed(
                        f"{what} cannot happen: {why} — {describe_event(item)}",
                        event=item, elapsed=time.monotonic() - started, timeout=timeout,
                        obj=latest, events=list(seen_events.values()))
    finally:
        feed.stop()
        hub.unsubscribe(out)


def _failing_watches(*feeds: _Feed) -> str:
    """For a timeout: the watches that were failing when it came, and why."""
    failing = [f"the watch of {f.res.plural} has failed {f.failures} times in a row "
               f"(last: {f.last_failure})" for f in feeds if f.failures]
    return ("; " + "; ".join(failing)) if failing else ""


# -- the polling baseline (benchmarks only) ------------------------------------------------
WAIT_STRATEGY_ENV = "WINSTOR_WAIT_STRATEGY"
POLL_INTERVAL_ENV = "WINSTOR_POLL_INTERVAL"
UPSTREAM_POLL_INTERVAL = 2.0  # the e2e framework's Poll interval


def wait_strategy() -> str:
    """`watch` (winstor's waits) or `poll` (the benchmarks' upstream-style baseline)."""
    value = os.environ.get(WAIT_STRATEGY_ENV, "").strip().lower() or "watch"
    if value not in ("watch", "poll"):
        raise ValueError(f"{WAIT_STRATEGY_ENV}={value!r}: expected watch or poll "
                         "(poll is for benchmarks only)")
    return value


def poll_interval() -> float:
    raw = os.environ.get(POLL_INTERVAL_ENV, "").strip()
    try:
        value = float(raw) if raw else UPSTREAM_POLL_INTERVAL
    except ValueError:
        raise ValueError(f"{POLL_INTERVAL_ENV}={raw!r}: expected seconds") from None
    if not math.isfinite(value) or value <= 0:  # float() reads nan and inf
        raise ValueError(f"{POLL_INTERVAL_ENV}={raw!r}: expected a positive number of seconds")
    return value


def _poll_for(api: Api, res: Resource, name: str | None, namespace: str | None, *,
              condition: Condition, what: str, timeout: float, label_selector: str | None,
              terminal_event: TerminalEvent, event_objects: tuple[str, ...],
              on_event: Callable[[dict], None] | None, gone_ok: bool) -> WaitResult:
    """The upstream framework's wait: GET (or LIST) every interval until the
    condition holds or the timeout passes; object states and failure events do
    not end it early.

    One exception keeps the baseline's run passing: some waits wait *for* an
    event (the claim's first event), as the framework's event waits do; those
    LIST the namespace's events every round and end when their predicate names
    one. Waits whose predicate only detects failure - the default, or one that
    delegates to it (it calls a `FailedMount` final) - read no events at all,
    as the framework's object waits do not.
    """
    interval = poll_interval()
    started = time.monotonic()
    deadline = started + timeout
    reads_events = on_event is not None or _waits_for_an_event(terminal_event)
    prefixes = tuple(p for p in (name, *event_objects) if p)
    seen_events: dict[str, dict] = {}
    latest: dict | None = None
    rounds = 0
    while True:
        rounds += 1
        if name:
            obj = api.get_or_none(res, name, namespace)
            if obj is None and gone_ok:
                return WaitResult({}, time.monotonic() - started, list(seen_events.values()))
            if obj is not None:
                latest = obj
                if condition(obj):
                    return WaitResult(obj, time.monotonic() - started,
                                      list(seen_events.values()))
        else:
            for item in api.items(res, namespace, label_selector=label_selector):
                latest = item
                if condition(item):
                    return WaitResult(item, time.monotonic() - started,
                                      list(seen_events.values()))
        if reads_events:
            for ev in api.items(EVENTS, namespace or "default"):
                inv = ev.get("involvedObject") or {}
                if not str(inv.get("name", "")).startswith(prefixes):
                    continue
                is_new = ev["metadata"]["name"] not in seen_events
                seen_events[ev["metadata"]["name"]] = ev
                if on_event is not None and is_new:
                    on_event(ev)
                why = terminal_event(ev)
                if why:
                    raise WaitFailed(f"{what} cannot happen: {why} — {describe_event(ev)}",
                                     event=ev, elapsed=time.monotonic() - started,
                                     timeout=timeout, obj=latest,
                                     events=list(seen_events.values()))
        now = time.monotonic()
        if now >= deadline:
            raise WaitFailed(f"timed out after {timeout:.0f}s waiting for {what} (polled "
                             f"{rounds} times, every {interval:g}s)",
                             elapsed=now - started, timeout=timeout, obj=latest,
                             events=list(seen_events.values()))
        time.sleep(max(0.0, min(started + rounds * interval, deadline) - now))


def _waits_for_an_event(predicate: TerminalEvent) -> bool:
    """Whether a wait's event predicate is what it waits for, not failure detection."""
    if predicate in (default_terminal_event, scheduling_terminal_event, no_terminal_event):
        return False
    probe = {"type": "Warning", "reason": "FailedMount", "count": 1,
             "message": "MountVolume.SetUp failed (a probe of the predicate, not an event)",
             "metadata": {"name": "winstor-poll-probe"}, "involvedObject": {}}
    return predicate(probe) is None


def _last_events(events: dict[str, dict], n: int = 3) -> str:
    def stamp(ev: dict) -> str:
        return ev.get("lastTimestamp") or ev.get("eventTime") or ""
    recent = sorted(events.values(), key=stamp)[-n:]
    return "; ".join(describe_event(e) for e in recent)


def wait_gone(api: Api, res: Resource, name: str, namespace: str | None, *,
              what: str, timeout: float) -> float:
    """Wait for an object to disappear; returns the seconds it took."""
    started = time.monotonic()
    if api.get_or_none(res, name, namespace) is None:
        return 0.0
    wait_for(api, res, name, namespace, condition=lambda o: False, what=what, timeout=timeout,
             terminal_event=no_terminal_event, gone_ok=True)
    return time.monotonic() - started


def pod_terminal_state(pod: dict) -> str | None:
    """A pod whose containers cannot start, judged from its status alone."""
    st = pod.get("status") or {}
    if st.get("phase") in ("Failed", "Succeeded"):
        return f"pod {pod['metadata']['name']} ended with phase {st['phase']}"
    for cs in st.get("containerStatuses") or []:
        waiting = (cs.get("state") or {}).get("waiting") or {}
        reason = waiting.get("reason", "")
        if reason in ("ImagePullBackOff", "InvalidImageName", "CreateContainerError",
                      "CreateContainerConfigError", "CrashLoopBackOff"):
            return (f"container {cs['name']} of pod {pod['metadata']['name']} is waiting: "
                    f"{reason}: {waiting.get('message', '')}")
    return None


def pod_ready(pod: dict) -> bool:
    return any(c.get("type") == "Ready" and c.get("status") == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])

