"""App packages: pack, sign, verify and unpack ``.ttuapp`` archives; publisher keys; the
transactional package manager and the remote lifecycle jobs.

Layer: runtime (package manager). ``pack``/``verify``/``unpack`` are pure file work,
synchronous (call them from a worker thread); they never import or run app code and never
change the disk on failure. On top of them:

* ``manager.PackageManager`` installs, upgrades, rolls back, starts, stops, uninstalls and
  lists apps under ``<state>/apps/<name>/<version>/`` with an atomic current-version pointer
  and a journal (``journal``) that ``recover()`` undoes after a power cut; installed apps run
  isolated through the Supervisor, behind a health gate, with declarative data migrations
  (``migrations``);
* ``jobs.JobRunner`` serves the ``app.*`` downlink commands and the chunked, resumable
  package transfer, and reports job states upward.

The format itself (layout, signature, key ids, the archive checks over an open file) is
``protocols.packages``; this package adds the files: ``archive`` opens a package for those
checks, ``keys`` reads and writes key files.
"""

from protocols.packages import (
    DEFAULT_LIMITS,
    FORMAT,
    SUFFIX,
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
    PackageLimits,
    PathEscape,
    SignedArchive,
    Tampered,
    TooManyFiles,
    UnknownKey,
    Unsigned,
    generate_keypair,
    key_id,
    public_key_text,
)
from runtime.packages.archive import inspect, read_signed
from runtime.packages.keys import load_private_key, load_public_key, write_private_key
from runtime.packages.pack import build_archive, default_name, pack
from runtime.packages.unpack import unpack
from runtime.packages.verify import VerifiedPackage, board_capabilities, verify

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
    "read_signed",
    "unpack",
    "verify",
    "write_private_key",
]
