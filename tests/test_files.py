"""Writing reports and exports: whole or not at all, through symlinks, into FIFOs and devices, modes kept."""

from __future__ import annotations

import os
import stat
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from prodguardian.errors import ProdGuardianError
from prodguardian.files import write_text
from prodguardian.source import write_export
from tests import logs

POSIX = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes, FIFOs and devices")


@pytest.fixture
def umask_027() -> Iterator[None]:
    previous = os.umask(0o027)
    yield
    os.umask(previous)


@POSIX
def test_a_new_file_gets_the_umasks_mode(tmp_path: Path, umask_027: None) -> None:
    target = tmp_path / "reports" / "status.txt"
    write_text(str(target), "🔴 CRITICAL\n")
    assert target.read_text(encoding="utf-8") == "🔴 CRITICAL\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert [p.name for p in target.parent.iterdir()] == ["status.txt"]  # no temporary file left


@POSIX
def test_an_existing_file_keeps_its_mode(tmp_path: Path, umask_027: None) -> None:
    target = tmp_path / "status.txt"
    target.write_text("old", encoding="utf-8")
    target.chmod(0o664)
    write_text(str(target), "new")
    assert target.read_text(encoding="utf-8") == "new"
    assert stat.S_IMODE(target.stat().st_mode) == 0o664


def _symlink(link: Path, target: str) -> None:
    try:
        link.symlink_to(target)
    except OSError as exc:  # Windows without the privilege to create symlinks
        pytest.skip(f"cannot create a symlink here: {exc}")


def test_a_symlink_is_written_through_and_stays_a_link(tmp_path: Path) -> None:
    real = tmp_path / "shared" / "status.txt"
    real.parent.mkdir()
    real.write_text("old", encoding="utf-8")
    link = tmp_path / "status.txt"
    _symlink(link, str(real))
    write_text(str(link), "new")
    assert link.is_symlink() and real.read_text(encoding="utf-8") == "new"
    dangling = tmp_path / "next.txt"
    _symlink(dangling, "later/next.txt")
    write_text(str(dangling), "created")
    assert dangling.is_symlink()
    assert (tmp_path / "later" / "next.txt").read_text(encoding="utf-8") == "created"


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no named pipes here")
def test_a_fifo_is_written_directly(tmp_path: Path) -> None:
    fifo = tmp_path / "status.fifo"
    os.mkfifo(fifo)
    received: list[str] = []
    reader = threading.Thread(target=lambda: received.append(fifo.read_text(encoding="utf-8")))
    reader.start()
    write_text(str(fifo), "🟢 OK\n")
    reader.join()
    assert received == ["🟢 OK\n"]
    assert stat.S_ISFIFO(fifo.stat().st_mode)


def _device(tmp_path: Path, name: str, minor: int) -> Path:
    """A copy of /dev/null (minor 3) or /dev/full (minor 7) in tmp_path: the real ones are never at risk."""
    path = tmp_path / name
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, minor))
        with open(path, "rb"):
            pass
    except (OSError, AttributeError) as exc:
        pytest.skip(f"cannot make a device node here: {exc}")
    return path


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux device numbers")
def test_a_device_is_written_directly_never_replaced(tmp_path: Path) -> None:
    null = _device(tmp_path, "null", 3)
    write_text(str(null), "🔴 CRITICAL\n")
    assert stat.S_ISCHR(null.stat().st_mode)
    full = _device(tmp_path, "full", 7)
    with pytest.raises(ProdGuardianError, match="full: cannot write: No space left on device"):
        write_text(str(full), "🔴 CRITICAL\n")
    assert stat.S_ISCHR(full.stat().st_mode)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["full", "null"]


def test_a_failed_export_leaves_the_old_file_whole(tmp_path: Path) -> None:
    target = tmp_path / "window.json"
    target.write_text("[]\n", encoding="utf-8")

    def entries() -> Iterator[dict[str, object]]:
        yield logs.request(0, "/api/threads")
        raise ProdGuardianError("the read failed halfway")

    with pytest.raises(ProdGuardianError, match="halfway"):
        write_export(entries(), str(target))
    assert target.read_text(encoding="utf-8") == "[]\n"
    assert [p.name for p in tmp_path.iterdir()] == ["window.json"]


def test_paths_that_cannot_be_written_name_themselves(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("", encoding="utf-8")
    under_a_file = tmp_path / "a-file" / "status.txt"
    with pytest.raises(ProdGuardianError, match=r"status\.txt: cannot write: "):
        write_text(str(under_a_file), "x")
    with pytest.raises(ProdGuardianError, match="cannot write: it is a folder"):
        write_text(str(tmp_path), "x")


@POSIX
@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes anywhere")
def test_a_folder_without_write_permission(tmp_path: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(ProdGuardianError, match=r"status\.txt: cannot write: Permission denied"):
            write_text(str(folder / "status.txt"), "x")
    finally:
        folder.chmod(0o700)
