"""``verify``: decide whether a ``.ttuapp`` may be installed on this board, touching nothing.

Layer: runtime (package manager). Reads the archive through one open file handle and
keeps at most one 64 KiB chunk of a file in memory (``app.toml`` and the two signature
files excepted); writes nothing except a throw-away temp copy of ``app.toml`` for the
manifest loader. Never imports app code.

Order of checks (the first failure is raised as a ``PackageError`` subclass):

1. archive safety: size, entry count, every entry name (no absolute path, ``..``,
   backslash, NUL), entry types (no symlinks, devices, fifos), duplicates and
   file/folder conflicts, per-file and total unpacked size, compression ratio;
2. ``SIGNATURE`` and ``MANIFEST.sha256`` present (``unsigned``), signer trusted
   (``unknown_key``), Ed25519 signature valid (``bad_signature``);
3. the archive holds exactly the files the manifest lists, each with its hash (``tampered``);
4. ``app.toml`` valid and matching the signed name+version (``bad_manifest``), runtime API
   (``incompatible_api``), hal capabilities available (``missing_capability``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import re
import stat
import tempfile
import tomllib
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from runtime import RUNTIME_API_VERSION
from runtime.config import Board
from runtime.container.manifest import HAL_CAPABILITIES, Manifest, load_manifest
from runtime.errors import ConfigErrors
from runtime.packages._format import (
    APP_TOML,
    DEFAULT_LIMITS,
    MANIFEST_NAME,
    RESERVED,
    SIGNATURE_NAME,
    WHEELS_DIR,
    PackageLimits,
    SignatureBlock,
    check_path,
    is_pure_wheel,
    parse_manifest,
    parse_signature,
    signed_message,
)
from runtime.packages.errors import (
    BadArchive,
    BadManifest,
    BadSignature,
    IncompatibleApi,
    MissingCapability,
    Oversize,
    PathEscape,
    Tampered,
    TooManyFiles,
    UnknownKey,
    Unsigned,
)
from runtime.packages.keys import key_id, raw_public

CHUNK = 64 << 10
MAX_META_BYTES = 1 << 20
"""Bound on ``SIGNATURE``, ``MANIFEST.sha256`` and ``app.toml``: they are read whole."""

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_TYPES = {
    stat.S_IFLNK: "a symbolic link",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFIFO: "a fifo",
    stat.S_IFSOCK: "a socket",
}


@dataclass(frozen=True, slots=True)
class VerifiedPackage:
    """A package that passed ``verify``: what ``unpack`` needs and an installer reports.

    ``files`` maps each app file's path to its SHA-256 hex; ``sha256`` and ``size`` are
    the archive's; ``manifest.folder`` is the package file until it is unpacked.
    """

    name: str
    version: str
    manifest: Manifest
    files: Mapping[str, str]
    sha256: str
    key_id: str
    path: Path
    size: int


def board_capabilities(board: Board) -> frozenset[str]:
    """The hal capabilities ``board`` provides (enabled nodes only)."""
    caps: set[str] = set()
    if board.enabled_rs485:
        caps.add("rs485")
    if board.hplc is not None and board.hplc.enabled:
        caps.add("hplc")
    if board.metrology is not None and board.metrology.enabled:
        caps.add("metrology")
    if any(s.enabled for s in board.slots):
        caps.add("slots")
    if board.watchdog is not None and board.watchdog.enabled:
        caps.add("watchdog")
    if board.power is not None and board.power.enabled:
        caps.add("power")
    return frozenset(caps)


def verify(
    pkg_path: str | os.PathLike[str],
    *,
    trusted_keys: Iterable[Ed25519PublicKey | bytes],
    capabilities: AbstractSet[str],
    limits: PackageLimits = DEFAULT_LIMITS,
) -> VerifiedPackage:
    """Fully verify a package for this runtime and a board with ``capabilities``.

    ``trusted_keys``: e.g. ``[k.raw for k in board.packages.trusted_keys]``. Raises a
    ``PackageError`` subclass naming the first problem; writes nothing.
    """
    trusted = frozenset(raw_public(k) for k in trusted_keys)
    return _verify(Path(pkg_path), trusted=trusted, capabilities=frozenset(capabilities), limits=limits)


def inspect(pkg_path: str | os.PathLike[str], *, limits: PackageLimits = DEFAULT_LIMITS) -> VerifiedPackage:
    """Verify everything except trust and capabilities: the package is intact, well formed,
    and validly signed by the key it names (for a catalog that records publishers)."""
    return _verify(Path(pkg_path), trusted=None, capabilities=None, limits=limits)


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


def _load_manifest(data: bytes, pkg: Path) -> Manifest:
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise BadManifest(f"{APP_TOML}: not valid TOML: {err}") from err
    app = doc.get("app")
    api = app.get("api") if isinstance(app, dict) else None
    if isinstance(api, int) and not isinstance(api, bool) and api > RUNTIME_API_VERSION:
        raise IncompatibleApi(f"the app needs runtime API {api}, this runtime provides {RUNTIME_API_VERSION}")
    name = app.get("name") if isinstance(app, dict) else None
    if not isinstance(name, str) or not _NAME.match(name):
        raise BadManifest(f"{APP_TOML}: app.name: must be a lower_snake_case name, not {name!r}")
    with tempfile.TemporaryDirectory(prefix="ttu-verify-") as tmp:
        folder = Path(tmp) / name
        folder.mkdir()
        (folder / APP_TOML).write_bytes(data)
        try:
            manifest = load_manifest(folder / APP_TOML)
        except ConfigErrors as err:
            first = err.errors[0]
            more = f" (and {len(err.errors) - 1} more)" if len(err.errors) > 1 else ""
            raise BadManifest(f"{APP_TOML}: {first.path}: {first.reason}{more}") from err
    return dataclasses.replace(manifest, folder=pkg)


def _check_contents(manifest: Manifest, block: SignatureBlock, files: AbstractSet[str]) -> None:
    if (manifest.name, manifest.version) != (block.name, block.version):
        raise BadManifest(
            f"{SIGNATURE_NAME} names {block.name} {block.version} but {APP_TOML} says "
            f"{manifest.name} {manifest.version}"
        )
    parts = manifest.entry_module.split(".")
    if manifest.name not in parts:
        raise BadManifest(f"{APP_TOML}: app.entry {manifest.entry!r} is not inside the app's package")
    rest = parts[len(parts) - parts[::-1].index(manifest.name) :]
    candidates = ["/".join([*rest, "__init__.py"])] + (["/".join(rest) + ".py"] if rest else [])
    if not any(c in files for c in candidates):
        raise BadManifest(f"{APP_TOML}: app.entry module {manifest.entry_module!r} is not in the package")
    for name in sorted(files):
        if (
            name.startswith(f"{WHEELS_DIR}/")
            and name.endswith(".whl")
            and not is_pure_wheel(name.split("/")[-1])
        ):
            raise BadManifest(f"{name}: not a pure-Python wheel (*-py3-none-any.whl)")


def _check_capabilities(manifest: Manifest, capabilities: frozenset[str]) -> None:
    missing = manifest.hal - capabilities
    if missing:
        have = ", ".join(sorted(capabilities & HAL_CAPABILITIES)) or "none"
        raise MissingCapability(
            frozenset(missing),
            f"the app needs hal {', '.join(sorted(missing))}, which this board lacks (it has: {have})",
        )


def _verify(
    path: Path,
    *,
    trusted: frozenset[bytes] | None,
    capabilities: frozenset[str] | None,
    limits: PackageLimits,
) -> VerifiedPackage:
    try:
        fh = path.open("rb")
    except OSError as err:
        raise BadArchive(f"cannot read {path}: {err.strerror or err}") from err
    with fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise BadArchive(f"{path} is not a regular file")
        if st.st_size > limits.max_package_bytes:
            raise Oversize(f"package is {st.st_size} bytes, the limit is {limits.max_package_bytes}")
        sha256 = hashlib.file_digest(fh, "sha256").hexdigest()
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
            manifest = _load_manifest(app_toml, path)
    _check_contents(manifest, block, hashes.keys())
    if capabilities is not None:
        _check_capabilities(manifest, capabilities)
    return VerifiedPackage(
        name=manifest.name,
        version=manifest.version,
        manifest=manifest,
        files=MappingProxyType(dict(hashes)),
        sha256=sha256,
        key_id=block.key_id,
        path=path,
        size=st.st_size,
    )


__all__ = ["VerifiedPackage", "board_capabilities", "check_entries", "inspect", "stream_entry", "verify"]
