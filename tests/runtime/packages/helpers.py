"""Builders for package tests: a small fixture app, and hand-made (hostile) archives."""

from __future__ import annotations

import hashlib
import stat
import zipfile
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocols.packages.format import (
    MANIFEST_NAME,
    SIGNATURE_NAME,
    render_header,
    render_manifest,
    render_signature,
    signed_message,
)
from protocols.packages.keys import key_id, raw_public

APP_TOML = """\
[app]
name = "{name}"
version = "{version}"
api = {api}
description = "package test fixture"

[capabilities]
hal = {hal}

[topics]
publish = ["{name}/#"]
"""

INIT_PY = '''"""Fixture app."""


async def run(ctx, config):
    ctx.ready()
'''


def app_files(
    name: str = "demo", version: str = "1.2.0", *, api: int = 1, hal: tuple[str, ...] = ("rs485",)
) -> dict[str, bytes]:
    hal_list = "[" + ", ".join(f'"{h}"' for h in hal) + "]"
    return {
        "app.toml": APP_TOML.format(name=name, version=version, api=api, hal=hal_list).encode(),
        "__init__.py": INIT_PY.encode(),
        "service.py": b"VALUE = 42\n",
        "data/table.csv": b"a,b\n1,2\n",
    }


def make_app(root: Path, name: str = "demo", **kw: object) -> Path:
    """Write the fixture app into ``root/<name>`` and return the folder."""
    folder = root / name
    for rel, data in app_files(name, **kw).items():  # type: ignore[arg-type]
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return folder


def zip_entry(name: str, *, mode: int = stat.S_IFREG | 0o644, is_dir: bool = False) -> zipfile.ZipInfo:
    info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
    info.create_system = 3
    info.external_attr = mode << 16
    info.compress_type = zipfile.ZIP_STORED if is_dir else zipfile.ZIP_DEFLATED
    return info


def write_zip(path: Path, entries: list[tuple[zipfile.ZipInfo | str, bytes]]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for info, data in entries:
            if isinstance(info, str):
                info = zip_entry(info)
            zf.writestr(info, data)
    return path


def signature_entries(
    files: dict[str, bytes], key: Ed25519PrivateKey, *, name: str = "demo", version: str = "1.2.0"
) -> list[tuple[zipfile.ZipInfo | str, bytes]]:
    """MANIFEST.sha256 and SIGNATURE for ``files`` (any names, even hostile ones), signed by ``key``."""
    manifest = render_manifest({p: hashlib.sha256(d).hexdigest() for p, d in files.items()})
    public = raw_public(key.public_key())
    header = render_header(name=name, version=version, key_id=key_id(public), public_key=public)
    sig = key.sign(signed_message(header, manifest))
    return [(MANIFEST_NAME, manifest), (SIGNATURE_NAME, render_signature(header, sig))]


def signed_zip(
    path: Path,
    files: dict[str, bytes],
    key: Ed25519PrivateKey,
    *,
    listed: dict[str, bytes] | None = None,
    infos: dict[str, zipfile.ZipInfo] | None = None,
) -> Path:
    """A package whose signature covers ``listed`` (default ``files``) but which holds ``files``."""
    entries = signature_entries(listed if listed is not None else files, key)
    infos = infos or {}
    entries += [(infos.get(rel, rel), data) for rel, data in sorted(files.items())]
    return write_zip(path, entries)
