"""Load board.toml: the devicetree-like description of one terminal, into a frozen ``Board``.

Layer: runtime. Two passes, every error of a pass reported together as
``ConfigErrors`` with key paths (``rs485[2].baud: ...``):

1. each section alone against its schema (``_sections``): types, ranges, unknown keys;
2. across sections and against the file system (``_final``): node names and
   devices unique, devices fit the hal backend, aliases resolve, TLS/credentials
   and key files exist, every app under ``[apps]`` has ``<apps_dir>/<name>/app.toml``.

Relative paths are resolved against the board file's folder. Must not open
devices, start anything, or validate an app's own config (the container does
that against the app's manifest with ``runtime.config.schema``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any

from runtime.config._final import check_board, decode_trusted_key
from runtime.config._nodes import (
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
)
from runtime.config._sections import BOARD
from runtime.config.schema import ValidationContext, validate_mapping
from runtime.config.toml import parse_toml
from runtime.errors import ConfigError, ConfigErrors

DEFAULT_STORE_PATH = Path("var/ttu.sqlite")
DEFAULT_APPS_DIR = Path("apps")
DEFAULT_STATION_PATH = Path("var/station.toml")


def load_board(path: str | os.PathLike[str], *, apps_dir: str | os.PathLike[str] | None = None) -> Board:
    """Read, validate and return the board at ``path``; raise ``ConfigErrors`` listing every problem.

    ``apps_dir`` overrides ``[packages] apps_dir`` (default: ``apps/`` next to the board).
    """
    source = os.fspath(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise ConfigErrors([ConfigError("", "file not found", source=source)]) from err
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigErrors([ConfigError("", f"cannot read: {err}", source=source)]) from err
    return parse_board(text, source=source, root=Path(path).resolve().parent, apps_dir=apps_dir)


def parse_board(
    text: str,
    *,
    source: str | None = None,
    root: str | os.PathLike[str] | None = None,
    apps_dir: str | os.PathLike[str] | None = None,
) -> Board:
    """Validate board.toml ``text``. ``root`` (default: ``source``'s folder, else the working
    directory) is where relative paths start; ``apps_dir`` as for ``load_board``.
    """
    if root is not None:
        base = Path(root).resolve()
    else:
        base = Path(source).resolve().parent if source else Path.cwd()
    data = parse_toml(text, source=source)
    values, errors = validate_mapping(data, BOARD, source=source)
    if errors:
        raise ConfigErrors(errors)
    ctx = ValidationContext(source=source)
    board = _assemble(values, root=base, source=source, ctx=ctx)
    if apps_dir is not None:
        apps = Path(apps_dir) if Path(apps_dir).is_absolute() else Path.cwd() / apps_dir
    else:
        apps = board.packages.apps_dir
    check_board(board, ctx, apps_dir=apps)
    if ctx.errors:
        raise ConfigErrors(ctx.errors)
    return board


def _resolve(root: Path, path: Path) -> Path:
    return path if path.is_absolute() else root / path


def _assemble(values: Mapping[str, Any], *, root: Path, source: str | None, ctx: ValidationContext) -> Board:
    terminal = values["terminal"]
    return Board(
        root=root,
        source=source,
        terminal=terminal,
        hal=HalConfig(backend=values["hal"]["backend"]),
        watchdog=values["watchdog"],
        metrology=values["metrology"],
        power=values["power"],
        rs485=values["rs485"],
        hplc=values["hplc"],
        slots=values["slots"],
        uplink=_uplink(values["uplink"], root=root, default_client_id=terminal.id),
        store=_store(values["store"], root=root),
        packages=_packages(values["packages"], root=root, ctx=ctx),
        apps=MappingProxyType({name: AppConfig(name=name, **app) for name, app in values["apps"].items()}),
        aliases=values["aliases"],
        sim=values["sim"],
        station=_station(values["station"], root=root),
    )


def _uplink(values: Mapping[str, Any] | None, *, root: Path, default_client_id: str) -> UplinkConfig | None:
    if values is None:
        return None
    tls: TlsConfig | None = values["tls"]
    if tls is not None:
        tls = TlsConfig(
            ca=_resolve(root, tls.ca),
            cert=_resolve(root, tls.cert) if tls.cert else None,
            key=_resolve(root, tls.key) if tls.key else None,
        )
    credentials = values["credentials_file"]
    return UplinkConfig(
        enabled=values["enabled"],
        broker=values["broker"],
        client_id=values["client_id"] or default_client_id,
        keepalive_s=values["keepalive_s"],
        tls=tls,
        credentials_file=_resolve(root, credentials) if credentials is not None else None,
        batch_max=values["batch_max"],
        qos=values["qos"],
        max_command_bytes=values["max_command_bytes"],
        ack_timeout_s=values["ack_timeout_s"],
    )


def _station(values: Mapping[str, Any], *, root: Path) -> StationConfig:
    return StationConfig(
        file=_resolve(root, values["file"] or DEFAULT_STATION_PATH),
        proposals=values["proposals"],
        auto_min_confidence=float(values["auto_min_confidence"]),
    )


def _store(values: Mapping[str, Any], *, root: Path) -> StoreConfig:
    return StoreConfig(
        path=_resolve(root, values["path"] or DEFAULT_STORE_PATH),
        max_mb=values["max_mb"],
        retention_days=values["retention_days"],
        curve_retention_days=values["curve_retention_days"] or values["retention_days"],
        fsync=values["fsync"],
    )


def _packages(values: Mapping[str, Any], *, root: Path, ctx: ValidationContext) -> PackagesConfig:
    keys: list[TrustedKey] = []
    for i, text in enumerate(values["trusted_keys"]):
        try:
            keys.append(TrustedKey(origin=text, raw=decode_trusted_key(text, root=root)))
        except ValueError as err:
            ctx.error(f"packages.trusted_keys[{i}]", str(err))
    return PackagesConfig(
        trusted_keys=tuple(keys),
        apps_dir=_resolve(root, values["apps_dir"] or DEFAULT_APPS_DIR),
        health_grace_s=float(values["health_grace_s"]),
        stall_s=float(values["stall_s"]),
    )


__all__ = [
    "DEFAULT_APPS_DIR",
    "DEFAULT_STATION_PATH",
    "DEFAULT_STORE_PATH",
    "AppConfig",
    "Board",
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
    "parse_board",
]
