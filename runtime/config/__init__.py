"""Configuration of the terminal: board.toml, the uplink credentials file, and the schema toolkit.

Layer: runtime. Turns TOML documents into frozen typed objects and reports every
mistake with its key path (``rs485[2].baud: ...``). Opens no device and starts
nothing; app configs are validated by the app container with ``runtime.config.schema``.
"""

from runtime.config.board import (
    AppConfig,
    Board,
    HalConfig,
    HplcConfig,
    MetrologyConfig,
    PackagesConfig,
    PowerConfig,
    Rs485Port,
    SimConfig,
    SlotConfig,
    StationConfig,
    StoreConfig,
    TerminalConfig,
    TlsConfig,
    TrustedKey,
    UplinkConfig,
    WatchdogConfig,
    load_board,
    parse_board,
)
from runtime.config.credentials import Credentials, load_credentials, parse_credentials
from runtime.config.schema import FieldSpec, validate_mapping
from runtime.config.toml import parse_toml

__all__ = [
    "AppConfig",
    "Board",
    "Credentials",
    "FieldSpec",
    "HalConfig",
    "HplcConfig",
    "MetrologyConfig",
    "PackagesConfig",
    "PowerConfig",
    "Rs485Port",
    "SimConfig",
    "SlotConfig",
    "StationConfig",
    "StoreConfig",
    "TerminalConfig",
    "TlsConfig",
    "TrustedKey",
    "UplinkConfig",
    "WatchdogConfig",
    "load_board",
    "load_credentials",
    "parse_board",
    "parse_credentials",
    "parse_toml",
    "validate_mapping",
]
