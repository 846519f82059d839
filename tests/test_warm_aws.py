"""`Cluster.warm_aws`: the AWS clients a run's checks use, made in the background at the
lowest CPU priority, so that in a fleet the other workers' head starts (which every
cluster's image pull waits on) go first."""

from __future__ import annotations

import os
import threading
from types import SimpleNamespace
from typing import Any

import pytest

from winstor.aws import facts as awsfacts
from winstor.cluster import target


def test_warm_makes_every_checks_client_at_the_lowest_priority(
        monkeypatch: pytest.MonkeyPatch) -> None:
    niced: list[tuple[int, int, int]] = []
    made: list[str] = []
    monkeypatch.setattr(target.os, "setpriority",
                        lambda which, who, prio: niced.append((which, who, prio)))
    monkeypatch.setattr(awsfacts, "client", lambda session, service: made.append(service))
    session = object()
    fake: Any = SimpleNamespace(name="c1", aws_session=lambda: session)
    thread: threading.Thread = target.Cluster.warm_aws(fake)
    thread.join(10)
    assert made == list(target.WARM_SERVICES) == ["ec2", "fsx", "storagegateway",
                                                  "secretsmanager"]
    assert niced and niced[0][0] == os.PRIO_PROCESS and niced[0][2] == 19
    assert niced[0][1] != threading.get_native_id()  # the warm thread, not the caller


def test_warm_without_priorities_still_warms(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where threads cannot be reniced (not Linux, or refused), the clients are still made."""
    def refuse(*_: object) -> None:
        raise PermissionError("not allowed")
    made: list[str] = []
    monkeypatch.setattr(target.os, "setpriority", refuse)
    monkeypatch.setattr(awsfacts, "client", lambda session, service: made.append(service))
    fake: Any = SimpleNamespace(name="c1", aws_session=lambda: object())
    target.Cluster.warm_aws(fake).join(10)
    assert made == list(target.WARM_SERVICES)
