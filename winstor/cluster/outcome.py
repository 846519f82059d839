"""Provisioning outcomes that turn into check failures, not fixture errors.

When the shared Deployment of a cluster cannot start, every check that needs
it must fail *with the reason* (the image cannot be pulled, the volume cannot
be attached), once, without retrying the slow provisioning per check. A
`Deferred` holds either the value or that reason; `require()` is the check's
single line to get the value or fail with the cause.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

import pytest

from winstor.cluster.kube import ConnectError, KubeError
from winstor.cluster.provision import ProvisionError
from winstor.cluster.waits import WaitFailed

T = TypeVar("T")

EXPECTED = (WaitFailed, KubeError, ConnectError, ConnectionError, TimeoutError,
            ProvisionError)

# Every Deferred that settles in the background counts here and wakes whoever waits for
# news (the ordering plugin, while a check waits for its slow objects), instead of that
# waiter looking again every few milliseconds.
_news = threading.Condition()
_settled_count = 0


def news() -> int:
    """How many background outcomes have settled so far: pass it to `wait_for_news`."""
    return _settled_count


def wait_for_news(seen: int, timeout: float) -> bool:
    """Wait until an outcome settles after `news()` returned `seen`, or `timeout` seconds;
    whether one did."""
    with _news:
        return _news.wait_for(lambda: _settled_count != seen, timeout)


def _announce() -> None:
    global _settled_count
    with _news:
        _settled_count += 1
        _news.notify_all()


class Deferred(Generic[T]):
    """A slow object's outcome: its value, or the reason it could not be had.

    `run(fn)` settles it at once. `start(begin)` lets a fixture begin slow work
    now - create the pods, so that image pulls and volume provisioning of a
    cluster proceed together - and finish it (wait for Ready) in a background
    thread, so that a failure is known the moment the cluster shows it (the
    plugin then reports the checks it fails first, see
    `winstor.plugin.hooks.pytest_runtest_protocol`). `require()` joins it.
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self._value: T | None = None
        self.error: str | None = None
        self.exception: BaseException | None = None
        self._thread: threading.Thread | None = None
        self._crash: BaseException | None = None  # not an expected failure: re-raised on join
        self._done = False  # the background work has ended (set before it is announced)

    def run(self, fn: Callable[[], T]) -> Deferred[T]:
        try:
            self._value = fn()
        except EXPECTED as exc:
            self.error = str(exc)
            self.exception = exc
        return self

    def start(self, begin: Callable[[], Callable[[], T]]) -> Deferred[T]:
        """Run `begin` now; the callable it returns finishes the work in the background."""
        try:
            finish = begin()
        except EXPECTED as exc:
            self.error = str(exc)
            self.exception = exc
            return self

        def settle() -> None:
            try:
                self.run(finish)
            except BaseException as exc:  # handed to whoever joins, never lost
                self._crash = exc
            finally:
                self._done = True
                _announce()

        self._thread = threading.Thread(target=settle, daemon=True,
                                        name=f"winstor-deferred-{self.what[:40]}")
        self._thread.start()
        return self

    @property
    def settled(self) -> bool:
        """Its outcome is known (nothing left to wait for)."""
        return self._thread is None or self._done

    @property
    def failed(self) -> bool:
        """Settled, and it could not be had."""
        return self.settled and (self.error is not None or self._crash is not None)

    def _settle(self) -> None:
        if self._thread is not None:
            self._thread.join()
        if self._crash is not None:
            raise self._crash

    def require(self) -> T:
        self._settle()
        if self.error is not None:
            pytest.fail(f"{self.what} failed: {self.error}", pytrace=False)
        assert self._value is not None
        return self._value
