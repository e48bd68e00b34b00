"""Write to a temporary name next to the target, rename only on success.

A crash, a Ctrl-C or a bad input half-way through never leaves a half-written file
(or folder) under the final name, and never destroys what was there before.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from flowvid.errors import InputError


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
    final.parent.mkdir(parents=True, exist_ok=True)
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
        os.chmod(tmp, 0o777 & ~_umask())
    else:
        fd, name = tempfile.mkstemp(prefix=f".{final.stem}.", suffix=final.suffix, dir=final.parent)
        os.close(fd)
        tmp = Path(name)
        os.chmod(tmp, 0o666 & ~_umask())
    try:
        yield tmp
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
