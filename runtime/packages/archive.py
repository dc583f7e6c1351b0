"""A ``.ttuapp`` file on the terminal's disk, opened for ``protocols.packages.archive``'s checks.

Layer: runtime (package manager). The file side of the package format: opens the package
(a regular file, nothing else) and hands the open file to the pure checks; never writes.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from protocols.packages import archive
from protocols.packages.archive import SignedArchive
from protocols.packages.errors import BadArchive
from protocols.packages.format import DEFAULT_LIMITS, PackageLimits


@contextmanager
def open_package(path: Path) -> Iterator[BinaryIO]:
    """The package file at ``path`` open for reading; ``BadArchive`` if it cannot be read or
    is not a regular file (a fifo would block, a device would never end)."""
    try:
        fh = path.open("rb")
    except OSError as err:
        raise BadArchive(f"cannot read {path}: {err.strerror or err}") from err
    with fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            raise BadArchive(f"{path} is not a regular file")
        yield fh


def read_signed(
    pkg_path: str | os.PathLike[str],
    *,
    trusted: frozenset[bytes] | None = None,
    limits: PackageLimits = DEFAULT_LIMITS,
) -> SignedArchive:
    """Checks 1-3 of ``protocols.packages.archive`` on the package file at ``pkg_path``;
    ``trusted`` (raw Ed25519 public keys), when given, is the set of signers accepted."""
    path = Path(pkg_path)
    with open_package(path) as fh:
        return archive.read_signed(fh, path=path, trusted=trusted, limits=limits)


def inspect(pkg_path: str | os.PathLike[str], *, limits: PackageLimits = DEFAULT_LIMITS) -> SignedArchive:
    """``protocols.packages.archive.inspect`` (everything except trust) on the file at ``pkg_path``."""
    path = Path(pkg_path)
    with open_package(path) as fh:
        return archive.inspect(fh, path=path, limits=limits)


__all__ = ["inspect", "open_package", "read_signed"]
