"""The meter archive (档案) file the terminal's acquisition app loads.

Layer: sim. Writes (and, for round-trip tests and tools, reads) the TOML archive:

    [[meters]]
    id = "m-0001"            # device id used in readings
    address = "000000000001" # 12 digits, nameplate order
    protocol = "dlt645"
    port = "rs485-1"         # board port name, or "hplc"
    baud = 2400
    phase = "A"              # "A"|"B"|"C"|"ABC"; optional
    customer = "C0001"
    tariff = "residential"

It knows nothing of meters' state or of the terminal's config validation.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

PHASES = ("A", "B", "C", "ABC")


@dataclass(frozen=True, slots=True)
class ArchiveEntry:
    """One meter in the archive."""

    id: str
    address: str
    protocol: str = "dlt645"
    port: str = "rs485-1"
    baud: int = 2400
    phase: str | None = None
    customer: str = ""
    tariff: str = "residential"

    def __post_init__(self) -> None:
        if len(self.address) != 12 or not self.address.isdigit():
            raise ValueError(f"archive entry {self.id}: address {self.address!r} is not 12 BCD digits")
        if self.phase is not None and self.phase not in PHASES:
            raise ValueError(f"archive entry {self.id}: phase {self.phase!r} not one of {PHASES}")


def _toml_str(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def dumps_archive(entries: Iterable[ArchiveEntry]) -> str:
    """The archive as TOML text, one ``[[meters]]`` table per entry."""
    blocks = []
    for e in entries:
        lines = [
            "[[meters]]",
            f"id = {_toml_str(e.id)}",
            f"address = {_toml_str(e.address)}",
            f"protocol = {_toml_str(e.protocol)}",
            f"port = {_toml_str(e.port)}",
            f"baud = {int(e.baud)}",
        ]
        if e.phase is not None:
            lines.append(f"phase = {_toml_str(e.phase)}")
        lines += [f"customer = {_toml_str(e.customer)}", f"tariff = {_toml_str(e.tariff)}"]
        blocks.append("\n".join(lines) + "\n")
    return "\n".join(blocks)


def write_archive(path: str | Path, entries: Iterable[ArchiveEntry]) -> None:
    """Write the archive atomically (temp file + rename)."""
    target = Path(path)
    tmp = target.with_name(target.name + ".tmp")
    tmp.write_text(dumps_archive(entries), encoding="utf-8")
    tmp.replace(target)


def read_archive(path: str | Path) -> list[ArchiveEntry]:
    """Read an archive written by ``write_archive``; ValueError names the file and entry on bad input."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ValueError(f"{path}: cannot read archive: {err}") from err
    entries = []
    for i, raw in enumerate(data.get("meters", [])):
        try:
            entries.append(ArchiveEntry(**raw))
        except TypeError as err:
            raise ValueError(f"{path}: meters[{i}]: {err}") from err
    return entries


__all__ = ["ArchiveEntry", "dumps_archive", "read_archive", "write_archive"]
