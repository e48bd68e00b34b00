"""Write to a temporary name next to the target, rename only on success; never destroy input.

A crash, a Ctrl-C or a bad input half-way through never leaves a half-written file
(or folder) under the final name, and never destroys what was there before.

One rule for every output (:func:`check_target`), checked before any work:

- no output replaces an input of this process (every path the command line was given to
  read, and every file flowvid's readers opened: :func:`protect`), nor a folder holding one;
- no output replaces anything but a regular file or a folder: a device, a pipe or a socket
  is refused; a file never replaces a folder, nor a folder a file;
- a folder output replaces only a folder that flowvid wrote (it holds the marker
  :data:`MARKER`) or an empty one: a folder of someone else's files is never emptied;
- files of fixed names (a report, a batch's outputs) go into a folder only once it is
  claimed (:func:`claim_folder`): a new, empty or flowvid-written one, or with ``overwrite``
  a folder of other files, of which only the names flowvid writes are replaced.
"""

from __future__ import annotations

import contextlib
import errno
import glob
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from flowvid.errors import InputError

MARKER = ".flowvid-output"  # in every folder flowvid writes: it may replace that folder
_PROTECTED: set[Path] = set()  # resolved paths this process reads


def protect(*paths: str | Path | None) -> None:
    """Never write over these paths (inputs of this process) or a folder holding one."""
    for path in paths:
        if path is not None and Path(path).exists():
            _PROTECTED.add(Path(path).resolve())


@contextlib.contextmanager
def protecting(*paths: str | Path | None) -> Iterator[None]:
    """:func:`protect` for the duration of a block (a library call that reads and writes)."""
    before = set(_PROTECTED)
    protect(*paths)
    try:
        yield
    finally:
        _PROTECTED.intersection_update(before)


def check_target(final: str | Path, is_dir: bool = False, others_ok: bool = False) -> None:
    """Refuse (:class:`InputError`, before any work) an output that would destroy data: see
    the module's rule. ``others_ok``: a folder of files flowvid did not write is accepted
    (:func:`claim_folder` with ``overwrite``)."""
    final = Path(final)
    resolved = final.resolve()
    for source in _PROTECTED:
        if source == resolved or (final.is_dir() and source.is_relative_to(resolved)):
            what = "is" if source == resolved else f"holds {source}, which is"
            raise InputError(f"{what} an input of this command: choose another output", final)
    if not (final.exists() or final.is_symlink()):
        return
    if not (final.is_file() or final.is_dir()):
        raise InputError("exists and is not a regular file or folder: choose another output", final)
    if final.is_dir() and not is_dir:
        raise InputError("is a folder: give the output a file name", final)
    if final.is_file() and is_dir:
        raise InputError("is a file: this output is a folder; choose another name", final)
    if is_dir and not others_ok and not (final / MARKER).is_file() and any(final.iterdir()):
        raise InputError(
            "is a folder of files flowvid did not write; choose a new folder or empty it "
            "(or give --overwrite to replace only the files of the names flowvid writes)",
            final,
        )


def claim_folder(folder: str | Path, overwrite: bool = False) -> Path:
    """Make ``folder`` ready for files of fixed names, before any work: created (with the
    marker) when new or empty, reused when flowvid wrote it; a folder of other files is
    refused unless ``overwrite``, and then left unmarked (no later folder output may replace
    it as a whole). Inputs of the command are refused as always."""
    folder = Path(folder)
    check_target(folder, is_dir=True, others_ok=overwrite)
    fresh = not folder.exists() or not any(folder.iterdir())
    folder.mkdir(parents=True, exist_ok=True)
    if fresh:
        (folder / MARKER).write_text("written by flowvid; it may replace this folder\n")
    return folder


def outputs_beside(out: str | Path, *suffixes: str) -> list[Path]:
    """A main output and the files that go beside it under other suffixes (a figure and its
    numbers as .json): each must be another file, and every one is checked by
    :func:`check_target` before any work. Returns the paths beside ``out``."""
    out = Path(out)
    beside = [out.with_suffix(s) for s in suffixes]
    for path, suffix in zip(beside, suffixes, strict=True):
        if path == out:
            raise InputError(f"names the main output; the {suffix} goes beside it", out)
    for path in (out, *beside):
        check_target(path)
    return beside


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_output(final: str | Path, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary path in the same folder as ``final``; rename it there on success.

    The temporary name keeps the final suffix, so writers that pick a format by
    extension (PyAV, OpenCV) behave the same. With ``is_dir`` the temporary path is an
    empty folder. An existing ``final`` is replaced only once the new output is complete.
    """
    final = Path(final)
    blocking = next((p for p in (final.parent, *final.parent.parents) if p.is_file()), None)
    if blocking is not None:
        raise InputError(f"cannot write {final}: {blocking} is a file, not a folder")
    if is_dir and Path.cwd().resolve().is_relative_to(final.resolve()):
        raise InputError(
            "is the current folder (or holds it): a folder output is made whole and put in "
            "place, so name a new folder for it, e.g. --out flows",
            final,
        )
    check_target(final, is_dir)
    final = Path(os.path.abspath(final))  # "a/.." has a name to put the output under
    final.parent.mkdir(parents=True, exist_ok=True)
    _sweep(final)
    prefix = _tmp_prefix(final, os.getpid())
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=prefix, suffix=".tmp", dir=final.parent))
        os.chmod(tmp, 0o777 & ~_umask())
    else:
        fd, name = tempfile.mkstemp(prefix=prefix, suffix=final.suffix, dir=final.parent)
        os.close(fd)
        tmp = Path(name)
        os.chmod(tmp, 0o666 & ~_umask())
    try:
        yield tmp
        if is_dir:
            (tmp / MARKER).write_text("written by flowvid; it may replace this folder\n")
    except BaseException:
        _remove(tmp)
        raise
    if is_dir and final.exists():
        old = final.with_name(f".{final.name}.old")
        _remove(old)
        os.replace(final, old)
        os.replace(tmp, final)
        _remove(old)
    else:
        os.replace(tmp, final)


def _tmp_prefix(final: Path, pid: int) -> str:
    """Temporary names say whose they are: ``.<name>.flowvid-<pid>.``."""
    return f".{final.name}.flowvid-{pid}."


def _sweep(final: Path) -> None:
    """Remove the temporary outputs for ``final`` that a killed flowvid left (kill -9, a
    power cut): those whose writing process no longer runs. Another live writer's are kept."""
    marker = f".{final.name}.flowvid-"
    for stale in final.parent.glob(f"{glob.escape(marker)}*"):
        pid = stale.name[len(marker) :].split(".", 1)[0]
        if pid.isdigit() and not _running(int(pid)):
            _remove(stale)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def reserved_memmap(path: Path, dtype: np.dtype | type, shape: tuple[int, ...]) -> np.memmap:
    """A new .npy opened as a writable memory map, its disk space reserved up front.

    A memory map onto a sparse file meets a full disk only when a page is written, and the
    process dies of SIGBUS; reserving the space turns that into an ``OSError`` (ENOSPC) here,
    before any work is done.
    """
    arr = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    try:
        with open(path, "r+b") as fh:
            reserve(fh.fileno(), os.fstat(fh.fileno()).st_size)
    except OSError:
        del arr
        raise
    return arr


def reserve(fd: int, size: int) -> None:
    """Reserve ``size`` bytes of disk for an open file: a full disk is ENOSPC now, not later
    (where the filesystem cannot reserve, nothing is done)."""
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as err:
        if err.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise
