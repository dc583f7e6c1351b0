"""``pack``: one app folder (+ optional pure-Python wheels) -> a signed, deterministic ``.ttuapp``.

Layer: runtime (package manager). Reads the app folder, never imports app code. The
manifest is validated first (``load_manifest`` + the entry module exists) and the
package is checked against the same limits verification enforces, so a package that
packs also verifies. Output is written to a temp file next to ``out`` and renamed.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from protocols.packages.errors import (
    BadDestination,
    BadManifest,
    Oversize,
    PackageError,
    PathEscape,
    TooManyFiles,
)
from protocols.packages.format import (
    APP_TOML,
    DEFAULT_LIMITS,
    FILE_MODE,
    MANIFEST_NAME,
    RESERVED,
    SIGNATURE_NAME,
    SUFFIX,
    WHEELS_DIR,
    ZIP_EPOCH,
    PackageLimits,
    check_path,
    is_pure_wheel,
    render_header,
    render_manifest,
    render_signature,
    signed_message,
)
from protocols.packages.keys import key_id, raw_public
from runtime.container.manifest import entry_source, load_manifest

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

_SKIP_DIRS = frozenset({"__pycache__"})
_SKIP_SUFFIXES = (".pyc", ".pyo", SUFFIX)


def _collect(app_dir: Path) -> dict[str, Path]:
    """Relative path -> file of every file to pack: hidden files, caches and packages skipped."""
    files: dict[str, Path] = {}
    for root, dirs, names in os.walk(app_dir, followlinks=False):
        base = Path(root)
        keep = []
        for d in sorted(dirs):
            if d.startswith(".") or d in _SKIP_DIRS:
                continue
            if (base / d).is_symlink():
                raise PathEscape(str((base / d).relative_to(app_dir)), "symlink in the app folder")
            keep.append(d)
        dirs[:] = keep
        for name in sorted(names):
            if name.startswith(".") or name.endswith(_SKIP_SUFFIXES):
                continue
            path = base / name
            rel = path.relative_to(app_dir).as_posix()
            mode = path.lstat().st_mode
            if not stat.S_ISREG(mode):
                raise PathEscape(rel, "not a regular file (symlink, device or fifo) in the app folder")
            files[check_path(rel)] = path
    return files


def _add_wheels(files: dict[str, Path], wheels: Iterable[str | os.PathLike[str]]) -> None:
    for wheel in wheels:
        path = Path(wheel)
        if not is_pure_wheel(path.name):
            raise BadManifest(f"{path.name}: not a pure-Python wheel (*-py3-none-any.whl)")
        if not path.is_file():
            raise PackageError("bad_wheel", f"{path}: no such file")
        rel = f"{WHEELS_DIR}/{path.name}"
        if rel in files:
            raise BadManifest(f"{rel}: given twice (or already in the app folder)")
        files[rel] = path


def _check_limits(files: dict[str, bytes], limits: PackageLimits) -> None:
    if len(files) > limits.max_files:
        raise TooManyFiles(f"{len(files)} files, the limit is {limits.max_files}")
    total = 0
    for rel, data in files.items():
        if len(data) > limits.max_file_bytes:
            raise Oversize(f"{rel}: {len(data)} bytes, the per-file limit is {limits.max_file_bytes}")
        total += len(data)
    if total > limits.max_total_bytes:
        raise Oversize(f"{total} bytes in all, the limit is {limits.max_total_bytes}")


def _entry(name: str) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
    info.create_system = 3  # unix, so external_attr carries the mode
    info.external_attr = (stat.S_IFREG | FILE_MODE) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    return info


def build_archive(
    files: dict[str, bytes], *, private_key: Ed25519PrivateKey, name: str, version: str
) -> bytes:
    """The package bytes for ``files`` (relative path -> content), signed by ``private_key``."""
    hashes = {rel: hashlib.sha256(data).hexdigest() for rel, data in files.items()}
    manifest = render_manifest(hashes)
    public = raw_public(private_key.public_key())
    header = render_header(name=name, version=version, key_id=key_id(public), public_key=public)
    signature = private_key.sign(signed_message(header, manifest))
    entries = [(MANIFEST_NAME, manifest), (SIGNATURE_NAME, render_signature(header, signature))]
    entries += [(rel, files[rel]) for rel in sorted(files)]
    with tempfile.SpooledTemporaryFile(max_size=64 << 20) as buf:
        with zipfile.ZipFile(buf, "w") as zf:
            for rel, data in entries:
                zf.writestr(_entry(rel), data, compresslevel=9)
        buf.seek(0)
        return buf.read()


def pack(
    app_dir: str | os.PathLike[str],
    *,
    private_key: Ed25519PrivateKey,
    out: str | os.PathLike[str],
    wheels: Iterable[str | os.PathLike[str]] = (),
    limits: PackageLimits = DEFAULT_LIMITS,
) -> Path:
    """Pack and sign the app in ``app_dir`` into ``out``; returns ``out``.

    Same folder, same key -> same bytes (Ed25519 signatures are deterministic).
    Raises ``ConfigErrors`` for an invalid app.toml, ``PackageError`` otherwise.
    """
    folder = Path(app_dir)
    manifest = load_manifest(folder / APP_TOML)
    if entry_source(manifest) is None:
        raise BadManifest(f"entry module {manifest.entry_module!r} not found in {folder}")
    paths = _collect(folder)
    for rel in paths:
        if rel in RESERVED:
            raise BadManifest(f"{rel}: the name is reserved for the package format")
        if (
            rel.startswith(f"{WHEELS_DIR}/")
            and rel.endswith(".whl")
            and not is_pure_wheel(rel.split("/")[-1])
        ):
            raise BadManifest(f"{rel}: not a pure-Python wheel (*-py3-none-any.whl)")
    _add_wheels(paths, wheels)
    contents: dict[str, bytes] = {}
    for rel, path in paths.items():
        try:
            contents[rel] = path.read_bytes()
        except OSError as err:
            raise PackageError("unreadable", f"{path}: {err.strerror or err}") from err
    _check_limits(contents, limits)
    data = build_archive(contents, private_key=private_key, name=manifest.name, version=manifest.version)
    if len(data) > limits.max_package_bytes:
        raise Oversize(f"package is {len(data)} bytes, the limit is {limits.max_package_bytes}")
    target = Path(out)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    except OSError as err:
        raise BadDestination(f"cannot write {target}: {err.strerror or err}") from err
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, FILE_MODE)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target


def default_name(app_dir: str | os.PathLike[str]) -> str:
    """``<name>-<version>.ttuapp`` for the app in ``app_dir``."""
    manifest = load_manifest(Path(app_dir) / APP_TOML)
    return f"{manifest.name}-{manifest.version}{SUFFIX}"


__all__ = ["build_archive", "default_name", "pack"]
