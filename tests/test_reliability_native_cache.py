"""The compiled kernels are never loaded from a place another user can write: a
library planted in a cache directory owned by someone else (or writable by group or
others) never runs; the kernels are built in a private directory instead and
``native.status()`` says why."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from scrapl.transforms.jtfs import native

CC = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
pytestmark = pytest.mark.skipif(CC is None, reason="needs a C compiler")
OTHER_UID = 65534  # "nobody"

PLANT = r"""
#include <stdio.h>
__attribute__((constructor)) static void planted(void) {
    FILE *f = fopen(MARKER, "w"); if (f) { fputs("ran", f); fclose(f); }
}
long scrapl_kernels_abi(void) { return 5; }
"""


def _names() -> list[str]:
    """The file names the build looks for (one per flag set)."""
    version = subprocess.run([CC, "--version"], capture_output=True, text=True).stdout
    src = native._SOURCE.read_bytes()
    return ["jtfs_kernels_"
            + hashlib.sha256(b"\0".join([src, " ".join(f).encode(), version.encode(),
                                         native._cpu_signature().encode(), sys.platform.encode()])).hexdigest()[:16]
            + ".so" for f in native._FLAG_SETS]


def _plant(directory: Path, marker: Path, tmp: Path, owner: int | None, mode: int) -> None:
    """A library under every name the build uses; its constructor writes ``marker``."""
    directory.mkdir(parents=True, exist_ok=True)
    c = tmp / "plant.c"
    c.write_text(PLANT)
    lib = tmp / "plant.so"
    subprocess.run([CC, "-shared", "-fPIC", f'-DMARKER="{marker}"', str(c), "-o", str(lib)], check=True)
    for name in _names():
        shutil.copy(lib, directory / name)
        os.chmod(directory / name, 0o755)
    os.chmod(directory, mode)
    if owner is not None:
        for p in (directory, *directory.iterdir()):
            os.chown(p, owner, -1)


def _fresh_build(monkeypatch: pytest.MonkeyPatch) -> dict:
    monkeypatch.setattr(native, "_state", {})  # forget the loaded kernels for this test only
    native.get()
    return native.status()


@pytest.fixture
def chown_ok(tmp_path: Path) -> None:
    p = tmp_path / "probe"
    p.touch()
    try:
        os.chown(p, OTHER_UID, -1)
    except PermissionError:
        pytest.skip("needs to create files owned by another user (root)")


def test_a_library_planted_in_the_predictable_temporary_directory_never_runs(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, chown_ok: None) -> None:
    """The cache directory cannot be created; ``$TMPDIR/scrapl-<uid>`` exists, made by
    another user with a library in it."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("SCRAPL_CACHE_DIR", str(blocker / "cache"))  # below a file: cannot exist
    marker = tmp_path / "planted-ran"
    _plant(tmp / f"scrapl-{os.getuid()}", marker, tmp_path, OTHER_UID, 0o777)
    st = _fresh_build(monkeypatch)
    assert not marker.exists(), "the planted library was loaded"
    assert st["active"] is True, st
    path = Path(str(st["path"]))
    assert path.parent != tmp / f"scrapl-{os.getuid()}"
    assert path.parent.stat().st_uid == os.getuid() and path.parent.stat().st_mode & 0o077 == 0
    assert f"scrapl-{os.getuid()}" in str(st["cache_note"]) and "owned by uid" in str(st["cache_note"])


@pytest.mark.parametrize("case", ["other-owner", "group-writable", "world-writable"])
def test_a_cache_directory_others_can_write_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                       case: str) -> None:
    if case == "other-owner":
        p = tmp_path / "probe"
        p.touch()
        try:
            os.chown(p, OTHER_UID, -1)
        except PermissionError:
            pytest.skip("needs root")
    tmp = tmp_path / "tmp"
    tmp.mkdir(mode=0o700)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    cache = tmp_path / "cache"
    monkeypatch.setenv("SCRAPL_CACHE_DIR", str(cache))
    marker = tmp_path / "planted-ran"
    owner, mode = {"other-owner": (OTHER_UID, 0o755), "group-writable": (None, 0o775),
                   "world-writable": (None, 0o777)}[case]
    _plant(cache, marker, tmp_path, owner, mode)
    st = _fresh_build(monkeypatch)
    assert not marker.exists(), "the planted library was loaded"
    assert st["active"] is True and not str(st["path"]).startswith(str(cache)), st
    assert str(cache) in str(st["cache_note"])


def test_a_planted_file_in_a_private_directory_is_rebuilt_not_loaded(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, chown_ok: None) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("SCRAPL_CACHE_DIR", str(cache))
    marker = tmp_path / "planted-ran"
    _plant(cache, marker, tmp_path, None, 0o700)
    for f in cache.iterdir():
        os.chown(f, OTHER_UID, -1)
    st = _fresh_build(monkeypatch)
    assert not marker.exists(), "the planted library was loaded"
    assert st["active"] is True and st["cache_note"] is None
    assert Path(str(st["path"])).stat().st_uid == os.getuid()


def test_the_default_cache_directory_is_private(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SCRAPL_CACHE_DIR", str(tmp_path / "new" / "cache"))
    st = _fresh_build(monkeypatch)
    assert st["active"] is True and st["cache_note"] is None
    d = Path(str(st["path"])).parent
    assert d == tmp_path / "new" / "cache" and d.stat().st_mode & 0o077 == 0
