"""`winstor sim` as a command: scenarios, bad input, several side by side,
a clean stop on SIGTERM, /metrics, and the flaky-api symptoms."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests
import yaml

from inspect_cluster import core

SCENARIOS = {"no-csi-proxy", "smb-mapping-missing", "image-pull-fails", "ebs-attach-fails",
             "wrong-windows-build", "intree-without-csi-driver", "flaky-api",
             "no-windows-nodes", "windows-nodes-not-ready", "two-default-classes",
             "pod-security-off", "volume-loses-data", "ebs-wrong-type", "binds-before-consumer",
             "share-not-shared", "share-read-only", "ebs-fstype-ignored", "claim-not-mounted"}
SCENARIOS |= {"resize-admission-off", "ebs-modify-refused", "defragsvc-disabled",  # EBS lifecycle
              "retain-ignored", "one-windows-node-per-zone", "attach-limit-reached",
              "volumes-retained"}
SCENARIOS |= {"smb-csi-node-plugin-missing", "smb-share-credentials-wrong",  # SMB CSI, shares
              "smb-share-server-unresolvable", "file-gateway-not-joined"}
SCENARIOS |= {"csi-proxy-replaced"}


def winstor(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "winstor", *args], capture_output=True,
                          text=True, timeout=timeout)


def _session(sim, context: str = "sim-1") -> tuple[requests.Session, str]:
    """A plain HTTPS client from the kubeconfig: CA data, bearer token."""
    cfg = yaml.safe_load(Path(sim.kubeconfig).read_text())
    ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == context)
    cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
    user = next(u["user"] for u in cfg["users"] if u["name"] == ctx["user"])
    ca = Path(sim.workdir) / f"{context}-ca.pem"
    ca.write_bytes(base64.b64decode(cluster["certificate-authority-data"]))
    s = requests.Session()
    s.trust_env = False  # else REQUESTS_CA_BUNDLE overrides the CA given here
    s.verify = str(ca)
    s.headers["Authorization"] = f"Bearer {user['token']}"
    return s, cluster["server"]


def test_scenarios_lists_each_with_one_line() -> None:
    proc = winstor("sim", "scenarios")
    assert proc.returncode == 0
    lines = proc.stdout.strip().splitlines()
    assert {ln.split()[0] for ln in lines} == SCENARIOS
    assert all(len(ln.split(None, 1)) == 2 for ln in lines)


def test_bad_input_is_one_line(tmp_path: Path) -> None:
    for args, phrase in (
            (["--scenario", "nope"], "unknown scenario 'nope'"),
            (["--scenario", "3:no-csi-proxy"], "cluster '3' is not one of 1..1"),
            (["--clusters", "zero"], "not a whole number"),
            (["--clusters", "17"], "at most 16: 17"),
            (["--time-scale", "-1"], "must be between 0 and 10")):
        proc = winstor("sim", "up", "--kubeconfig", str(tmp_path / "kc"), *args)
        assert proc.returncode == 2, proc.stderr
        lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
        assert phrase in lines[-1] and "Traceback" not in proc.stderr


def test_two_sims_side_by_side(sim_factory) -> None:
    a, b = sim_factory(1), sim_factory(2)
    servers = set()
    for sim, contexts in ((a, ["sim-1"]), (b, ["sim-1", "sim-2"])):
        cfg = yaml.safe_load(Path(sim.kubeconfig).read_text())
        assert [c["name"] for c in cfg["contexts"]] == contexts
        for cluster in cfg["clusters"]:
            assert cluster["cluster"]["server"].startswith("https://127.0.0.1:")
            assert cluster["cluster"]["certificate-authority-data"]
            servers.add(cluster["cluster"]["server"])
        assert all(u["user"]["token"] for u in cfg["users"])
        for ctx in contexts:
            assert core(sim, ctx).list_node().items
    assert len(servers) == 3
    assert a.aws_env["AWS_ENDPOINT_URL"] != b.aws_env["AWS_ENDPOINT_URL"]
    # Cluster 2 differs: its Windows nodes run Windows Server 2022 (cluster 1's run 2019),
    # so every default run covers both builds; two nodes of it in each zone.
    for ctx, build in (("sim-1", "10.0.17763"), ("sim-2", "10.0.20348")):
        windows = [n for n in core(b, ctx).list_node().items
                   if n.metadata.labels["kubernetes.io/os"] == "windows"]
        assert {n.metadata.labels.get("node.kubernetes.io/windows-build")
                for n in windows} == {build}, ctx
        zones = [n.metadata.labels["topology.kubernetes.io/zone"] for n in windows]
        assert sorted(zones) == ["us-west-2a", "us-west-2a", "us-west-2b", "us-west-2b"]


def test_sigterm_stops_cleanly(tmp_path: Path) -> None:
    # In folders that do not exist yet: made for the files, removed with them.
    kubeconfig, env = tmp_path / "a" / "b" / "kc", tmp_path / "a" / "aws.env"
    proc = subprocess.Popen([sys.executable, "-m", "winstor", "sim", "up",
                             f"--kubeconfig={kubeconfig}", f"--aws-env={env}"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not kubeconfig.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert kubeconfig.exists() and env.exists()
    assert "export AWS_ENDPOINT_URL=" in env.read_text()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    assert "ready in" in out and "stopped" in out and "Traceback" not in err
    assert not kubeconfig.exists()
    assert list(tmp_path.iterdir()) == []


def test_metrics_count_requests_and_objects(shared_sim) -> None:
    session, server = _session(shared_sim)
    session.get(f"{server}/api/v1/nodes").raise_for_status()
    assert session.get(f"{server}/api/v1/namespaces/default/pods/nope").status_code == 404
    text = session.get(f"{server}/metrics").text
    assert 'apiserver_request_total{verb="LIST",group="",resource="nodes",code="200"}' in text
    assert 'apiserver_request_total{verb="GET",group="",resource="pods",code="404"}' in text
    # One Linux node and four Windows nodes, two in each zone.
    assert 'winstor_sim_objects_created_total{kind="Node"} 5' in text


def test_flaky_api_throttles_fails_and_drops_watches(sim_factory) -> None:
    sim = sim_factory(1, ["flaky-api"])
    session, server = _session(sim)
    codes: dict[int, int] = {}
    retry_after = set()
    for _ in range(200):
        r = session.get(f"{server}/api/v1/namespaces")
        codes[r.status_code] = codes.get(r.status_code, 0) + 1
        if r.status_code == 429:
            retry_after.add(r.headers.get("Retry-After"))
            assert r.json()["reason"] == "TooManyRequests"
    assert codes.get(200, 0) > 150 and codes.get(429) and (codes.get(500) or codes.get(503))
    assert retry_after == {"1"}
    started = time.monotonic()
    r = session.get(f"{server}/api/v1/namespaces/default/configmaps",
                    params={"watch": "true", "timeoutSeconds": "60"}, stream=True, timeout=30)
    for _ in r.iter_lines():
        pass  # the server ends the stream long before the 60 s it was asked for
    assert time.monotonic() - started < 10


def test_sim_started_by_a_run_dies_with_it() -> None:
    """A pytest run killed with SIGKILL must not leave its embedded cluster running."""
    code = ("import time\nfrom winstor.targets.embedded import SimProcess\n"
            "s = SimProcess(1, []); s.start(); print(s.proc.pid, flush=True); time.sleep(600)\n")
    parent = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    sim_pid = int(parent.stdout.readline())
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            os.kill(sim_pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.2)
    raise AssertionError(f"the sim (pid {sim_pid}) outlived the run that started it")
