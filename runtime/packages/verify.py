"""``verify``: decide whether a ``.ttuapp`` may be installed on this board, touching nothing.

Layer: runtime (package manager). Checks 1-3 are the package format's own
(``protocols.packages.archive.read_signed``: archive safety, signature by a trusted key, file
hashes); on top of them, 4: ``app.toml`` is a valid manifest matching the signed name and
version with its entry module in the package (``bad_manifest``), for this runtime's API
(``incompatible_api``), with the hal capabilities the board has (``missing_capability``).
Writes nothing except a throw-away temp copy of ``app.toml`` for the manifest loader.
Never imports app code.
"""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
import tomllib
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from protocols.packages.errors import BadManifest, IncompatibleApi, MissingCapability
from protocols.packages.format import (
    APP_TOML,
    DEFAULT_LIMITS,
    SIGNATURE_NAME,
    WHEELS_DIR,
    PackageLimits,
    SignatureBlock,
    is_pure_wheel,
)
from protocols.packages.keys import raw_public
from runtime import RUNTIME_API_VERSION
from runtime.config import Board
from runtime.container.manifest import HAL_CAPABILITIES, Manifest, load_manifest
from runtime.errors import ConfigErrors
from runtime.packages.archive import read_signed

if TYPE_CHECKING:  # cryptography is imported where a signature is checked
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


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


def _load_manifest(data: bytes, pkg: Path) -> Manifest:
    try:
        doc = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError) as err:  # deep nesting: refused
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
    signed = read_signed(path, trusted=trusted, limits=limits)
    manifest = _load_manifest(signed.app_toml, path)
    _check_contents(manifest, signed.block, signed.files.keys())
    if capabilities is not None:
        _check_capabilities(manifest, capabilities)
    return VerifiedPackage(
        name=manifest.name,
        version=manifest.version,
        manifest=manifest,
        files=signed.files,
        sha256=signed.sha256,
        key_id=signed.key_id,
        path=path,
        size=signed.size,
    )


__all__ = ["VerifiedPackage", "board_capabilities", "verify"]
