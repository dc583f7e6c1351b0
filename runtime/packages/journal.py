"""On-disk layout of installed apps, the current-version pointer, and the install journal.

Layer: runtime (package manager). Synchronous file work on small JSON documents (see
``_disk``); no event loop, no supervisor. Layout under the terminal's state folder::

    <state>/apps/<name>/current.json          pointer: {"version", "previous", "running"}
    <state>/apps/<name>/<version>/<name>/     an unpacked version (app folder = app name)
    <state>/apps/<name>/data-<version>.json   the app's store namespace as it was when the
                                              terminal left <version> (for rollback)
    <state>/apps/<name>/.txn-data.json        that snapshot while its transaction is open
    <state>/packages/journal.json             the lifecycle transaction in progress

The pointer is the single commit point: it is replaced atomically, so it always names a
whole, unpacked version. The journal is written (atomically) before each step of a
transaction and says how to undo it: ``pointer_before`` is put back, the data snapshot of
the version being left is restored, and a version folder the transaction created is
removed. Undo is idempotent, so a crash during recovery is recovered by the next start.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.packages._disk import read_json, remove, write_json

POINTER = "current.json"
JOURNAL = "journal.json"
STEPS = ("begin", "unpacked", "stopped", "snapshotted", "data", "switched", "starting", "committed")
_SAFE = re.compile(r"^[0-9A-Za-z.+-]{1,64}$")


class JournalError(Exception):
    """A pointer or journal file is unreadable (reported, then treated as absent)."""


@dataclass(frozen=True, slots=True)
class Pointer:
    version: str
    previous: str | None = None
    running: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"version": self.version, "previous": self.previous, "running": self.running}

    @classmethod
    def from_json(cls, doc: Any, where: str) -> Pointer:
        if not isinstance(doc, dict) or not isinstance(doc.get("version"), str):
            raise JournalError(f"{where}: not a version pointer")
        previous = doc.get("previous")
        return cls(
            doc["version"], previous if isinstance(previous, str) else None, doc.get("running") is not False
        )


@dataclass(slots=True)
class Txn:
    """One lifecycle transaction: ``op`` moves app ``name`` from ``from_version`` to ``to_version``."""

    op: str  # install | upgrade | rollback
    name: str
    to_version: str
    from_version: str | None
    pointer_before: Pointer | None
    created: bool  # the transaction unpacked to_version's folder (undo removes it)
    job: str | None = None
    step: str = "begin"
    snapshot: bool = False  # data-<from_version>.json written by this transaction
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "op": self.op,
            "name": self.name,
            "to": self.to_version,
            "from": self.from_version,
            "pointer_before": None if self.pointer_before is None else self.pointer_before.to_json(),
            "created": self.created,
            "job": self.job,
            "step": self.step,
            "snapshot": self.snapshot,
            "extra": self.extra,
        }

    @classmethod
    def from_json(cls, doc: Any) -> Txn:
        try:
            before = doc["pointer_before"]
            txn = cls(
                op=str(doc["op"]),
                name=str(doc["name"]),
                to_version=str(doc["to"]),
                from_version=None if doc["from"] is None else str(doc["from"]),
                pointer_before=None if before is None else Pointer.from_json(before, JOURNAL),
                created=bool(doc["created"]),
                job=doc.get("job"),
                step=str(doc["step"]),
                snapshot=bool(doc.get("snapshot")),
                extra=dict(doc.get("extra") or {}),
            )
        except (KeyError, TypeError, ValueError) as err:
            raise JournalError(f"{JOURNAL}: malformed ({err})") from err
        if txn.step not in STEPS:
            raise JournalError(f"{JOURNAL}: unknown step {txn.step!r}")
        return txn


class Layout:
    """Paths and small documents of the package manager under one state folder."""

    def __init__(self, state_dir: Path) -> None:
        self.root = Path(state_dir)
        self.apps = self.root / "apps"
        self.packages = self.root / "packages"

    # -- paths --------------------------------------------------------------------------------

    def app_dir(self, name: str) -> Path:
        return self.apps / name

    def version_dir(self, name: str, version: str) -> Path:
        if not _SAFE.match(version) or version in (".", ".."):
            raise ValueError(f"version {version!r} cannot name a folder")
        return self.apps / name / version

    def app_folder(self, name: str, version: str) -> Path:
        """The unpacked app (its folder is named after the app, as manifests require)."""
        return self.version_dir(name, version) / name

    def snapshot_path(self, name: str, version: str) -> Path:
        return self.apps / name / f"data-{version}.json"

    def txn_snapshot_path(self, name: str) -> Path:
        """The data snapshot of the transaction in progress; renamed to ``data-<from>.json`` at commit."""
        return self.apps / name / ".txn-data.json"

    @property
    def journal_path(self) -> Path:
        return self.packages / JOURNAL

    # -- pointer ------------------------------------------------------------------------------

    def installed(self) -> list[str]:
        if not self.apps.is_dir():
            return []
        return sorted(p.parent.name for p in self.apps.glob(f"*/{POINTER}"))

    def pointer(self, name: str) -> Pointer | None:
        path = self.app_dir(name) / POINTER
        try:
            doc = read_json(path)
        except ValueError as err:
            raise JournalError(f"{path}: not JSON ({err})") from err
        return None if doc is None else Pointer.from_json(doc, str(path))

    def set_pointer(self, name: str, pointer: Pointer | None) -> None:
        path = self.app_dir(name) / POINTER
        if pointer is None:
            remove(path)
        else:
            write_json(path, pointer.to_json())

    # -- journal ------------------------------------------------------------------------------

    def journal(self) -> Txn | None:
        try:
            doc = read_json(self.journal_path)
        except ValueError as err:
            raise JournalError(f"{self.journal_path}: not JSON ({err})") from err
        return None if doc is None else Txn.from_json(doc)

    def write_journal(self, txn: Txn) -> None:
        write_json(self.journal_path, txn.to_json())

    def clear_journal(self) -> None:
        remove(self.journal_path)


__all__ = ["JOURNAL", "POINTER", "STEPS", "JournalError", "Layout", "Pointer", "Txn"]
