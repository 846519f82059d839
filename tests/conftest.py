"""Self-test fixtures: embedded clusters started by hand, stopped afterwards.

Self-tests drive the product the way users do - a `winstor sim up` process
and `pytest` runs in subprocesses - and then inspect the clusters and moto
with clients no check uses, so a defect in winstor's own client cannot hide
itself.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest

from winstor.targets.embedded import SimProcess

# A developer's `winstor kind up` must not redirect the self-tests' pytest runs
# (a plain run follows those settings): point them at a directory that never exists.
os.environ["WINSTOR_KIND_STATE"] = os.path.join(tempfile.gettempdir(),
                                                f"winstor-selftest-{os.getpid()}-no-kind")
# The same for `winstor controlplane up`.
os.environ["WINSTOR_CONTROLPLANE_STATE"] = os.path.join(
    tempfile.gettempdir(), f"winstor-selftest-{os.getpid()}-no-controlplane")


@pytest.fixture
def sim_factory() -> Iterator:
    started: list[SimProcess] = []

    def start(clusters: int = 1, scenarios: list[str] | None = None,
              flavour: str = "eks", extra_args: list[str] | None = None) -> SimProcess:
        sim = SimProcess(clusters, scenarios or [], flavour=flavour,
                         extra_args=extra_args or [])
        sim.start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()


@pytest.fixture(scope="module")
def shared_sim() -> Iterator[SimProcess]:
    """One healthy cluster for tests that only read or that clean up after themselves."""
    sim = SimProcess(1, [])
    sim.start()
    yield sim
    sim.stop()
