"""An SMB share whose permissions grant the nodes Read only (`share-read-only`):
reads go through the mapping, every change is refused as Windows refuses it."""

from __future__ import annotations

import pytest

from winstor.sim.nodes import powershell
from winstor.sim.nodes.windows import ContainerView, SmbShare, WindowsNode, WinError


def _pod(read_only: bool = True) -> tuple[ContainerView, SmbShare]:
    node = WindowsNode("ip-10-0-1-5.ec2.internal")
    share = SmbShare(r"\\fsx.corp.example.com\share", read_only=read_only)
    share.fs.mkdir(r"Directory\app-state")
    share.fs.write(r"Directory\app-state\seed.txt", b"seeded")
    node.map_smb("G:", share)
    view = ContainerView(node, "test-fsx")
    view.mount_host_path(r"C:\dotnetapp\app-state", r"G:\Directory\app-state")
    return view, share


def test_reads_go_through() -> None:
    view, _ = _pod()
    assert view.read(r"C:\dotnetapp\app-state\seed.txt") == b"seeded"
    assert [e.name for e in view.listdir(r"C:\dotnetapp\app-state")] == ["seed.txt"]
    assert view.is_dir(r"C:\dotnetapp\app-state")
    view.mkdir(r"C:\dotnetapp\app-state")  # an existing directory: nothing to change


def test_changes_are_denied_with_the_container_path() -> None:
    view, share = _pod()
    path = r"C:\dotnetapp\app-state\x.txt"
    with pytest.raises(WinError) as err:
        view.write(path, b"data")
    assert err.value.kind == "access_denied"
    assert err.value.message == f"Access to the path '{path}' is denied."
    assert err.value.win32 == "Access is denied."
    for change in (lambda: view.write(r"C:\dotnetapp\app-state\seed.txt", b"x"),
                   lambda: view.mkdir(r"C:\dotnetapp\app-state\sub"),
                   lambda: view.remove(r"C:\dotnetapp\app-state\seed.txt")):
        with pytest.raises(WinError) as err:
            change()
        assert err.value.kind == "access_denied"
    assert not share.fs.exists(r"Directory\app-state\x.txt")
    assert share.fs.read(r"Directory\app-state\seed.txt") == b"seeded"


def test_missing_paths_are_reported_as_missing_first() -> None:
    view, _ = _pod()
    with pytest.raises(WinError) as err:
        view.write(r"C:\dotnetapp\app-state\no\x.txt", b"x")
    assert err.value.kind == "path_not_found"
    with pytest.raises(WinError) as err:
        view.remove(r"C:\dotnetapp\app-state\gone.txt")
    assert err.value.kind == "file_not_found"


def test_cmd_shows_access_is_denied() -> None:
    view, _ = _pod()
    result = powershell.run(["cmd", "/c", r"echo hi > C:\dotnetapp\app-state\x.txt"], view)
    assert b"Access is denied." in result.stderr + result.stdout


def test_a_full_access_share_is_the_share_itself() -> None:
    view, share = _pod(read_only=False)
    view.write(r"C:\dotnetapp\app-state\x.txt", b"data")
    assert share.fs.read(r"Directory\app-state\x.txt") == b"data"
    assert share.client_fs() is share.fs
