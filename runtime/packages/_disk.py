"""Crash-safe small-file primitives for the package manager: atomic JSON, durable appends.

Layer: runtime (package manager). Synchronous file work only (callers run it on a worker
thread). A JSON document is written to a temp file in the same folder, fsynced, renamed
over the target and the folder fsynced: after a power cut a reader sees the old document
or the new one, never a mix. It knows nothing of apps or packages.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_json(path: Path, doc: Any) -> None:
    """Replace ``path`` with ``doc`` atomically and durably."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = json.dumps(doc, indent=1, sort_keys=True).encode()
    # a unique temp name: two writers of one document never rename each other's half-written file
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        try:
            os.write(fd, data)
            os.fchmod(fd, 0o644)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def read_json(path: Path) -> Any:
    """The document at ``path``, or ``None`` when there is none. ``ValueError`` if it is corrupt."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    return json.loads(text)


def remove(path: Path) -> None:
    """Remove a file or a folder tree if present; durable for the parent folder."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        try:
            path.unlink()
        except FileNotFoundError:
            return
    if path.parent.is_dir():
        fsync_dir(path.parent)


def append_durably(path: Path, data: bytes, *, offset: int) -> None:
    """Write ``data`` at ``offset`` of ``path`` (truncating anything after it) and fsync.

    Truncating first makes a retry after a crash idempotent: bytes of a chunk whose
    completion was never recorded are simply written again.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        os.ftruncate(fd, offset)
        os.pwrite(fd, data, offset)
        os.fsync(fd)
    finally:
        os.close(fd)


__all__ = ["append_durably", "fsync_dir", "read_json", "remove", "write_json"]
