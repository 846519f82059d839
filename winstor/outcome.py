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
    def __init__(self, what: str) -> None:
        self.what = what
        self.value: T | None = None
        self.error: str | None = None
        self.exception: BaseException | None = None

    def run(self, fn: Callable[[], T]) -> Deferred[T]:
        try:
            self.value = fn()
        except EXPECTED as exc:
            self.error = str(exc)
            self.exception = exc
        return self

    def require(self) -> T:
        if self.error is not None:
            pytest.fail(f"{self.what} failed: {self.error}", pytrace=False)
        assert self.value is not None
        return self.value
