"""App packages: pack, sign, verify and unpack ``.ttuapp`` archives; publisher keys.

Layer: runtime (package manager). Pure file work, synchronous (call it from a worker
thread on the event loop's behalf). It never imports or runs app code, and never
changes the disk on failure. The transactional install (receive over MQTT, stop,
swap, health-check, commit or roll back) builds on this API::

    pkg = verify(path, trusted_keys=[k.raw for k in board.packages.trusted_keys],
                 capabilities=board_capabilities(board))
    folder = unpack(pkg, apps_dir / f".{pkg.name}-{pkg.version}")

See ``runtime.packages._format`` for the archive layout and what the signature covers.
"""

from runtime.packages._format import DEFAULT_LIMITS, FORMAT, SUFFIX, PackageLimits
from runtime.packages.errors import (
    BadArchive,
    BadDestination,
    BadKey,
    BadManifest,
    BadSignature,
    IncompatibleApi,
    MissingCapability,
    Oversize,
    PackageError,
    PathEscape,
    Tampered,
    TooManyFiles,
    UnknownKey,
    Unsigned,
)
from runtime.packages.keys import (
    generate_keypair,
    key_id,
    load_private_key,
    load_public_key,
    public_key_text,
    write_private_key,
)
from runtime.packages.pack import build_archive, default_name, pack
from runtime.packages.unpack import unpack
from runtime.packages.verify import VerifiedPackage, board_capabilities, inspect, verify

__all__ = [
    "DEFAULT_LIMITS",
    "FORMAT",
    "SUFFIX",
    "BadArchive",
    "BadDestination",
    "BadKey",
    "BadManifest",
    "BadSignature",
    "IncompatibleApi",
    "MissingCapability",
    "Oversize",
    "PackageError",
    "PackageLimits",
    "PathEscape",
    "Tampered",
    "TooManyFiles",
    "UnknownKey",
    "Unsigned",
    "VerifiedPackage",
    "board_capabilities",
    "build_archive",
    "default_name",
    "generate_keypair",
    "inspect",
    "key_id",
    "load_private_key",
    "load_public_key",
    "pack",
    "public_key_text",
    "unpack",
    "verify",
    "write_private_key",
]
