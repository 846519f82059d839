"""Build the controlplane target's binaries from the Go modules in `controlplane/`.

The real Kubernetes components (kube-apiserver, kube-controller-manager,
kube-scheduler and an embedded etcd, as one multi-call binary `winstor-kube`),
the kubelet stand-in that serves `pods/exec` and `pods/log` for fake nodes
(`winstor-kubelet-stream`), and the EBS CSI controller path (aws-ebs-csi-driver,
external-provisioner, -attacher, -resizer) are built with `go build` into a
per-user cache:

    ${XDG_CACHE_HOME:-~/.cache}/winstor/controlplane/<release>-<key>/bin/

`<release>` is the Kubernetes release go.mod pins (`k8s.io/kubernetes => ... vX.Y.Z`);
`<key>` is the first 12 hex digits of a SHA-256 over every go.mod and go.sum of the
modules and the Go sources of winstor's own commands, so a new pin or a changed
command builds anew and anything else reuses what is there. When every binary is
there nothing runs (not even `go`). A first build takes minutes on 2 cores: it
reports which component it is on and the elapsed seconds every ~10 s, and the total
at the end.

`python -m winstor.targets.controlplane.build` builds (if needed) and prints the
paths, for CI warm-up.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "COMPONENTS",
    "Binaries",
    "BuildError",
    "Component",
    "cache_dir",
    "cache_key",
    "default_module_dir",
    "ensure_built",
    "release_of",
]

HEARTBEAT_S = 10.0
"""Seconds between the 'still building' lines of a long build."""
TAIL_LINES = 15
"""Lines of Go's output a BuildError carries."""


@dataclass(frozen=True)
class Component:
    """One binary: which Go module (relative to controlplane/) builds which package."""

    binary: str
    field: str
    module: str
    package: str
    version_ldflags: bool = False


COMPONENTS: tuple[Component, ...] = (
    # kube-apiserver, kube-controller-manager, kube-scheduler and etcd: argv[1] selects.
    Component("winstor-kube", "kube", ".", "./cmd/winstor-kube", version_ldflags=True),
    Component("winstor-kubelet-stream", "kubelet_stream", ".", "./cmd/winstor-kubelet-stream"),
    # The CSI sidecars have a module of their own at their release, v1.36.1
    # (controlplane/csi/go.mod says why).
    Component("csi-provisioner", "csi_provisioner", "csi",
              "github.com/kubernetes-csi/external-provisioner/v6/cmd/csi-provisioner"),
    Component("csi-attacher", "csi_attacher", "csi",
              "github.com/kubernetes-csi/external-attacher/v4/cmd/csi-attacher"),
    Component("csi-resizer", "csi_resizer", "csi",
              "github.com/kubernetes-csi/external-resizer/v2/cmd/csi-resizer"),
    # The driver has one of its own, at v0.33.1 (controlplane/csi/ebs/go.mod says why).
    Component("aws-ebs-csi-driver", "ebs_csi_driver", "csi/ebs",
              "github.com/kubernetes-sigs/aws-ebs-csi-driver/cmd"),
)


@dataclass(frozen=True)
class Binaries:
    """The built binaries of one release, each an executable file."""

    release: str
    kube: Path
    kubelet_stream: Path
    csi_provisioner: Path
    csi_attacher: Path
    csi_resizer: Path
    ebs_csi_driver: Path

    def paths(self) -> dict[str, Path]:
        """Binary name -> path, in build order."""
        return {c.binary: getattr(self, c.field) for c in COMPONENTS}


class BuildError(RuntimeError):
    """`go` is missing, or a build failed: the command and the end of Go's output."""

    def __init__(self, message: str, command: list[str] | None = None,
                 output_tail: list[str] | None = None) -> None:
        self.command = command or []
        self.output_tail = output_tail or []
        line = message
        if self.output_tail:
            line += ": " + " | ".join(self.output_tail)
        super().__init__(line)


def default_module_dir() -> Path:
    """The Go modules: the data package `winstor.controlplane` (`controlplane/` of a
    checkout, mapped by pyproject; the same files inside an installed wheel)."""
    from winstor.resources import data_dir

    return data_dir("controlplane")


_RELEASE_RE = re.compile(r"^\s*k8s\.io/kubernetes\s+=>\s+k8s\.io/kubernetes\s+(v\d+\.\d+\.\d+)\s*$",
                         re.MULTILINE)


def release_of(module_dir: Path) -> str:
    """The Kubernetes release the module pins (its `replace k8s.io/kubernetes` line)."""
    gomod = module_dir / "go.mod"
    try:
        text = gomod.read_text(encoding="utf-8")
    except OSError as exc:
        raise BuildError(f"cannot read {gomod}: {exc.strerror}") from exc
    match = _RELEASE_RE.search(text)
    if not match:
        raise BuildError(f"{gomod} has no 'k8s.io/kubernetes => k8s.io/kubernetes vX.Y.Z' line")
    return match.group(1)


def _key_files(module_dir: Path) -> list[Path]:
    files: list[Path] = []
    for module in sorted({c.module for c in COMPONENTS}):
        for name in ("go.mod", "go.sum"):
            path = module_dir / module / name
            if not path.is_file():
                raise BuildError(f"missing {path}: the Go module of the controlplane target")
            files.append(path)
    files.extend(sorted((module_dir / "cmd").rglob("*.go")))
    return files


def cache_key(module_dir: Path) -> str:
    """12 hex digits of SHA-256 over the modules' go.mod/go.sum and winstor's own commands."""
    digest = hashlib.sha256()
    for path in _key_files(module_dir):
        digest.update(path.relative_to(module_dir).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def cache_dir(module_dir: Path) -> Path:
    """`${XDG_CACHE_HOME:-~/.cache}/winstor/controlplane/<release>-<key>`."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    name = f"{release_of(module_dir)}-{cache_key(module_dir)}"
    return Path(base) / "winstor" / "controlplane" / name


def _binaries(bin_dir: Path, release: str) -> Binaries:
    return Binaries(release=release, **{c.field: bin_dir / c.binary for c in COMPONENTS})


def _is_built(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def _version_ldflags(release: str) -> list[str]:
    """What k8s's hack/lib/version.sh sets, so /version reports the real release."""
    major, minor, _ = release.lstrip("v").split(".")
    values = {"gitVersion": release, "gitMajor": major, "gitMinor": minor,
              "gitTreeState": "clean"}
    return [f"-X {pkg}.{name}={value}"
            for pkg in ("k8s.io/client-go/pkg/version", "k8s.io/component-base/version")
            for name, value in values.items()]


def _go_command(component: Component, out: Path, release: str) -> list[str]:
    ldflags = ["-s", "-w"]
    if component.version_ldflags:
        ldflags += _version_ldflags(release)
    return ["go", "build", "-trimpath", "-buildvcs=false", "-mod=readonly",
            f"-ldflags={' '.join(ldflags)}", "-o", str(out), component.package]


def _go_env() -> dict[str, str]:
    env = dict(os.environ)
    # Static binaries as upstream ships them; the machine's own Go, never a download.
    env.update({"CGO_ENABLED": "0", "GOTOOLCHAIN": "local", "GOFLAGS": ""})
    return env


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _tail(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()][-TAIL_LINES:]


@contextlib.contextmanager
def _locked(directory: Path, say: Callable[[str], None]) -> Iterator[None]:
    """One build of a cache directory at a time (pytest-xdist workers, two runs)."""
    directory.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock, the atomic renames still hold
        yield
        return
    with open(directory / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            say(f"waiting for another process that is building {directory}")
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _run(command: list[str], cwd: Path, label: str, say: Callable[[str], None]) -> None:
    """Run one `go build`, saying every HEARTBEAT_S seconds that it is still going."""
    start = time.monotonic()
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace") as log:
        try:
            proc = subprocess.Popen(command, cwd=cwd, env=_go_env(), stdout=log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        except FileNotFoundError as exc:
            raise BuildError(f"`{command[0]}` not found: install Go 1.26 or newer",
                             command) from exc
        next_beat = start + HEARTBEAT_S
        try:
            while True:
                try:
                    code = proc.wait(timeout=1.0)
                    break
                except subprocess.TimeoutExpired:
                    now = time.monotonic()
                    if now >= next_beat:
                        say(f"  {label}: still building, {now - start:.0f} s")
                        next_beat = now + HEARTBEAT_S
        except BaseException:
            proc.kill()
            proc.wait()
            raise
        log.seek(0)
        output = log.read()
    if code != 0:
        raise BuildError(f"`{' '.join(command)}` (in {cwd}) failed with exit code {code}",
                         command, _tail(output))


def ensure_built(progress: Callable[[str], None] | None = None,
                 module_dir: Path | None = None) -> Binaries:
    """The controlplane binaries, built into the per-user cache unless already there."""
    say = progress or _stderr
    module_dir = (module_dir or default_module_dir()).resolve()
    release = release_of(module_dir)
    target = cache_dir(module_dir)
    bin_dir = target / "bin"
    binaries = _binaries(bin_dir, release)
    if all(_is_built(p) for p in binaries.paths().values()):
        return binaries
    if shutil.which("go") is None:
        raise BuildError("`go` not found on PATH: the controlplane target builds Kubernetes "
                         f"{release} from Go modules and needs Go 1.26 or newer", ["go"])
    with _locked(target, say):
        missing = [c for c in COMPONENTS if not _is_built(bin_dir / c.binary)]
        if not missing:  # another process built them while we waited for the lock
            return binaries
        say(f"building the controlplane binaries of Kubernetes {release} into {bin_dir} "
            f"({len(missing)} to build; a first build takes minutes)")
        bin_dir.mkdir(parents=True, exist_ok=True)
        total_start = time.monotonic()
        for index, component in enumerate(missing, 1):
            label = f"[{index}/{len(missing)}] {component.binary}"
            say(f"  {label}: go build {component.package}")
            start = time.monotonic()
            partial = bin_dir / f".{component.binary}.partial"
            command = _go_command(component, partial, release)
            try:
                _run(command, module_dir / component.module, label, say)
                os.replace(partial, bin_dir / component.binary)
            finally:
                partial.unlink(missing_ok=True)
            say(f"  {label}: built in {time.monotonic() - start:.0f} s")
        say(f"controlplane binaries built in {time.monotonic() - total_start:.0f} s")
    return binaries


def main() -> int:
    try:
        binaries = ensure_built()
    except BuildError as exc:
        _stderr(f"error: {exc}")
        return 1
    print(f"release {binaries.release}")
    for name, path in binaries.paths().items():
        print(f"{name} {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

