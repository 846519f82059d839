"""Exec and log semantics the differential stream test found missing or wrong: a
Linux image's `sh -c`, PowerShell's `throw`, the exec Status per protocol, the log
cut, and when a watch gets bookmarks. The facts come from a real cluster
(tests/test_differential_streams.py pins them); these check the pieces alone."""

from __future__ import annotations

import asyncio
import time

import pytest

from winstor.sim.api.apiserver import _Bookmarks, cut_log, exec_status
from winstor.sim.api.kinds import kind_of
from winstor.sim.api.store import Store
from winstor.sim.nodes import powershell, shell
from winstor.sim.nodes.linux import LinuxContainerView, LinuxNode
from winstor.sim.nodes.windows import ContainerView, WindowsNode

BUSYBOX = "public.ecr.aws/docker/library/busybox:1.36"
UBUNTU = "mcr.microsoft.com/powershell:lts-7.4-ubuntu-22.04"


def sh(script: str, image: str = BUSYBOX) -> tuple[bytes, bytes, int]:
    return shell.run(["sh", "-c", script], hostname="pod-a", image=image)


def test_sh_runs_a_script_and_exits_with_its_code() -> None:
    assert sh("echo hi; exit 4") == (b"hi\n", b"", 4)
    assert sh("echo a && false || echo b") == (b"a\nb\n", b"", 0)
    assert sh("false; exit") == (b"", b"", 1)
    assert sh("echo err >&2; echo out; hostname") == (b"out\npod-a\n", b"err\n", 0)
    assert sh("printf '%s=%d\\n' a 1 b 2") == (b"a=1\nb=2\n", b"", 0)
    assert sh("echo 'a;b' \"c  d\"\necho $?") == (b"a;b c  d\n0\n", b"", 0)


def test_an_unknown_command_is_not_found_in_the_shells_words() -> None:
    assert sh("nope; echo $?") == (b"127\n", b"sh: nope: not found\n", 0)
    assert sh("nope", UBUNTU) == (b"", b"sh: 1: nope: not found\n", 127)
    assert sh("echo hi | tr a b")[2] == 127  # a pipe is beyond the model: it says so
    assert sh("exit x", UBUNTU) == (b"", b"sh: 1: exit: Illegal number: x\n", 2)


def test_which_images_have_which_shell() -> None:
    assert shell.is_shell("sh", BUSYBOX) and shell.is_shell("/bin/sh", UBUNTU)
    assert shell.is_shell("bash", UBUNTU) and not shell.is_shell("bash", BUSYBOX)
    assert not shell.is_shell("/opt/sh", UBUNTU)


def test_a_containers_log_is_what_it_printed_before_it_sleeps() -> None:
    command = ["sh", "-c", "echo one; echo two >&2; sleep 3600; echo never"]
    assert shell.container_log(command, "p", BUSYBOX) == "one\ntwo\n"
    assert shell.container_log(["pause"], "p", BUSYBOX) == ""
    assert shell.container_log(["powershell.exe", "-Command", "echo x"], "p", BUSYBOX) == ""


def test_sh_in_a_modelled_linux_container_reaches_its_tools() -> None:
    node = LinuxNode(name="worker", kernel_release="6.8.0")
    view = LinuxContainerView(node, "probe", UBUNTU)
    result = powershell.run(["sh", "-c", "cat /etc/hostname && ls /nothere; echo $?"], view)
    assert result.stdout == b"probe\n2\n" and b"No such file" in result.stderr


@pytest.mark.parametrize(("script", "first", "column"), [
    ('throw "x"', "x", 1),
    ('echo a; throw "it broke"', "it broke", 9),
    ("throw", "ScriptHalted", 1),
])
def test_throw_ends_the_script_with_exit_code_1(script: str, first: str, column: int) -> None:
    view = ContainerView(WindowsNode("a"), "pod-a")
    result = powershell.run(["powershell", "-Command", script], view)
    lines = result.stderr.decode().split("\r\n")
    assert result.exit_code == 1
    assert lines[0] == first and lines[1] == f"At line:1 char:{column}"
    assert "OperationStopped" in lines[4] and "RuntimeException" in lines[4]
    assert lines[5] == f"    + FullyQualifiedErrorId : {first}"


def test_exec_status_is_the_runtimes_or_the_translators() -> None:
    cmd = ["powershell", "-Command", "exit 3"]
    assert exec_status(cmd, 3, None, translated=True)["message"] == (
        "command terminated with non-zero exit code: command terminated with exit code 3")
    assert exec_status(cmd, 3, None, translated=False)["message"] == (
        "command terminated with non-zero exit code: error executing command "
        "[powershell -Command exit 3], exit code 3")
    v4 = exec_status(cmd, 126, "boom", translated=False)
    v5 = exec_status(cmd, 126, "boom", translated=True)
    assert v4["code"] == v5["code"] == 500
    assert v4["message"] == "Internal error occurred: error executing command in container: boom"
    assert v5["message"] == "Internal error occurred: " + v4["message"]
    assert v5["details"]["causes"] == [{"message": v4["message"]}]
    assert exec_status(cmd, 0, None, translated=True) == {"metadata": {}, "status": "Success"}


def test_cut_log() -> None:
    text = "a\nb\nc\n"
    assert cut_log(text, "2", None) == "b\nc\n"
    assert cut_log(text, "0", None) == ""
    assert cut_log(text, "9", "3") == "a\nb"
    assert cut_log(text, None, None) == text


def test_bookmarks_come_before_the_deadline_and_only_when_the_kind_moved() -> None:
    async def scenario() -> None:
        store = Store()
        cms = kind_of("v1", "ConfigMap")
        store.create(cms, {"metadata": {"name": "a", "namespace": "default"}})
        start = str(store.rv)
        now = time.monotonic()
        quiet = _Bookmarks(store, cms, start, now + 10, 60.0)
        assert quiet.take(quiet.due) is None  # nothing newer than the watch's version
        moved = _Bookmarks(store, cms, start, now + 10, 60.0)
        store.create(cms, {"metadata": {"name": "b", "namespace": "default"}})
        assert moved.take(moved.due - 0.5) is None  # not yet due
        mark = moved.take(moved.due)
        assert mark == {"kind": "ConfigMap", "apiVersion": "v1",
                        "metadata": {"resourceVersion": str(store.rv)}}
        assert moved.due == float("inf")  # the pre-deadline bookmark was the last
        short = _Bookmarks(store, cms, start, now + 2, 60.0)
        assert short.due == float("inf")
        for marks in (quiet, moved, short):
            marks.close()
    asyncio.run(scenario())
