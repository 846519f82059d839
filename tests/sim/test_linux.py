"""The kind flavour's Linux model and pwsh front end, without a cluster.

These pin down what the probes report in a PowerShell 7 stand-in pod - .NET
on Linux's wording, POSIX paths, the stand-in `Get-SmbGlobalMapping` - and
what a person typing `kubectl exec ... -- pwsh -Command ...` sees.
"""

from __future__ import annotations

import json

import pytest

from winstor.cluster import probes
from winstor.sim.nodes import powershell
from winstor.sim.nodes.linux import (
    MAPPINGS_FILE,
    SHARE_DIR,
    LinuxContainerView,
    LinuxMount,
    LinuxNode,
    PosixError,
    PosixFilesystem,
    pwsh_version_for,
)

STAND_IN = "mcr.microsoft.com/powershell:lts-7.4-ubuntu-22.04"
G_RECORD = {"LocalPath": "G:", "RemotePath": "\\\\amznfsxabcdefgh.corp.example.com\\share",
            "Status": 0}


@pytest.fixture
def node() -> LinuxNode:
    share = PosixFilesystem()
    share.mkdir("Directory/app-state")
    worker = LinuxNode("winstor-worker", "6.8.0-52-generic", stand_in=True)
    worker.mount(SHARE_DIR, share)
    worker.write_mappings([G_RECORD])
    return worker


def probe_pod(node: LinuxNode) -> LinuxContainerView:
    return LinuxContainerView(node, "node-probe", STAND_IN, [
        LinuxMount("/winstor", host_path="/winstor", node=node, read_only=True)])


def app_pod(node: LinuxNode, data: PosixFilesystem | None = None) -> LinuxContainerView:
    mounts = [LinuxMount("/dotnetapp/app-state", node=node,
                         host_path="/winstor/share/Directory/app-state")]
    if data is not None:
        mounts.append(LinuxMount("/data", fs=data))
    return LinuxContainerView(node, "test-fsx", STAND_IN, mounts)


def run_probe(view: LinuxContainerView, name: str, params: dict | None = None,
              libs: tuple[str, ...] = ("stand-in",)) -> dict:
    argv = probes.command(probes.load_probe(name), params or {}, shell="pwsh", libs=libs)
    result = powershell.run(argv, view)
    answer = json.loads(result.stdout.decode())
    assert result.stdout.endswith(b"}\n")  # LF: pwsh on Linux
    assert result.exit_code == (0 if answer["ok"] else 1)
    return answer


def error_of(view: LinuxContainerView, name: str, params: dict | None = None,
             libs: tuple[str, ...] = ("stand-in",)) -> str:
    answer = run_probe(view, name, params, libs)
    assert answer["ok"] is False, answer
    return answer["error"]


def pwsh(view: LinuxContainerView, command: str) -> tuple[int, str, str]:
    result = powershell.run(["pwsh", "-NoLogo", "-NoProfile", "-Command", command], view)
    return result.exit_code, result.stdout.decode(), result.stderr.decode()


# ------------------------------------------------------------------ the filesystem


def test_posix_paths_are_case_sensitive_and_backslash_is_a_name_character() -> None:
    fs = PosixFilesystem()
    fs.mkdir("Data")
    fs.write("Data/a\\b.txt", b"1")
    assert fs.is_file("Data/a\\b.txt") and not fs.exists("data/a\\b.txt")
    assert [e.name for e in fs.listdir("Data")] == ["a\\b.txt"]
    fs.write("Data/A.txt", b"2")
    fs.write("Data/a.txt", b"3")
    assert sorted(e.name for e in fs.listdir("Data")) == ["A.txt", "a.txt", "a\\b.txt"]


def test_errors_are_dotnet_on_linux_wording(node: LinuxNode) -> None:
    view = app_pod(node, PosixFilesystem())
    cases = [
        (lambda: view.read("/data/nope.txt"), "Could not find file '/data/nope.txt'."),
        (lambda: view.read("/data/x/nope.txt"),
         "Could not find a part of the path '/data/x/nope.txt'."),
        (lambda: view.write("/data/x/y.txt", b""),
         "Could not find a part of the path '/data/x/y.txt'."),
        (lambda: view.read("/data"), "Access to the path '/data' is denied."),
        (lambda: view.write("/data", b""), "Is a directory : '/data'"),
        (lambda: view.write("/data/../data/\0", b""),
         "Null character in path. (Parameter 'path')"),
    ]
    view.write("/data/file", b"x")
    cases.append((lambda: view.read("/data/file/x"), "Not a directory : '/data/file/x'"))
    for action, message in cases:
        with pytest.raises(PosixError) as failed:
            action()
        assert failed.value.message == message


def test_hostpath_mounts_reach_node_mounts_and_see_changes_at_once(node: LinuxNode) -> None:
    pod = probe_pod(node)
    other = app_pod(node)
    other.write("/dotnetapp/app-state/x.txt", b"shared")
    assert pod.read("/winstor/share/Directory/app-state/x.txt") == b"shared"
    assert [e.name for e in pod.listdir("/winstor")] == ["share", "smb-global-mappings.json"]
    node.write_mappings(None)
    assert not pod.exists(MAPPINGS_FILE)
    with pytest.raises(PosixError) as read_only:
        pod.write("/winstor/share/Directory/app-state/y.txt", b"")
    assert read_only.value.message == (
        "Read-only file system : '/winstor/share/Directory/app-state/y.txt'")


@pytest.mark.parametrize(("image", "version"), [
    (STAND_IN, "7.4.6"), ("mcr.microsoft.com/powershell:7.4.2-ubuntu-22.04", "7.4.2"),
    ("mcr.microsoft.com/powershell:lts-7.2-ubuntu-22.04", "7.2.24"),
    ("mcr.microsoft.com/powershell", "7.4.6"), ("busybox:1.36", None),
    ("mcr.microsoft.com/windows/servercore:ltsc2019", None)])
def test_pwsh_version_comes_from_the_image(image: str, version: str | None) -> None:
    assert pwsh_version_for(image) == version


# ------------------------------------------------------------------------ probes


def test_smb_mappings_reads_the_record_through_the_container(node: LinuxNode) -> None:
    answer = run_probe(probe_pod(node), "smb-mappings")
    assert answer["data"]["mappings"] == [{
        "local_path": "G:", "remote_path": G_RECORD["RemotePath"], "status": 0,
        "status_name": "OK"}]
    assert run_probe(app_pod(node), "smb-mappings")["data"] == {"mappings": []}


def test_smb_mappings_status_as_the_shim_and_probe_convert_it(node: LinuxNode) -> None:
    node.write_mappings([{"LocalPath": "G:", "RemotePath": "\\\\a\\s", "Status": "Disconnected"},
                         {"LocalPath": "H:", "RemotePath": "\\\\b\\s"},
                         {"LocalPath": "I:", "RemotePath": "\\\\c\\s", "Status": 9}])
    mappings = run_probe(probe_pod(node), "smb-mappings")["data"]["mappings"]
    assert [(m["local_path"], m["status"], m["status_name"]) for m in mappings] == [
        ("G:", 2, "Disconnected"), ("H:", 0, "OK"), ("I:", 9, "Unknown(9)")]


def test_smb_mappings_without_the_stand_in_library_is_not_recognized(node: LinuxNode) -> None:
    error = error_of(probe_pod(node), "smb-mappings", libs=())
    assert error == (
        "The term 'Get-SmbGlobalMapping' is not recognized as a name of a cmdlet, function, "
        "script file, or executable program.\nCheck the spelling of the name, or if a path was "
        "included, verify that the path is correct and try again.")


def test_file_probes_use_posix_paths(node: LinuxNode) -> None:
    view = app_pod(node, PosixFilesystem())
    marker = run_probe(view, "write-marker", {"path": "/data/", "marker": "m",
                                              "payload_bytes": 3})["data"]
    assert (marker["marker_path"], marker["payload_path"]) == (
        "/data/winstor-marker.txt", "/data/winstor-payload.bin")
    assert run_probe(view, "read-marker", {"path": "/data"})["data"]["sha256"] == marker["sha256"]
    # A Windows path is just a (relative) file name on Linux.
    assert error_of(view, "write-marker", {"path": "C:\\data", "marker": "m",
                                           "payload_bytes": 1}) == (
        "Could not find a part of the path '/C:\\data/winstor-marker.txt'.")
    written = run_probe(view, "write-file", {"path": "/data/<odd>|name.txt", "content": "x"})
    assert written["ok"]  # only NUL is illegal in Linux paths
    listing = run_probe(view, "list-dir", {"path": "/data"})["data"]
    assert [e["name"] for e in listing["entries"]] == [
        "<odd>|name.txt", "winstor-marker.txt", "winstor-payload.bin"]
    missing = run_probe(view, "read-file", {"path": "/data/nope.txt"})["data"]
    assert missing["exists"] is False


def test_os_info_reports_the_kernel_and_the_container(node: LinuxNode) -> None:
    assert run_probe(app_pod(node), "os-info")["data"] == {
        "build": "6.8.0", "version": "6.8.0.52", "hostname": "test-fsx",
        "powershell": "7.4.6", "edition": "Core"}


def test_csi_proxy_fails_as_pwsh_on_linux_does(node: LinuxNode) -> None:
    assert error_of(probe_pod(node), "csi-proxy").startswith(
        "The term 'Get-Service' is not recognized as a name of a cmdlet")


# ------------------------------------------------------------- interactive use


def test_pwsh_on_linux_runs_native_ls_and_cat(node: LinuxNode) -> None:
    view = probe_pod(node)
    assert pwsh(view, "ls /winstor") == (0, "share\nsmb-global-mappings.json\n", "")
    code, out, _ = pwsh(view, "cat /winstor/smb-global-mappings.json")
    assert code == 0 and json.loads(out) == [G_RECORD]
    assert pwsh(view, "ls /nope") == (
        1, "", "ls: cannot access '/nope': No such file or directory\n")
    result = powershell.run(["ls", "/nope"], view)  # exec'd directly: ls's own exit code
    assert result.exit_code == 2


def test_pwsh_cmdlets_on_linux(node: LinuxNode) -> None:
    view = app_pod(node)
    code, out, err = pwsh(view, "Set-Content /dotnetapp/app-state/a.txt hello; "
                                "Get-Content /dotnetapp/app-state/a.txt; "
                                "Get-ChildItem /dotnetapp/app-state -Name; "
                                "Test-Path /dotnetapp/App-State")
    assert (code, out, err) == (0, "hello\na.txt\nFalse\n", "")
    assert view.read("/dotnetapp/app-state/a.txt") == b"hello\n"  # LF, UTF-8
    code, out, _ = pwsh(view, "dir /dotnetapp/app-state")
    assert "    Directory: /dotnetapp/app-state" in out and "-rw-r--r--" in out
    assert pwsh(view, "Get-Content /nope") == (
        1, "", "Get-Content: Cannot find path '/nope' because it does not exist.\n")
    code, _, err = pwsh(view, "Get-SmbGlobalMapping")
    assert code == 1 and err.startswith("Get-SmbGlobalMapping: The term 'Get-SmbGlobalMapping' "
                                        "is not recognized as a name of a cmdlet")


def test_only_modelled_executables_run(node: LinuxNode) -> None:
    view = probe_pod(node)
    for argv in (["powershell.exe", "-Command", "ls"], ["cmd", "/c", "dir"], ["python3"]):
        result = powershell.run(argv, view)
        assert result.exit_code == 126
        assert f'exec: "{argv[0]}": executable file not found in $PATH' in result.stderr.decode()
    busybox = LinuxContainerView(node, "b", "busybox:1.36")
    assert powershell.run(["pwsh", "-Command", "ls"], busybox).exit_code == 126
    assert powershell.run(["bash", "-c", "echo hi"], busybox).exit_code == 126  # ash only
    assert powershell.run(["/usr/bin/pwsh", "-c", "hostname"], view).stdout == b"node-probe\n"
    assert powershell.run(["pwsh", "nope.ps1"], view).exit_code == 64  # pwsh's -File default
