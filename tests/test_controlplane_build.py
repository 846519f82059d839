"""The controlplane target's build step: cache key, skip, progress and errors.

None of these tests builds anything (subprocess.Popen is replaced) except the last,
which runs a binary only when a previous build left it in the cache.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import threading
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest

from winstor.targets.controlplane import build

REPO_MODULE = Path(__file__).resolve().parent.parent / "controlplane"

GO_MOD = """module winstor.dev/controlplane

go 1.26.0

replace (
\tk8s.io/kubernetes => k8s.io/kubernetes v1.35.4
\tk8s.io/api => k8s.io/api v0.35.4
)
"""


@pytest.fixture
def module(tmp_path: Path) -> Path:
    """A stand-in for controlplane/: the files the key reads, no Go code to build."""
    root = tmp_path / "controlplane"
    for sub in ("", "csi", "csi/ebs"):
        d = root / sub
        d.mkdir(parents=True, exist_ok=True)
        (d / "go.mod").write_text(GO_MOD if not sub else f"module x/{sub}\n")
        (d / "go.sum").write_text(f"example.com/{sub or 'main'} v1.0.0 h1:abc=\n")
    for cmd in ("winstor-kube", "winstor-kubelet-stream"):
        (root / "cmd" / cmd).mkdir(parents=True)
        (root / "cmd" / cmd / "main.go").write_text("package main\n")
    (root / "README.md").write_text("notes\n")
    return root


@pytest.fixture(autouse=True)
def cache_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(home))
    return home


class FakeGo:
    """Replaces subprocess.Popen: records each `go build`, writes its -o file or fails."""

    def __init__(self, fail: str | None = None, output: str = "", slow_polls: int = 0) -> None:
        self.fail = fail
        self.output = output
        self.slow_polls = slow_polls
        self.calls: list[tuple[list[str], Path]] = []

    def __call__(self, command: list[str], *, cwd: Path, stdout: io.TextIOBase,
                 **_: Any) -> FakeGo.Proc:
        self.calls.append((command, Path(cwd)))
        out = Path(command[command.index("-o") + 1])
        stdout.write(self.output)
        stdout.flush()
        failing = self.fail is not None and self.fail in command[-1]
        if not failing:
            out.write_text("#!/bin/sh\n")
            out.chmod(0o755)
        return FakeGo.Proc(1 if failing else 0, self.slow_polls)

    class Proc:
        def __init__(self, code: int, slow_polls: int) -> None:
            self.code = code
            self.polls = slow_polls

        def wait(self, timeout: float | None = None) -> int:
            if self.polls > 0:
                self.polls -= 1
                raise subprocess.TimeoutExpired("go", timeout or 0)
            return self.code

        def kill(self) -> None:
            pass


@pytest.fixture
def fake_go(monkeypatch: pytest.MonkeyPatch) -> FakeGo:
    fake = FakeGo()
    monkeypatch.setattr(build.subprocess, "Popen", fake)
    monkeypatch.setattr(build.shutil, "which", lambda name: f"/usr/bin/{name}")
    return fake


def test_the_repository_module_pins_one_release_and_has_every_file_the_key_reads() -> None:
    assert build.release_of(REPO_MODULE) == "v1.35.4"
    assert len(build.cache_key(REPO_MODULE)) == 12


def test_binaries_has_one_path_per_component_plus_the_release() -> None:
    names = {f.name for f in fields(build.Binaries)}
    assert names == {"release"} | {c.field for c in build.COMPONENTS}
    assert len({c.binary for c in build.COMPONENTS}) == len(build.COMPONENTS)


def test_cache_dir_is_per_user_and_keyed_by_release_and_hash(module: Path,
                                                            cache_home: Path) -> None:
    path = build.cache_dir(module)
    assert path.parent == cache_home / "winstor" / "controlplane"
    assert path.name == f"v1.35.4-{build.cache_key(module)}"


def test_key_follows_go_sum_go_mod_and_own_sources_only(module: Path) -> None:
    key = build.cache_key(module)
    (module / "README.md").write_text("other notes\n")
    assert build.cache_key(module) == key, "a README edit must not rebuild"
    for changed in (module / "go.sum", module / "csi/ebs/go.sum", module / "csi/go.mod",
                    module / "cmd/winstor-kubelet-stream/main.go"):
        before = changed.read_text()
        changed.write_text(before + "\n")
        assert build.cache_key(module) != key, changed
        changed.write_text(before)
        assert build.cache_key(module) == key


def test_a_missing_go_sum_is_a_build_error(module: Path) -> None:
    (module / "csi/ebs/go.sum").unlink()
    with pytest.raises(build.BuildError, match=r"missing .*csi/ebs/go\.sum"):
        build.cache_key(module)


def test_release_line_is_required(module: Path) -> None:
    (module / "go.mod").write_text("module x\n")
    with pytest.raises(build.BuildError, match=r"k8s\.io/kubernetes"):
        build.release_of(module)


def test_first_call_builds_every_component_then_the_second_builds_nothing(
        module: Path, fake_go: FakeGo) -> None:
    said: list[str] = []
    binaries = build.ensure_built(progress=said.append, module_dir=module)
    assert binaries.release == "v1.35.4"
    assert [c[0][-1] for c in fake_go.calls] == [c.package for c in build.COMPONENTS]
    for path in binaries.paths().values():
        assert path.is_file() and os.access(path, os.X_OK)
        assert path.parent == build.cache_dir(module) / "bin"
    assert not list((build.cache_dir(module) / "bin").glob(".*partial")), "no partial file left"
    assert said[-1].startswith("controlplane binaries built in ")

    fake_go.calls.clear()
    assert build.ensure_built(progress=said.append, module_dir=module) == binaries
    assert fake_go.calls == []


def test_only_missing_binaries_are_built(module: Path, fake_go: FakeGo) -> None:
    binaries = build.ensure_built(progress=lambda _: None, module_dir=module)
    binaries.csi_provisioner.unlink()
    fake_go.calls.clear()
    build.ensure_built(progress=lambda _: None, module_dir=module)
    assert [(c[0][-1], c[1]) for c in fake_go.calls] == [
        ("github.com/kubernetes-csi/external-provisioner/v6/cmd/csi-provisioner",
         module / "csi")]


def test_nothing_runs_when_everything_is_built_not_even_a_lookup_of_go(
        module: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = build.cache_dir(module) / "bin"
    bin_dir.mkdir(parents=True)
    for c in build.COMPONENTS:
        (bin_dir / c.binary).write_text("")
        (bin_dir / c.binary).chmod(0o755)

    def forbidden(*_: Any, **__: Any) -> None:
        raise AssertionError("nothing may run when every binary is built")

    monkeypatch.setattr(build.subprocess, "Popen", forbidden)
    monkeypatch.setattr(build.shutil, "which", forbidden)
    binaries = build.ensure_built(progress=forbidden, module_dir=module)
    assert binaries.kube == bin_dir / "winstor-kube"


def test_the_apiserver_build_sets_the_release_as_k8s_does(module: Path, fake_go: FakeGo) -> None:
    build.ensure_built(progress=lambda _: None, module_dir=module)
    commands = {c[0][-1]: c[0] for c in fake_go.calls}
    kube = commands["./cmd/winstor-kube"]
    assert kube[:2] == ["go", "build"] and "-trimpath" in kube
    ldflags = next(a for a in kube if a.startswith("-ldflags="))
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        assert f"-X {pkg}.gitVersion=v1.35.4" in ldflags
        assert f"-X {pkg}.gitMajor=1" in ldflags and f"-X {pkg}.gitMinor=35" in ldflags
    stream = next(a for a in commands["./cmd/winstor-kubelet-stream"] if a.startswith("-ldflags="))
    assert "gitVersion" not in stream and "-s -w" in stream


def test_a_long_build_says_it_is_alive(module: Path, fake_go: FakeGo,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build, "HEARTBEAT_S", 0.0)
    fake_go.slow_polls = 2
    said: list[str] = []
    build.ensure_built(progress=said.append, module_dir=module)
    first = [line for line in said if "[1/6] winstor-kube" in line]
    assert any("still building" in line for line in first), said
    assert first[-1].endswith(" s") and "built in" in first[-1]


def test_a_failed_build_raises_one_line_with_command_and_go_output(
        module: Path, fake_go: FakeGo) -> None:
    fake_go.fail = "csi-attacher"
    fake_go.output = "".join(f"line {i}\n" for i in range(40)) + "pkg/x.go:1:2: undefined: y\n"
    with pytest.raises(build.BuildError) as caught:
        build.ensure_built(progress=lambda _: None, module_dir=module)
    err = caught.value
    assert "\n" not in str(err)
    assert "go build" in str(err) and "csi-attacher" in str(err) and "exit code 1" in str(err)
    assert err.output_tail[-1] == "pkg/x.go:1:2: undefined: y"
    assert len(err.output_tail) == build.TAIL_LINES
    assert "line 0" not in str(err)
    assert err.command[-1].endswith("cmd/csi-attacher")
    bin_dir = build.cache_dir(module) / "bin"
    assert not (bin_dir / "csi-attacher").exists()
    assert not list(bin_dir.glob(".*partial"))
    assert (bin_dir / "winstor-kube").exists(), "what was built before the failure stays"


def test_missing_go_is_a_clear_build_error(module: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build.shutil, "which", lambda _: None)
    with pytest.raises(build.BuildError, match=r"`go` not found on PATH.*v1\.35\.4"):
        build.ensure_built(progress=lambda _: None, module_dir=module)


def test_go_vanishing_after_the_lookup_is_a_build_error_too(
        module: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(build.shutil, "which", lambda name: f"/usr/bin/{name}")

    def no_go(*_: Any, **__: Any) -> None:
        raise FileNotFoundError(2, "No such file or directory", "go")

    monkeypatch.setattr(build.subprocess, "Popen", no_go)
    with pytest.raises(build.BuildError, match="`go` not found"):
        build.ensure_built(progress=lambda _: None, module_dir=module)


def test_default_module_dir_is_the_repository_controlplane() -> None:
    assert build.default_module_dir() == REPO_MODULE


def _cached_binaries() -> build.Binaries | None:
    try:
        bin_dir = build.cache_dir(REPO_MODULE) / "bin"
    except build.BuildError:
        return None
    binaries = build._binaries(bin_dir, build.release_of(REPO_MODULE))
    return binaries if all(p.is_file() for p in binaries.paths().values()) else None


_CACHED = _cached_binaries()


@pytest.mark.skipif(_CACHED is None,
                    reason="controlplane binaries not in the cache "
                           "(python -m winstor.targets.controlplane.build builds them)")
def test_cached_apiserver_reports_the_pinned_release() -> None:
    assert _CACHED is not None
    done = subprocess.run([str(_CACHED.kube), "kube-apiserver", "--version"],
                          capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == f"Kubernetes {_CACHED.release}"


@pytest.mark.skipif(sys.platform == "win32", reason="the build lock is POSIX flock")
def test_a_second_builder_waits_for_the_first_and_says_so(module: Path, fake_go: FakeGo) -> None:
    import fcntl

    target = build.cache_dir(module)
    target.mkdir(parents=True)
    said: list[str] = []
    with open(target / ".lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)

        waiter = threading.Thread(
            target=lambda: build.ensure_built(progress=said.append, module_dir=module))
        waiter.start()
        for _ in range(200):
            if said:
                break
            time.sleep(0.01)
        assert said and said[0].startswith("waiting for another process"), said
        assert fake_go.calls == [], "nothing builds while another process holds the lock"
        fcntl.flock(held, fcntl.LOCK_UN)
    waiter.join(timeout=10)
    assert not waiter.is_alive()
    assert len(fake_go.calls) == len(build.COMPONENTS)
