"""Safe writing: never overwrite without being asked, never leave half a file.

Every output is written to a temporary sibling (same directory, so the final
rename is atomic on one file system) and moved into place only when complete. A
crash or an error mid-write leaves any previous file whole and no debris behind.
"""

from __future__ import annotations

import contextlib
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


def ensure_can_write(target: str | os.PathLike[str], overwrite: bool) -> Path:
    """Check that ``target`` may be written; raise :class:`ScanWriteError` if it exists
    and ``overwrite`` is false, or if its folder does not exist."""
    target = Path(target)
    if target.exists() and not overwrite:
        raise ScanWriteError("already exists (pass --overwrite to replace it)", target)
    parent = target.parent if str(target.parent) else Path(".")
    if not parent.is_dir():
        raise ScanWriteError(f"folder {parent} does not exist", target)
    return target


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
