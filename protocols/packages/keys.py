"""Ed25519 publisher keys: generate them, name them by key id, read a public key's text.

Layer: protocols (package format). Wraps ``cryptography``, imported by the functions that need
it (a terminal holds it only once it verifies a package); every failure is a ``BadKey``.
A public key's text form is what board.toml's ``[packages] trusted_keys`` accepts: base64 of
the raw 32 bytes (or PEM). Reading and writing key files is ``runtime.packages.keys``'s: no
file I/O here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import TYPE_CHECKING

from protocols.packages.errors import BadKey

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

KEY_ID_HEX = 16
"""A key id is the first 16 hex digits (64 bits) of SHA-256 over the raw public key."""


def generate_keypair() -> tuple[Ed25519PrivateKey, Ed25519PublicKey]:
    """A fresh publisher key pair."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

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


def parse_public_key(text: str, where: str = "public key") -> Ed25519PublicKey:
    """A public key from base64 text of its raw 32 bytes or from PEM text; ``where`` names the
    source in a ``BadKey``."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

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



__all__ = [
    "KEY_ID_HEX",
    "generate_keypair",
    "key_id",
    "parse_public_key",
    "public_key_text",
    "raw_public",
]
