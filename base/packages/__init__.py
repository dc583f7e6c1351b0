"""The signed ``.ttuapp`` app package format: layout, signature, publisher keys, errors, integrity check.

Layer: base. What the terminal's package manager (``runtime.packages``: verify for this
board, unpack, install) and the cloud's catalog (``sim.cloud.catalog``: publish, list) share:

* ``format``  -- names, limits, ``MANIFEST.sha256`` and ``SIGNATURE`` text (pure, no file I/O);
* ``keys``    -- Ed25519 publisher keys: generate, load, write, key ids;
* ``errors``  -- ``PackageError(code, reason)`` and one subclass per refusal code;
* ``archive`` -- ``read_signed`` / ``inspect``: the archive is safe, signed, and holds exactly
  the files it lists (no manifest validation: that is the installer's).

Must not import hal, runtime, apps or sim; never unpacks and never imports app code.
"""

from base.packages.archive import SignedArchive, inspect, read_signed
from base.packages.errors import (
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
from base.packages.format import DEFAULT_LIMITS, FORMAT, SUFFIX, PackageLimits
from base.packages.keys import (
    generate_keypair,
    key_id,
    load_private_key,
    load_public_key,
    public_key_text,
    write_private_key,
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
    "load_private_key",
    "load_public_key",
    "public_key_text",
    "read_signed",
    "write_private_key",
]
