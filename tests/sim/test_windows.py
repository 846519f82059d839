"""The Windows node model and the sim's PowerShell / cmd front end.

These pin down what a person following the seed walkthrough by hand sees
(`kubectl exec ... powershell ls`, writing a file and finding it again from the
replacement pod), and the wording of the errors, which the suite reports.
"""

from __future__ import annotations

import base64
import threading

import pytest

from winstor.sim.nodes import powershell
from winstor.sim.nodes.windows import (
    ContainerView,
    Filesystem,
    Service,
    SmbShare,
    Volume,
    WindowsNode,
    WinError,
    csi_proxy_pipes,
)

# ----------------------------------------------------------------- filesystem


def test_paths_are_case_insensitive_and_case_preserving() -> None:
    fs = Filesystem(label="C:\\")
    fs.mkdir(r"Directory\App-State")
    fs.write(r"directory\app-state\X.txt", b"abc")
    assert fs.read(r"DIRECTORY\APP-STATE\x.TXT") == b"abc"
    assert fs.exists("directory/app-state/x.txt")
    assert [e.name for e in fs.listdir("directory")] == ["App-State"]
    entry = fs.listdir(r"Directory\App-State")[0]
    assert (entry.name, entry.is_dir, entry.length) == ("X.txt", False, 3)


def test_filesystem_errors_use_windows_wording() -> None:
    fs = Filesystem(label="C:\\")
    with pytest.raises(WinError) as missing_dir:
        fs.write(r"x\y", b"")
    assert missing_dir.value.kind == "path_not_found"
    assert str(missing_dir.value) == r"Could not find a part of the path 'C:\x\y'."
    assert missing_dir.value.win32 == "The system cannot find the path specified."
    with pytest.raises(WinError) as missing_file:
        fs.read("nope.txt")
    assert str(missing_file.value) == r"Could not find file 'C:\nope.txt'."
    fs.mkdir("d")
    fs.write(r"d\f", b"1")
    with pytest.raises(WinError) as not_empty:
        fs.remove("d")
    assert not_empty.value.kind == "not_empty"
    fs.remove("d", recursive=True)
    assert not fs.exists("d")
    with pytest.raises(WinError) as over_file:
        fs.write("f", b"")
        fs.mkdir(r"f\sub")
    assert over_file.value.kind == "already_exists"
    with pytest.raises(WinError) as read_dir:
        fs.mkdir("dir2")
        fs.read("dir2")
    assert read_dir.value.kind == "access_denied"
    assert read_dir.value.win32 == "Access is denied."


def test_mkdir_without_parents_behaves_like_createdirectory() -> None:
    fs = Filesystem()
    with pytest.raises(WinError):
        fs.mkdir(r"a\b", parents=False)
    fs.mkdir("a", parents=False)
    with pytest.raises(WinError) as exists:
        fs.mkdir("a", parents=False)
    assert exists.value.kind == "already_exists"
    fs.mkdir(r"a\b\c")  # parents=True is idempotent and creates the chain
    fs.mkdir(r"a\b\c")
    assert fs.is_dir(r"a\b\c")


def test_filesystem_is_thread_safe() -> None:
    fs = Filesystem()
    fs.mkdir("d")

    def writer(index: int) -> None:
        for n in range(50):
            fs.write(rf"d\{index}-{n}", bytes([n]))

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(fs.listdir("d")) == 400


def test_clock_drives_mtime() -> None:
    now = [1_700_000_000.0]
    fs = Filesystem(clock=lambda: now[0])
    fs.write("a", b"x")
    now[0] += 60
    fs.write("a", b"y")
    assert fs.stat("a").mtime == now[0]


# ------------------------------------------------------------------ node model


def test_install_csi_proxy_serves_v1_and_older_pipes() -> None:
    node = WindowsNode("n1")
    service = node.install_csi_proxy("v1.1.1")
    assert node.services["csiproxy"] is service
    assert (service.status, service.start_type, service.file_version) == (
        "Running",
        "Automatic",
        "1.1.1",
    )
    assert service.path_name == r"C:\Program Files\Kubernetes\csi-proxy.exe"
    assert node.drives["C:"].is_file(r"Program Files\Kubernetes\csi-proxy.exe")
    for group in ("disk", "filesystem", "volume", "smb"):
        assert f"csi-proxy-{group}-v1" in node.pipes
    assert "csi-proxy-disk-v1beta3" in node.pipes
    assert "csi-proxy-filesystem-v2alpha1" in node.pipes  # from v1.1.0
    assert "csi-proxy-filesystem-v2alpha1" not in csi_proxy_pipes("1.0.2")
    assert "csi-proxy-disk-v1" not in csi_proxy_pipes("0.2.2")
    node.stop_service("csiproxy")
    assert not any(p.startswith("csi-proxy-") for p in node.pipes)


def test_service_command_line_quotes_paths_with_spaces() -> None:
    svc = Service("x", "x", path_name=r"C:\Program Files\x.exe", arguments="-a")
    assert svc.command_line == r'"C:\Program Files\x.exe" -a'
    assert Service("y", "y", path_name=r"C:\y.exe").command_line == r"C:\y.exe"


def test_smb_mapping_resolves_host_paths_and_fails_when_disconnected() -> None:
    share = SmbShare(r"\\amznfsxabcd1234.corp.example.com\share")
    assert share.server == "amznfsxabcd1234.corp.example.com" and share.share_name == "share"
    node = WindowsNode("n1")
    mapping = node.map_smb("g:", share)
    assert mapping.local_path == "G:" and mapping.status_name == "OK"
    with pytest.raises(WinError):
        node.map_smb("G:", share)
    fs, rel = node.resolve_host_path(r"G:\Directory\app-state")
    assert fs is share.fs and rel == r"Directory\app-state"
    mapping.status = 2
    assert mapping.status_name == "Disconnected"
    with pytest.raises(WinError) as down:
        node.resolve_host_path(r"G:\Directory")
    assert down.value.win32 == "The network path was not found."
    with pytest.raises(WinError):
        node.resolve_host_path(r"H:\x")


def test_volume_keeps_files_across_pods_and_nodes() -> None:
    volume = Volume("vol-1", 1)
    volume.format()
    assert volume.formatted_fs == "NTFS"
    first = ContainerView(WindowsNode("a"), "pod-a")
    first.mount_volume(r"C:\data", volume)
    first.write(r"C:\data\x.txt", b"kept")
    second = ContainerView(WindowsNode("b"), "pod-b")
    second.mount_volume(r"c:\DATA", volume)
    assert second.read(r"C:\data\x.txt") == b"kept"


# ---------------------------------------------------------------- container view


def _pod() -> tuple[WindowsNode, ContainerView, SmbShare, Volume]:
    node = WindowsNode("ip-10-0-1-5.ec2.internal", revision=6414)
    share = SmbShare(r"\\fsx.corp.example.com\share")
    share.fs.mkdir(r"Directory\app-state")
    node.map_smb("G:", share)
    volume = Volume("vol-1", 1)
    volume.format()
    view = ContainerView(node, "windows-server-iis-abc")
    view.mount_volume(r"C:\data", volume)
    view.mount_host_path(r"C:\dotnetapp\app-state", r"G:\Directory\app-state")
    return node, view, share, volume


def test_resolution_longest_mount_wins_and_hostpath_reaches_the_share() -> None:
    _, view, share, volume = _pod()
    fs, rel, read_only = view.resolve(r"C:\dotnetapp\app-state\x.txt")
    assert fs is share.fs and rel == r"Directory\app-state\x.txt" and not read_only
    fs, rel, _ = view.resolve(r"C:\dotnetapp\other")
    assert fs is view.root and rel == r"dotnetapp\other"
    fs, rel, _ = view.resolve(r"C:\data")
    assert fs is volume.fs and rel == ""
    fs, rel, _ = view.resolve("Windows")  # relative to C:\
    assert fs is view.root and rel == "Windows"
    with pytest.raises(WinError):
        view.resolve(r"G:\Directory")  # a plain container has no G:


def test_read_only_mount_denies_writes() -> None:
    _, view, _, _ = _pod()
    volume = Volume("vol-ro", 1)
    volume.format()
    view.mount_volume(r"C:\ro", volume, read_only=True)
    with pytest.raises(WinError) as denied:
        view.write(r"C:\ro\x.txt", b"x")
    assert denied.value.win32 == "Access is denied."
    assert str(denied.value) == r"Access to the path 'C:\ro\x.txt' is denied."


def test_host_process_sees_node_drives_services_pipes() -> None:
    node, pod, share, _ = _pod()
    node.install_csi_proxy("1.1.1")
    host = ContainerView(node, "ignored", host_process=True)
    assert host.hostname == node.hostname
    assert host.read(r"C:\Program Files\Kubernetes\csi-proxy.exe").startswith(b"MZ")
    host.write(r"G:\Directory\app-state\from-host.txt", b"1")
    assert share.fs.exists(r"Directory\app-state\from-host.txt")
    assert "csiproxy" in host.services and "csi-proxy-disk-v1" in host.pipes
    assert pod.services == {} and pod.pipes == set()
    piped = ContainerView(node, "ebs-csi-node", pipe_mounts=["csi-proxy-disk-v1", "missing"])
    assert piped.pipes == {"csi-proxy-disk-v1"}


# ------------------------------------------------------------------ PowerShell


def _ps(view: ContainerView, command: str) -> powershell.ExecResult:
    return powershell.run(["powershell", "-Command", command], view)


def test_ls_looks_like_windows_powershell_5_1() -> None:
    _, view, _, _ = _pod()
    result = _ps(view, "ls")
    text = result.stdout.decode("cp437")
    assert result.exit_code == 0 and result.stderr == b""
    assert text.startswith("\r\n\r\n    Directory: C:\\\r\n\r\n\r\n")
    lines = text.split("\r\n")
    assert "Mode                LastWriteTime         Length Name" in lines
    assert "----                -------------         ------ ----" in lines
    data_row = next(line for line in lines if line.endswith(" data"))
    assert data_row.startswith("d----l ")
    license_row = next(line for line in lines if line.endswith(" License.txt"))
    assert license_row.startswith("-a---- ")
    header = lines.index("Mode                LastWriteTime         Length Name")
    # The name column starts where "Name" does in the header.
    assert license_row.index("License.txt") == lines[header].index("Name")
    assert lines[header].index("Length") + len("Length") == license_row.index(" License.txt")
    assert "ProgramData" not in text  # hidden without -Force
    assert "ProgramData" in _ps(view, "Get-ChildItem -Force C:\\").stdout.decode()
    assert text.endswith("\r\n\r\n\r\n")


def test_empty_directory_lists_nothing() -> None:
    _, view, _, _ = _pod()
    result = _ps(view, r"ls C:\dotnetapp\app-state")
    assert result.exit_code == 0 and result.stdout == b""


def test_write_by_hand_then_find_it_from_a_replacement_pod() -> None:
    node, view, _, volume = _pod()
    wrote = _ps(view, r"Set-Content -Path C:\data\note.txt -Value 'hello from pod 1'")
    assert wrote.exit_code == 0 and wrote.stdout == b""
    # 5.1's Set-Content writes ANSI with a trailing CRLF.
    assert volume.fs.read("note.txt") == b"hello from pod 1\r\n"
    replacement = ContainerView(node, "windows-server-iis-def")
    replacement.mount_volume(r"C:\data", volume)
    got = _ps(replacement, r"Get-Content C:\data\note.txt; Test-Path C:\data\note.txt")
    assert got.stdout == b"hello from pod 1\r\nTrue\r\n" and got.exit_code == 0


def test_new_item_remove_item_test_path_echo_hostname_cd() -> None:
    _, view, _, volume = _pod()
    created = _ps(view, r"New-Item -ItemType Directory -Path C:\data\logs\today")
    assert created.exit_code == 0 and b"today" in created.stdout
    assert volume.fs.is_dir(r"logs\today")
    _ps(view, r"New-Item -ItemType File -Path C:\data\logs\a.txt -Value abc")
    assert volume.fs.read(r"logs\a.txt") == b"abc"
    again = _ps(view, r"New-Item -ItemType File -Path C:\data\logs\a.txt")
    assert again.exit_code == 1 and b"already exists" in again.stderr
    refused = _ps(view, r"Remove-Item C:\data\logs")
    assert refused.exit_code == 1 and b"NonInteractive mode" in refused.stderr
    assert _ps(view, r"Remove-Item C:\data\logs -Recurse -Force").exit_code == 0
    assert _ps(view, r"Test-Path C:\data\logs").stdout == b"False\r\n"
    assert _ps(view, "echo one two; hostname").stdout == b"one\r\ntwo\r\nwindows-server-iis-abc\r\n"
    assert _ps(view, r"cd C:\data; Set-Content x.txt 1; Test-Path C:\data\x.txt").stdout == (
        b"True\r\n"
    )


def test_error_records_match_5_1() -> None:
    _, view, _, _ = _pod()
    result = _ps(view, r"Get-Content C:\nope")
    assert result.exit_code == 1 and result.stdout == b""
    assert result.stderr.decode() == (
        "Get-Content : Cannot find path 'C:\\nope' because it does not exist.\r\n"
        "At line:1 char:1\r\n"
        "+ Get-Content C:\\nope\r\n"
        "+ ~~~~~~~~~~~~~~~~~~~\r\n"
        "    + CategoryInfo          : ObjectNotFound: (C:\\nope:String) [Get-Content], "
        "ItemNotFoundException\r\n"
        "    + FullyQualifiedErrorId : PathNotFound,Microsoft.PowerShell.Commands."
        "GetContentCommand\r\n"
        " \r\n"
    )


def test_unknown_command_and_exit_code_of_the_last_statement() -> None:
    _, view, _, _ = _pod()
    unknown = _ps(view, "Get-Unicorn")
    assert unknown.exit_code == 1
    assert unknown.stderr.decode().startswith(
        "Get-Unicorn : The term 'Get-Unicorn' is not recognized as the name of a cmdlet, "
        "function, script file, or operable program."
    )
    assert b"[], CommandNotFoundException" in unknown.stderr
    # -Command's exit code follows the last statement, as in 5.1.
    recovered = _ps(view, r"Get-Content C:\nope; echo fine")
    assert recovered.exit_code == 0 and recovered.stdout == b"fine\r\n"
    assert b"char:1" in recovered.stderr


def test_read_only_and_missing_drive_errors() -> None:
    _, view, _, _ = _pod()
    volume = Volume("vol-ro", 1)
    volume.format()
    view.mount_volume(r"C:\ro", volume, read_only=True)
    denied = _ps(view, r"Set-Content C:\ro\x.txt hi")
    assert denied.exit_code == 1
    assert denied.stderr.startswith(b"Set-Content : Access to the path 'C:\\ro\\x.txt' is denied.")
    assert b"UnauthorizedAccessException" in denied.stderr
    drive = _ps(view, r"ls G:\Directory")
    assert b"A drive with the name 'G' does not exist." in drive.stderr


def test_encoded_command_errors_are_clixml_on_stderr() -> None:
    _, view, _, _ = _pod()
    encoded = base64.b64encode(r"Get-Content C:\nope".encode("utf-16-le")).decode()
    result = powershell.run(["powershell.exe", "-NonInteractive", "-EncodedCommand", encoded], view)
    assert result.exit_code == 1
    assert result.stderr.startswith(b'#< CLIXML\r\n<Objs Version="1.1.0.1"')
    assert b'<S S="Error">Get-Content : Cannot find path' in result.stderr
    with_tty = powershell.run(["powershell", "-EncodedCommand", encoded], view, tty=True)
    assert with_tty.stderr.startswith(b"Get-Content : ")
    bad = powershell.run(["powershell", "-EncodedCommand", "not base64!"], view)
    assert bad.exit_code == 64 and b"not properly encoded" in bad.stderr


def test_stdout_uses_the_oem_code_page() -> None:
    _, view, _, volume = _pod()
    volume.fs.write("u.txt", "naïve ✓".encode("utf-8-sig"))
    assert _ps(view, r"Get-Content C:\data\u.txt").stdout == "naïve ?\r\n".encode("cp437")


# ---------------------------------------------------------------- cmd and exec


def test_cmd_echo_into_read_only_volume_is_access_denied() -> None:
    _, view, _, _ = _pod()
    volume = Volume("vol-ro", 1)
    volume.format()
    view.mount_volume(r"C:\ro", volume, read_only=True)
    result = powershell.run(["cmd", "/c", r"echo windows-volume-test > C:\ro\f.txt"], view)
    assert (result.exit_code, result.stderr, result.stdout) == (1, b"Access is denied.\r\n", b"")


def test_cmd_builtins() -> None:
    _, view, _, volume = _pod()
    assert powershell.run(["cmd", "/c", r"echo hi > C:\data\h.txt"], view).exit_code == 0
    assert volume.fs.read("h.txt") == b"hi \r\n"  # cmd keeps the space before '>'
    assert powershell.run(["cmd.exe", "/c", r"type C:\data\h.txt"], view).stdout == b"hi \r\n"
    missing = powershell.run(["cmd", "/c", r"type C:\data\nope.txt"], view)
    assert missing.stderr == b"The system cannot find the file specified.\r\n"
    listing = powershell.run(["cmd", "/c", "dir", "C:\\"], view).stdout.decode()
    assert " Directory of C:\\" in listing and "<SYMLINKD>     data" in listing
    unknown = powershell.run(["cmd", "/c", "frobnicate"], view)
    assert unknown.exit_code == 9009
    assert powershell.run(["hostname"], view).stdout == b"windows-server-iis-abc\r\n"


def test_missing_executable_fails_to_start_like_containerd() -> None:
    _, view, _, _ = _pod()
    result = powershell.run(["bash", "-c", "ls"], view)
    assert result.start_error is not None and result.exit_code == 126
    assert result.start_error.startswith('failed to exec in container: failed to start exec "')
    assert f"hcs::System::CreateProcess {view.container_id}: " in result.start_error
    assert result.start_error.endswith("The system cannot find the file specified.: unknown")
    assert powershell.run(["pwsh", "-c", "ls"], view).start_error is not None
    nano = ContainerView(
        WindowsNode("n"), "p", image="mcr.microsoft.com/windows/nanoserver:ltsc2019"
    )
    assert powershell.run(["powershell"], nano).start_error is not None
    full = powershell.run(
        [r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe", "-c", "hostname"], view
    )
    assert full.stdout == b"windows-server-iis-abc\r\n"


def test_argument_forms() -> None:
    _, view, _, _ = _pod()
    # Bare arguments after the switches are the command (5.1's default is -Command).
    assert powershell.run(["powershell", "-NoProfile", "echo", "x"], view).stdout == b"x\r\n"
    assert powershell.run(["powershell", "-nop", "-c", "echo y"], view).stdout == b"y\r\n"
    assert powershell.run(["powershell"], view).exit_code == 0
    missing_file = powershell.run(["powershell", "-File", r"C:\nope.ps1"], view)
    assert missing_file.exit_code == 64 and b"-File parameter does not exist" in missing_file.stderr


def test_variables_set_in_the_script_expand_in_arguments() -> None:
    _, view, _, volume = _pod()
    result = _ps(view, r"$dir = 'C:\data'; New-Item -ItemType Directory -Path $dir\sub; echo $dir")
    assert volume.fs.is_dir("sub")
    assert result.stdout.endswith(b"C:\\data\r\n")
    assert _ps(view, '$n = "x"; echo "name: $n"').stdout == b"name: x\r\n"
    assert _ps(view, r"$p = 'C:\data'; Test-Path $p").stdout == b"True\r\n"


def test_format_clears_in_place() -> None:
    volume = Volume("vol-2", 1)
    held = volume.fs
    held.write("old.txt", b"x")
    volume.format()
    assert volume.fs is held and not held.exists("old.txt")
    assert [e.name for e in held.listdir("")] == ["System Volume Information"]
    assert held.stat("System Volume Information").attributes == "hs"
