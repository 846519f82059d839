"""winstor.kubeconfig: one parse per process and version of a file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from winstor import kubeconfig


def test_a_file_is_parsed_once_and_again_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "kc"
    path.write_text("current-context: a\ncontexts: [{name: a}]\n")
    first = kubeconfig.load(path)
    assert first == {"current-context": "a", "contexts": [{"name": "a"}]}
    assert kubeconfig.load(str(path)) is first  # shared, not parsed again
    path.write_text("current-context: b\ncontexts: [{name: b}, {name: c}]\n")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert kubeconfig.load(path)["current-context"] == "b"


def test_errors_are_the_readers(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        kubeconfig.load(tmp_path / "missing")
    (tmp_path / "bad").write_text("contexts: [oops\n")
    with pytest.raises(yaml.YAMLError):
        kubeconfig.load(tmp_path / "bad")
    (tmp_path / "latin").write_bytes(b"name: caf\xe9\n")
    with pytest.raises(UnicodeDecodeError):
        kubeconfig.load(tmp_path / "latin")


def test_the_file_a_path_means(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("KUBECONFIG", os.pathsep.join(["/first", "/second"]))
    assert kubeconfig.chosen("/given") == "/given"
    assert kubeconfig.chosen(None) == "/first"
    monkeypatch.delenv("KUBECONFIG")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert kubeconfig.chosen(None) == str(tmp_path / ".kube" / "config")
