"""The billing contract (电价合同): tariffs, fee-control thresholds and coverage, as a checked document.

Layer: protocols (pure codec: JSON-able dict <-> frozen dataclasses). Must not import asyncio,
hal, runtime or apps. Signing and verification live in ``_signed``; this module only knows the
document and its schema. Every error names the key path, all errors are reported at once.

A contract, as published (TOML or JSON; canonical form is JSON with every number that is money,
price or energy as a decimal string)::

    format = "ttu-billing-contract/1"
    contract_id = "ZJ-RES"                  # the series; versions of one series replace each other
    version = 2                             # > every earlier version of the series
    effective_from = "2026-07-01T00:00"     # local date-time in `timezone`, on a 15-min boundary
    effective_until = "2027-01-01T00:00"    # optional, same rules
    timezone = "Asia/Shanghai"              # must be the terminal's time zone
    issuer = "State Grid Zhejiang marketing"

    [fee_control]                           # 元, two decimals
    alarm1_yuan = "20.00"                   # 报警金额1: balance <= this -> alarm (2AH)
    alarm2_yuan = "10.00"                   # 报警金额2: balance <= this -> alarm again, pre-trip
    overdraft_yuan = "10.00"                # 透支金额限值: trip (1AH) when balance <= -overdraft
    max_stored_yuan = "2000.00"             # 囤积金额限值: a top-up above it is refused
    close_allowed_yuan = "2.00"             # 合闸允许金额: after a trip, close once balance > this
    close = "allowed"                       # "allowed" = 1BH (customer presses the button) | "direct" = 1CH

    [[coverage]]                            # which customers; "*" = every customer whose
    tariff = "residential"                  # station-model tariff id is this tariff
    customers = ["*"]

    [[tariffs]]
    id = "residential"
    rule = "tou_then_tier"                  # 先分时后阶梯: TOU prices on all kWh + tier adders
    tiers = { basis = "annual", bounds_kwh = ["2760", "4800"], adders = ["0.05", "0.30"] }
    export = { mode = "feed_in", price = "0.4153" }   # "none" | "feed_in" | "net"

      [[tariffs.seasons]]
      name = "all year"
      months = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
      periods = [{ from = "00:00", period = "valley" }, { from = "08:00", period = "peak" },
                 { from = "21:00", period = "valley" }]
      prices = { peak = "0.5583", valley = "0.3583" }

Periods are ``sharp`` 尖, ``peak`` 峰, ``flat`` 平, ``valley`` 谷. A season's periods start at
00:00 and run to the next ``from`` (the last to midnight); every boundary is on 15 minutes, the
resolution of the load curve, so an interval never straddles two periods or two contracts.
Tiers: the kWh of a billing year (``annual``, from the first day of ``year_start_month``) or of
a calendar month (``monthly``) above ``bounds_kwh[i]`` pay ``adders[i]`` on top of their TOU
price. Export: ``none`` ignores exported kWh; ``feed_in`` credits every exported kWh at
``price``; ``net`` nets import and export per 15-min interval, bills a positive net like
import and credits a negative one at ``price``. Examples: ``protocols/billing/examples/``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from types import MappingProxyType
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from protocols.billing._money import (
    ENERGY,
    FEN,
    PRICE,
    AmountError,
    kwh_text,
    parse_units,
    units_text,
    yuan,
)
from protocols.errors import ProtocolError

FORMAT = "ttu-billing-contract/1"
SLOT_MINUTES = 15
SLOTS_PER_DAY = 24 * 60 // SLOT_MINUTES
ALL = "*"
MAX_PRICE = 100 * PRICE  # 100 元/kWh: a typo guard, not a policy

Period = Literal["sharp", "peak", "flat", "valley"]
PERIODS: tuple[Period, ...] = ("sharp", "peak", "flat", "valley")  # 尖 峰 平 谷, DL/T 645 tariffs 1..4
CloseMode = Literal["allowed", "direct"]
ExportMode = Literal["none", "feed_in", "net"]
TierBasis = Literal["annual", "monthly"]

_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_LOCAL = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")
_HHMM = re.compile(r"(\d{2}):(\d{2})")


class ContractError(ProtocolError):
    """A contract that fails its schema: every problem, each with its key path."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(problems), protocol="billing")


# --------------------------------------------------------------------------------- the model


@dataclass(frozen=True, slots=True)
class Season:
    name: str
    months: frozenset[int]
    periods: tuple[tuple[int, Period], ...]  # (minute of day it starts, period), first at 0
    prices: Mapping[Period, int]  # price units (0.0001 元/kWh)
    slot_periods: tuple[Period, ...]  # the period of each 15-min slot of the day (96)
    slot_prices: tuple[int, ...]  # its price


@dataclass(frozen=True, slots=True)
class Tiers:
    basis: TierBasis
    bounds: tuple[int, ...]  # energy units, strictly increasing
    adders: tuple[int, ...]  # price units, one per bound
    year_start_month: int = 1


@dataclass(frozen=True, slots=True)
class ExportPolicy:
    mode: ExportMode = "none"
    price: int = 0  # price units


@dataclass(frozen=True, slots=True)
class Tariff:
    id: str
    name: str
    rule: str
    seasons: tuple[Season, ...]
    season_of_month: tuple[Season, ...]  # index 0 = January
    tiers: Tiers | None
    export: ExportPolicy

    def season(self, month: int) -> Season:
        return self.season_of_month[month - 1]


@dataclass(frozen=True, slots=True)
class FeeControl:
    """Thresholds in fen."""

    alarm1: int
    alarm2: int
    overdraft: int
    max_stored: int
    close_allowed: int
    close: CloseMode = "allowed"


@dataclass(frozen=True, slots=True)
class Coverage:
    tariff: str
    customers: tuple[str, ...]  # ("*",) = every customer of the tariff in the station model

    @property
    def everyone(self) -> bool:
        return self.customers == (ALL,)


@dataclass(frozen=True, slots=True)
class Contract:
    contract_id: str
    version: int
    effective_from: datetime  # naive local time in ``timezone``
    effective_until: datetime | None
    timezone: str
    issuer: str
    description: str
    fee_control: FeeControl
    tariffs: Mapping[str, Tariff]
    coverage: tuple[Coverage, ...]

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def key(self) -> str:
        """``series@version``: how records and errors name this contract."""
        return f"{self.contract_id}@{self.version}"

    def start_epoch(self) -> float:
        return self.effective_from.replace(tzinfo=self.tz).timestamp()

    def end_epoch(self) -> float | None:
        until = self.effective_until
        return None if until is None else until.replace(tzinfo=self.tz).timestamp()

    def tariff_for(self, customer: str, model_tariff: str | None) -> Tariff | None:
        """The tariff this contract bills ``customer`` with (explicit coverage beats ``*``), or None."""
        wildcard: Tariff | None = None
        for entry in self.coverage:
            if customer in entry.customers:
                return self.tariffs[entry.tariff]
            if entry.everyone and entry.tariff == model_tariff:
                wildcard = self.tariffs[entry.tariff]
        return wildcard

    def to_json(self) -> dict[str, Any]:
        """The canonical document: what is signed, stored and sent."""
        return _contract_json(self)


# --------------------------------------------------------------------------------- parsing


class _Checker:
    """Collects problems with their key paths while the document is walked."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def bad(self, path: str, reason: str) -> None:
        self.problems.append(f"{path}: {reason}")

    def table(self, data: object, path: str, required: set[str], optional: set[str]) -> dict[str, Any] | None:
        if not isinstance(data, dict):
            self.bad(path, f"expected a table, got {type(data).__name__}")
            return None
        for key in sorted(set(data) - required - optional):
            self.bad(f"{path}.{key}" if path else key, "unknown key")
        for key in sorted(required - set(data)):
            self.bad(f"{path}.{key}" if path else key, "missing")
        return data

    def text(
        self, data: dict[str, Any], key: str, path: str, *, pattern: re.Pattern[str] | None = None
    ) -> str:
        value = data.get(key)
        where = f"{path}.{key}" if path else key
        if key not in data:
            return ""
        if not isinstance(value, str) or not value.strip():
            self.bad(where, f"expected a non-empty string, got {value!r}")
            return ""
        if pattern is not None and not pattern.fullmatch(value):
            self.bad(where, f"{value!r} is not a valid identifier (letters, digits, . _ -, at most 64)")
        return value

    def units(self, value: object, scale: int, where: str, *, limit: int | None = None) -> int:
        try:
            units = parse_units(value, scale, where)
        except AmountError as err:
            self.problems.append(err.reason)
            return 0
        if limit is not None and units > limit:
            self.bad(where, f"{value!r} is implausibly large")
        return units

    def local_time(self, data: dict[str, Any], key: str, path: str) -> datetime | None:
        where = f"{path}.{key}" if path else key
        value = data.get(key)
        if not isinstance(value, str) or not _LOCAL.fullmatch(value):
            self.bad(where, f'expected a local date-time "YYYY-MM-DDTHH:MM", got {value!r}')
            return None
        try:
            when = datetime.strptime(value, "%Y-%m-%dT%H:%M")
        except ValueError:
            self.bad(where, f"{value!r} is not a valid date-time")
            return None
        if when.minute % SLOT_MINUTES:
            self.bad(where, f"{value!r} is not on a {SLOT_MINUTES}-minute boundary")
        return when


def _minute_of_day(text: object, where: str, check: _Checker) -> int | None:
    match = _HHMM.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        check.bad(where, f'expected "HH:MM", got {text!r}')
        return None
    hh, mm = int(match.group(1)), int(match.group(2))
    if hh > 23 or mm > 59:
        check.bad(where, f"{text!r} is not a time of day")
        return None
    if mm % SLOT_MINUTES:
        check.bad(where, f"{text!r} is not on a {SLOT_MINUTES}-minute boundary")
        return None
    return hh * 60 + mm


def _season(data: object, path: str, check: _Checker) -> Season | None:
    table = check.table(data, path, {"months", "periods", "prices"}, {"name"})
    if table is None:
        return None
    name = check.text(table, "name", path) or path
    months = table.get("months")
    month_set: set[int] = set()
    if not isinstance(months, list) or not months:
        check.bad(f"{path}.months", "expected a non-empty list of months 1..12")
    else:
        for i, m in enumerate(months):
            if isinstance(m, bool) or not isinstance(m, int) or not 1 <= m <= 12:
                check.bad(f"{path}.months[{i}]", f"{m!r} is not a month 1..12")
            elif m in month_set:
                check.bad(f"{path}.months[{i}]", f"month {m} listed twice")
            else:
                month_set.add(m)
    periods: list[tuple[int, Period]] = []
    raw = table.get("periods")
    if not isinstance(raw, list) or not raw:
        check.bad(f"{path}.periods", "expected a non-empty list of {from, period}")
        raw = []
    for i, item in enumerate(raw):
        where = f"{path}.periods[{i}]"
        entry = check.table(item, where, {"from", "period"}, set())
        if entry is None or "from" not in entry or "period" not in entry:
            continue
        start = _minute_of_day(entry["from"], f"{where}.from", check)
        period = entry["period"]
        if period not in PERIODS:
            check.bad(f"{where}.period", f"{period!r} is not one of {', '.join(PERIODS)}")
            continue
        if start is None:
            continue
        if not periods and start != 0:
            check.bad(f"{where}.from", "the first period must start at 00:00")
        if periods and start <= periods[-1][0]:
            check.bad(f"{where}.from", f"{entry['from']!r} does not follow the previous period's start")
            continue
        periods.append((start, period))
    prices: dict[Period, int] = {}
    raw_prices = table.get("prices")
    used = {p for _, p in periods}
    if not isinstance(raw_prices, dict):
        check.bad(f"{path}.prices", 'expected a table {period = "price"}')
    else:
        for period, value in raw_prices.items():
            where = f"{path}.prices.{period}"
            if period not in PERIODS:
                check.bad(where, f"{period!r} is not one of {', '.join(PERIODS)}")
            elif period not in used:
                check.bad(where, "price of a period this season does not use")
            else:
                prices[period] = check.units(value, PRICE, where, limit=MAX_PRICE)
        for period in sorted(used - set(raw_prices), key=PERIODS.index):
            check.bad(f"{path}.prices.{period}", "missing: the season uses this period")
    if not periods or periods[0][0] != 0 or set(prices) != used:
        return None
    slot_periods: list[Period] = []
    for slot in range(SLOTS_PER_DAY):
        minute = slot * SLOT_MINUTES
        slot_periods.append([p for start, p in periods if start <= minute][-1])
    return Season(
        name=name,
        months=frozenset(month_set),
        periods=tuple(periods),
        prices=MappingProxyType(dict(prices)),
        slot_periods=tuple(slot_periods),
        slot_prices=tuple(prices[p] for p in slot_periods),
    )


def _tiers(data: object, path: str, check: _Checker) -> Tiers | None:
    table = check.table(data, path, {"basis", "bounds_kwh", "adders"}, {"year_start_month"})
    if table is None:
        return None
    basis = table.get("basis")
    if basis not in ("annual", "monthly"):
        check.bad(f"{path}.basis", f'{basis!r} is not "annual" or "monthly"')
    bounds_raw, adders_raw = table.get("bounds_kwh"), table.get("adders")
    if not isinstance(bounds_raw, list) or not bounds_raw:
        check.bad(f"{path}.bounds_kwh", "expected a non-empty list of kWh bounds")
        bounds_raw = []
    if not isinstance(adders_raw, list) or len(adders_raw) != len(bounds_raw):
        check.bad(f"{path}.adders", "expected one adder (元/kWh) per bound")
        adders_raw = []
    bounds = [check.units(b, ENERGY, f"{path}.bounds_kwh[{i}]") for i, b in enumerate(bounds_raw)]
    for i in range(1, len(bounds)):
        if bounds[i] <= bounds[i - 1]:
            check.bad(f"{path}.bounds_kwh[{i}]", "bounds must increase")
    if bounds and bounds[0] <= 0:
        check.bad(f"{path}.bounds_kwh[0]", "the first bound must be above 0 kWh")
    adders = [check.units(a, PRICE, f"{path}.adders[{i}]", limit=MAX_PRICE) for i, a in enumerate(adders_raw)]
    start = table.get("year_start_month", 1)
    if isinstance(start, bool) or not isinstance(start, int) or not 1 <= start <= 12:
        check.bad(f"{path}.year_start_month", f"{start!r} is not a month 1..12")
        start = 1
    if basis == "monthly" and "year_start_month" in table:
        check.bad(f"{path}.year_start_month", "only for annual tiers")
    if basis not in ("annual", "monthly") or len(adders) != len(bounds):
        return None
    return Tiers(basis, tuple(bounds), tuple(adders), start)


def _export(data: object, path: str, check: _Checker) -> ExportPolicy:
    table = check.table(data, path, {"mode"}, {"price"})
    if table is None:
        return ExportPolicy()
    mode = table.get("mode")
    if mode not in ("none", "feed_in", "net"):
        check.bad(f"{path}.mode", f'{mode!r} is not "none", "feed_in" or "net"')
        return ExportPolicy()
    if mode == "none":
        if "price" in table:
            check.bad(f"{path}.price", "no price when export is not billed")
        return ExportPolicy()
    if "price" not in table:
        check.bad(f"{path}.price", f"missing: export mode {mode!r} credits exported kWh at this price")
        return ExportPolicy(mode)
    return ExportPolicy(mode, check.units(table["price"], PRICE, f"{path}.price", limit=MAX_PRICE))


def _tariff(data: object, path: str, check: _Checker) -> Tariff | None:
    table = check.table(data, path, {"id", "seasons"}, {"name", "rule", "tiers", "export"})
    if table is None:
        return None
    tariff_id = check.text(table, "id", path, pattern=_ID)
    rule = table.get("rule", "tou_then_tier")
    if rule != "tou_then_tier":
        check.bad(f"{path}.rule", f'{rule!r}: only "tou_then_tier" (先分时后阶梯) is defined')
    seasons: list[Season] = []
    raw = table.get("seasons")
    if not isinstance(raw, list) or not raw:
        check.bad(f"{path}.seasons", "expected a non-empty list of seasons")
        raw = []
    for i, item in enumerate(raw):
        season = _season(item, f"{path}.seasons[{i}]", check)
        if season is not None:
            seasons.append(season)
    by_month: dict[int, Season] = {}
    for i, season in enumerate(seasons):
        for m in sorted(season.months):
            if m in by_month:
                check.bad(
                    f"{path}.seasons[{i}].months", f"month {m} is already in season {by_month[m].name!r}"
                )
            by_month[m] = season
    missing = [m for m in range(1, 13) if m not in by_month]
    if raw and missing and len(seasons) == len(raw):
        check.bad(f"{path}.seasons", f"months {missing} are in no season")
    tiers = _tiers(table["tiers"], f"{path}.tiers", check) if "tiers" in table else None
    export = _export(table["export"], f"{path}.export", check) if "export" in table else ExportPolicy()
    if not tariff_id or missing:
        return None
    return Tariff(
        id=tariff_id,
        name=str(table.get("name", tariff_id)),
        rule="tou_then_tier",
        seasons=tuple(seasons),
        season_of_month=tuple(by_month[m] for m in range(1, 13)),
        tiers=tiers,
        export=export,
    )


_FEE_FIELDS = ("alarm1_yuan", "alarm2_yuan", "overdraft_yuan", "max_stored_yuan", "close_allowed_yuan")


def _fee_control(data: object, check: _Checker) -> FeeControl | None:
    table = check.table(data, "fee_control", set(_FEE_FIELDS), {"close"})
    if table is None or any(f not in table for f in _FEE_FIELDS):
        return None
    alarm1, alarm2, overdraft, max_stored, close_allowed = (
        check.units(table[f], FEN, f"fee_control.{f}") for f in _FEE_FIELDS
    )
    if alarm2 > alarm1:
        check.bad("fee_control.alarm2_yuan", "must not exceed alarm1_yuan (alarm 2 comes after alarm 1)")
    if max_stored <= alarm1:
        check.bad("fee_control.max_stored_yuan", "must exceed alarm1_yuan")
    if close_allowed > max_stored:
        check.bad("fee_control.close_allowed_yuan", "must not exceed max_stored_yuan")
    close = table.get("close", "allowed")
    if close not in ("allowed", "direct"):
        check.bad("fee_control.close", f'{close!r} is not "allowed" (1BH) or "direct" (1CH)')
        close = "allowed"
    return FeeControl(alarm1, alarm2, overdraft, max_stored, close_allowed, close)


def _coverage(data: object, tariffs: Mapping[str, Tariff], check: _Checker) -> tuple[Coverage, ...]:
    if not isinstance(data, list) or not data:
        check.bad("coverage", "expected a non-empty list of {tariff, customers}")
        return ()
    out: list[Coverage] = []
    named: dict[str, str] = {}
    wildcards: set[str] = set()
    for i, item in enumerate(data):
        path = f"coverage[{i}]"
        table = check.table(item, path, {"tariff", "customers"}, set())
        if table is None or "tariff" not in table or "customers" not in table:
            continue
        tariff = table["tariff"]
        if tariff not in tariffs:
            check.bad(f"{path}.tariff", f"{tariff!r} is not a tariff of this contract")
        customers = table["customers"]
        if (
            not isinstance(customers, list)
            or not customers
            or not all(isinstance(c, str) and c for c in customers)
        ):
            check.bad(f"{path}.customers", 'expected a non-empty list of customer ids, or ["*"]')
            continue
        if ALL in customers and customers != [ALL]:
            check.bad(f"{path}.customers", '"*" stands alone')
            continue
        if customers == [ALL]:
            if tariff in wildcards:
                check.bad(f"{path}.customers", f'tariff {tariff!r} already covers "*"')
            wildcards.add(str(tariff))
        for c in customers:
            if c != ALL and c in named:
                check.bad(f"{path}.customers", f"customer {c!r} is already covered by {named[c]}")
            named.setdefault(c, path)
        out.append(Coverage(str(tariff), tuple(customers)))
    return tuple(out)


def parse_contract(data: object) -> Contract:
    """Check a contract document (a parsed TOML/JSON table) and build the model; ``ContractError``
    lists every problem with its key path."""
    check = _Checker()
    top = check.table(
        data,
        "",
        {
            "format",
            "contract_id",
            "version",
            "effective_from",
            "timezone",
            "fee_control",
            "tariffs",
            "coverage",
        },
        {"effective_until", "issuer", "issued_at", "description"},
    )
    if top is None:
        raise ContractError(check.problems)
    if "format" in top and top["format"] != FORMAT:
        check.bad("format", f"{top['format']!r} is not {FORMAT!r}")
    contract_id = check.text(top, "contract_id", "", pattern=_ID)
    version = top.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        check.bad("version", f"expected an integer >= 1, got {version!r}")
        version = 0
    start = check.local_time(top, "effective_from", "") if "effective_from" in top else None
    until = check.local_time(top, "effective_until", "") if "effective_until" in top else None
    if start is not None and until is not None and until <= start:
        check.bad("effective_until", "must be after effective_from")
    tz_name = top.get("timezone")
    try:
        ZoneInfo(str(tz_name))
        if not isinstance(tz_name, str):
            raise ZoneInfoNotFoundError(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        check.bad("timezone", f"{tz_name!r} is not an IANA time zone")
        tz_name = None
    for key in ("issuer", "issued_at", "description"):
        if key in top and not isinstance(top[key], str):
            check.bad(key, f"expected a string, got {top[key]!r}")
    fee = _fee_control(top["fee_control"], check) if "fee_control" in top else None
    tariffs: dict[str, Tariff] = {}
    raw = top.get("tariffs")
    if "tariffs" in top and (not isinstance(raw, list) or not raw):
        check.bad("tariffs", "expected a non-empty list of tariffs")
    for i, item in enumerate(raw if isinstance(raw, list) else []):
        tariff = _tariff(item, f"tariffs[{i}]", check)
        if tariff is None:
            continue
        if tariff.id in tariffs:
            check.bad(f"tariffs[{i}].id", f"tariff {tariff.id!r} is defined twice")
        tariffs[tariff.id] = tariff
    coverage = _coverage(top["coverage"], tariffs, check) if "coverage" in top else ()
    if check.problems or fee is None or start is None or tz_name is None:
        raise ContractError(check.problems or ["contract: incomplete"])
    return Contract(
        contract_id=contract_id,
        version=int(version),
        effective_from=start,
        effective_until=until,
        timezone=str(tz_name),
        issuer=str(top.get("issuer", "")),
        description=str(top.get("description", "")),
        fee_control=fee,
        tariffs=MappingProxyType(tariffs),
        coverage=coverage,
    )


# --------------------------------------------------------------------------------- canonical form


def _hhmm(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _price(units: int) -> str:
    return units_text(units, PRICE)


def _tariff_json(t: Tariff) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": t.id,
        "name": t.name,
        "rule": t.rule,
        "seasons": [
            {
                "name": s.name,
                "months": sorted(s.months),
                "periods": [{"from": _hhmm(m), "period": p} for m, p in s.periods],
                "prices": {p: _price(v) for p, v in s.prices.items()},
            }
            for s in t.seasons
        ],
        "export": {"mode": t.export.mode}
        | ({"price": _price(t.export.price)} if t.export.mode != "none" else {}),
    }
    if t.tiers is not None:
        tiers: dict[str, Any] = {
            "basis": t.tiers.basis,
            "bounds_kwh": [kwh_text(b) for b in t.tiers.bounds],
            "adders": [_price(a) for a in t.tiers.adders],
        }
        if t.tiers.basis == "annual":
            tiers["year_start_month"] = t.tiers.year_start_month
        out["tiers"] = tiers
    return out


def _contract_json(c: Contract) -> dict[str, Any]:
    fee = c.fee_control
    out: dict[str, Any] = {
        "format": FORMAT,
        "contract_id": c.contract_id,
        "version": c.version,
        "effective_from": c.effective_from.strftime("%Y-%m-%dT%H:%M"),
        "timezone": c.timezone,
        "issuer": c.issuer,
        "fee_control": {
            "alarm1_yuan": yuan(fee.alarm1),
            "alarm2_yuan": yuan(fee.alarm2),
            "overdraft_yuan": yuan(fee.overdraft),
            "max_stored_yuan": yuan(fee.max_stored),
            "close_allowed_yuan": yuan(fee.close_allowed),
            "close": fee.close,
        },
        "tariffs": [_tariff_json(t) for t in c.tariffs.values()],
        "coverage": [{"tariff": cov.tariff, "customers": list(cov.customers)} for cov in c.coverage],
    }
    if c.effective_until is not None:
        out["effective_until"] = c.effective_until.strftime("%Y-%m-%dT%H:%M")
    if c.description:
        out["description"] = c.description
    return out


def normalize(data: object) -> dict[str, Any]:
    """Check ``data`` and return its canonical JSON form (prices/energies/money as decimal strings)."""
    return parse_contract(_decimals_as_text(data)).to_json()


def _decimals_as_text(data: object) -> object:
    """TOML floats written by hand (price = 0.538) become their shortest decimal text before the
    exact parse; anything that is not representable then fails there with its path."""
    convert: Callable[[object], object] = _decimals_as_text
    if isinstance(data, dict):
        return {k: convert(v) for k, v in data.items()}
    if isinstance(data, list):
        return [convert(v) for v in data]
    if isinstance(data, float):
        return repr(data) if "e" not in repr(data) else data
    return data


__all__ = [
    "ALL",
    "FORMAT",
    "PERIODS",
    "SLOTS_PER_DAY",
    "SLOT_MINUTES",
    "CloseMode",
    "Contract",
    "ContractError",
    "Coverage",
    "ExportMode",
    "ExportPolicy",
    "FeeControl",
    "Period",
    "Season",
    "Tariff",
    "TierBasis",
    "Tiers",
    "normalize",
    "parse_contract",
]
