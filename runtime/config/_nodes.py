"""The typed, frozen picture of one terminal that board.toml describes.

Layer: runtime. Plain values only: no parsing (``_sections``), no cross-checks
(``_final``), no I/O except reading trusted key files on request. Paths are
absolute, resolved against the board file's folder by the loader.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal
from zoneinfo import ZoneInfo

from hal.interfaces import Parity, SerialSettings

Backend = Literal["linux", "sim"]
SlotModule = Literal["di-do", "modbus-rtu", "analog"]


@dataclass(frozen=True, slots=True)
class TerminalConfig:
    """``[terminal]``: who this box is. ``id`` appears in MQTT topics."""

    id: str
    name: str
    timezone: str
    address: str | None

    @property
    def tz(self) -> ZoneInfo:
        """The station area's local time zone (tariffs and freezes only)."""
        return ZoneInfo(self.timezone)


@dataclass(frozen=True, slots=True)
class HalConfig:
    """``[hal]``: which backend drives every node."""

    backend: Backend


@dataclass(frozen=True, slots=True)
class WatchdogConfig:
    """``[watchdog]``: the hardware watchdog the supervisor kicks."""

    enabled: bool
    device: str
    timeout_s: float


@dataclass(frozen=True, slots=True)
class PowerConfig:
    """``[power]``: the terminal's own supply input and its supercapacitor hold-up.

    ``device`` is ``sim:<name>`` (the simulator drives it), ``gpio:<sysfs value file>`` or
    ``adc:<IIO raw file>``; ``holdup_s`` is how long the board (and its modem) runs after the
    mains goes: the time a last gasp has."""

    enabled: bool
    device: str
    holdup_s: float
    active_low: bool
    adc_scale: float
    adc_threshold_v: float
    poll_ms: int


@dataclass(frozen=True, slots=True)
class MetrologyConfig:
    """``[metrology]``: the AC sampling unit on the transformer's LV side."""

    enabled: bool
    device: str
    baud: int
    parity: Parity
    logical_address: int
    ct_ratio: float
    pt_ratio: float
    rated_voltage_v: float

    @property
    def settings(self) -> SerialSettings:
        return SerialSettings(baud=self.baud, parity=self.parity)


@dataclass(frozen=True, slots=True)
class Rs485Port:
    """``[[rs485]]``: one RS-485 bus; ``roles`` are portable names apps use ("meters")."""

    name: str
    enabled: bool
    roles: tuple[str, ...]
    device: str
    baud: int
    parity: Parity
    bytesize: int
    stopbits: int
    timeout_ms: int
    response_delay_max_ms: int

    @property
    def settings(self) -> SerialSettings:
        return SerialSettings(
            baud=self.baud, parity=self.parity, bytesize=self.bytesize, stopbits=self.stopbits
        )


@dataclass(frozen=True, slots=True)
class HplcConfig:
    """``[hplc]``: the UART to the broadband carrier module (CCO, Q/GDW 1376.2)."""

    enabled: bool
    device: str
    baud: int
    parity: Parity
    module: str

    @property
    def settings(self) -> SerialSettings:
        return SerialSettings(baud=self.baud, parity=self.parity)


@dataclass(frozen=True, slots=True)
class SlotConfig:
    """``[[slots]]``: one expansion slot and the module in it."""

    name: str
    enabled: bool
    module: SlotModule
    device: str | None
    baud: int
    parity: Parity
    unit_ids: tuple[int, ...]

    @property
    def settings(self) -> SerialSettings:
        return SerialSettings(baud=self.baud, parity=self.parity)


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """``[uplink.tls]``: CA bundle, and optionally a client certificate and key."""

    ca: Path
    cert: Path | None
    key: Path | None


@dataclass(frozen=True, slots=True)
class UplinkConfig:
    """``[uplink]``: the MQTT session to the master station."""

    enabled: bool
    broker: str
    client_id: str
    keepalive_s: int
    tls: TlsConfig | None
    credentials_file: Path | None
    batch_max: int
    qos: int
    max_command_bytes: int
    ack_timeout_s: float


@dataclass(frozen=True, slots=True)
class StoreConfig:
    """``[store]``: the sqlite file and its bounds."""

    path: Path
    max_mb: int
    retention_days: int
    curve_retention_days: int
    fsync: bool = True  # False: WAL commits not fsynced (runtime.store docstring)


@dataclass(frozen=True, slots=True)
class TrustedKey:
    """One Ed25519 public key that may sign app packages; ``origin`` is how board.toml gave it."""

    origin: str
    raw: bytes = field(repr=False)


@dataclass(frozen=True, slots=True)
class PackagesConfig:
    """``[packages]``: who may sign app packages and where apps live."""

    trusted_keys: tuple[TrustedKey, ...]
    apps_dir: Path
    health_grace_s: float = 10.0
    stall_s: float = 15.0


@dataclass(frozen=True, slots=True)
class AppConfig:
    """``[apps.<name>]``: enable flag, isolation, and the app's own (opaque here) config table."""

    name: str
    enabled: bool
    isolated: bool
    config: Mapping[str, Any]
    nice: int | None = None  # niceness of the app's host process when isolated


@dataclass(frozen=True, slots=True)
class StationConfig:
    """``[station]``: the station model (台区档案) the runtime owns.

    ``file``: the utility's archive the terminal starts from (re-read when it changes);
    ``proposals``: ``"auto"`` applies apps' corrections of confidence >= ``auto_min_confidence``
    at once, ``"confirm"`` keeps every correction pending until the cloud confirms it."""

    file: Path
    proposals: str = "confirm"
    auto_min_confidence: float = 0.9


@dataclass(frozen=True, slots=True)
class SimConfig:
    """``[sim]``: knobs the simulator owns; validated for shape only."""

    meters_per_bus: int
    hplc_meters: int
    speed: float
    seed: int
    scenario: str | None


Node = WatchdogConfig | MetrologyConfig | Rs485Port | HplcConfig | SlotConfig | PowerConfig


@dataclass(frozen=True, slots=True)
class Board:
    """One terminal. ``root`` is the board file's folder; ``source`` its name for messages."""

    root: Path
    source: str | None
    terminal: TerminalConfig
    hal: HalConfig
    watchdog: WatchdogConfig | None
    metrology: MetrologyConfig | None
    power: PowerConfig | None
    rs485: tuple[Rs485Port, ...]
    hplc: HplcConfig | None
    slots: tuple[SlotConfig, ...]
    uplink: UplinkConfig | None
    store: StoreConfig
    packages: PackagesConfig
    apps: Mapping[str, AppConfig]
    aliases: Mapping[str, str]
    sim: SimConfig | None
    station: StationConfig = StationConfig(Path("var/station.toml"))

    @property
    def rs485_by_name(self) -> Mapping[str, Rs485Port]:
        return MappingProxyType({p.name: p for p in self.rs485})

    @property
    def slots_by_name(self) -> Mapping[str, SlotConfig]:
        return MappingProxyType({s.name: s for s in self.slots})

    @property
    def enabled_rs485(self) -> tuple[Rs485Port, ...]:
        return tuple(p for p in self.rs485 if p.enabled)

    @property
    def enabled_apps(self) -> Mapping[str, AppConfig]:
        """Apps with ``enabled = true``, in board order."""
        return MappingProxyType({n: a for n, a in self.apps.items() if a.enabled})

    @property
    def nodes(self) -> Mapping[str, Node]:
        """Every hardware node by name: ``metrology``, ``hplc``, ``watchdog``, ports and slots."""
        out: dict[str, Node] = {}
        if self.watchdog is not None:
            out["watchdog"] = self.watchdog
        if self.metrology is not None:
            out["metrology"] = self.metrology
        if self.power is not None:
            out["power"] = self.power
        if self.hplc is not None:
            out["hplc"] = self.hplc
        out.update(self.rs485_by_name)
        out.update(self.slots_by_name)
        return MappingProxyType(out)

    def node(self, name: str) -> Node:
        """A node by name or alias; ``KeyError`` if neither names one."""
        return self.nodes[self.aliases.get(name, name)]

    def rs485_with_role(self, role: str) -> tuple[Rs485Port, ...]:
        """Enabled RS-485 ports carrying ``role`` (e.g. "meters"), in board order."""
        return tuple(p for p in self.rs485 if p.enabled and role in p.roles)


__all__ = [
    "AppConfig",
    "Backend",
    "Board",
    "HalConfig",
    "HplcConfig",
    "MetrologyConfig",
    "Node",
    "PackagesConfig",
    "PowerConfig",
    "Rs485Port",
    "SimConfig",
    "SlotConfig",
    "SlotModule",
    "StoreConfig",
    "TerminalConfig",
    "TlsConfig",
    "TrustedKey",
    "UplinkConfig",
    "WatchdogConfig",
]
