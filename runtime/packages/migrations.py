"""Declarative data migrations an app package may carry: ``migrations.toml`` in the app folder.

Layer: runtime (package manager). Pure: parses the file and rewrites a key-value mapping
(the app's store namespace). Migrations are data, not code, so an upgrade never runs
package code inside the runtime process. Shape::

    [[migration]]
    before = "2.0.0"                # applies when upgrading from a version older than this
    rename = { count = "total" }    # old key -> new key (skipped when the old key is absent)
    default = { limit = 10 }        # set only when the key is missing
    set = { schema = 2 }            # set (overwrite)
    delete = ["scratch"]            # remove when present

Every migration whose ``before`` is newer than the version being left is applied, in file
order; the steps of one migration run rename, default, set, delete. A bad file is a
``BadManifest`` naming the key path.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from protocols.packages.errors import BadManifest

MIGRATIONS_FILE = "migrations.toml"
_VERSION = re.compile(r"^(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+.*)?$")


def version_key(version: str) -> tuple[int, int, int, int, str]:
    """Sort key of a semantic version (a pre-release sorts before its release)."""
    m = _VERSION.match(version)
    if m is None:
        raise ValueError(f"{version!r} is not a semantic version")
    major, minor, patch, pre = m.groups()
    return int(major), int(minor), int(patch), 0 if pre else 1, pre or ""


@dataclass(frozen=True, slots=True)
class Migration:
    before: str
    rename: Mapping[str, str]
    default: Mapping[str, Any]
    set: Mapping[str, Any]
    delete: tuple[str, ...]

    def applies(self, from_version: str) -> bool:
        return version_key(from_version) < version_key(self.before)

    def apply(self, data: dict[str, Any]) -> None:
        for old, new in self.rename.items():
            if old in data:
                data[new] = data.pop(old)
        for key, value in self.default.items():
            data.setdefault(key, value)
        data.update(self.set)
        for key in self.delete:
            data.pop(key, None)


def _table(entry: Mapping[str, Any], key: str, where: str) -> dict[str, Any]:
    value = entry.get(key, {})
    if not isinstance(value, dict):
        raise BadManifest(f"{where}.{key}: must be a table")
    return value


def load_migrations(app_folder: Path) -> list[Migration]:
    """The migrations of the app in ``app_folder`` (none when it has no ``migrations.toml``)."""
    path = app_folder / MIGRATIONS_FILE
    if not path.is_file():
        return []
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError, RecursionError) as err:
        raise BadManifest(f"{MIGRATIONS_FILE}: cannot read: {err}") from err
    unknown = set(doc) - {"migration"}
    if unknown:
        raise BadManifest(f"{MIGRATIONS_FILE}: unknown keys {sorted(unknown)} (expected [[migration]])")
    entries = doc.get("migration", [])
    if not isinstance(entries, list):
        raise BadManifest(f"{MIGRATIONS_FILE}: migration: must be an array of tables")
    out: list[Migration] = []
    for i, entry in enumerate(entries):
        where = f"{MIGRATIONS_FILE}: migration[{i}]"
        if not isinstance(entry, dict):
            raise BadManifest(f"{where}: must be a table")
        extra = set(entry) - {"before", "rename", "default", "set", "delete"}
        if extra:
            raise BadManifest(f"{where}: unknown keys {sorted(extra)}")
        before = entry.get("before")
        try:
            version_key(before if isinstance(before, str) else "")
        except ValueError:
            raise BadManifest(f"{where}.before: must be a semantic version, not {before!r}") from None
        rename = _table(entry, "rename", where)
        if not all(isinstance(v, str) and v for v in rename.values()):
            raise BadManifest(f"{where}.rename: values must be key names")
        delete = entry.get("delete", [])
        if not isinstance(delete, list) or not all(isinstance(k, str) for k in delete):
            raise BadManifest(f"{where}.delete: must be a list of key names")
        out.append(
            Migration(
                before=str(before),
                rename=rename,
                default=_table(entry, "default", where),
                set=_table(entry, "set", where),
                delete=tuple(delete),
            )
        )
    return out


def migrate(data: Mapping[str, Any], migrations: Sequence[Migration], *, from_version: str) -> dict[str, Any]:
    """``data`` after every migration that applies when leaving ``from_version``."""
    out = dict(data)
    try:
        applicable = [m for m in migrations if m.applies(from_version)]
    except ValueError:
        applicable = []  # a non-semver old version cannot be ordered: migrate nothing
    for m in applicable:
        m.apply(out)
    return out


__all__ = ["MIGRATIONS_FILE", "Migration", "load_migrations", "migrate", "version_key"]
