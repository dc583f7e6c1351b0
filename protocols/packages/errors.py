"""Why an app package was refused: ``PackageError(code, reason)`` and one subclass per code.

Layer: protocols (package format). Plain exception classes, no I/O. ``code`` is the
machine-readable reason an installer reports upward; ``reason`` names what and where
(the file whose hash differs, the archive entry that escapes). Every error is a
``TerminalError``, so the CLI prints it as one line.
"""

from __future__ import annotations

from protocols.errors import TerminalError


class PackageError(TerminalError):
    """An app package (or a key, or a destination) is not acceptable.

    ``code`` is one of the ``CODE`` values of the subclasses below.
    """

    CODE = "package_error"

    def __init__(self, code: str, reason: str) -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"{code}: {reason}")


class _Coded(PackageError):
    def __init__(self, reason: str) -> None:
        super().__init__(self.CODE, reason)


class Unsigned(_Coded):
    """No ``SIGNATURE`` or no ``MANIFEST.sha256`` in the archive."""

    CODE = "unsigned"


class UnknownKey(_Coded):
    """Signed by a key that is not in the trusted list."""

    CODE = "unknown_key"


class BadSignature(_Coded):
    """The signature does not verify, or the ``SIGNATURE`` file is malformed."""

    CODE = "bad_signature"


class Tampered(PackageError):
    """A file's content differs from ``MANIFEST.sha256``, or files are missing or added.

    ``path`` names the file (``<package>`` for the archive as a whole).
    """

    CODE = "tampered"

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        super().__init__(self.CODE, f"{path}: {reason}")


class PathEscape(PackageError):
    """An archive entry is unsafe to unpack: absolute, ``..``, a link, a device file, a duplicate.

    ``entry`` is the entry's name as stored in the archive.
    """

    CODE = "path_escape"

    def __init__(self, entry: str, reason: str) -> None:
        self.entry = entry
        super().__init__(self.CODE, f"entry {entry!r}: {reason}")


class Oversize(_Coded):
    """The package, a file, or the unpacked total exceeds its limit, or the compression ratio
    looks like a zip bomb."""

    CODE = "oversize"


class TooManyFiles(_Coded):
    CODE = "too_many_files"


class IncompatibleApi(_Coded):
    """The app needs a newer runtime API than this runtime provides."""

    CODE = "incompatible_api"


class MissingCapability(PackageError):
    """The app needs hal capabilities this board lacks; ``missing`` lists them."""

    CODE = "missing_capability"

    def __init__(self, missing: frozenset[str], reason: str) -> None:
        self.missing = missing
        super().__init__(self.CODE, reason)


class BadManifest(_Coded):
    """``app.toml`` is missing or invalid, disagrees with the signed header, or names an entry
    module or wheel the package does not carry correctly."""

    CODE = "bad_manifest"


class BadArchive(_Coded):
    """Not a readable package archive: not a zip, corrupt, encrypted, or a malformed
    ``MANIFEST.sha256``."""

    CODE = "bad_archive"


class BadKey(_Coded):
    """A key file or key text cannot be used (unreadable, wrong type, unsafe permissions)."""

    CODE = "bad_key"


class BadDestination(_Coded):
    """``unpack`` cannot use the destination (exists already, parent missing)."""

    CODE = "bad_destination"


class InstallRefused(PackageError):
    """A lifecycle operation cannot run in the terminal's present state.

    Codes: ``already_installed`` (use upgrade), ``not_installed``, ``same_version``,
    ``version_on_disk`` (the version is the kept previous one: use rollback),
    ``no_previous`` (nothing to roll back to), ``name_taken`` (a built-in app has that name).
    """

    CODE = "refused"


class HealthCheckFailed(PackageError):
    """The new version did not pass the health gate; the previous version was restored.

    Codes: ``not_ready`` (no READY within the manifest's ready_timeout_s), ``crashed``
    (crashed or exited within the grace window).
    """

    CODE = "health_check_failed"


__all__ = [
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
    "PathEscape",
    "Tampered",
    "TooManyFiles",
    "UnknownKey",
    "Unsigned",
]
