"""Clusters that cannot be used: one clear line per check, no traceback,
nothing created. And a Windows image that cannot run on the nodes."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
import yaml

from helpers import run_suite
from inspect_cluster import leftovers
from winstor.sim import tls


def _variant(sim, tmp_path: Path, how: str) -> Path:
    cfg = yaml.safe_load(Path(sim.kubeconfig).read_text())
    if how == "no-answer":
        cfg["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"
    elif how == "wrong-token":
        cfg["users"][0]["user"]["token"] = "expired-or-wrong"
    elif how == "wrong-ca":
        other = tls.issue("someone-else")
        cfg["clusters"][0]["cluster"]["certificate-authority-data"] = base64.b64encode(
            other.ca_pem).decode()
    path = tmp_path / f"kubeconfig-{how}"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.mark.parametrize(("how", "phrase"), [
    ("no-answer", "the server does not answer"),
    ("wrong-token", "the credentials were refused (401 Unauthorized)"),
    ("wrong-ca", "not signed by the kubeconfig's certificate authority"),
])
def test_unusable_cluster_is_one_line(how: str, phrase: str, shared_sim, tmp_path: Path) -> None:
    kubeconfig = _variant(shared_sim, tmp_path, how)
    result = run_suite([f"--kubeconfig={kubeconfig}", "--context", "sim-1", "-k",
                        "SC-DEFAULT-01 or NODES-READY-01"], tmp_path, env=shared_sim.aws_env,
                       timeout=120)
    # The cluster fixture cannot connect: an error at setup, not a check's verdict.
    assert set(result.outcomes.values()) == {"error"}, result.output[-2000:]
    for message in result.messages.values():
        lines = [ln for ln in message.strip().splitlines() if ln.strip()]
        assert phrase in lines[-1] and lines[-1].startswith("cluster sim-1: context sim-1")
        assert "Traceback" not in message and "During handling" not in message, message
    assert leftovers(shared_sim) == []


def test_windows_image_for_another_build_is_refused(shared_sim, tmp_path: Path) -> None:
    result = run_suite([f"--kubeconfig={shared_sim.kubeconfig}", "--context", "sim-1",
                        "--windows-image", "mcr.microsoft.com/windows/servercore:ltsc2022",
                        "-k", "EBS-MOUNT-01 or SMB-POD-01"], tmp_path, env=shared_sim.aws_env)
    assert set(result.outcomes.values()) == {"failed"}
    for message in result.messages.values():
        assert "targets Windows build 10.0.20348, but the workloads run on nodes of build " \
               "10.0.17763" in message
    assert leftovers(shared_sim) == []
