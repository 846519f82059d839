"""The controlplane target's launcher: its PKI, its start and stop, its failures, and
`winstor controlplane up|status|down` - against the real binaries.

The PKI is checked as a client would check it (SANs, key usages, who each certificate
says its holder is, who signed it). Everything else starts the real kube-apiserver,
controller-manager, scheduler and etcd built by `winstor.targets.controlplane.build`;
those tests skip, saying how to build, when the binaries are not in the cache (the
build takes ~20 min on a fresh machine, which a self-test must not start by itself).
Most start the control plane alone (no node agent): what is under test is the
launcher, not the nodes.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from helpers import ROOT, eventually
from winstor.targets.controlplane import build, pki
from winstor.targets.controlplane.launcher import (
    ControlPlane,
    ControlPlaneError,
    parse_scenarios,
)
from winstor.targets.controlplane.process import ControlPlaneProcess

# --------------------------------------------------------------------------------- PKI


@pytest.fixture(scope="module")
def cluster_pki(tmp_path_factory: pytest.TempPathFactory) -> pki.ClusterPki:
    return pki.generate(tmp_path_factory.mktemp("pki"), "cp-1")


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _cn(cert: x509.Certificate) -> str:
    return str(cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value)


def _groups(cert: x509.Certificate) -> list[str]:
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)]


def _eku(cert: x509.Certificate) -> list[x509.ObjectIdentifier]:
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def _sans(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return ({str(ip) for ip in san.get_values_for_type(x509.IPAddress)},
            set(san.get_values_for_type(x509.DNSName)))


def test_the_ca_is_a_ca_of_its_cluster(cluster_pki: pki.ClusterPki) -> None:
    ca = _cert(cluster_pki.ca.cert)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign
    assert ca.subject == ca.issuer and "cp-1" in _cn(ca)


def test_the_api_server_serves_every_name_a_client_uses(cluster_pki: pki.ClusterPki) -> None:
    cert = _cert(cluster_pki.apiserver.cert)
    ips, names = _sans(cert)
    assert ips == {"127.0.0.1", "10.96.0.1"}
    assert names == {"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                     "kubernetes.default.svc.cluster.local"}
    assert _eku(cert) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert cert.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature


def test_the_stream_server_serves_loopback(cluster_pki: pki.ClusterPki) -> None:
    cert = _cert(cluster_pki.stream.cert)
    assert _sans(cert) == ({"127.0.0.1"}, {"localhost"})
    assert _eku(cert) == [ExtendedKeyUsageOID.SERVER_AUTH]


@pytest.mark.parametrize(("client", "user", "groups"), [
    ("admin", "kubernetes-admin", ["system:masters"]),
    ("controller-manager", "system:kube-controller-manager", []),
    ("scheduler", "system:kube-scheduler", []),
    ("kubelet-client", "kube-apiserver-kubelet-client", ["system:masters"]),
    ("node-agent", "winstor:node-agent", ["system:masters"]),
    ("csi-controller", "winstor:ebs-csi-controller", ["system:masters"]),
])
def test_client_certificates_name_their_identity(cluster_pki: pki.ClusterPki, client: str,
                                                 user: str, groups: list[str]) -> None:
    """The API server reads CN as the user and O as the groups: the default RBAC grants
    the controller-manager and the scheduler their rights by exactly these names."""
    cert = _cert(cluster_pki.client(client).cert)
    assert (_cn(cert), _groups(cert)) == (user, groups)
    assert _eku(cert) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    with pytest.raises(x509.ExtensionNotFound):
        cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)


def test_every_certificate_is_signed_by_the_cluster_ca_and_matches_its_key(
        cluster_pki: pki.ClusterPki) -> None:
    ca = _cert(cluster_pki.ca.cert)
    pairs = [cluster_pki.apiserver, cluster_pki.stream, *cluster_pki.clients.values()]
    for pair in pairs:
        cert = _cert(pair.cert)
        cert.verify_directly_issued_by(ca)
        key = serialization.load_pem_private_key(pair.key.read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        assert key.public_key().public_numbers() == cert.public_key().public_numbers()
        assert pair.key.stat().st_mode & 0o777 == 0o600, pair.key


def test_the_service_account_key_pair_is_rsa_and_private(cluster_pki: pki.ClusterPki) -> None:
    key = serialization.load_pem_private_key(cluster_pki.sa_key.read_bytes(), None)
    pub = serialization.load_pem_public_key(cluster_pki.sa_pub.read_bytes())
    assert isinstance(key, rsa.RSAPrivateKey) and isinstance(pub, rsa.RSAPublicKey)
    assert key.public_key().public_numbers() == pub.public_numbers()
    assert cluster_pki.sa_key.stat().st_mode & 0o777 == 0o600


def test_two_clusters_do_not_trust_each_other(tmp_path: Path) -> None:
    one, two = pki.generate(tmp_path / "1", "cp-1"), pki.generate(tmp_path / "2", "cp-2")
    with pytest.raises(ValueError):
        _cert(two.client("admin").cert).verify_directly_issued_by(_cert(one.ca.cert))


def test_scenarios_are_routed_to_their_clusters() -> None:
    assert parse_scenarios(["a", "cp-2:b", "1:c"], 2) == {"cp-1": ["a", "c"], "cp-2": ["a", "b"]}
    for bad in ("cp-3:a", "3:a", "x:a", "cp-1:"):
        with pytest.raises(ValueError):
            parse_scenarios([bad], 2)


# ----------------------------------------------------------------- the real binaries


def _built() -> bool:
    try:
        bin_dir = build.cache_dir(build.default_module_dir()) / "bin"
    except build.BuildError:
        return False
    return all(os.access(bin_dir / c.binary, os.X_OK) for c in build.COMPONENTS)


needs_binaries = pytest.mark.skipif(
    not _built(), reason="the controlplane binaries are not built (about 20 min on 2 cores, "
                         "once): python -m winstor.targets.controlplane.build")


def _processes_mentioning(text: str) -> list[int]:
    """Pids whose command line contains `text` (this test process left out)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            argv = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if text.encode() in argv:
            found.append(int(entry.name))
    return found


def _kubectl(kubeconfig: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["kubectl", f"--kubeconfig={kubeconfig}", *args], capture_output=True,
                          text=True, timeout=60)


@needs_binaries
def test_start_serves_the_real_release_and_stop_leaves_nothing() -> None:
    lines: list[str] = []
    cp = ControlPlane(clusters=1, nodes=False, progress=lines.append)
    cp.start()
    workdir = cp.workdir
    assert workdir is not None
    try:
        assert cp.contexts == ["cp-1"] and cp.kubeconfig.stat().st_mode & 0o777 == 0o600
        assert any("kube-apiserver ready" in line for line in lines), lines
        if subprocess.run(["which", "kubectl"], capture_output=True).returncode == 0:
            out = _kubectl(cp.kubeconfig, "--context=cp-1", "get", "--raw", "/version")
            assert out.returncode == 0, out.stderr
            version = json.loads(out.stdout)
            assert version["gitVersion"] == build.release_of(build.default_module_dir())
            assert version["gitVersion"] == "v1.35.4" and "gitCommit" in version
            ns = _kubectl(cp.kubeconfig, "--context=cp-1", "get", "namespace", "kube-system")
            assert ns.returncode == 0, ns.stderr
        # The controller-manager acts: it makes every namespace's default ServiceAccount.
        from kubernetes import client, config
        api = client.CoreV1Api(config.new_client_from_config(str(cp.kubeconfig),
                                                             context="cp-1"))

        def default_account() -> bool:
            try:
                return bool(api.read_namespaced_service_account("default", "default"))
            except client.ApiException:
                return False
        eventually(default_account, timeout=60)
        pids = [comp.pid for c in cp.clusters for comp in c.components.values()]
        assert len(pids) == 4 and _processes_mentioning(str(workdir))
    finally:
        cp.stop()
    assert not workdir.exists()
    assert _processes_mentioning(str(workdir)) == []
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text()


@needs_binaries
def test_a_component_that_dies_at_start_is_one_line_with_its_log(tmp_path: Path) -> None:
    """The node agent stands in for any component: it prints and exits 3. The start
    stops everything it had started, and the line names cluster, component, code, log."""
    agent = [sys.executable, "-c", "import sys; print('agent: cannot seed moto', flush=True); "
                                   "print('second line', flush=True); sys.exit(3)"]
    cp = ControlPlane(clusters=1, progress=lambda _: None, agent_command=agent,
                      workdir=tmp_path / "cp")
    with pytest.raises(ControlPlaneError) as caught:
        cp.start()
    line = str(caught.value)
    assert "\n" not in line
    assert line.startswith("cp-1: node-agent exited with code 3: agent: cannot seed moto | "
                           "second line"), line
    assert f"(log {tmp_path / 'cp' / 'cp-1' / 'logs' / 'node-agent.log'})" in line
    assert _processes_mentioning(str(tmp_path / "cp")) == []


@needs_binaries
def test_a_killed_owner_leaves_no_process_and_no_directory(tmp_path: Path) -> None:
    """pytest killed with SIGKILL: the supervisor sees its owner gone, stops the clusters
    in order and removes its directory."""
    script = tmp_path / "owner.py"
    script.write_text(
        "import sys, time\n"
        "from winstor.targets.controlplane.process import ControlPlaneProcess\n"
        "p = ControlPlaneProcess(clusters=1, nodes=False)\n"
        "p.start(progress=lambda _: None)\n"
        "print(p.workdir, flush=True)\n"
        "time.sleep(600)\n")
    owner = subprocess.Popen([sys.executable, str(script)], cwd=ROOT, stdout=subprocess.PIPE,
                             text=True)
    try:
        assert owner.stdout is not None
        workdir = owner.stdout.readline().strip()
        assert workdir and len(_processes_mentioning(workdir)) == 5  # supervisor + 4
    finally:
        owner.kill()
        owner.wait()
    eventually(lambda: not _processes_mentioning(workdir), timeout=60)
    eventually(lambda: not Path(workdir).exists(), timeout=10)


def test_the_supervisors_error_line_is_the_launch_error(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """What pytest and `winstor controlplane up` say when the supervisor fails: its one
    error line, progress relayed before it, and no pointer into a directory that is gone."""
    from winstor.targets.embedded import LaunchError

    workdir = tmp_path / "w"
    fake = ("import sys; print('controlplane: etcd and kube-apiserver ready on cp-1 (3.0 s)'); "
            "print('winstor controlplane: error: cp-1: kube-scheduler exited with code 1: "
            f"bad flag (log {workdir}/cp-1/logs/kube-scheduler.log)', file=sys.stderr); "
            "sys.exit(1)")
    monkeypatch.setattr(ControlPlaneProcess, "command",
                        lambda self: [sys.executable, "-c", fake])
    monkeypatch.setattr(build, "ensure_built", lambda progress=None: None)
    import winstor.targets.controlplane.process as process
    monkeypatch.setattr(process, "ensure_built", lambda progress=None: None)
    said: list[str] = []
    cp = ControlPlaneProcess(clusters=1, workdir=workdir, owned=True)
    with pytest.raises(LaunchError) as caught:
        cp.start(timeout=60, progress=said.append)
    assert str(caught.value) == "cp-1: kube-scheduler exited with code 1: bad flag"
    assert said == ["controlplane: etcd and kube-apiserver ready on cp-1 (3.0 s)"]
    assert not workdir.exists()


# ------------------------------------------------------------ winstor controlplane ...


def _winstor(args: list[str], env: dict[str, str], timeout: float = 300
             ) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "winstor", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout, env={**os.environ, **env})


@pytest.fixture
def cp_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {"WINSTOR_CONTROLPLANE_STATE": str(tmp_path / "state")}
    yield env
    _winstor(["controlplane", "down"], env)  # whatever a failed assertion left


@pytest.mark.parametrize(("args", "says"), [
    (["--clusters", "0"], "must be at least 1"),
    (["--clusters", "17"], "at most 16"),
    (["--scenario", "cp-3:x", "--clusters", "2"], "no cluster 'cp-3'"),
    (["--time-scale", "nan"], "not a finite number"),
    (["--timeout", "-1"], "positive number of seconds"),
])
def test_bad_input_to_up_is_one_line_and_exit_2(cp_env: dict[str, str], args: list[str],
                                               says: str) -> None:
    up = _winstor(["controlplane", "up", *args], cp_env)
    assert up.returncode == 2 and says in up.stderr, up.stderr
    assert "Traceback" not in up.stderr
    assert not Path(cp_env["WINSTOR_CONTROLPLANE_STATE"]).exists()


def test_status_and_down_without_a_control_plane(cp_env: dict[str, str]) -> None:
    status = _winstor(["controlplane", "status"], cp_env)
    assert status.returncode == 1 and "no control plane recorded" in status.stdout
    down = _winstor(["controlplane", "down"], cp_env)
    assert down.returncode == 0 and "nothing to remove" in down.stdout
    bare = _winstor(["controlplane"], cp_env)
    assert bare.returncode == 2 and "up" in bare.stdout and "down" in bare.stdout


@needs_binaries
def test_up_status_pytest_down_round_trip(cp_env: dict[str, str]) -> None:
    up = _winstor(["controlplane", "up", "--clusters", "1", "--no-nodes"], cp_env)
    assert up.returncode == 0, up.stderr
    assert "ready in" in up.stdout and "contexts cp-1" in up.stdout
    state = Path(cp_env["WINSTOR_CONTROLPLANE_STATE"])
    settings = json.loads((state / "settings.json").read_text())
    kubeconfig, pid = Path(settings["kubeconfig"]), settings["pid"]
    assert Path(f"/proc/{pid}").exists()

    status = _winstor(["controlplane", "status"], cp_env)
    assert status.returncode == 0, status.stdout
    assert "supervisor pid" in status.stdout and "4/4 components running" in status.stdout

    again = _winstor(["controlplane", "up"], cp_env)
    assert again.returncode == 2 and "controlplane down` first" in again.stderr

    if subprocess.run(["which", "kubectl"], capture_output=True).returncode == 0:
        version = _kubectl(kubeconfig, "get", "--raw", "/version")
        assert version.returncode == 0 and '"gitVersion": "v1.35.4"' in version.stdout

    # A plain pytest now follows it: the cp-1 context, the controlplane profile.
    header = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-k",
                             "NODES-READY", "-p", "no:cacheprovider"], cwd=ROOT,
                            capture_output=True, text=True, timeout=120,
                            env={**os.environ, **cp_env})
    assert "profile controlplane" in header.stdout, header.stdout + header.stderr
    assert "[cp-1:NODES-READY-01]" in header.stdout and "sim-1" not in header.stdout
    assert "winstor controlplane up" in header.stdout and "not EKS" in header.stdout

    workdir = settings["workdir"]
    down = _winstor(["controlplane", "down"], cp_env)
    assert down.returncode == 0 and "stopped the control plane" in down.stdout, down.stderr
    assert not state.exists()
    assert _processes_mentioning(workdir) == []
    assert _winstor(["controlplane", "status"], cp_env).returncode == 1


@needs_binaries
def test_a_dead_control_plane_is_said_by_status_and_pytest(cp_env: dict[str, str]) -> None:
    up = _winstor(["controlplane", "up", "--clusters", "1", "--no-nodes"], cp_env)
    assert up.returncode == 0, up.stderr
    settings = json.loads(
        (Path(cp_env["WINSTOR_CONTROLPLANE_STATE"]) / "settings.json").read_text())
    scheduler = settings["info"]["clusters"]["cp-1"]["pids"]["kube-scheduler"]
    os.kill(scheduler, signal.SIGKILL)
    eventually(lambda: not Path(f"/proc/{scheduler}").exists() or "Z" in Path(
        f"/proc/{scheduler}/stat").read_text().split(")")[1][:3], timeout=10)
    status = _winstor(["controlplane", "status"], cp_env)
    assert status.returncode == 1 and "stopped: kube-scheduler" in status.stdout, status.stdout

    os.kill(settings["pid"], signal.SIGKILL)  # the supervisor: its children follow
    eventually(lambda: not _processes_mentioning(settings["workdir"]), timeout=30)
    run = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q",
                          "-p", "no:cacheprovider"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, env={**os.environ, **cp_env})
    assert run.returncode != 0 and "is not running" in run.stdout + run.stderr
    assert "winstor controlplane down" in run.stdout + run.stderr


# -------------------------------------------------------- the profile, without a cluster


def test_the_profile_names_its_clusters_and_where_verdicts_are_reached() -> None:
    run = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "--profile",
                          "controlplane", "-k", "NODES-READY", "-p", "no:cacheprovider"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "[cp-1:NODES-READY-01]" in run.stdout and "[cp-2:NODES-READY-01]" in run.stdout
    assert "profile controlplane, control plane (started on first use)" in run.stdout
    assert "real kube-apiserver" in run.stdout and "not EKS" in run.stdout
    one = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "--profile",
                          "controlplane", "--sim-clusters", "1", "--sim-scenario",
                          "cp-1:ebs-attach-fails", "-k", "NODES-READY", "-p",
                          "no:cacheprovider"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert one.returncode == 0 and "[cp-1:NODES-READY-01]" in one.stdout, one.stdout
    bad = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "--profile",
                          "controlplane", "--sim-scenario", "cp-3:ebs-attach-fails",
                          "-p", "no:cacheprovider"], cwd=ROOT, capture_output=True,
                         text=True, timeout=120)
    assert bad.returncode != 0 and "no cluster 'cp-3' in this run" in bad.stderr


def test_facts_carry_the_servers_version_and_where_verdicts_were_reached() -> None:
    from types import SimpleNamespace

    from winstor.reports import facts
    from winstor.targets import profiles

    version = {"major": "1", "minor": "35", "gitVersion": "v1.35.4",
               "gitCommit": "$Format:%H$", "gitTreeState": "clean",
               "buildDate": "1970-01-01T00:00:00Z", "goVersion": "go1.26.8",
               "platform": "linux/amd64"}
    cluster = SimpleNamespace(platform=profiles.CONTROLPLANE,
                              api=SimpleNamespace(version=lambda: version))
    out: dict = {"facts": {}}
    problems: list[str] = []
    facts._server_facts(cluster, out, problems)
    assert out["facts"]["server"] == {k: version[k] for k in facts.VERSION_KEYS}
    assert "real kube-apiserver" in out["facts"]["target"] and "not EKS" in out["facts"][
        "target"]
    assert problems == []
    eks: dict = {"facts": {}}
    facts._server_facts(SimpleNamespace(platform=profiles.EKS,
                                        api=SimpleNamespace(version=lambda: version)), eks, [])
    assert "target" not in eks["facts"] and eks["facts"]["server"]["gitVersion"] == "v1.35.4"

    def broken() -> dict:
        raise ConnectionError("refused")
    facts._server_facts(SimpleNamespace(platform=profiles.EKS,
                                        api=SimpleNamespace(version=broken)), eks, problems)
    assert problems == ["reading /version failed: refused"]


# ------------------------------------------------- the catalog on broken clusters


def _agent_present() -> bool:
    import importlib.util

    return importlib.util.find_spec("winstor.sim.agent") is not None


needs_agent = pytest.mark.skipif(not _agent_present(),
                                 reason="the node agent (winstor.sim.agent) is not there")


@needs_binaries
@needs_agent
@pytest.mark.parametrize("pair", [("intree-without-csi-driver", "ebs-attach-fails"),
                                  # cp-1 is the seed's picture (Windows Server 2019), as
                                  # the table's build phrases expect; cp-2 runs 2022.
                                  ("wrong-windows-build", "image-pull-fails")])
def test_broken_clusters_fail_what_they_break_on_this_profile(pair: tuple[str, str],
                                                              tmp_path: Path) -> None:
    """The embedded cluster's scenario table (test_scenarios.EXPECTED) holds against the
    real control plane too: each scenario fails exactly its checks, naming the cause -
    the CSI driver missing (no controller started, no CSIDriver), EC2 refusing
    AttachVolume (which the real attacher reports), the image pull failing, a build the
    image does not match. The checks the profile lacks skip instead."""
    from helpers import run_suite
    from test_scenarios import EXPECTED
    from winstor.targets import profiles

    result = run_suite(["--profile", "controlplane", "--sim-clusters", "2",
                        "--sim-scenario", f"cp-1:{pair[0]}", "--sim-scenario",
                        f"cp-2:{pair[1]}"], tmp_path, timeout=900)
    lacking = {"SHARE-AWS-01", "SMB-CSI-01", "SMB-CSI-02", "SMB-CSI-03"}
    assert set(profiles.CONTROLPLANE.lacks) == {"smb_csi", "shares"}
    for cluster, scenario in zip(("cp-1", "cp-2"), pair, strict=True):
        outcomes = {k.split(":", 1)[1]: v for k, v in result.outcomes.items()
                    if k.startswith(f"{cluster}:")}
        messages = {k.split(":", 1)[1]: v for k, v in result.messages.items()
                    if k.startswith(f"{cluster}:")}
        assert outcomes, result.output[-3000:]
        expected = {c: p for c, p in EXPECTED[scenario].items() if c not in lacking}
        failed = {c for c, o in outcomes.items() if o == "failed"}
        assert failed == set(expected), (
            f"{cluster} ({scenario}): unexpected failures {sorted(failed - set(expected))}; "
            f"missing failures {sorted(set(expected) - failed)}\n{result.output[-4000:]}")
        for check, phrase in expected.items():
            assert phrase in messages[check], f"{cluster} {check}: {messages[check][:1500]}"
        assert {c for c, o in outcomes.items() if o == "skipped"} == lacking
        assert all("profile controlplane: " in messages[c] for c in lacking)
    assert result.code == 1
