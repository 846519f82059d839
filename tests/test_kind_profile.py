"""The kind profile without Docker: its config, its manifests, its probes, and
`winstor kind up|down` driven through stand-in `kind` and `docker` executables.

kind cannot run here, so `winstor kind up` is exercised with fake `kind` and
`docker` programs on PATH that record how they were called (and, for `create
cluster`, write a kubeconfig as kind does). Everything else `up` does is real:
the moto server it starts, the FSx file system in it (checked with plain
boto3), the node directory, the settings a later `pytest` follows.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from helpers import ROOT, eventually, run_suite
from winstor.cli.main import build_parser
from winstor.cluster import checkkit, execs, manifests, probes
from winstor.targets import kindconfig, profiles

kubernetes_validate = pytest.importorskip("kubernetes_validate")

FAKE_KIND = r'''#!{python}
import json, os, sys
from pathlib import Path
args = sys.argv[1:]
with open(os.environ["FAKE_TOOL_LOG"], "a") as f:
    f.write(json.dumps(["kind", *args]) + "\n")
if args[:2] == ["create", "cluster"]:
    if os.environ.get("FAKE_KIND_FAIL"):
        print("ERROR: failed to create cluster: node(s) already exist", file=sys.stderr)
        sys.exit(1)
    name = args[args.index("--name") + 1]
    config = yaml_text = Path(args[args.index("--config") + 1]).read_text()
    Path(os.environ["FAKE_TOOL_LOG"] + ".config").write_text(config)
    Path(args[args.index("--kubeconfig") + 1]).write_text(json.dumps({{
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{{"name": "kind-" + name, "cluster": {{"server": "https://127.0.0.1:9"}}}}],
        "users": [{{"name": "kind-" + name, "user": {{"token": "t"}}}}],
        "contexts": [{{"name": "kind-" + name,
                      "context": {{"cluster": "kind-" + name, "user": "kind-" + name}}}}],
        "current-context": "kind-" + name}}))
'''

FAKE_DOCKER = r'''#!{python}
import json, os, sys
with open(os.environ["FAKE_TOOL_LOG"], "a") as f:
    f.write(json.dumps(["docker", *sys.argv[1:]]) + "\n")
if os.environ.get("FAKE_DOCKER_DOWN"):
    print("Cannot connect to the Docker daemon at unix:///var/run/docker.sock. "
          "Is the docker daemon running?", file=sys.stderr)
    sys.exit(1)
print("27.3.1")
'''


# --------------------------------------------------------------------- kind config


def test_kind_config_follows_kinds_v1alpha4_format() -> None:
    doc = kindconfig.load()
    assert kindconfig.problems(doc) == []
    assert doc["apiVersion"] == "kind.x-k8s.io/v1alpha4" and doc["kind"] == "Cluster"
    roles = [n.get("role") for n in doc["nodes"]]
    assert roles == ["control-plane", "worker"]
    worker = doc["nodes"][1]
    assert worker["labels"] == {profiles.STAND_IN_LABEL: "true"}
    assert [m["containerPath"] for m in worker["extraMounts"]] == [profiles.NODE_DIR]


@pytest.mark.parametrize(("change", "expected"), [
    (lambda d: d.update(nodez=[]), "cluster.nodez: unknown field"),
    (lambda d: d["nodes"][1].update(role="agent"), "role: 'agent' is not one of"),
    (lambda d: d["nodes"][1]["labels"].update({profiles.STAND_IN_LABEL: True}),
     "label values are strings"),
    (lambda d: d["nodes"][1]["extraMounts"][0].update(hostpath="/x"), "unknown field"),
    (lambda d: d["nodes"][1]["extraMounts"][0].update(propagation="Shared"), "not one of"),
    (lambda d: d.update(apiVersion="kind.x-k8s.io/v1alpha3"), "must be kind.x-k8s.io/v1alpha4"),
    (lambda d: d["nodes"][1].pop("labels"), "no node labelled winstor.io/windows-stand-in"),
    (lambda d: d["nodes"][1].pop("extraMounts"), "containerPath /winstor"),
])
def test_kind_config_checker_catches_mistakes(change: Any, expected: str) -> None:
    doc = kindconfig.load()
    change(doc)
    found = kindconfig.problems(doc)
    assert any(expected in p for p in found), found


def test_rendered_config_points_the_node_directory_at_the_host(tmp_path: Path) -> None:
    out = kindconfig.render(kindconfig.load(), name="laptop", node_dir=tmp_path / "node")
    assert out["name"] == "laptop"
    assert out["nodes"][1]["extraMounts"][0]["hostPath"] == str((tmp_path / "node").resolve())
    assert kindconfig.problems(out) == []


# ------------------------------------------------------------------------ manifests


def _kind_manifests() -> list[dict]:
    labels = {"app.kubernetes.io/managed-by": "winstor", "winstor.io/run": "r1"}
    image = profiles.KIND.stand_in_image or ""
    return [
        manifests.deployment("winstor-r1", labels, image, "10.0.17763", profiles.KIND),
        manifests.fsx_pod("winstor-r1-host", labels, image, "G:\\Directory\\app-state",
                          build="10.0.17763", profile=profiles.KIND),
        manifests.node_probe_pod("winstor-r1-host", labels, "winstor-worker", "probe-0",
                                 profiles.KIND),
    ]


@pytest.mark.parametrize("version", ["1.30", "1.31"])
def test_kind_manifests_validate_against_the_official_schemas(version: str) -> None:
    for obj in _kind_manifests():
        kubernetes_validate.validate(obj, version, strict=True)


def test_kind_manifests_carry_no_windows_assumptions() -> None:
    text = json.dumps(_kind_manifests())
    for windows_only in ("powershell.exe", "servercore", "kubernetes.io/os\": \"windows",
                         "windows-build", "hostProcess", "C:\\\\", "G:\\\\"):
        assert windows_only not in text, windows_only
    dep, fsx, node_probe = _kind_manifests()
    spec = dep["spec"]["template"]["spec"]
    assert spec["nodeSelector"] == {profiles.STAND_IN_LABEL: "true"}
    assert spec["containers"][0]["volumeMounts"][0]["mountPath"] == "/data"
    assert spec["containers"][0]["command"][0] == "pwsh"
    assert fsx["spec"]["volumes"][0]["hostPath"]["path"] == "/winstor/share/Directory/app-state"
    assert fsx["spec"]["containers"][0]["volumeMounts"][0]["mountPath"] == "/dotnetapp/app-state"
    assert node_probe["spec"]["nodeSelector"]["kubernetes.io/hostname"] == "winstor-worker"
    assert node_probe["spec"]["volumes"][0]["hostPath"]["path"] == profiles.NODE_DIR


def test_eks_workload_keeps_what_the_seed_specifies() -> None:
    """The eks profile's Deployment against the seed as a person applies it
    (tests/data/seed.yaml): image, pull policy, C:\\data on the claim and the node
    selector are the seed's; names and the keep-alive command (servercore's cmd.exe
    exits at once without a console) are winstor's own. Another build moves the image
    and the build label together."""
    seed = next(d for d in yaml.safe_load_all((ROOT / "tests/data/seed.yaml").read_text())
                if d and d["kind"] == "Deployment")
    seed_pod = seed["spec"]["template"]["spec"]
    pod = manifests.deployment("ns", {"winstor.io/run": "r1"},
                               "mcr.microsoft.com/windows/servercore:ltsc2019",
                               "10.0.17763")["spec"]["template"]["spec"]
    (want,), (got,) = seed_pod["containers"], pod["containers"]
    assert (got["image"], got["imagePullPolicy"]) == (want["image"], want["imagePullPolicy"])
    assert [m["mountPath"] for m in got["volumeMounts"]] == \
        [m["mountPath"] for m in want["volumeMounts"]] == ["C:\\data"]

    def claims(spec: dict) -> list[str]:
        return [v["persistentVolumeClaim"]["claimName"] for v in spec["volumes"]]
    assert claims(pod) == claims(seed_pod) == ["ebs-windows-pv-claim"]
    assert pod["nodeSelector"] == seed_pod["nodeSelector"]
    ltsc2022 = manifests.deployment("ns", {}, "mcr.microsoft.com/windows/servercore:ltsc2022",
                                    "10.0.20348")["spec"]["template"]["spec"]
    assert ltsc2022["containers"][0]["image"] == "mcr.microsoft.com/windows/servercore:ltsc2022"
    assert ltsc2022["nodeSelector"]["node.kubernetes.io/windows-build"] == "10.0.20348"


def test_profile_maps_the_seed_paths() -> None:
    kind = profiles.KIND
    assert kind.path("C:\\data") == "/data"
    assert kind.path("C:\\dotnetapp\\app-state\\x.txt") == "/dotnetapp/app-state/x.txt"
    assert kind.path("G:\\Directory\\app-state") == "/winstor/share/Directory/app-state"
    assert kind.path("g:\\") == "/winstor/share"
    assert kind.path("relative\\name") == "relative\\name"
    assert profiles.EKS.path("C:\\data") == "C:\\data"
    assert kind.probe_params({"path": "C:\\data\\m.txt", "count": 3}) == {
        "path": "/data/m.txt", "count": 3}


# --------------------------------------------------------------------------- probes


class _FakeCluster:
    def __init__(self, profile: profiles.Profile) -> None:
        self.platform = profile
        self.api = object()

        class _T:
            exec = 5.0
        self.timeouts = _T()


@pytest.mark.parametrize("name", ["smb-mappings", "write-file", "read-file", "list-dir"])
def test_probe_files_sent_are_byte_identical_across_profiles(
        name: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """What each profile actually sends (captured at the exec transport): the same
    probe file, byte for byte; kind adds only the stand-in library before it."""
    sent: list[list[str]] = []

    def fake_run(api: Any, namespace: str, pod: str, argv: list[str], **kw: Any) -> Any:
        sent.append(argv)
        return execs.ExecOutput(json.dumps({"probe": name, "ok": True, "data": {}}) + "\n",
                                "", 0, 0.0)

    monkeypatch.setattr(execs, "run", fake_run)
    params = {"path": "C:\\dotnetapp\\app-state\\f.txt", "content": "x"}
    for profile in (profiles.EKS, profiles.KIND):
        checkkit.probe(_FakeCluster(profile), "ns", "pod", name, params)  # type: ignore[arg-type]
    argv_of = dict(zip(("eks", "kind"), sent, strict=True))
    scripts = {k: base64.b64decode(v[-1]).decode("utf-16-le") for k, v in argv_of.items()}
    assert argv_of["eks"][0] == "powershell.exe" and argv_of["kind"][0] == "pwsh"
    file_text = (probes.PROBES_DIR / f"{name}.ps1").read_bytes().decode("utf-8")
    body = file_text.split("\n", 1)[1]
    stand_in = probes.lib("stand-in")
    for profile, script in scripts.items():
        assert script.startswith(file_text.split("\n", 1)[0] + "\n")
        assert script.endswith(body)
        assert (stand_in in script) == (profile == "kind")
    assert scripts["kind"].replace(stand_in, "").replace("/dotnetapp/app-state/f.txt", "X") == \
        scripts["eks"].replace("C:\\\\dotnetapp\\\\app-state\\\\f.txt", "X")


def test_the_stand_in_library_is_only_functions() -> None:
    text = probes.lib("stand-in")
    code = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
    assert code[0].startswith("function Get-SmbGlobalMapping")
    assert profiles.MAPPINGS_FILE in text


# ------------------------------------------------------------- winstor kind up/down


@pytest.fixture
def fake_tools(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in (("kind", FAKE_KIND), ("docker", FAKE_DOCKER)):
        path = bin_dir / name
        path.write_text(text.format(python=sys.executable))
        path.chmod(0o755)
    return {"PATH": f"{bin_dir}{os.pathsep}{Path(sys.executable).parent}{os.pathsep}/usr/bin:/bin",
            "WINSTOR_KIND_STATE": str(tmp_path / "state"),
            "FAKE_TOOL_LOG": str(tmp_path / "tools.log")}


def _winstor(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "winstor", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=120, env={**os.environ, **env})


def _calls(env: dict[str, str]) -> list[list[str]]:
    log = Path(env["FAKE_TOOL_LOG"])
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def test_kind_up_then_pytest_then_down(fake_tools: dict[str, str], tmp_path: Path) -> None:
    up = _winstor(["kind", "up", "--name", "laptop"], fake_tools)
    assert up.returncode == 0, up.stderr
    state = Path(fake_tools["WINSTOR_KIND_STATE"])
    settings = json.loads((state / "settings.json").read_text())
    assert settings["context"] == "kind-laptop"
    create = [c for c in _calls(fake_tools) if c[:3] == ["kind", "create", "cluster"]]
    assert len(create) == 1 and create[0][create[0].index("--name") + 1] == "laptop"
    rendered = yaml.safe_load(Path(fake_tools["FAKE_TOOL_LOG"] + ".config").read_text())
    assert kindconfig.problems(rendered) == []
    node_dir = Path(settings["node_dir"])
    assert rendered["nodes"][1]["extraMounts"][0]["hostPath"] == str(node_dir)
    assert (node_dir / "share" / "Directory" / "app-state").is_dir()

    # The FSx file system exists in the moto server `up` left running, and the
    # mapping record names it.
    env = settings["aws_env"]
    fsx = boto3.client("fsx", endpoint_url=env["AWS_ENDPOINT_URL"],
                       region_name=env["AWS_DEFAULT_REGION"], aws_access_key_id="testing",
                       aws_secret_access_key="testing")
    systems = fsx.describe_file_systems()["FileSystems"]
    assert [s["FileSystemType"] for s in systems] == ["WINDOWS"]
    records = json.loads((node_dir / "smb-global-mappings.json").read_text())
    assert records == [{"LocalPath": "G:", "RemotePath": f"\\\\{systems[0]['DNSName']}\\share",
                        "Status": 0}]

    # A plain pytest now follows the settings: the kind context, the kind profile.
    run = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "smb",
                          "-p", "no:cacheprovider"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120, env={**os.environ, **fake_tools})
    assert "[kind-laptop:SMB-MAP-01]" in run.stdout, run.stdout + run.stderr
    assert "sim-1" not in run.stdout
    header = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-m", "smb",
                             "-p", "no:cacheprovider"], cwd=ROOT, capture_output=True,
                            text=True, timeout=120, env={**os.environ, **fake_tools})
    assert "profile kind" in header.stdout and "winstor kind up" in header.stdout

    status = _winstor(["kind", "status"], fake_tools)
    assert status.returncode == 0 and "moto running" in status.stdout

    moto_pid = settings["moto_pid"]
    down = _winstor(["kind", "down"], fake_tools)
    assert down.returncode == 0, down.stderr
    assert ["kind", "delete", "cluster", "--name", "laptop", "--kubeconfig",
            settings["kubeconfig"]] in _calls(fake_tools)
    assert not state.exists()
    eventually(lambda: not Path(f"/proc/{moto_pid}").exists(), timeout=10)
    again = _winstor(["kind", "down"], fake_tools)
    assert again.returncode == 0 and "nothing to remove" in again.stdout


def test_failed_kind_create_leaves_nothing(fake_tools: dict[str, str]) -> None:
    env = {**fake_tools, "FAKE_KIND_FAIL": "1"}
    up = _winstor(["kind", "up"], env)
    assert up.returncode == 1
    assert "kind create cluster` failed" in up.stderr
    assert "Traceback" not in up.stderr
    assert not Path(fake_tools["WINSTOR_KIND_STATE"]).exists()
    assert ["kind", "delete", "cluster", "--name", "winstor"] in _calls(env)
    moto_lines = [line for line in up.stdout.splitlines() if "in moto at" in line]
    port = int(re.search(r":(\d+)$", moto_lines[0]).group(1))  # type: ignore[union-attr]
    eventually(lambda: not _listening(port), timeout=10)


def _listening(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
    except OSError:
        return False
    return True


def test_second_kind_up_refuses(fake_tools: dict[str, str]) -> None:
    assert _winstor(["kind", "up"], fake_tools).returncode == 0
    try:
        again = _winstor(["kind", "up"], fake_tools)
        assert again.returncode == 2
        assert "winstor kind down` first" in again.stderr
    finally:
        _winstor(["kind", "down"], fake_tools)


@pytest.mark.parametrize(("present", "expected"), [
    ((), "neither kind nor Docker is installed"),
    (("docker",), "kind is not installed: install kind: https://kind.sigs.k8s.io"),
    (("kind",), "Docker is not installed: install Docker Engine"),
    (("kind", "docker", "down"), "Docker is installed but its daemon does not answer"),
])
def test_kind_up_without_prerequisites_says_what_is_missing(
        present: tuple[str, ...], expected: str, fake_tools: dict[str, str],
        tmp_path: Path) -> None:
    bin_dir = tmp_path / "only"
    bin_dir.mkdir()
    for tool in ("kind", "docker"):
        if tool in present:
            (bin_dir / tool).symlink_to(tmp_path / "bin" / tool)
    env = {**fake_tools, "PATH": str(bin_dir)}
    if "down" in present:
        env["FAKE_DOCKER_DOWN"] = "1"
    up = _winstor(["kind", "up"], env)
    assert up.returncode == 2
    lines = up.stderr.strip().splitlines()
    assert len(lines) == 1 and expected in lines[0], up.stderr
    assert not Path(fake_tools["WINSTOR_KIND_STATE"]).exists()
    assert not any(c[:2] == ["kind", "create"] for c in _calls(env))


# ------------------------------------------------------------------------- README


def _readme_commands() -> list[str]:
    text = (ROOT / "kind-config" / "README.md").read_text()
    blocks = re.findall(r"```sh\n(.*?)```", text, flags=re.S)
    return [line.strip() for block in blocks for line in block.splitlines()
            if line.strip() and not line.strip().startswith("#")]


def test_every_readme_command_exists_and_its_options_parse() -> None:
    commands = _readme_commands()
    assert any(c.startswith("winstor kind up") for c in commands)
    assert any(c.startswith("pytest") for c in commands)
    parser = build_parser()
    for line in commands:
        argv = shlex.split(line)
        if argv[0] == "winstor":
            try:
                args = parser.parse_args(argv[1:])
            except SystemExit as exc:  # argparse's way of refusing
                pytest.fail(f"README command {line!r} does not parse ({exc})")
            assert getattr(args, "func", None) is not None, line
        elif argv[0] == "pytest":
            run = subprocess.run([sys.executable, "-m", "pytest", *argv[1:], "--collect-only",
                                  "-q", "-p", "no:cacheprovider"], cwd=ROOT, text=True,
                                 capture_output=True, timeout=120)
            assert run.returncode == 0, f"{line}: {run.stdout[-800:]}{run.stderr[-800:]}"
        elif argv[:3] == ["pip", "install", "-e"]:
            assert (ROOT / "pyproject.toml").is_file()
        else:
            pytest.fail(f"README command {line!r}: not a command this test knows to check")


def test_kind_up_options_documented_in_readme_exist() -> None:
    text = (ROOT / "kind-config" / "README.md").read_text()
    documented = set(re.findall(r"`(--[a-z-]+)`", text.split("## Steps", 1)[1]))
    parser = build_parser()
    for option in documented - {"--profile"}:
        # A value every option takes: --wait must read as a Go duration.
        parser.parse_args(["kind", "up", option, "30s"])


# ------------------------------------------------------------- against the sim


def test_smb_checks_pass_on_the_kind_flavour(tmp_path: Path) -> None:
    """CI's stand-in for a kind cluster: the embedded cluster's kind flavour."""
    result = run_suite(["-m", "smb", "--profile", "kind", "--sim-clusters", "1"], tmp_path)
    assert result.code == 0, result.output[-3000:]
    assert result.outcomes == {**{f"sim-1:{c}": "passed" for c in (
        "SMB-MAP-01", "SMB-POD-01", "SMB-SHARED-01", "FSX-AWS-01", "SMB-PSA-01")}, **{
        f"sim-1:{c}": "skipped" for c in (
            "SMB-CSI-01", "SMB-CSI-02", "SMB-CSI-03", "SHARE-AWS-01")}}, result.output
    assert "stand-ins are Linux" in result.messages["sim-1:SMB-CSI-02"]
    assert "no SMB share configured" in result.messages["sim-1:SHARE-AWS-01"]


def test_kind_flavour_skips_windows_only_checks_with_the_reason(tmp_path: Path) -> None:
    result = run_suite(["--profile", "kind", "--sim-clusters", "1", "-m", "not smb"], tmp_path)
    assert result.code == 0, result.output[-3000:]
    assert set(result.outcomes.values()) == {"skipped"}
    assert "csi-proxy is a Windows node component" in result.messages["sim-1:CSIPROXY-SVC-01"]
    assert "kind has no EBS" in result.messages["sim-1:EBS-PERSIST-01"]


def test_smb_mapping_missing_fails_on_the_kind_flavour(tmp_path: Path) -> None:
    result = run_suite(["-m", "smb", "--profile", "kind", "--sim-clusters", "1",
                        "--sim-scenario", "smb-mapping-missing"], tmp_path)
    assert result.outcomes["sim-1:SMB-MAP-01"] == "failed"
    assert "has no SMB Global Mapping for G:" in result.messages["sim-1:SMB-MAP-01"]
