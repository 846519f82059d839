"""winstor.heap: the heap a run builds is frozen before pytest's final collections
and thawed after them, so an in-process run leaves the collector as it found it."""

from __future__ import annotations

import gc
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from _pytest import unraisableexception

# A catalog check as the plugin sees one (a winstor_check mark, run per cluster), with a
# stand-in for the cluster fixture so that nothing connects anywhere.
CATALOG_CHECK = """
import gc, pathlib, pytest

@pytest.fixture(scope="session")
def cluster(request):
    return request.param

@pytest.mark.winstor_check("HEAP-01", "the heap is frozen while checks run")
def test_heap(cluster):
    pathlib.Path({during!r}).write_text(str(gc.get_freeze_count()))
"""


def _run_in_process(tmp_path: Path, source: str) -> int:
    # A module name of its own: in-process runs share sys.modules.
    path = tmp_path / f"test_{tmp_path.name.replace('-', '_')}.py"
    path.write_text(source)
    return pytest.main([str(path), "-q", "-p", "no:randomly",
                        "-p", "no:cacheprovider", "--rootdir", str(tmp_path),
                        f"--report-dir={tmp_path / 'reports'}"])


def test_frozen_during_the_run_and_at_the_final_collections_then_thawed(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    during = tmp_path / "during.txt"
    seen: list[int] = []
    harder = unraisableexception.gc_collect_harder

    def recording(iterations: int) -> None:
        seen.append(gc.get_freeze_count())
        harder(iterations)

    monkeypatch.setattr(unraisableexception, "gc_collect_harder", recording)
    gc.unfreeze()
    assert _run_in_process(tmp_path, CATALOG_CHECK.format(during=str(during))) == 0
    assert int(during.read_text()) > 1000, "the heap was not frozen when the check ran"
    assert seen and seen[0] > 1000, "pytest's final collections walked the whole heap"
    assert gc.get_freeze_count() == 0, "the heap stayed frozen after the run"


def test_a_session_without_catalog_checks_keeps_its_collector(tmp_path: Path) -> None:
    # winstor's plugin loads in every pytest run where winstor is installed.
    during = tmp_path / "during.txt"
    gc.unfreeze()
    gc.freeze()  # the host's own freeze, which the run must leave in place
    host = gc.get_freeze_count()
    try:
        assert _run_in_process(tmp_path, textwrap.dedent(f"""
            import gc, pathlib

            def test_plain():
                pathlib.Path({str(during)!r}).write_text(str(gc.get_freeze_count()))
            """)) == 0
        # Frozen objects can still be freed by reference counting, so the count may
        # shrink; a freeze by the run would have grown it, a thaw emptied it.
        assert 0 < int(during.read_text()) <= host
        assert 0 < gc.get_freeze_count() <= host
    finally:
        gc.unfreeze()


def test_frozen_again_when_the_interpreter_exits(tmp_path: Path) -> None:
    # An exit handler registered before the run runs after winstor's (last in,
    # first out), so it sees what the interpreter's shutdown collections will see.
    (tmp_path / "test_one.py").write_text(CATALOG_CHECK.format(during=str(tmp_path / "d")))
    script = textwrap.dedent(f"""
        import atexit, gc, sys
        import pytest
        atexit.register(lambda: print("frozen at exit:", gc.get_freeze_count()))
        code = pytest.main([{str(tmp_path / "test_one.py")!r}, "-q", "-p", "no:randomly",
                            "-p", "no:cacheprovider", "--rootdir", {str(tmp_path)!r}])
        print("frozen after the run:", gc.get_freeze_count())
        sys.exit(code)
        """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = dict(line.split(": ") for line in proc.stdout.splitlines() if "frozen" in line)
    assert lines["frozen after the run"] == "0"
    assert int(lines["frozen at exit"]) > 1000


def test_library_use_leaves_the_collector_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    # Outside a run (or after it thawed), making a boto3 client freezes nothing;
    # inside one, it freezes the client's service model with the rest.
    from winstor import heap
    monkeypatch.setattr(heap, "_settled", False)
    gc.unfreeze()
    heap.keep_settled()
    assert gc.get_freeze_count() == 0
    monkeypatch.setattr(heap, "_settled", True)
    try:
        heap.keep_settled()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
