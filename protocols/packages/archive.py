"""A ``.ttuapp`` archive opened safely: entries checked, signature and file hashes verified.

Layer: protocols (package format). What both the terminal (before installing) and the cloud
catalog (before publishing) check, touching nothing: reads the archive through the one open,
seekable binary file the caller hands in (opening it is the caller's: ``runtime.packages``
on the terminal, ``sim.cloud.catalog`` in the cloud), at most one 64 KiB chunk of a file in
memory (``app.toml`` and the two signature files excepted), never unpacks, never imports app
code. The terminal's installer adds its own checks on top (manifest, runtime API, hal
capabilities: ``runtime.packages.verify``).

Order of checks (the first failure is raised as a ``PackageError`` subclass):

1. archive safety: size, entry count, every entry name (no absolute path, ``..``,
   backslash, NUL), entry types (no symlinks, devices, fifos), duplicates and
   file/folder conflicts, per-file and total unpacked size, compression ratio;
2. ``SIGNATURE`` and ``MANIFEST.sha256`` present (``unsigned``), signer trusted when a
   trusted set is given (``unknown_key``), Ed25519 signature valid (``bad_signature``);
3. the archive holds exactly the files the manifest lists, each with its hash (``tampered``),
   among them an ``app.toml`` (``bad_manifest``); ``inspect`` also checks that its ``[app]``
   name and version are the signed ones.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tomllib
import zipfile
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import BinaryIO

from protocols.packages.errors import (
    BadArchive,
    BadManifest,
    BadSignature,
    Oversize,
    PathEscape,
    Tampered,
    TooManyFiles,
    UnknownKey,
    Unsigned,
)
from protocols.packages.format import (
    APP_TOML,
    DEFAULT_LIMITS,
    MANIFEST_NAME,
    RESERVED,
    SIGNATURE_NAME,
    PackageLimits,
    SignatureBlock,
    check_path,
    parse_manifest,
    parse_signature,
    signed_message,
)
from protocols.packages.keys import key_id

CHUNK = 64 << 10
MAX_META_BYTES = 1 << 20
"""Bound on ``SIGNATURE``, ``MANIFEST.sha256`` and ``app.toml``: they are read whole."""

_TYPES = {
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a fifo",
    stat.S_IFSOCK: "a socket",
}


@dataclass(frozen=True, slots=True)
class SignedArchive:
    """An archive that passed checks 1-3: its signature block, file hashes and ``app.toml``.

    ``sha256`` and ``size`` are the archive file's own.
    """

    path: Path
    block: SignatureBlock
    files: Mapping[str, str]
    app_toml: bytes
    sha256: str
    size: int

    @property
    def name(self) -> str:
        return self.block.name

    @property
    def version(self) -> str:
        return self.block.version

    @property
    def key_id(self) -> str:
        return self.block.key_id


def read_signed(
    fh: BinaryIO,
    *,
    path: Path,
    trusted: frozenset[bytes] | None = None,
    limits: PackageLimits = DEFAULT_LIMITS,
) -> SignedArchive:
    """Checks 1-3 on the package open as ``fh`` (a seekable binary file, read from its start;
    ``path`` names it in messages and in the result); ``trusted`` (raw Ed25519 public keys),
    when given, is the set of signers accepted. Raises a ``PackageError`` subclass; opens and
    writes nothing."""
    size = fh.seek(0, os.SEEK_END)
    if size > limits.max_package_bytes:
        raise Oversize(f"package is {size} bytes, the limit is {limits.max_package_bytes}")
    fh.seek(0)
    digest = hashlib.sha256()
    while chunk := fh.read(CHUNK):
        digest.update(chunk)
    sha256 = digest.hexdigest()
    fh.seek(0)
    try:
        zf = zipfile.ZipFile(fh)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError) as err:
        raise BadArchive(f"{path.name} is not a readable zip archive: {err}") from err
    with zf:
        entries = check_entries(zf, limits)
        if MANIFEST_NAME not in entries or SIGNATURE_NAME not in entries:
            absent = [n for n in (MANIFEST_NAME, SIGNATURE_NAME) if n not in entries]
            raise Unsigned(f"{path.name} has no {' and no '.join(absent)}")
        block = parse_signature(_read_small(zf, entries[SIGNATURE_NAME]))
        manifest_bytes = _read_small(zf, entries[MANIFEST_NAME])
        _check_signature(block, manifest_bytes, trusted)
        hashes = parse_manifest(manifest_bytes)
        _check_hashes(zf, entries, hashes)
        if APP_TOML not in hashes:
            raise BadManifest(f"the package has no {APP_TOML}")
        app_toml = _read_small(zf, entries[APP_TOML])
        if hashlib.sha256(app_toml).hexdigest() != hashes[APP_TOML]:
            raise Tampered(APP_TOML, "changed while the package was being verified")
    return SignedArchive(
        path=path,
        block=block,
        files=MappingProxyType(dict(hashes)),
        app_toml=app_toml,
        sha256=sha256,
        size=size,
    )


def inspect(fh: BinaryIO, *, path: Path, limits: PackageLimits = DEFAULT_LIMITS) -> SignedArchive:
    """Verify everything except trust: the package is intact, well formed, validly signed by
    the key it names, and its ``app.toml`` names the signed app and version (for a catalog that
    records publishers; the installer validates the whole manifest instead)."""
    signed = read_signed(fh, path=path, trusted=None, limits=limits)
    _check_app_identity(signed.app_toml, signed.block)
    return signed


def _check_app_identity(app_toml: bytes, block: SignatureBlock) -> None:
    """``app.toml`` names the app and version that were signed (its full validation is the
    installer's business)."""
    try:
        doc = tomllib.loads(app_toml.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError) as err:  # deep nesting: refused
        raise BadManifest(f"{APP_TOML}: not valid TOML: {err}") from err
    app = doc.get("app")
    name = app.get("name") if isinstance(app, dict) else None
    version = app.get("version") if isinstance(app, dict) else None
    if (name, version) != (block.name, block.version):
        raise BadManifest(
            f"{SIGNATURE_NAME} names {block.name} {block.version} but {APP_TOML} says {name} {version}"
        )


def stream_entry(zf: zipfile.ZipFile, info: zipfile.ZipInfo, *, limit: int) -> Iterator[bytes]:
    """The entry's content in chunks; never more than its declared size nor ``limit``.

    Corrupt data (bad CRC, truncated or invalid deflate stream) is ``Tampered``.
    """
    count = 0
    try:
        with zf.open(info) as fp:
            while chunk := fp.read(CHUNK):
                count += len(chunk)
                if count > info.file_size or count > limit:
                    raise Oversize(
                        f"{info.filename}: unpacks to more than its declared {info.file_size} bytes"
                    )
                yield chunk
    except (zipfile.BadZipFile, zlib.error, EOFError) as err:
        raise Tampered(info.filename, f"corrupt data ({err})") from err
    if count != info.file_size:
        raise Tampered(info.filename, f"unpacks to {count} bytes, declared {info.file_size}")


def _read_small(zf: zipfile.ZipFile, info: zipfile.ZipInfo) -> bytes:
    if info.file_size > MAX_META_BYTES:
        raise Oversize(f"{info.filename}: {info.file_size} bytes, the limit is {MAX_META_BYTES}")
    return b"".join(stream_entry(zf, info, limit=MAX_META_BYTES))


def _kind(info: zipfile.ZipInfo) -> int:
    return stat.S_IFMT(info.external_attr >> 16)


def check_entries(zf: zipfile.ZipFile, limits: PackageLimits) -> dict[str, zipfile.ZipInfo]:
    """Archive safety over the central directory; returns file name -> entry (folders dropped)."""
    infos = zf.infolist()
    if len(infos) > limits.max_files + len(RESERVED):
        raise TooManyFiles(f"{len(infos)} archive entries, the limit is {limits.max_files} files")
    if zf.comment:
        raise BadArchive("archive comments are not part of the format")
    if infos and min(i.header_offset for i in infos) != 0:
        raise BadArchive("data before the first archive entry")
    files: dict[str, zipfile.ZipInfo] = {}
    folders: set[str] = set()
    total = 0
    for info in infos:
        name = info.filename
        if info.orig_filename != name:
            raise PathEscape(info.orig_filename, "NUL or separator trickery in the name")
        is_dir = name.endswith("/")
        check_path(name[:-1] if is_dir else name)
        kind = _kind(info)
        if kind in _TYPES:
            raise PathEscape(name, f"is {_TYPES[kind]}; packages hold regular files only")
        if is_dir or kind == stat.S_IFDIR:
            if not is_dir:
                raise PathEscape(name, "a folder entry without a trailing '/'")
            folders.add(name[:-1])
            continue
        if name in files:
            raise PathEscape(name, "duplicate entry (a second copy could shadow the verified one)")
        if info.flag_bits & 0x1:
            raise BadArchive(f"{name}: encrypted entries are not supported")
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise BadArchive(f"{name}: compression method {info.compress_type} is not supported")
        if info.file_size > limits.max_file_bytes:
            raise Oversize(
                f"{name}: {info.file_size} bytes unpacked, the per-file limit is {limits.max_file_bytes}"
            )
        if info.file_size > limits.ratio_min_bytes:
            ratio = info.file_size / max(info.compress_size, 1)
            if ratio > limits.max_ratio:
                raise Oversize(
                    f"{name}: compression ratio {ratio:.0f}:1 exceeds {limits.max_ratio:g}:1 (zip bomb guard)"
                )
        total += info.file_size
        files[name] = info
    if total > limits.max_total_bytes:
        raise Oversize(f"{total} bytes unpacked in all, the limit is {limits.max_total_bytes}")
    for name in files:
        if name in folders:
            raise PathEscape(name, "is both a file and a folder")
        parts = name.split("/")
        for i in range(1, len(parts)):
            parent = "/".join(parts[:i])
            if parent in files:
                raise PathEscape(name, f"its parent {parent!r} is a file")
    return files


def _check_signature(block: SignatureBlock, manifest: bytes, trusted: frozenset[bytes] | None) -> None:
    if key_id(block.public_key) != block.key_id:
        raise BadSignature(f"{SIGNATURE_NAME}: key-id {block.key_id} does not match its public-key")
    if trusted is not None and block.public_key not in trusted:
        known = ", ".join(sorted(key_id(k) for k in trusted)) or "none"
        raise UnknownKey(f"signed by key {block.key_id}, which this board does not trust (trusted: {known})")
    # imported here, not at module level: a terminal holds cryptography (~9.5 MB of RSS) only
    # once it has verified a package, not for having the package manager ready
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        Ed25519PublicKey.from_public_bytes(block.public_key).verify(
            block.signature, signed_message(block.header, manifest)
        )
    except InvalidSignature as err:
        raise BadSignature(
            f"the signature of key {block.key_id} does not match {MANIFEST_NAME} and the header"
        ) from err


def _check_hashes(
    zf: zipfile.ZipFile, entries: Mapping[str, zipfile.ZipInfo], hashes: Mapping[str, str]
) -> None:
    present = {n for n in entries if n not in RESERVED}
    extra = sorted(present - hashes.keys())
    if extra:
        raise Tampered(extra[0], f"in the archive but not listed in {MANIFEST_NAME}")
    missing = sorted(hashes.keys() - present)
    if missing:
        raise Tampered(missing[0], f"listed in {MANIFEST_NAME} but not in the archive")
    for name in sorted(hashes):
        digest = hashlib.sha256()
        for chunk in stream_entry(zf, entries[name], limit=entries[name].file_size):
            digest.update(chunk)
        if digest.hexdigest() != hashes[name]:
            raise Tampered(name, f"SHA-256 {digest.hexdigest()[:16]}... differs from {MANIFEST_NAME}")


__all__ = [
    "CHUNK",
    "MAX_META_BYTES",
    "SignedArchive",
    "check_entries",
    "inspect",
    "read_signed",
    "stream_entry",
]
