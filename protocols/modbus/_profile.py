"""Modbus device profiles: TOML register maps loaded into frozen dataclasses.

Layer: protocols (pure data + validation). Must not import asyncio, serial, hal, runtime
or pymodbus (pymodbus pulls asyncio in; the RTU framing lives in ``hal.modbus``).

A profile file describes one device model::

    [profile]
    name = "breaker"                 # equals the file stem
    kind = "breaker"                 # breaker | rcd | capacitor | environment | ...
    description = "..."

    [registers.current_a]            # the key is the point name
    table = "input"                  # holding | input | coil | discrete
    address = 3                      # 0-based protocol address
    type = "u16"                     # u16 | i16 | u32 | i32 | f32 (bool for coil/discrete)
    word_order = "big"               # 32-bit values: "big" (high word first) | "little"
    scale = 0.1                      # engineering value = raw x scale
    unit = "A"
    quantity = "current.a"           # normalized name; omitted = not a reading
    writable = false
    enum = { 0 = "none", 1 = "overload" }   # value meanings (trip cause ...)
    bits = { 0 = "over-voltage" }            # bit meanings of a status word

    [commands.open]                  # a named write, verified by read-back
    register = "switch_command"
    value = 0
    verify = "switch_closed"         # read back this point (default: the written one)
    expect = 0                       # ... and expect this value (default: value)

Errors are ``ProfileError`` naming the file and the key path (``registers.trip_cause.type``).
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, cast

from protocols.errors import ProtocolError
from protocols.quantities import QUANTITIES

Table = Literal["holding", "input", "coil", "discrete"]
ValueType = Literal["u16", "i16", "u32", "i32", "f32", "bool"]
WordOrder = Literal["big", "little"]

TABLES: tuple[Table, ...] = ("holding", "input", "coil", "discrete")
BIT_TABLES = frozenset({"coil", "discrete"})
WORDS: Mapping[str, int] = MappingProxyType({"u16": 1, "i16": 1, "u32": 2, "i32": 2, "f32": 2, "bool": 1})
KINDS = ("breaker", "rcd", "capacitor", "environment", "generic")
_NAME_RE = re.compile(r"[a-z][a-z0-9_]*")
_QUANTITY_RE = re.compile(r"[a-z][a-z0-9_]*(\.[a-z0-9_]+)*")
_REGISTER_KEYS = {
    "table", "address", "type", "word_order", "scale", "unit", "quantity", "writable", "enum", "bits",
    "description", "min", "max",
}  # fmt: skip
_COMMAND_KEYS = {"register", "value", "verify", "expect", "description"}


class ProfileError(ProtocolError):
    """A profile file is invalid: ``source`` is the file, ``path`` the key path inside it."""

    def __init__(self, source: str, path: str, reason: str) -> None:
        self.source = source
        self.path = path
        super().__init__(f"{source}: {path}: {reason}" if path else f"{source}: {reason}", protocol="modbus")


@dataclass(frozen=True, slots=True)
class Register:
    """One point of a device: a register (or a pair of them) or a single bit."""

    name: str
    table: Table
    address: int
    type: ValueType = "u16"
    word_order: WordOrder = "big"
    scale: float = 1.0
    unit: str = ""
    quantity: str | None = None
    writable: bool = False
    enum: Mapping[int, str] = field(default_factory=lambda: MappingProxyType({}))
    bits: Mapping[int, str] = field(default_factory=lambda: MappingProxyType({}))
    description: str = ""
    min: float | None = None
    max: float | None = None

    @property
    def words(self) -> int:
        """Registers (or bits) the point occupies."""
        return WORDS[self.type]

    @property
    def is_bit(self) -> bool:
        return self.table in BIT_TABLES

    def meaning(self, value: float | bool) -> str | list[str] | None:
        """The enum text of ``value``, or the names of its set bits; None when neither applies."""
        if self.enum and not isinstance(value, bool):
            return self.enum.get(int(value), f"unknown ({int(value)})")
        if self.bits and not isinstance(value, bool):
            raw = int(value)
            return [text for bit, text in sorted(self.bits.items()) if raw >> bit & 1]
        return None


@dataclass(frozen=True, slots=True)
class Command:
    """A named write (breaker open/close, capacitor steps) and how to verify it."""

    name: str
    register: str
    value: float | bool
    verify: str
    expect: float | bool


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    kind: str
    description: str
    registers: Mapping[str, Register]
    commands: Mapping[str, Command]
    source: str = ""

    def register(self, name: str) -> Register:
        try:
            return self.registers[name]
        except KeyError:
            raise KeyError(
                f"profile {self.name}: no point {name!r}; points: {', '.join(self.registers)}"
            ) from None

    @property
    def readings(self) -> tuple[Register, ...]:
        """Points that become normalized readings."""
        return tuple(r for r in self.registers.values() if r.quantity is not None)


# --- loading -------------------------------------------------------------------------------------


class _Reader:
    def __init__(self, source: str) -> None:
        self.source = source

    def fail(self, path: str, reason: str) -> ProfileError:
        return ProfileError(self.source, path, reason)

    def table(self, data: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
        value = data.get(key, {})
        if not isinstance(value, Mapping):
            raise self.fail(path, f"expected a table, got {type(value).__name__}")
        return value

    def keys(self, data: Mapping[str, Any], path: str, allowed: set[str]) -> None:
        unknown = sorted(set(data) - allowed)
        if unknown:
            raise self.fail(f"{path}.{unknown[0]}", f"unknown key; allowed: {', '.join(sorted(allowed))}")

    def text(self, data: Mapping[str, Any], key: str, path: str, default: str | None = None) -> str:
        value = data.get(key, default)
        if not isinstance(value, str):
            raise self.fail(f"{path}.{key}", "required text" if value is None else "expected text")
        return value

    def number(self, data: Mapping[str, Any], key: str, path: str, default: float | None = None) -> float:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(
                f"{path}.{key}", "required number" if value is None else f"{value!r} is not a number"
            )
        return float(value)

    def meanings(self, data: Mapping[str, Any], key: str, path: str, hi: int) -> Mapping[int, str]:
        table = self.table(data, key, f"{path}.{key}")
        out: dict[int, str] = {}
        for k, text in table.items():
            if not (k.isdigit() and int(k) <= hi):
                raise self.fail(f"{path}.{key}.{k}", f"not an integer 0..{hi}")
            if not isinstance(text, str) or not text:
                raise self.fail(f"{path}.{key}.{k}", "expected a non-empty text")
            out[int(k)] = text
        return MappingProxyType(out)


def _register(r: _Reader, name: str, data: Any) -> Register:
    path = f"registers.{name}"
    if not _NAME_RE.fullmatch(name):
        raise r.fail(path, "point names are lower_snake_case")
    if not isinstance(data, Mapping):
        raise r.fail(path, "expected a table")
    r.keys(data, path, _REGISTER_KEYS)
    table = r.text(data, "table", path)
    if table not in TABLES:
        raise r.fail(f"{path}.table", f"{table!r} not one of {', '.join(TABLES)}")
    address = data.get("address")
    if isinstance(address, bool) or not isinstance(address, int) or not 0 <= address <= 0xFFFF:
        raise r.fail(f"{path}.address", f"{address!r} is not an address 0..65535")
    bit = table in BIT_TABLES
    kind = r.text(data, "type", path, "bool" if bit else "u16")
    if kind not in WORDS:
        raise r.fail(f"{path}.type", f"{kind!r} not one of {', '.join(WORDS)}")
    if bit != (kind == "bool"):
        raise r.fail(
            f"{path}.type", f"{table} points are bool" if bit else "bool needs table coil or discrete"
        )
    if address + WORDS[kind] - 1 > 0xFFFF:
        raise r.fail(f"{path}.address", "point runs past address 65535")
    order = r.text(data, "word_order", path, "big")
    if order not in ("big", "little"):
        raise r.fail(f"{path}.word_order", f"{order!r} not big or little")
    scale = r.number(data, "scale", path, 1.0)
    if scale == 0:
        raise r.fail(f"{path}.scale", "must not be 0")
    unit = r.text(data, "unit", path, "")
    quantity = data.get("quantity")
    if quantity is not None:
        if not isinstance(quantity, str) or not _QUANTITY_RE.fullmatch(quantity):
            raise r.fail(f"{path}.quantity", f"{quantity!r} is not a dotted lower-case name")
        known = QUANTITIES.get(quantity)
        if known is not None and known.unit != unit:
            raise r.fail(f"{path}.unit", f"{quantity} is in {known.unit!r}, not {unit!r}")
    writable = data.get("writable", False)
    if not isinstance(writable, bool):
        raise r.fail(f"{path}.writable", "expected true or false")
    if writable and table in ("input", "discrete"):
        raise r.fail(f"{path}.writable", f"{table} points are read-only in Modbus")
    bits_hi = 16 * WORDS[kind] - 1
    limits = {k: r.number(data, k, path) for k in ("min", "max") if k in data}
    return Register(
        name=name,
        table=table,
        address=address,
        type=cast(ValueType, kind),
        word_order=cast(WordOrder, order),
        scale=scale,
        unit=unit,
        quantity=quantity,
        writable=writable,
        enum=r.meanings(data, "enum", path, 0xFFFF),
        bits=r.meanings(data, "bits", path, bits_hi),
        description=r.text(data, "description", path, ""),
        min=limits.get("min"),
        max=limits.get("max"),
    )


def _command(r: _Reader, name: str, data: Any, registers: Mapping[str, Register]) -> Command:
    path = f"commands.{name}"
    if not isinstance(data, Mapping):
        raise r.fail(path, "expected a table")
    r.keys(data, path, _COMMAND_KEYS)
    target = r.text(data, "register", path)
    reg = registers.get(target)
    if reg is None:
        raise r.fail(f"{path}.register", f"no point {target!r} in registers")
    if not reg.writable:
        raise r.fail(f"{path}.register", f"point {target!r} is not writable")
    verify = r.text(data, "verify", path, target)
    if verify not in registers:
        raise r.fail(f"{path}.verify", f"no point {verify!r} in registers")
    value = data.get("value")
    if not isinstance(value, int | float):
        raise r.fail(f"{path}.value", "required number or boolean")
    expect = data.get("expect", value)
    if not isinstance(expect, int | float):
        raise r.fail(f"{path}.expect", "expected a number or boolean")
    return Command(name, target, value, verify, expect)


def _overlaps(r: _Reader, registers: Mapping[str, Register]) -> None:
    seen: dict[tuple[str, int], str] = {}
    for reg in registers.values():
        for a in range(reg.address, reg.address + reg.words):
            other = seen.setdefault((reg.table, a), reg.name)
            if other != reg.name:
                raise r.fail(f"registers.{reg.name}.address", f"{reg.table} {a} is also used by {other!r}")


def parse_profile(data: Mapping[str, Any], *, source: str, name: str | None = None) -> Profile:
    """A profile from parsed TOML; ``name`` (the file stem) must match ``[profile].name`` when given."""
    r = _Reader(source)
    r.keys(data, "", {"profile", "registers", "commands"})
    head = r.table(data, "profile", "profile")
    r.keys(head, "profile", {"name", "kind", "description"})
    pname = r.text(head, "name", "profile")
    if name is not None and pname != name:
        raise r.fail("profile.name", f"{pname!r} differs from the file name {name!r}")
    kind = r.text(head, "kind", "profile", "generic")
    if kind not in KINDS:
        raise r.fail("profile.kind", f"{kind!r} not one of {', '.join(KINDS)}")
    raw_regs = r.table(data, "registers", "registers")
    if not raw_regs:
        raise r.fail("registers", "a profile needs at least one point")
    registers = {k: _register(r, k, v) for k, v in raw_regs.items()}
    _overlaps(r, registers)
    commands = {k: _command(r, k, v, registers) for k, v in r.table(data, "commands", "commands").items()}
    return Profile(
        pname,
        kind,
        r.text(head, "description", "profile", ""),
        MappingProxyType(registers),
        MappingProxyType(commands),
        source,
    )


def load_profile(path: str | Path) -> Profile:
    """Load and validate one profile file; ``ProfileError`` names the file and the key."""
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as err:
        raise ProfileError(str(p), "", f"cannot read: {err.strerror or err}") from err
    except tomllib.TOMLDecodeError as err:
        raise ProfileError(str(p), "", f"not valid TOML: {err}") from err
    return parse_profile(data, source=str(p), name=p.stem)


def builtin_names() -> tuple[str, ...]:
    """Names of the profiles shipped with the package (``protocols/modbus/profiles/*.toml``)."""
    folder = resources.files(__package__).joinpath("profiles")
    return tuple(sorted(f.name[:-5] for f in folder.iterdir() if f.name.endswith(".toml")))


def builtin_profile(name: str) -> Profile:
    """A shipped profile by name (``breaker``, ``rcd``, ``capacitor``, ``environment``): the same
    object at every call (parsed once)."""
    if name not in builtin_names():
        raise ProfileError("profiles", name, f"no such profile; shipped: {', '.join(builtin_names())}")
    return _shipped(name)


@functools.cache
def _shipped(name: str) -> Profile:
    """A shipped profile parsed once: a profile is immutable, so every device of a kind shares one
    (a breaker's is ~20 kB of registers; a station area has hundreds of units)."""
    entry = resources.files(__package__).joinpath("profiles", f"{name}.toml")
    source = f"protocols/modbus/profiles/{name}.toml"
    try:
        data = tomllib.loads(entry.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as err:
        raise ProfileError(source, "", f"not valid TOML: {err}") from err
    return parse_profile(data, source=source, name=name)


__all__ = [
    "BIT_TABLES",
    "TABLES",
    "Command",
    "Profile",
    "ProfileError",
    "Register",
    "Table",
    "builtin_names",
    "builtin_profile",
    "load_profile",
    "parse_profile",
]
