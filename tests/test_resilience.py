"""Verdicts that hold up: a flaky API server, and two runs on one cluster at once."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from helpers import RunResult, run_suite
from inspect_cluster import leftovers
from test_scenarios import ALL


def test_flaky_api_gives_healthy_verdicts_and_leaks_nothing(sim_factory,
                                                            tmp_path: Path) -> None:
    sim = sim_factory(1, ["flaky-api"])
    result = run_suite([f"--kubeconfig={sim.kubeconfig}", "--context", "sim-1",
                        "--timeouts", "sim", "-o", "log_level=WARNING", "-rA"], tmp_path,
                       env=sim.aws_env)
    assert result.code == 0, result.output[-3000:]
    assert result.outcomes == {f"sim-1:{c}": "passed" for c in ALL}
    assert _despite_faults(lambda: leftovers(sim)) == []


def _despite_faults(fn: Any, attempts: int = 8) -> Any:
    """The inspection's own calls meet the scenario's injected 429s and 5xx too:
    retry them (the official client does not), as winstor's client does."""
    from kubernetes.client.exceptions import ApiException

    for attempt in range(attempts):
        try:
            return fn()
        except ApiException as err:
            if attempt == attempts - 1 or not (err.status == 429 or err.status >= 500):
                raise
            time.sleep(0.2)
    return None


def test_two_runs_on_one_cluster_at_once(sim_factory, tmp_path: Path) -> None:
    sim = sim_factory(1, [])
    results: dict[str, RunResult] = {}
    errors: dict[str, BaseException] = {}

    def run(name: str) -> None:
        try:
            work = tmp_path / name
            work.mkdir()
            results[name] = run_suite([f"--kubeconfig={sim.kubeconfig}", "--context",
                                       "sim-1"], work, env=sim.aws_env)
        except BaseException as err:  # a thread's exception is otherwise only printed
            errors[name] = err

    threads = [threading.Thread(target=run, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name, err in errors.items():
        raise AssertionError(f"run {name} raised {err!r}") from err
    assert set(results) == {"a", "b"}
    for name, result in results.items():
        assert result.code == 0, f"run {name}:\n{result.output[-3000:]}"
        # Every check ran and passed in both runs, not merely "no check failed".
        assert result.outcomes == {f"sim-1:{c}": "passed" for c in ALL}, \
            f"run {name}:\n{result.output[-3000:]}"
    assert leftovers(sim) == []
