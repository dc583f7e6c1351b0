"""``unpack``: write a verified package's files into a new app folder, atomically.

Layer: runtime (package manager). Files go into a temp folder created inside the
destination's parent, each re-hashed as it is written (the archive may have changed
since ``verify``); only when every file matches is the temp folder renamed to the
destination. Any failure removes the temp folder: the destination never exists half
written, and nothing else on disk changes. Files are created 0644 with ``O_EXCL`` and
``O_NOFOLLOW``, folders 0755; nothing is executable.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

from protocols.packages.archive import stream_entry
from protocols.packages.errors import BadArchive, BadDestination, Tampered
from protocols.packages.format import DIR_MODE, FILE_MODE
from runtime.packages.verify import VerifiedPackage


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_file(zf: zipfile.ZipFile, info: zipfile.ZipInfo, target: Path, expected: str, name: str) -> None:
    target.parent.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, FILE_MODE)
    digest = hashlib.sha256()
    try:
        for chunk in stream_entry(zf, info, limit=info.file_size):
            digest.update(chunk)
            os.write(fd, chunk)
        os.fchmod(fd, FILE_MODE)
        os.fsync(fd)
    finally:
        os.close(fd)
    if digest.hexdigest() != expected:
        raise Tampered(name, "changed in the archive after it was verified")


def _extract(verified: VerifiedPackage, tmp: Path) -> None:
    try:
        fh = verified.path.open("rb")
    except OSError as err:
        raise BadArchive(f"cannot read {verified.path}: {err.strerror or err}") from err
    with fh:
        if hashlib.file_digest(fh, "sha256").hexdigest() != verified.sha256:
            raise Tampered("<package>", f"{verified.path.name} changed after it was verified")
        fh.seek(0)
        try:
            zf = zipfile.ZipFile(fh)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as err:
            raise BadArchive(f"{verified.path.name} is not a readable zip archive: {err}") from err
        with zf:
            # Target paths come from verified.files (checked safe); the archive only supplies bytes,
            # and each file is hashed again as it is written.
            entries = {i.filename: i for i in zf.infolist() if not i.filename.endswith("/")}
            for name in sorted(verified.files):
                if name not in entries:
                    raise Tampered(name, "missing from the archive after it was verified")
                _write_file(zf, entries[name], tmp.joinpath(*name.split("/")), verified.files[name], name)
    for folder in sorted({p for p in tmp.rglob("*") if p.is_dir()}):
        folder.chmod(DIR_MODE)
    tmp.chmod(DIR_MODE)


def unpack(verified: VerifiedPackage, dest_dir: str | os.PathLike[str]) -> Path:
    """Unpack ``verified`` into the new folder ``dest_dir`` (must not exist; its parent must).

    Returns ``dest_dir``. On failure nothing is left behind and ``dest_dir`` does not exist.
    """
    dest = Path(dest_dir)
    parent = dest.parent
    if dest.exists() or dest.is_symlink():
        raise BadDestination(f"{dest} already exists; unpack into a new folder")
    if not parent.is_dir():
        raise BadDestination(f"{parent} is not a folder")
    try:
        tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.unpack-", dir=parent))
    except OSError as err:
        raise BadDestination(f"cannot create a temp folder in {parent}: {err.strerror or err}") from err
    try:
        _extract(verified, tmp)
        try:
            os.rename(tmp, dest)
        except OSError as err:
            raise BadDestination(f"cannot rename into {dest}: {err.strerror or err}") from err
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _fsync_dir(parent)
    return dest


__all__ = ["unpack"]
