"""`winstor kind up|down|status`: a local kind cluster for the kind profile.

`up` creates the kind cluster from `kind-config/cluster.yaml` (with the node
directory that stands in for the FSx share), starts a moto server holding an
FSx for Windows file system, records the share's "SMB Global Mapping" in the
node directory, and writes the settings a plain `pytest -m smb` then follows
(see `winstor.targets.kindstate`). `down` removes all of it. Whatever `up` had made
when it fails is removed again before it returns.

Missing prerequisites (kind, Docker) stop `up` with one line naming what is
missing and how to install it.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from winstor.cli.args import go_duration, help_of
from winstor.config import ConfigError
from winstor.errors import UsageError
from winstor.targets import kindconfig, kindstate
from winstor.targets.profiles import NODE_DIR

__all__ = ["register"]

KIND_INSTALL = ("install kind: https://kind.sigs.k8s.io/docs/user/quick-start/#installation "
                "(e.g. `go install sigs.k8s.io/kind@v0.24.0`, or its release binary)")
DOCKER_INSTALL = ("install Docker Engine: https://docs.docker.com/engine/install/ "
                  "(kind runs its nodes as Docker containers)")
FSX_SHARE_DIR = "Directory/app-state"


class KindError(Exception):
    """A step of `up`/`down` failed: one line, exit code 1."""


# ----------------------------------------------------------------------------- helpers


def _say(text: str) -> None:
    print(f"winstor kind: {text}", flush=True)


def _missing_prerequisites() -> str | None:
    """One line naming what is missing and how to get it, or None."""
    kind, docker = shutil.which("kind"), shutil.which("docker")
    if not kind and not docker:
        return f"neither kind nor Docker is installed: {DOCKER_INSTALL}; then {KIND_INSTALL}"
    if not kind:
        return f"kind is not installed: {KIND_INSTALL}"
    if not docker:
        return f"Docker is not installed: {DOCKER_INSTALL}"
    try:
        info = subprocess.run([docker, "info", "--format", "{{.ServerVersion}}"],
                              capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as err:
        return f"Docker does not answer (`docker info`: {err}): start the Docker daemon"
    if info.returncode != 0:
        first = (info.stderr or info.stdout).strip().splitlines()[:1]
        return ("Docker is installed but its daemon does not answer (`docker info`: "
                f"{first[0] if first else 'exit ' + str(info.returncode)}): start it, e.g. "
                "`sudo systemctl start docker`, and make sure you may use it")
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _is_our_moto(pid: int) -> bool:
    """Only ever signal the moto server `up` started (pids get reused)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return _alive(pid)  # no /proc (macOS): trust the recorded pid
    return b"moto.server" in cmdline


def _stop_moto(pid: int | None) -> bool:
    if not pid or not _alive(pid) or not _is_our_moto(pid):
        return False
    os.kill(pid, signal.SIGTERM)
    for _ in range(50):
        if not _alive(pid):
            return True
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)
    return True


def _start_moto(state: Path, region: str) -> tuple[int, dict[str, str]]:
    port = _free_port()
    log = (state / "moto.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True)  # outlives this command; `down` stops it
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = (state / "moto.log").read_text(errors="replace").strip().splitlines()[-1:]
            raise KindError(f"the moto server exited at start ({tail[0] if tail else 'no output'})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.1)
    else:
        _stop_moto(proc.pid)
        raise KindError(f"the moto server did not listen on {endpoint} within 30 s")
    env = {"AWS_ENDPOINT_URL": endpoint, "AWS_DEFAULT_REGION": region, "AWS_REGION": region,
           "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
    return proc.pid, env


def _create_fsx(env: dict[str, str], name: str) -> dict[str, str]:
    """An FSx for Windows file system in moto, in a VPC of its own."""
    import boto3

    session = boto3.Session(aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
                            aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
                            region_name=env["AWS_DEFAULT_REGION"])
    kw: dict[str, Any] = {"endpoint_url": env["AWS_ENDPOINT_URL"]}
    ec2, fsx = session.client("ec2", **kw), session.client("fsx", **kw)
    vpc = ec2.create_vpc(CidrBlock="10.77.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.77.1.0/24")["Subnet"]["SubnetId"]
    created = fsx.create_file_system(
        FileSystemType="WINDOWS", StorageCapacity=32, StorageType="SSD", SubnetIds=[subnet],
        Tags=[{"Key": "Name", "Value": f"{name}-fsx"}],
        WindowsConfiguration={"ThroughputCapacity": 32, "DeploymentType": "SINGLE_AZ_2",
                              "ActiveDirectoryId": "d-0123456789"})["FileSystem"]
    fs = fsx.describe_file_systems(FileSystemIds=[created["FileSystemId"]])["FileSystems"][0]
    dns = fs.get("DNSName") or ""
    if not dns:
        raise KindError("moto created the FSx file system without a DNS name")
    return {"id": fs["FileSystemId"], "dns": dns, "share": f"\\\\{dns}\\share"}


def _kind(*args: str, quiet: bool = False) -> subprocess.CompletedProcess:
    exe = shutil.which("kind")
    if exe is None:
        raise KindError(f"kind is not installed: {KIND_INSTALL}")
    return subprocess.run([exe, *args], text=True,
                          capture_output=quiet, stdin=subprocess.DEVNULL)


# --------------------------------------------------------------------------------- up


def _up(args: argparse.Namespace) -> int:
    missing = _missing_prerequisites()
    if missing:
        raise UsageError(f"kind up: {missing}")
    try:
        existing = kindstate.load()
    except ConfigError as err:
        raise UsageError(f"kind up: {err}") from None
    if existing is not None:
        raise UsageError(f"kind up: kind cluster {existing.cluster_name!r} from an earlier "
                         f"`winstor kind up` is still recorded in {existing.path}: run "
                         "`winstor kind down` first")
    try:
        doc = kindconfig.load(Path(args.config))
    except (OSError, ValueError, yaml.YAMLError) as err:
        raise UsageError(f"kind up: cannot read {args.config}: {err}") from None
    found = kindconfig.problems(doc)
    if found:
        raise UsageError(f"kind up: {args.config}: {'; '.join(found)}")

    state = kindstate.state_dir()
    node_dir = state / "node"
    made: dict[str, Any] = {}
    try:
        (node_dir / "share" / FSX_SHARE_DIR).mkdir(parents=True, exist_ok=True)
        made["state"] = state
        _say("starting the moto server (AWS mock)")
        made["moto"], aws_env = _start_moto(state, args.region)
        try:
            fsx = _create_fsx(aws_env, args.name)
        except KindError:
            raise
        except Exception as err:  # botocore's errors: one line, not a traceback
            raise KindError(f"creating the FSx file system in moto failed: {err}") from None
        _say(f"FSx for Windows {fsx['id']} ({fsx['dns']}) in moto at "
             f"{aws_env['AWS_ENDPOINT_URL']}")
        mappings = [{"LocalPath": "G:", "RemotePath": fsx["share"], "Status": 0}]
        (node_dir / "smb-global-mappings.json").write_text(json.dumps(mappings, indent=2))
        rendered = state / "cluster.yaml"
        rendered.write_text(yaml.safe_dump(
            kindconfig.render(doc, name=args.name, node_dir=node_dir), sort_keys=False))
        kubeconfig = state / "kubeconfig"
        command = ["create", "cluster", "--name", args.name, "--config", str(rendered),
                   "--kubeconfig", str(kubeconfig), "--wait", args.wait]
        if args.image:
            command += ["--image", args.image]
        _say("kind " + " ".join(command))
        made["cluster"] = args.name
        if _kind(*command).returncode != 0:
            raise KindError(f"`kind create cluster` failed for {args.name} (its output is above)")
        saved = kindstate.KindState(
            cluster_name=args.name, kubeconfig=str(kubeconfig), context=f"kind-{args.name}",
            node_dir=str(node_dir), aws_env=aws_env, moto_pid=made["moto"], fsx=fsx).save()
    except BaseException as err:
        _undo(made)
        if isinstance(err, KeyboardInterrupt):
            print("winstor: kind up: interrupted; removed what it had made", file=sys.stderr)
            return 130
        if isinstance(err, KindError | OSError):
            print(f"winstor: error: kind up: {err}", file=sys.stderr)
            return 1
        raise
    _say(f"ready: context kind-{args.name}, node directory {node_dir} (mounted at "
         f"{NODE_DIR}), settings {saved}")
    _say("now run: pytest -m smb    (and `winstor kind down` when done)")
    return 0


def _undo(made: dict[str, Any]) -> None:
    """Remove what a failed `up` made, newest first."""
    if "cluster" in made and shutil.which("kind"):
        _kind("delete", "cluster", "--name", made["cluster"], quiet=True)
    if "moto" in made:
        _stop_moto(made["moto"])
    if "state" in made:
        shutil.rmtree(made["state"], ignore_errors=True)


# ------------------------------------------------------------------------------- down


def _down(args: argparse.Namespace) -> int:
    state = kindstate.state_dir()
    try:
        recorded = kindstate.load()
    except ConfigError:
        recorded = None  # unreadable: still remove what we can find
    if recorded is None and not state.exists():
        _say(f"nothing to remove (no state in {state})")
        return 0
    name = recorded.cluster_name if recorded else args.name
    problems = []
    if shutil.which("kind"):
        argv = ["delete", "cluster", "--name", name]
        if recorded:
            argv += ["--kubeconfig", recorded.kubeconfig]
        result = _kind(*argv, quiet=True)
        if result.returncode != 0:
            problems.append(f"`kind delete cluster --name {name}` failed: "
                            f"{(result.stderr or '').strip()[:200]}")
        else:
            _say(f"deleted kind cluster {name}")
    else:
        problems.append(f"kind is not installed, so kind cluster {name} (if any) was left: "
                        f"`docker rm -f {name}-control-plane {name}-worker` removes it")
    if recorded and _stop_moto(recorded.moto_pid):
        _say(f"stopped the moto server (pid {recorded.moto_pid})")
    shutil.rmtree(state, ignore_errors=True)
    _say(f"removed {state}")
    for line in problems:
        print(f"winstor: warning: kind down: {line}", file=sys.stderr)
    return 1 if problems and shutil.which("kind") else 0


def _status(args: argparse.Namespace) -> int:
    try:
        recorded = kindstate.load()
    except ConfigError as err:
        raise UsageError(f"kind status: {err}") from None
    if recorded is None:
        _say(f"no kind cluster recorded (state directory {kindstate.state_dir()}); "
             "`winstor kind up` creates one")
        return 1
    moto = "running" if recorded.moto_pid and _alive(recorded.moto_pid) else "not running"
    _say(f"cluster {recorded.cluster_name}, context {recorded.context}, kubeconfig "
         f"{recorded.kubeconfig}; moto {moto} at {recorded.aws_env.get('AWS_ENDPOINT_URL')}; "
         f"FSx {recorded.fsx.get('id')} ({recorded.fsx.get('dns')}); node directory "
         f"{recorded.node_dir}")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    kind = sub.add_parser(
        "kind", help="a local kind cluster with the Windows and AWS parts mocked",
        description="Create or remove the kind cluster of the kind profile. After "
                    "`winstor kind up`, a plain `pytest -m smb` checks it; `winstor kind "
                    "down` removes the cluster, the moto server and the settings. State "
                    "lives in $WINSTOR_KIND_STATE, else $XDG_STATE_HOME/winstor/kind, else "
                    "~/.local/state/winstor/kind. Needs kind and Docker.")
    kind_sub = kind.add_subparsers(dest="kind_command", metavar="COMMAND")
    up = kind_sub.add_parser("up", help="create the cluster, start the mocks, write the settings")
    up.add_argument("--name", default="winstor", help="kind cluster name (default winstor; "
                    "the context is kind-NAME)")
    up.add_argument("--config", default=str(kindconfig.DEFAULT_CONFIG),
                    help="kind cluster config (default: kind-config/cluster.yaml)")
    up.add_argument("--image", help="kind node image, e.g. kindest/node:v1.31.0 "
                    "(default: kind's own)")
    up.add_argument("--region", default="us-west-2", help="AWS region the moto server "
                    "answers for (default us-west-2)")
    up.add_argument("--wait", default="180s", type=go_duration,
                    help="how long kind waits for the control plane (kind's --wait; default "
                         "180s)")
    up.set_defaults(func=_up)
    down = kind_sub.add_parser("down", help="delete the cluster, stop the mocks, remove the "
                               "settings")
    down.add_argument("--name", default="winstor", help="kind cluster name, when no settings "
                      "record it (default winstor)")
    down.set_defaults(func=_down)
    status = kind_sub.add_parser("status", help="show what `winstor kind up` recorded")
    status.set_defaults(func=_status)
    kind.set_defaults(func=lambda _: help_of(kind))
