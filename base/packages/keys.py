"""Ed25519 publisher keys: generate, store (0600 PEM), load, and name them by key id.

Layer: base (package format). Wraps ``cryptography``; every failure is a ``BadKey``
naming the file. A public key's text form is what board.toml's ``[packages]
trusted_keys`` accepts: base64 of the raw 32 bytes (or a ``*.pem`` path).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import stat
from pathlib import Path

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from base.packages.errors import BadKey

KEY_ID_HEX = 16
"""A key id is the first 16 hex digits (64 bits) of SHA-256 over the raw public key."""


def generate_keypair() -> tuple[Ed25519PrivateKey, Ed25519PublicKey]:
    """A fresh publisher key pair."""
    private = Ed25519PrivateKey.generate()
    return private, private.public_key()


def raw_public(key: Ed25519PublicKey | bytes) -> bytes:
    """The raw 32 bytes of a public key."""
    if isinstance(key, bytes):
        if len(key) != 32:
            raise BadKey(f"an Ed25519 public key is 32 bytes, not {len(key)}")
        return key
    return key.public_bytes_raw()


def key_id(key: Ed25519PublicKey | bytes) -> str:
    """Short stable name of a public key: 16 hex digits of SHA-256 over its raw bytes."""
    return hashlib.sha256(raw_public(key)).hexdigest()[:KEY_ID_HEX]


def public_key_text(key: Ed25519PublicKey | bytes) -> str:
    """Base64 of the raw 32 bytes: the form board.toml's ``trusted_keys`` accepts."""
    return base64.b64encode(raw_public(key)).decode("ascii")


def write_private_key(key: Ed25519PrivateKey, path: str | os.PathLike[str]) -> Path:
    """Write ``key`` as unencrypted PKCS#8 PEM, mode 0600; never overwrites an existing file."""
    target = Path(path)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError as err:
        raise BadKey(f"{target} exists; refusing to overwrite a key") from err
    except OSError as err:
        raise BadKey(f"cannot create {target}: {err.strerror or err}") from err
    try:
        os.fchmod(fd, 0o600)  # the umask can only narrow the mode; make it exact
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    return target


def load_private_key(path: str | os.PathLike[str]) -> Ed25519PrivateKey:
    """Read a PEM Ed25519 private key; refuses a file that group or others can read."""
    source = Path(path)
    try:
        mode = source.stat().st_mode
        pem = source.read_bytes()
    except OSError as err:
        raise BadKey(f"cannot read private key {source}: {err.strerror or err}") from err
    if stat.S_IMODE(mode) & 0o077:
        raise BadKey(f"{source}: permissions {stat.S_IMODE(mode):04o} are too open; chmod 600 it")
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as err:
        raise BadKey(f"{source} is not an unencrypted PEM private key") from err
    if not isinstance(key, Ed25519PrivateKey):
        raise BadKey(f"{source} is not an Ed25519 private key")
    return key


def _from_text(text: str, where: str) -> Ed25519PublicKey:
    stripped = text.strip()
    if stripped.startswith("-----BEGIN"):
        if "PRIVATE KEY" in stripped.split("\n", 1)[0]:
            raise BadKey(f"{where} is a private key; pass the public key (.pub)")
        try:
            key = serialization.load_pem_public_key(stripped.encode("ascii"))
        except (ValueError, UnicodeEncodeError, UnsupportedAlgorithm) as err:
            raise BadKey(f"{where} is not a PEM public key") from err
        if not isinstance(key, Ed25519PublicKey):
            raise BadKey(f"{where} is not an Ed25519 public key")
        return key
    try:
        raw = base64.b64decode(stripped, validate=True)
    except (binascii.Error, ValueError) as err:
        raise BadKey(f"{where}: neither base64 key text nor a key file") from err
    if len(raw) != 32:
        raise BadKey(f"{where}: decodes to {len(raw)} bytes; an Ed25519 public key is 32")
    return Ed25519PublicKey.from_public_bytes(raw)


def load_public_key(text_or_path: str | os.PathLike[str]) -> Ed25519PublicKey:
    """A public key from base64 text, a file holding base64 text (``*.pub``), or a PEM file."""
    if isinstance(text_or_path, str) and not Path(text_or_path).is_file():
        return _from_text(text_or_path, "public key")
    path = Path(text_or_path)
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as err:
        raise BadKey(f"cannot read public key {path}: {err}") from err
    return _from_text(text, str(path))


__all__ = [
    "KEY_ID_HEX",
    "generate_keypair",
    "key_id",
    "load_private_key",
    "load_public_key",
    "public_key_text",
    "raw_public",
    "write_private_key",
]
