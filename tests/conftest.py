"""Self-test fixtures: embedded clusters started by hand, stopped afterwards.

Self-tests drive the product the way users do - a `winstor sim up` process
and `pytest` runs in subprocesses - and then inspect the clusters and moto
with clients no check uses, so a defect in winstor's own client cannot hide
itself.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from winstor.targets.embedded import SimProcess

# A developer's `winstor kind up` must not redirect the self-tests' pytest runs
# (a plain run follows those settings): point them at a directory that never exists.
os.environ["WINSTOR_KIND_STATE"] = os.path.join(tempfile.gettempdir(),
                                                f"winstor-selftest-{os.getpid()}-no-kind")
# The same for `winstor controlplane up`.
os.environ["WINSTOR_CONTROLPLANE_STATE"] = os.path.join(
    tempfile.gettempdir(), f"winstor-selftest-{os.getpid()}-no-controlplane")


@pytest.fixture(scope="session", autouse=True)
def no_sim_directory_left(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The self-tests leave no embedded cluster's directory (`winstor-sim-*`) behind.

    Every sim they start - in this process, or in the pytest runs and commands they start,
    which inherit TMPDIR - makes its directory under a TMPDIR of this session's own, so
    what is left there at the end is theirs alone, whatever else runs on the machine. A
    sim whose starter was killed removes its directory within a second or two, so the end
    waits a few seconds for that before it judges."""
    tmp_path_factory.getbasetemp()  # pytest's own temporary directories stay where they are
    root = Path(tempfile.mkdtemp(prefix="winstor-selftest-tmp-"))
    before = os.environ.get("TMPDIR")
    os.environ["TMPDIR"] = str(root)
    tempfile.tempdir = None
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("TMPDIR", None)
        else:
            os.environ["TMPDIR"] = before
        tempfile.tempdir = None
        deadline = time.monotonic() + 5
        while any(root.glob("winstor-sim-*")) and time.monotonic() < deadline:
            time.sleep(0.1)
        left = sorted(p.name for p in root.glob("winstor-sim-*"))
        shutil.rmtree(root, ignore_errors=True)
    assert not left, f"self-tests left embedded clusters' directories behind: {left}"


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
