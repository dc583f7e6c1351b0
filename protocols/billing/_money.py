"""Exact money and energy for billing: integer units, decimal-string parsing, one rounding rule.

Layer: protocols (pure arithmetic, no I/O). Floats never carry money. Every quantity is an
``int`` in a fixed unit:

=============  ===========================  ==================================================
quantity       unit                          why
=============  ===========================  ==================================================
energy         0.0001 kWh (``ENERGY``)       meters show 0.01 kWh; 698.45 high precision 0.0001
price          0.0001 元/kWh (``PRICE``)     published tariffs use up to 4 decimals (0.5583)
exact amount   1e-8 元 (``EXACT``)           energy x price, exact: no rounding inside a day
money          fen, 0.01 元 (``FEN``)        balances, charges, debits, top-ups, thresholds
=============  ===========================  ==================================================

The rounding rule (the only one): an exact amount becomes fen by rounding half away from
zero (``round_fen``; 0.005 元 -> 0.01 元, -0.005 元 -> -0.01 元). A customer-day's charge is
the exact sum of its intervals rounded once; intra-day debits round the running exact sum
and debit the difference, so they add up to the day's charge to the fen.

    >>> parse_units("0.5583", PRICE, "price")
    5583
    >>> round_fen(5583 * 12_3400)   # 12.34 kWh at 0.5583 元/kWh = 6.889422 元
    689
    >>> yuan(-1205)
    '-12.05'
"""

from __future__ import annotations

import re
from decimal import Decimal

from protocols.errors import ProtocolError

ENERGY = 10_000  # energy units per kWh
PRICE = 10_000  # price units per 元/kWh
FEN = 100  # fen per 元
EXACT = ENERGY * PRICE  # exact amount units per 元
EXACT_PER_FEN = EXACT // FEN

_DECIMAL = re.compile(r"-?(\d+)(?:\.(\d+))?")


class AmountError(ProtocolError):
    """A money or energy value that is not an exact decimal of the allowed precision."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason, protocol="billing")


def parse_units(value: object, scale: int, what: str, *, signed: bool = False) -> int:
    """``value`` (a decimal string, or an int) in units of 1/``scale``; refuses floats and
    more decimals than the unit has ("0.55831" is not a price of 4 decimals)."""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise AmountError(f'{what}: expected a decimal string such as "12.34", got {value!r}')
    text = str(value).strip()
    match = _DECIMAL.fullmatch(text)
    if match is None:
        raise AmountError(f"{what}: {value!r} is not a decimal number")
    places = len(str(scale)) - 1
    fraction = match.group(2) or ""
    if len(fraction.rstrip("0")) > places:
        raise AmountError(f"{what}: {value!r} has more than {places} decimals")
    units = int(match.group(1)) * scale + int((fraction + "0" * places)[:places] or "0")
    if text.startswith("-"):
        if not signed:
            raise AmountError(f"{what}: {value!r} must not be negative")
        units = -units
    return units


def units_text(units: int, scale: int, *, places: int | None = None) -> str:
    """Decimal text of ``units`` / ``scale`` with ``places`` decimals (all of the unit's by default)."""
    digits = len(str(scale)) - 1 if places is None else places
    value = Decimal(units) / Decimal(scale)
    return f"{value:.{digits}f}"


def yuan(fen: int) -> str:
    """Fen as 元 text with two decimals: 1205 -> "12.05"."""
    sign = "-" if fen < 0 else ""
    whole, cents = divmod(abs(fen), FEN)
    return f"{sign}{whole}.{cents:02d}"


def parse_yuan(value: object, what: str, *, signed: bool = False) -> int:
    """A 元 amount with at most two decimals, as fen."""
    return parse_units(value, FEN, what, signed=signed)


def round_fen(exact: int) -> int:
    """An exact amount (1e-8 元) as fen, half away from zero."""
    q, r = divmod(abs(exact), EXACT_PER_FEN)
    if 2 * r >= EXACT_PER_FEN:
        q += 1
    return -q if exact < 0 else q


def kwh_text(units: int) -> str:
    """Energy units as kWh text, trailing zeros kept to 2 decimals at least ("3.25", "0.1234")."""
    text = units_text(units, ENERGY)
    whole, _, frac = text.partition(".")
    frac = frac.rstrip("0")
    return f"{whole}.{frac.ljust(2, '0')}"


def energy_units(kwh: float) -> int:
    """A meter register (float kWh with at most 4 decimals) as energy units."""
    return round(kwh * ENERGY)


__all__ = [
    "ENERGY",
    "EXACT",
    "EXACT_PER_FEN",
    "FEN",
    "PRICE",
    "AmountError",
    "energy_units",
    "kwh_text",
    "parse_units",
    "parse_yuan",
    "round_fen",
    "units_text",
    "yuan",
]
