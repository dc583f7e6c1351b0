"""The meter archive (档案): which meters this terminal reads, where, and how.

Layer: apps (acquisition). Parses and validates the archive TOML file and the
``archive.replace`` cloud command's arguments into frozen records. Must not do I/O
beyond reading/writing the archive file it is given.

File format::

    [[meters]]
    id = "m-0001"            # device id used in readings
    address = "000000000001" # 12 BCD digits, nameplate order
    protocol = "dlt645"      # "dlt645" (| "dlt698" later)
    port = "rs485-1"         # a board RS-485 port name, or "hplc"
    baud = 2400              # optional, default: the port's rate
    phase = "A"              # optional: "A" | "B" | "C" | "ABC"
    customer = "C0001"       # optional
    tariff = "residential"   # optional
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from runtime.errors import ConfigError, ConfigErrors

PROTOCOLS = ("dlt645", "dlt698")
PHASES = ("A", "B", "C", "ABC")
STANDARD_BAUDS = (1200, 2400, 4800, 9600, 19200)
_KEYS = {"id", "address", "protocol", "port", "baud", "phase", "customer", "tariff"}


@dataclass(frozen=True, slots=True)
class MeterRecord:
    id: str
    address: str
    protocol: str
    port: str
    baud: int | None = None
    phase: str | None = None
    customer: str | None = None
    tariff: str | None = None

    @property
    def three_phase(self) -> bool:
        return self.phase == "ABC"

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


@dataclass(frozen=True, slots=True)
class Archive:
    meters: tuple[MeterRecord, ...]

    def by_port(self) -> dict[str, list[MeterRecord]]:
        ports: dict[str, list[MeterRecord]] = {}
        for meter in self.meters:
            ports.setdefault(meter.port, []).append(meter)
        return ports

    def to_toml(self) -> str:
        lines: list[str] = []
        for meter in self.meters:
            lines.append("[[meters]]")
            for key, value in meter.to_json().items():
                lines.append(f"{key} = {value}" if isinstance(value, int) else f'{key} = "{value}"')
            lines.append("")
        return "\n".join(lines)


def _meter(raw: Any, path: str, known_ports: Iterable[str] | None) -> tuple[MeterRecord | None, list[str]]:
    if not isinstance(raw, Mapping):
        return None, [f"{path}: must be a table"]
    errors = [f"{path}.{key}: unknown key" for key in sorted(set(raw) - _KEYS)]

    def text(key: str, *, required: bool) -> str | None:
        value = raw.get(key)
        if value is None:
            if required:
                errors.append(f"{path}.{key}: missing")
            return None
        if not isinstance(value, str) or not value or not value.isprintable():
            errors.append(f"{path}.{key}: must be a non-empty string")
            return None
        return value

    meter_id = text("id", required=True)
    address = text("address", required=True)
    if address is not None and (len(address) != 12 or not address.isdigit()):
        errors.append(f"{path}.address: {address!r} is not 12 BCD digits")
    protocol = text("protocol", required=False) or "dlt645"
    if protocol not in PROTOCOLS:
        errors.append(f"{path}.protocol: {protocol!r} is not one of {', '.join(PROTOCOLS)}")
    port = text("port", required=True)
    ports = set(known_ports) if known_ports is not None else None
    if port is not None and ports is not None and port != "hplc" and port not in ports:
        errors.append(f"{path}.port: {port!r} is not a port of this board ({', '.join(sorted(ports))})")
    baud = raw.get("baud")
    if baud is not None and (isinstance(baud, bool) or baud not in STANDARD_BAUDS):
        errors.append(f"{path}.baud: {baud!r} is not a standard rate {STANDARD_BAUDS}")
    phase = text("phase", required=False)
    if phase is not None and phase not in PHASES:
        errors.append(f"{path}.phase: {phase!r} is not one of {', '.join(PHASES)}")
    if errors or meter_id is None or address is None or port is None:
        return None, errors
    return (
        MeterRecord(
            id=meter_id,
            address=address,
            protocol=protocol,
            port=port,
            baud=baud,
            phase=phase,
            customer=text("customer", required=False),
            tariff=text("tariff", required=False),
        ),
        errors,
    )


def parse_archive(
    data: Mapping[str, Any], *, source: str, known_ports: Iterable[str] | None = None
) -> Archive:
    """Validate an archive document; every problem is reported with its key path."""
    problems: list[str] = []
    raw_meters = data.get("meters", [])
    unknown = sorted(set(data) - {"meters"})
    problems.extend(f"{key}: unknown key" for key in unknown)
    if not isinstance(raw_meters, Sequence) or isinstance(raw_meters, str):
        raise ConfigErrors([ConfigError("meters", "must be an array of tables", source=source)])
    ports = list(known_ports) if known_ports is not None else None
    meters: list[MeterRecord] = []
    seen_ids: dict[str, int] = {}
    seen_addr: dict[tuple[str, str], int] = {}
    for i, raw in enumerate(raw_meters):
        path = f"meters[{i}]"
        meter, errors = _meter(raw, path, ports)
        problems.extend(errors)
        if meter is None:
            continue
        if meter.id in seen_ids:
            problems.append(f"{path}.id: {meter.id!r} already used by meters[{seen_ids[meter.id]}]")
        if (meter.port, meter.address) in seen_addr:
            first = seen_addr[(meter.port, meter.address)]
            problems.append(f"{path}.address: {meter.address} already on {meter.port} as meters[{first}]")
        seen_ids.setdefault(meter.id, i)
        seen_addr.setdefault((meter.port, meter.address), i)
        meters.append(meter)
    if problems:
        raise ConfigErrors(
            [ConfigError(p.split(": ", 1)[0], p.split(": ", 1)[1], source=source) for p in problems]
        )
    return Archive(tuple(meters))


def load_archive(path: Path, *, known_ports: Iterable[str] | None = None) -> Archive:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise ConfigError("", "archive file not found", source=str(path)) from err
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise ConfigError("", f"not valid TOML: {err}", source=str(path)) from err
    return parse_archive(data, source=str(path), known_ports=known_ports)


def save_archive(archive: Archive, path: Path) -> None:
    """Replace the archive file atomically (write, fsync, rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(archive.to_toml())
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)
