"""Safe writing: never overwrite without being asked, never leave half a file.

Every output is written to a temporary sibling (same directory, so the final
rename is atomic on one file system) and moved into place only when complete. A
crash or an error mid-write leaves any previous file whole and no debris behind.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from trainer.errors import ScanWriteError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _give_default_permissions(path: Path, is_folder: bool) -> None:
    """mkstemp/mkdtemp make private (0600/0700) entries; a finished output gets the
    permissions a plain ``open``/``mkdir`` would have given it."""
    os.chmod(path, (0o777 if is_folder else 0o666) & ~_umask())


def ensure_can_write(
    target: str | os.PathLike[str], overwrite: bool, *, make_parents: bool = False
) -> Path:
    """Check that ``target`` (a file or a folder) may be written, before any work starts.

    Raises :class:`ScanWriteError` naming ``target`` if it exists and ``overwrite`` is
    false, or if its folder does not exist, is a file, or does not accept new files
    (permissions, a read-only file system): outputs are made as temporary siblings and
    renamed, so the folder must take new entries. With ``make_parents`` (the writer
    creates missing folders) the nearest folder that exists is checked instead.
    """
    target = Path(target)
    if target.exists() and not overwrite:
        raise ScanWriteError("already exists (pass --overwrite to replace it)", target)
    parent = target.parent if str(target.parent) else Path(".")
    while make_parents and not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.exists():
        raise ScanWriteError(f"folder {parent} does not exist", target)
    if not parent.is_dir():
        raise ScanWriteError(f"{parent} is a file, not a folder", target)
    _check_takes_new_files(parent, target)
    return target


def ensure_can_write_png(
    target: str | os.PathLike[str], overwrite: bool, *, make_parents: bool = False
) -> Path:
    """:func:`ensure_can_write` for a PNG picture, whose name must end in ``.png``: the
    writers make PNG whatever the name says, so ``x.jpg`` would be a PNG misnamed."""
    target = Path(target)
    if target.suffix.lower() != ".png":
        raise ScanWriteError("pictures are written as PNG: name it .png", target)
    return ensure_can_write(target, overwrite, make_parents=make_parents)


#: errno -> the reason a folder refuses new files, in plain words.
_WRITE_REFUSALS = {
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.EROFS: "read-only file system",
    errno.ENOSPC: "no space left on the device",
}
if hasattr(errno, "EDQUOT"):  # not on Windows
    _WRITE_REFUSALS[errno.EDQUOT] = "disk quota exceeded"


def _check_takes_new_files(folder: Path, target: Path) -> None:
    """Create and delete a hidden empty file in ``folder``. Asking ``os.access`` is not
    enough: it says yes to root on any folder, and knows nothing of read-only or
    special file systems (``/proc``), so only trying tells."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".medstyle-write-check.", dir=folder)
    except OSError as exc:
        why = _WRITE_REFUSALS.get(exc.errno or 0, "it does not accept new files")
        raise ScanWriteError(f"cannot write into folder {folder} ({why})", target) from None
    os.close(fd)
    os.unlink(probe)


@contextlib.contextmanager
def atomic_file(target: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; on success move it onto ``target``.

    The temporary name keeps ``target``'s suffixes (``.nii.gz`` stays ``.nii.gz``) so
    writers that choose a format by extension still work.
    """
    target = ensure_can_write(target, overwrite)
    suffix = "".join(target.suffixes)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.", suffix=f".tmp{suffix}", dir=target.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if target.is_dir():
            raise ScanWriteError("is a folder, not a file", target)
        _give_default_permissions(tmp, is_folder=False)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_folder(target: str | os.PathLike[str], overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary folder next to ``target``; on success it becomes ``target``.

    With ``overwrite`` an existing ``target`` is replaced only after the new folder is
    complete (it is moved aside, the new one moved in, then the old one deleted).
    """
    target = ensure_can_write(target, overwrite)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        _give_default_permissions(tmp, is_folder=True)
        if target.exists():
            old = target.with_name(f".{target.name}.old-{os.getpid()}")
            os.replace(target, old)
            os.replace(tmp, target)
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
            else:
                old.unlink(missing_ok=True)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
