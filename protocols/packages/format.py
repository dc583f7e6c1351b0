"""The ``.ttuapp`` archive format: names, limits, ``MANIFEST.sha256`` and ``SIGNATURE`` text.

Layer: protocols (package format). Pure functions over bytes and strings; no file I/O.

A package is a zip archive (deflate, entries sorted, fixed 1980-01-01 mtimes, mode 0644,
so one folder always packs to the same bytes)::

    MANIFEST.sha256      "<sha256 hex>  <path>\\n" per file, sorted by path
    SIGNATURE            header lines + "signature: <base64>\\n"  (below)
    app.toml             the app's manifest
    <code...>            the app package's files, relative to the app folder
    wheels/*.whl         optional pure-Python wheels the app needs

``SIGNATURE``::

    format: ttu-app-package/1
    name: <app name>
    version: <app version>
    key-id: <16 hex digits>
    public-key: <base64 of the raw 32-byte Ed25519 key>
    signature: <base64 of the 64-byte Ed25519 signature>

The signature covers the exact bytes of the five header lines followed by the exact
bytes of ``MANIFEST.sha256``, so it binds name, version and signer to every file hash.
"""

from __future__ import annotations

import base64
import binascii
import re
import unicodedata
from dataclasses import dataclass

from protocols.packages.errors import BadArchive, BadSignature, PathEscape

FORMAT = "ttu-app-package/1"
MANIFEST_NAME = "MANIFEST.sha256"
SIGNATURE_NAME = "SIGNATURE"
RESERVED = frozenset({MANIFEST_NAME, SIGNATURE_NAME})
APP_TOML = "app.toml"
WHEELS_DIR = "wheels"
SUFFIX = ".ttuapp"
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o644
DIR_MODE = 0o755

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_KEY_ID = re.compile(r"^[0-9a-f]{16}$")
_HEADER_KEYS = ("format", "name", "version", "key-id", "public-key")
_MAX_PATH = 1024
_MAX_COMPONENT = 255


@dataclass(frozen=True, slots=True)
class PackageLimits:
    """Bounds that verification enforces before anything is unpacked.

    ``max_ratio`` applies to entries larger than ``ratio_min_bytes`` (small files of
    repeated text legitimately compress very well).
    """

    max_package_bytes: int = 16 << 20
    max_total_bytes: int = 64 << 20
    max_file_bytes: int = 16 << 20
    max_files: int = 2000
    max_ratio: float = 100.0
    ratio_min_bytes: int = 64 << 10


DEFAULT_LIMITS = PackageLimits()


@dataclass(frozen=True, slots=True)
class SignatureBlock:
    """The parsed ``SIGNATURE`` file; ``header`` is the exact signed header bytes."""

    name: str
    version: str
    key_id: str
    public_key: bytes
    signature: bytes
    header: bytes


def check_path(name: str) -> str:
    """``name`` if it is a safe relative path inside the package, else ``PathEscape``.

    Refuses absolute paths, drive letters, backslashes, ``.``/``..`` and empty components,
    control characters, and names that are not NFC (they could alias another entry).
    """
    if not name:
        raise PathEscape(name, "empty name")
    if len(name) > _MAX_PATH:
        raise PathEscape(name[:64] + "...", f"path longer than {_MAX_PATH} characters")
    if name.startswith("/"):
        raise PathEscape(name, "absolute path")
    if "\\" in name:
        raise PathEscape(name, "backslash in path")
    if ":" in name:
        raise PathEscape(name, "':' in path (drive letter or stream name)")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in name):
        raise PathEscape(name, "control character in path")
    if unicodedata.normalize("NFC", name) != name:
        raise PathEscape(name, "name is not in Unicode NFC form")
    parts = name.split("/")
    for part in parts:
        if part == "..":
            raise PathEscape(name, "'..' component escapes the app folder")
        if part in ("", "."):
            raise PathEscape(name, "empty or '.' path component")
        if len(part.encode("utf-8")) > _MAX_COMPONENT:
            raise PathEscape(name, f"component longer than {_MAX_COMPONENT} bytes")
    return name


def render_manifest(hashes: dict[str, str]) -> bytes:
    """``MANIFEST.sha256`` bytes: sorted ``"<hex>  <path>"`` lines."""
    return "".join(f"{hashes[p]}  {p}\n" for p in sorted(hashes)).encode("utf-8")


def parse_manifest(data: bytes) -> dict[str, str]:
    """path -> sha256 hex from ``MANIFEST.sha256``; ``BadArchive`` on any malformed line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise BadArchive(f"{MANIFEST_NAME} is not UTF-8") from err
    if text and not text.endswith("\n"):
        raise BadArchive(f"{MANIFEST_NAME}: last line is not terminated")
    out: dict[str, str] = {}
    previous = ""
    for lineno, line in enumerate(text.splitlines(), 1):
        digest, sep, path = line.partition("  ")
        if not sep or not _HEX64.match(digest):
            raise BadArchive(f"{MANIFEST_NAME}:{lineno}: not '<sha256 hex>  <path>'")
        check_path(path)
        if path in RESERVED:
            raise BadArchive(f"{MANIFEST_NAME}:{lineno}: lists the reserved name {path!r}")
        if path <= previous:
            raise BadArchive(f"{MANIFEST_NAME}:{lineno}: {path!r} is out of order or repeated")
        previous = path
        out[path] = digest
    if not out:
        raise BadArchive(f"{MANIFEST_NAME} lists no files")
    return out


def render_header(*, name: str, version: str, key_id: str, public_key: bytes) -> bytes:
    """The signed header lines of ``SIGNATURE``."""
    values = (FORMAT, name, version, key_id, base64.b64encode(public_key).decode("ascii"))
    return "".join(f"{k}: {v}\n" for k, v in zip(_HEADER_KEYS, values, strict=True)).encode("utf-8")


def signed_message(header: bytes, manifest: bytes) -> bytes:
    """What the Ed25519 signature covers."""
    return header + manifest


def render_signature(header: bytes, signature: bytes) -> bytes:
    return header + f"signature: {base64.b64encode(signature).decode('ascii')}\n".encode("ascii")


def parse_signature(data: bytes) -> SignatureBlock:
    """Parse ``SIGNATURE`` strictly: exactly the six lines in order, canonical header bytes."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise BadSignature(f"{SIGNATURE_NAME} is not UTF-8") from err
    lines = text.split("\n")
    if len(lines) != 7 or lines[-1] != "":
        raise BadSignature(f"{SIGNATURE_NAME}: expected 6 lines, got {len(lines) - 1}")
    fields: dict[str, str] = {}
    for key, line in zip((*_HEADER_KEYS, "signature"), lines[:6], strict=True):
        got, sep, value = line.partition(": ")
        if got != key or not sep:
            raise BadSignature(f"{SIGNATURE_NAME}: expected '{key}: ...', got {line[:40]!r}")
        fields[key] = value
    if fields["format"] != FORMAT:
        raise BadSignature(f"{SIGNATURE_NAME}: unknown format {fields['format']!r} (expected {FORMAT})")
    if not _KEY_ID.match(fields["key-id"]):
        raise BadSignature(f"{SIGNATURE_NAME}: key-id {fields['key-id']!r} is not 16 hex digits")
    try:
        public_key = base64.b64decode(fields["public-key"], validate=True)
        signature = base64.b64decode(fields["signature"], validate=True)
    except (binascii.Error, ValueError) as err:
        raise BadSignature(f"{SIGNATURE_NAME}: public-key or signature is not base64") from err
    if len(public_key) != 32 or len(signature) != 64:
        raise BadSignature(f"{SIGNATURE_NAME}: public-key must be 32 bytes and signature 64")
    header = "".join(f"{line}\n" for line in lines[:5]).encode("utf-8")
    canonical = render_header(
        name=fields["name"], version=fields["version"], key_id=fields["key-id"], public_key=public_key
    )
    if header != canonical:
        raise BadSignature(f"{SIGNATURE_NAME}: header is not in canonical form")
    return SignatureBlock(
        name=fields["name"],
        version=fields["version"],
        key_id=fields["key-id"],
        public_key=public_key,
        signature=signature,
        header=header,
    )


def is_pure_wheel(filename: str) -> bool:
    """True for a ``*-none-any.whl`` wheel (pure Python, any platform)."""
    if not filename.endswith(".whl"):
        return False
    parts = filename[: -len(".whl")].split("-")
    return len(parts) in (5, 6) and parts[-2] == "none" and parts[-1] == "any" and parts[-3].startswith("py")


__all__ = [
    "APP_TOML",
    "DEFAULT_LIMITS",
    "DIR_MODE",
    "FILE_MODE",
    "FORMAT",
    "MANIFEST_NAME",
    "RESERVED",
    "SIGNATURE_NAME",
    "SUFFIX",
    "WHEELS_DIR",
    "ZIP_EPOCH",
    "PackageLimits",
    "SignatureBlock",
    "check_path",
    "is_pure_wheel",
    "parse_manifest",
    "parse_signature",
    "render_header",
    "render_manifest",
    "render_signature",
    "signed_message",
]
