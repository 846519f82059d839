"""What checks use to look at a cluster: probes that fail as check failures.

A probe that cannot run (exec refused, garbage instead of one JSON line, the
probe's own error) is a failed check with one line naming the probe, the pod
and what came back - never a traceback into winstor's internals.
"""

from __future__ import annotations

from typing import Any, NoReturn

import pytest

from winstor.cluster import execs, probes
from winstor.cluster.target import Cluster


def fail(message: str) -> NoReturn:
    pytest.fail(message, pytrace=False)


def probe(cluster: Cluster, namespace: str, pod: str, name: str,
          params: dict[str, Any] | None = None, *, evidence: dict | None = None,
          container: str | None = None) -> dict:
    """Run probe `name` in `pod`; return its `data` or fail the check.

    The profile picks the shell and the stand-in libraries, and maps the seed's
    Windows paths in `params` to where they live on its nodes.
    """
    platform = cluster.platform
    try:
        result = execs.run_probe(cluster.api, namespace, pod, name,
                                 platform.probe_params(params or {}), shell=platform.shell,
                                 libs=platform.probe_libs, container=container,
                                 timeout=cluster.timeouts.exec)
    except probes.ProbeFailed as err:
        _record(evidence, name, pod, {"ok": False, "error": err.error})
        fail(f"probe {name} in pod {namespace}/{pod} reported: {err.error}")
    except (probes.ProbeError, execs.ExecError) as err:
        _record(evidence, name, pod, {"ok": False, "error": str(err)[:2000]})
        fail(f"probe {name} in pod {namespace}/{pod}: {err}")
    _record(evidence, name, pod, {"ok": True, "data": result.data})
    return result.data or {}


def _record(evidence: dict | None, name: str, pod: str, value: dict) -> None:
    if evidence is not None:
        evidence.setdefault("probes", []).append({"probe": name, "pod": pod, **value})
