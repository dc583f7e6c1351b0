"""Publisher key files: write a private key (0600 PEM), load it back, load a public key.

Layer: runtime (package manager). The file side of ``protocols.packages.keys`` (which names,
generates and parses keys without touching a file); every failure is a ``BadKey`` naming the
file. ``cryptography`` is imported by the functions (the package is on the terminal's start
path; these are tools).
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from protocols.packages.errors import BadKey
from protocols.packages.keys import parse_public_key

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


def write_private_key(key: Ed25519PrivateKey, path: str | os.PathLike[str]) -> Path:
    """Write ``key`` as unencrypted PKCS#8 PEM, mode 0600; never overwrites an existing file."""
    from cryptography.hazmat.primitives import serialization

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
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

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


def load_public_key(text_or_path: str | os.PathLike[str]) -> Ed25519PublicKey:
    """A public key from base64 text, a file holding base64 text (``*.pub``), or a PEM file."""
    if isinstance(text_or_path, str) and not Path(text_or_path).is_file():
        return parse_public_key(text_or_path, "public key")
    path = Path(text_or_path)
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as err:
        raise BadKey(f"cannot read public key {path}: {err}") from err
    return parse_public_key(text, str(path))


__all__ = ["load_private_key", "load_public_key", "write_private_key"]
