"""The signed ``.ttuapp`` app package format: layout, signature, publisher keys, errors, integrity check.

Layer: protocols (a format: no file I/O). What the terminal's package manager
(``runtime.packages``: verify for this board, unpack, install) and the cloud's catalog
(``sim.cloud.catalog``: publish, list) share:

* ``format``  -- names, limits, ``MANIFEST.sha256`` and ``SIGNATURE`` text (pure, no file I/O);
* ``keys``    -- Ed25519 publisher keys: generate, key ids, public key text (key files are
  ``runtime.packages.keys``'s);
* ``errors``  -- ``PackageError(code, reason)`` and one subclass per refusal code;
* ``archive`` -- ``read_signed`` / ``inspect`` over an archive file the caller opened: it is safe,
  signed, and holds exactly the files it lists (no manifest validation: that is the installer's).

Must not import hal, runtime, apps or sim; never unpacks and never imports app code.
"""

from protocols.packages.archive import SignedArchive, inspect, read_signed
from protocols.packages.errors import (
    BadArchive,
    BadDestination,
    BadKey,
    BadManifest,
    BadSignature,
    HealthCheckFailed,
    IncompatibleApi,
    InstallRefused,
    MissingCapability,
    Oversize,
    PackageError,
    PathEscape,
    Tampered,
    TooManyFiles,
    UnknownKey,
    Unsigned,
)
from protocols.packages.format import DEFAULT_LIMITS, FORMAT, SUFFIX, PackageLimits
from protocols.packages.keys import (
    generate_keypair,
    key_id,
    parse_public_key,
    public_key_text,
)

__all__ = [
    "DEFAULT_LIMITS",
    "FORMAT",
    "SUFFIX",
    "BadArchive",
    "BadDestination",
    "BadKey",
    "BadManifest",
    "BadSignature",
    "HealthCheckFailed",
    "IncompatibleApi",
    "InstallRefused",
    "MissingCapability",
    "Oversize",
    "PackageError",
    "PackageLimits",
    "PathEscape",
    "SignedArchive",
    "Tampered",
    "TooManyFiles",
    "UnknownKey",
    "Unsigned",
    "generate_keypair",
    "inspect",
    "key_id",
    "parse_public_key",
    "public_key_text",
    "read_signed",
]
