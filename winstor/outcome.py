"""Provisioning outcomes that turn into check failures, not fixture errors.

When the shared Deployment of a cluster cannot start, every check that needs
it must fail *with the reason* (the image cannot be pulled, the volume cannot
be attached), once, without retrying the slow provisioning per check. A
`Deferred` holds either the value or that reason; `require()` is the check's
single line to get the value or fail with the cause.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Generic, TypeVar

import pytest

from .kube import ConnectError, KubeError
from .provision import ProvisionError
from .waits import WaitFailed

T = TypeVar("T")

EXPECTED = (WaitFailed, KubeError, ConnectError, ConnectionError, TimeoutError,
            ProvisionError)


class Deferred(Generic[T]):
    """A slow object's outcome: its value, or the reason it could not be had.

    `run(fn)` settles it at once. `start(begin)` lets a fixture begin slow work
    now - create the pods, so that image pulls and volume provisioning of a
    cluster proceed together - and finish it (wait for Ready) only when a
    check first asks, through `require()` or `value`.
    """

    def __init__(self, what: str) -> None:
        self.what = what
        self._value: T | None = None
        self.error: str | None = None
        self.exception: BaseException | None = None
        self._finish: Callable[[], T] | None = None

    def run(self, fn: Callable[[], T]) -> Deferred[T]:
        try:
            self._value = fn()
        except EXPECTED as exc:
            self.error = str(exc)
            self.exception = exc
        return self

    def start(self, begin: Callable[[], Callable[[], T]]) -> Deferred[T]:
        """Run `begin` now; the callable it returns finishes the work on first use."""
        try:
            self._finish = begin()
        except EXPECTED as exc:
            self.error = str(exc)
            self.exception = exc
        return self

    @property
    def started(self) -> bool:
        """Work was begun and not yet finished (nothing has waited for it)."""
        return self._finish is not None

    def _settle(self) -> None:
        finish, self._finish = self._finish, None
        if finish is not None:
            self.run(finish)

    @property
    def value(self) -> T | None:
        """The value, finishing the work first; None when it failed."""
        self._settle()
        return self._value

    def require(self) -> T:
        self._settle()
        if self.error is not None:
            pytest.fail(f"{self.what} failed: {self.error}", pytrace=False)
        assert self._value is not None
        return self._value
