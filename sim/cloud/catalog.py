"""The app catalog of the cloud stub (the "sharing supermarket"): published packages and an
append-only, hash-chained log that anyone can re-verify.

Layer: sim (cloud stub). Uses ``protocols.packages.inspect`` to check a package (intact,
well formed, validly signed by the key it names) because the package format is the
contract between cloud and terminal; it never installs or runs apps. Synchronous file
work, no event loop.

Folder layout (``--catalog DIR``)::

    DIR/log.jsonl                   one canonical-JSON entry per line, append-only
    DIR/packages/<sha256>.ttuapp    the published package files, named by content hash

Entry: ``seq`` (1, 2, ...), ``name``, ``version``, ``sha256`` and ``size`` of the package,
``key_id`` of the publisher key, ``ts`` (UTC epoch), ``prev_hash`` (the previous entry's
``entry_hash``; 64 zeros for the first), ``entry_hash`` = SHA-256 of the canonical JSON of
every other field. Editing, dropping or reordering any line breaks the chain at that line;
replacing a stored package breaks its recorded hash.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from protocols.cloud import canonical_json
from protocols.packages import DEFAULT_LIMITS, BadArchive, PackageError, PackageLimits, SignedArchive, inspect

GENESIS = "0" * 64
LOG_NAME = "log.jsonl"
PACKAGES_DIR = "packages"
_FIELDS = {
    "seq": int,
    "name": str,
    "version": str,
    "sha256": str,
    "size": int,
    "key_id": str,
    "ts": float,
    "prev_hash": str,
    "entry_hash": str,
}



def inspect_file(path: str | os.PathLike[str], *, limits: PackageLimits = DEFAULT_LIMITS) -> SignedArchive:
    """``protocols.packages.inspect`` on the package file at ``path`` (a regular file only: a
    fifo would block, a device would never end); ``PackageError`` for anything wrong."""
    source = Path(path)
    if not source.is_file():
        raise BadArchive(f"{source} is not a regular file" if source.exists() else f"{source} does not exist")
    try:
        with source.open("rb") as fh:
            return inspect(fh, path=source, limits=limits)
    except OSError as err:
        raise BadArchive(f"cannot read {source}: {err.strerror or err}") from err

class CatalogError(Exception):
    """A catalog operation was refused (bad package, version already published, unreadable folder)."""


class CatalogCorrupt(CatalogError):
    """Verification failed; ``seq`` is the first bad entry (the line number for an unparsable line)."""

    def __init__(self, seq: int, reason: str) -> None:
        self.seq = seq
        self.reason = reason
        super().__init__(f"entry {seq}: {reason}")


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    seq: int
    name: str
    version: str
    sha256: str
    size: int
    key_id: str
    ts: float
    prev_hash: str
    entry_hash: str

    def body(self) -> dict[str, Any]:
        """Every field but ``entry_hash``: what the entry hash covers."""
        data = asdict(self)
        del data["entry_hash"]
        return data

    @staticmethod
    def hash_of(body: dict[str, Any]) -> str:
        return hashlib.sha256(canonical_json(body)).hexdigest()

    def to_line(self) -> bytes:
        return canonical_json(asdict(self)) + b"\n"


def _parse_line(lineno: int, raw: bytes) -> CatalogEntry:
    if not raw.endswith(b"\n"):
        raise CatalogCorrupt(lineno, "last line is incomplete (interrupted append?)")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as err:
        raise CatalogCorrupt(lineno, f"line {lineno} is not JSON ({err})") from err
    if not isinstance(data, dict) or set(data) != set(_FIELDS):
        raise CatalogCorrupt(lineno, f"line {lineno} does not have exactly the fields {sorted(_FIELDS)}")
    for key, kind in _FIELDS.items():
        value = data[key]
        ok = isinstance(value, int | float) if kind is float else isinstance(value, kind)
        if not ok or isinstance(value, bool):
            raise CatalogCorrupt(lineno, f"line {lineno}: {key} must be {kind.__name__}, not {value!r}")
    data["ts"] = float(data["ts"])
    return CatalogEntry(**data)


class Catalog:
    """A catalog folder. Create the folder lazily on the first ``publish``."""

    def __init__(self, root: str | os.PathLike[str], *, limits: PackageLimits = DEFAULT_LIMITS) -> None:
        self.root = Path(root)
        self.limits = limits

    @property
    def log_path(self) -> Path:
        return self.root / LOG_NAME

    def package_path(self, entry: CatalogEntry) -> Path:
        """Where the package of ``entry`` is stored."""
        return self.root / PACKAGES_DIR / f"{entry.sha256}.ttuapp"

    # -- reading -------------------------------------------------------------------------------

    def _lines(self) -> list[bytes]:
        try:
            with self.log_path.open("rb") as fh:
                return fh.readlines()
        except FileNotFoundError:
            return []
        except OSError as err:
            raise CatalogError(f"cannot read {self.log_path}: {err.strerror or err}") from err

    def _chain(self) -> Iterator[CatalogEntry]:
        """Entries in order, each checked against the chain; ``CatalogCorrupt`` at the first break."""
        prev = GENESIS
        for lineno, raw in enumerate(self._lines(), 1):
            entry = _parse_line(lineno, raw)
            if entry.seq != lineno:
                raise CatalogCorrupt(
                    lineno, f"seq is {entry.seq}, expected {lineno} (entry dropped or moved)"
                )
            if entry.prev_hash != prev:
                raise CatalogCorrupt(entry.seq, "prev_hash does not match the previous entry's hash")
            if CatalogEntry.hash_of(entry.body()) != entry.entry_hash:
                raise CatalogCorrupt(
                    entry.seq, f"entry_hash does not match its content ({entry.name} {entry.version} edited)"
                )
            prev = entry.entry_hash
            yield entry

    def entries(self) -> list[CatalogEntry]:
        """Every entry, chain-checked (not the stored packages: see ``verify``)."""
        return list(self._chain())

    def find(self, name: str, version: str | None = None) -> CatalogEntry:
        """The entry of ``name`` at ``version`` (default: the latest published)."""
        found = [e for e in self.entries() if e.name == name and (version is None or e.version == version)]
        if not found:
            raise CatalogError(f"{name} {version or ''} is not in the catalog".replace("  ", " "))
        return found[-1]

    def verify(self) -> int:
        """Recompute the chain and every stored package's hash and size; returns the entry count.

        Raises ``CatalogCorrupt`` naming the first bad entry.
        """
        count = 0
        for entry in self._chain():
            path = self.package_path(entry)
            try:
                with path.open("rb") as fh:
                    digest = hashlib.file_digest(fh, "sha256").hexdigest()
                    size = os.fstat(fh.fileno()).st_size
            except FileNotFoundError as err:
                raise CatalogCorrupt(
                    entry.seq, f"{entry.name} {entry.version}: stored package is missing"
                ) from err
            except OSError as err:
                raise CatalogCorrupt(
                    entry.seq, f"{entry.name} {entry.version}: cannot read {path}: {err.strerror or err}"
                ) from err
            if digest != entry.sha256 or size != entry.size:
                raise CatalogCorrupt(
                    entry.seq,
                    f"{entry.name} {entry.version}: stored package {path.name} has hash {digest[:16]}... "
                    f"({size} bytes), the log records {entry.sha256[:16]}... ({entry.size} bytes)",
                )
            count += 1
        return count

    # -- writing -------------------------------------------------------------------------------

    @contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            (self.root / PACKAGES_DIR).mkdir(parents=True, exist_ok=True)
            fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise CatalogError(f"cannot use catalog folder {self.root}: {err.strerror or err}") from err
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _store(self, source: Path, sha256: str) -> Path:
        target = self.root / PACKAGES_DIR / f"{sha256}.ttuapp"
        fd, tmp = tempfile.mkstemp(prefix=".incoming-", dir=target.parent)
        try:
            with os.fdopen(fd, "wb") as out, source.open("rb") as src:
                shutil.copyfileobj(src, out)
                out.flush()
                os.fsync(out.fileno())
            with open(tmp, "rb") as check:
                if hashlib.file_digest(check, "sha256").hexdigest() != sha256:
                    raise CatalogError(f"{source} changed while it was being published")
            os.replace(tmp, target)
        except OSError as err:
            raise CatalogError(f"cannot store {source}: {err.strerror or err}") from err
        finally:
            Path(tmp).unlink(missing_ok=True)
        return target

    def publish(self, pkg_path: str | os.PathLike[str], *, ts: float) -> CatalogEntry:
        """Check the package and append it to the log; returns its entry.

        Publishing the same package again returns the existing entry; a different package
        under a published name+version is refused (a version is immutable).
        """
        source = Path(pkg_path)
        try:
            pkg = inspect_file(source, limits=self.limits)
        except PackageError as err:
            raise CatalogError(f"{source}: refused: {err}") from err
        with self._locked():
            entries = self.entries()
            for old in entries:
                if (old.name, old.version) == (pkg.name, pkg.version):
                    if old.sha256 == pkg.sha256:
                        return old
                    raise CatalogError(
                        f"{pkg.name} {pkg.version} is already published (entry {old.seq}) with another hash; "
                        "publish a new version"
                    )
            self._store(source, pkg.sha256)
            body: dict[str, Any] = {
                "seq": len(entries) + 1,
                "name": pkg.name,
                "version": pkg.version,
                "sha256": pkg.sha256,
                "size": pkg.size,
                "key_id": pkg.key_id,
                "ts": float(ts),
                "prev_hash": entries[-1].entry_hash if entries else GENESIS,
            }
            entry = CatalogEntry(**body, entry_hash=CatalogEntry.hash_of(body))
            try:
                with self.log_path.open("ab") as log:
                    log.write(entry.to_line())
                    log.flush()
                    os.fsync(log.fileno())
            except OSError as err:
                raise CatalogError(f"cannot append to {self.log_path}: {err.strerror or err}") from err
            return entry


__all__ = ["GENESIS", "Catalog", "CatalogCorrupt", "CatalogEntry", "CatalogError", "inspect_file"]
