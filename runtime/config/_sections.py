"""board.toml pass 1: the schema of each section on its own.

Layer: runtime. Declarative field specs (``runtime.config.schema``) and the
rules inside one section (mqtts needs TLS; a Modbus slot needs a device).
Rules across sections are pass 2 (``_final``). No I/O here.
"""

from __future__ import annotations

import string
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from runtime.config._nodes import (
    HplcConfig,
    MetrologyConfig,
    PowerConfig,
    Rs485Port,
    SimConfig,
    SlotConfig,
    TerminalConfig,
    TlsConfig,
    WatchdogConfig,
)
from runtime.config.schema import (
    EMPTY,
    Bool,
    FieldSpec,
    Float,
    Int,
    ListOf,
    Opaque,
    PathField,
    Str,
    Table,
    TableOf,
    Url,
)

STANDARD_RATES = (1200, 2400, 4800, 9600, 19200)
"""RS-485 meter bus rates (DL/T 645 / 698.45 practice)."""

MODBUS_RATES = (*STANDARD_RATES, 38400, 57600, 115200)
HPLC_RATES = (9600, 115200)
PARITIES = ("N", "E", "O")

NODE_NAME = r"[a-z][a-z0-9-]{0,31}"
APP_NAME = r"[a-z][a-z0-9_]{0,63}"
_FORBIDDEN_ID = frozenset("/+#")


def _terminal_id(value: str) -> str | None:
    if len(value) > 64:
        return "is longer than 64 characters"
    bad = sorted({c for c in value if c in _FORBIDDEN_ID or not c.isprintable() or c in string.whitespace})
    if bad:
        return f"{value!r} must not contain {' '.join(repr(c) for c in bad)} (it is part of MQTT topics)"
    return None


def _printable(value: str) -> str | None:
    return None if value.isprintable() else f"{value!r} contains non-printable characters"


def _timezone(value: str) -> str | None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone {value!r} (use an IANA name such as 'Asia/Shanghai')"
    return None


def _parity(default: str) -> Str:
    return Str(choices=PARITIES, default=default)


TERMINAL: Mapping[str, FieldSpec] = MappingProxyType(
    {
        "id": Str(checks=(_terminal_id,), doc="terminal id; used in MQTT topics"),
        "name": Str(default="", min_len=0, checks=(_printable,)),
        "timezone": Str(checks=(_timezone,), doc="IANA zone of the station area"),
        "address": Str(default=None, checks=(_printable,), doc="terminal address used by the master station"),
    }
)

HAL: Mapping[str, FieldSpec] = MappingProxyType({"backend": Str(choices=("linux", "sim"))})

WATCHDOG: Mapping[str, FieldSpec] = MappingProxyType(
    {
        "enabled": Bool(default=True),
        "device": Str(),
        "timeout_s": Float(default=30.0, min=1.0, max=3600.0),
    }
)

POWER: Mapping[str, FieldSpec] = MappingProxyType(
    {
        "enabled": Bool(default=True),
        "device": Str(doc="sim:<name>, gpio:<sysfs value file> or adc:<IIO raw file>"),
        "holdup_s": Float(default=30.0, gt=0.0, max=600.0, doc="supercapacitor hold-up after mains loss"),
        "active_low": Bool(default=True, doc='gpio: "0" means the mains is lost'),
        "adc_scale": Float(default=1.0, gt=0.0, max=1e6, doc="adc: volts per raw count"),
        "adc_threshold_v": Float(default=154.0, gt=0.0, max=1000.0, doc="adc: mains below this is lost"),
        "poll_ms": Int(default=20, min=1, max=10_000),
    }
)

METROLOGY: Mapping[str, FieldSpec] = MappingProxyType(
    {
        "enabled": Bool(default=True),
        "device": Str(),
        "baud": Int(default=9600, choices=MODBUS_RATES, choices_label="a supported rate"),
        "parity": _parity("E"),
        "logical_address": Int(default=1, min=0, max=255),
        "ct_ratio": Float(default=1.0, gt=0.0, max=100_000.0, doc="primary/secondary, 200 for 1000/5 A"),
        "pt_ratio": Float(default=1.0, gt=0.0, max=100_000.0, doc="1 on the LV side"),
        "rated_voltage_v": Float(default=220.0, gt=0.0, max=1_000_000.0),
    }
)

RS485: Mapping[str, FieldSpec] = MappingProxyType(
    {
        "name": Str(pattern=NODE_NAME, pattern_reason="is not a node name (lowercase, digits, '-')"),
        "enabled": Bool(default=True),
        "roles": ListOf(
            Str(pattern=NODE_NAME, pattern_reason="is not a role name (lowercase, digits, '-')"),
            default=(),
            unique=True,
        ),
        "device": Str(),
        "baud": Int(default=2400, choices=STANDARD_RATES, choices_label="a standard rate"),
        "parity": _parity("E"),
        "bytesize": Int(default=8, choices=(7, 8)),
        "stopbits": Int(default=1, choices=(1, 2)),
        "timeout_ms": Int(default=1000, min=10, max=60_000),
        "response_delay_max_ms": Int(default=500, min=0, max=60_000),
    }
)

HPLC: Mapping[str, FieldSpec] = MappingProxyType(
    {
        "enabled": Bool(default=True),
        "device": Str(),
        "baud": Int(default=9600, choices=HPLC_RATES, choices_label="a supported rate"),
        "parity": _parity("E"),
        "module": Str(default="", min_len=0, checks=(_printable,), doc="free text: vendor/model of the CCO"),
    }
)


def _slot_rules(values: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    if values["module"] == "modbus-rtu":
        if values["device"] is None:
            yield "device", "required for a modbus-rtu module"
        if not values["unit_ids"]:
            yield "unit_ids", "a modbus-rtu module needs at least one unit id"
    elif values["unit_ids"]:
        yield "unit_ids", f"only meaningful for a modbus-rtu module, not {values['module']!r}"


SLOT: Mapping[str, FieldSpec] = MappingProxyType(
    {
        "name": Str(pattern=NODE_NAME, pattern_reason="is not a node name (lowercase, digits, '-')"),
        "enabled": Bool(default=True),
        "module": Str(choices=("di-do", "modbus-rtu", "analog")),
        "device": Str(default=None),
        "baud": Int(default=9600, choices=MODBUS_RATES, choices_label="a supported rate"),
        "parity": _parity("E"),
        "unit_ids": ListOf(Int(min=1, max=247), default=(), unique=True),
    }
)


def _tls_rules(values: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    if (values["cert"] is None) != (values["key"] is None):
        missing = "key" if values["key"] is None else "cert"
        yield missing, "cert and key go together: give both or neither"


TLS: Mapping[str, FieldSpec] = MappingProxyType(
    {
        "ca": PathField(doc="CA bundle (PEM) that signs the broker's certificate"),
        "cert": PathField(default=None),
        "key": PathField(default=None),
    }
)


def _uplink_rules(values: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    secure = str(values["broker"]).startswith("mqtts://")
    if secure and values["tls"] is None:
        yield "tls", "required for an mqtts:// broker (give at least tls.ca)"
    if not secure and values["tls"] is not None:
        yield "tls", "given, but the broker is mqtt:// (use mqtts:// for TLS)"


UPLINK: Mapping[str, FieldSpec] = MappingProxyType(
    {
        "enabled": Bool(default=True),
        "broker": Url(schemes=("mqtt", "mqtts")),
        "client_id": Str(default=None, max_len=128, checks=(_terminal_id,), doc="default: terminal id"),
        "keepalive_s": Int(default=60, min=5, max=65_535),
        "tls": Table(TLS, into=TlsConfig, default=None, checks_table=(_tls_rules,)),
        "credentials_file": PathField(default=None),
        "batch_max": Int(
            default=100, min=1, max=500, doc="messages per batch (protocols.cloud MAX_BATCH_MESSAGES)"
        ),
        "qos": Int(default=1, choices=(1, 2), choices_label="an at-least-once QoS"),
        "max_command_bytes": Int(
            default=64 << 10,
            min=1 << 10,
            max=1 << 20,
            doc="largest downlink command accepted (chunks: their own)",
        ),
        "ack_timeout_s": Float(
            default=30.0, min=1.0, max=3600.0, doc="real seconds to wait for the cloud's ack"
        ),
    }
)


def _store_rules(values: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    curve, days = values["curve_retention_days"], values["retention_days"]
    if curve is not None and curve > days:
        yield "curve_retention_days", f"{curve} exceeds store.retention_days ({days})"


STORE: Mapping[str, FieldSpec] = MappingProxyType(
    {
        "path": PathField(default=None, doc="sqlite file; relative to the board's folder"),
        "max_mb": Int(default=512, min=16, max=1_048_576),
        "retention_days": Int(default=90, min=1, max=3650),
        "curve_retention_days": Int(default=None, min=1, max=3650, doc="default: retention_days"),
        "fsync": Bool(
            default=True,
            doc="false: commits are not fsynced (a crash loses nothing, a power cut may lose the last "
            "commits); only where the disk is not the terminal's flash",
        ),
    }
)

PACKAGES: Mapping[str, FieldSpec] = MappingProxyType(
    {
        "trusted_keys": ListOf(
            Str(), default=(), unique=True, doc="base64 raw Ed25519 keys or PEM file paths"
        ),
        "apps_dir": PathField(default=None, doc="default: apps/ next to the board file"),
        "health_grace_s": Float(
            default=10.0, min=0.0, max=3600.0, doc="an installed app must run this long without crashing"
        ),
        "stall_s": Float(
            default=15.0, gt=0.0, max=3600.0, doc="re-ask for chunks after this long without one"
        ),
    }
)

APP: Mapping[str, FieldSpec] = MappingProxyType(
    {
        "enabled": Bool(default=True),
        "isolated": Bool(default=False),
        "nice": Int(default=None, min=0, max=19, doc="niceness of an isolated app's process (default 10)"),
        "config": Opaque(default=MappingProxyType({})),
    }
)

STATION: Mapping[str, FieldSpec] = MappingProxyType(
    {
        "file": PathField(default=None, doc="the station archive (TOML); default var/station.toml"),
        "proposals": Str(default="confirm", choices=("auto", "confirm")),
        "auto_min_confidence": Float(default=0.9, min=0.0, max=1.0),
    }
)

SIM: Mapping[str, FieldSpec] = MappingProxyType(
    {
        "meters_per_bus": Int(default=50, min=0, max=1000),
        "hplc_meters": Int(default=0, min=0, max=5000),
        "speed": Float(default=1.0, gt=0.0, max=100_000.0),
        "seed": Int(default=0, min=0),
        "scenario": Str(default=None),
    }
)

BOARD: Mapping[str, FieldSpec] = MappingProxyType(
    {
        "terminal": Table(TERMINAL, into=TerminalConfig),
        "hal": Table(HAL),
        "watchdog": Table(WATCHDOG, into=WatchdogConfig, default=None),
        "metrology": Table(METROLOGY, into=MetrologyConfig, default=None),
        "power": Table(POWER, into=PowerConfig, default=None),
        "rs485": ListOf(Table(RS485, into=Rs485Port), default=()),
        "hplc": Table(HPLC, into=HplcConfig, default=None),
        "slots": ListOf(Table(SLOT, into=SlotConfig, checks_table=(_slot_rules,)), default=()),
        "uplink": Table(UPLINK, default=None, checks_table=(_uplink_rules,)),
        "store": Table(STORE, default=EMPTY, checks_table=(_store_rules,)),
        "packages": Table(PACKAGES, default=EMPTY),
        "apps": TableOf(
            Table(APP), default=MappingProxyType({}), key_pattern=APP_NAME, key_reason="is not an app name"
        ),
        "aliases": TableOf(
            Str(),
            default=MappingProxyType({}),
            key_pattern=NODE_NAME,
            key_reason="is not an alias (lowercase, digits, '-')",
        ),
        "sim": Table(SIM, into=SimConfig, default=None),
        "station": Table(STATION, default=EMPTY),
    }
)
"""Top level of board.toml. Sections needing the board's folder or other sections stay mappings here."""


__all__ = ["BOARD", "HPLC_RATES", "MODBUS_RATES", "STANDARD_RATES"]
