"""The polling baseline: the same passing run with upstream-style polling waits.

`WINSTOR_WAIT_STRATEGY=poll` (winstor/waits.py, benchmarks only) replaces
every watch-based wait by a GET every interval until the condition holds or
the timeout passes. The upstream e2e framework polls every 2 s on a real
cluster; on the embedded cluster the interval is scaled by the factor the
`sim` timeout profile applies to the wait that dominates a run, the Windows
pod start (90 s for 900 s on EKS: 1/10), giving 0.2 s.

What the scaling means for the ratio: the sim runs EKS latencies at 1/500
(`--time-scale 0.002`), so one 0.2 s poll interval spans 100 modelled
seconds where the real framework would poll 50 times, and most waits are
over before their first poll. The `eks-like` part of `python -m bench`
therefore repeats the comparison at `--time-scale 0.05` with a poll every
2 s x 0.05, i.e. every 2 modelled seconds as on EKS.
"""

from __future__ import annotations

from winstor.config import Timeouts
from winstor.waits import POLL_INTERVAL_ENV, UPSTREAM_POLL_INTERVAL

from .catalog import CatalogRun, run_catalog


def sim_interval() -> float:
    """2 s scaled as the `sim` profile scales the Windows pod-start timeout."""
    factor = Timeouts.profile("sim").pod_start_windows / Timeouts.profile("eks").pod_start_windows
    return UPSTREAM_POLL_INTERVAL * factor


def run(interval: float) -> CatalogRun:
    return run_catalog(1, strategy="poll", env={POLL_INTERVAL_ENV: f"{interval:g}"})
