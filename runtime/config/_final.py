"""board.toml pass 2: rules across sections and against the file system.

Layer: runtime. Runs on an assembled ``Board`` (pass 1 succeeded): unique node
names and devices, devices that fit the hal backend, aliases that resolve,
TLS/credentials/key files that exist and parse, apps that exist. Model: ESPHome's
``FINAL_VALIDATE_SCHEMA``. Reads files, never writes; opens no device.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

from runtime.config._nodes import Board
from runtime.config.credentials import load_credentials
from runtime.config.schema import ValidationContext
from runtime.errors import ConfigErrors

FIXED_NODES = ("watchdog", "metrology", "hplc", "power")
"""Names of the singleton nodes; port, slot and alias names must not take them."""


def check_board(board: Board, ctx: ValidationContext, *, apps_dir: Path) -> None:
    """Record every cross-section problem of ``board`` in ``ctx``."""
    _check_names(board, ctx)
    _check_devices(board, ctx)
    _check_uplink(board, ctx)
    _check_store(board, ctx)
    _check_apps(board, ctx, apps_dir)
    if board.sim is not None and board.hal.backend != "sim":
        ctx.error("sim", 'only meaningful with hal.backend = "sim"')


def _check_names(board: Board, ctx: ValidationContext) -> None:
    seen: dict[str, str] = {name: name for name in FIXED_NODES}
    named = [(f"rs485[{i}]", p.name) for i, p in enumerate(board.rs485)]
    named += [(f"slots[{i}]", s.name) for i, s in enumerate(board.slots)]
    for where, name in named:
        if name in seen:
            ctx.error(f"{where}.name", f"duplicate node name {name!r} (already used by {seen[name]})")
        else:
            seen[name] = where
    nodes = board.nodes
    for alias, target in board.aliases.items():
        if alias in seen:
            ctx.error(f"aliases.{alias}", f"alias {alias!r} is already the name of {seen[alias]}")
        elif target not in nodes:
            known = ", ".join(sorted(nodes)) or "none"
            ctx.error(f"aliases.{alias}", f"{target!r} is not a node of this board (nodes: {known})")


def _devices(board: Board) -> list[tuple[str, str]]:
    """``(key path, device)`` of every enabled node that names a device."""
    out: list[tuple[str, str]] = []
    if board.watchdog is not None and board.watchdog.enabled:
        out.append(("watchdog.device", board.watchdog.device))
    if board.metrology is not None and board.metrology.enabled:
        out.append(("metrology.device", board.metrology.device))
    if board.power is not None and board.power.enabled:
        out.append(("power.device", board.power.device))
    out += [(f"rs485[{i}].device", p.device) for i, p in enumerate(board.rs485) if p.enabled]
    if board.hplc is not None and board.hplc.enabled:
        out.append(("hplc.device", board.hplc.device))
    out += [
        (f"slots[{i}].device", s.device)
        for i, s in enumerate(board.slots)
        if s.enabled and s.device is not None
    ]
    return out


def _check_devices(board: Board, ctx: ValidationContext) -> None:
    backend = board.hal.backend
    owner: dict[str, str] = {}
    for where, device in _devices(board):
        node = where.rsplit(".", 1)[0]
        if device in owner:
            ctx.error(where, f"{device!r} is already used by {owner[device]}")
            continue
        owner[device] = node
        simulated = device.startswith("sim:")
        if simulated and backend != "sim":
            ctx.error(where, f'{device!r} is a simulated device, but hal.backend is "{backend}"')
        elif simulated and len(device) == len("sim:"):
            ctx.error(where, f"{device!r} names no simulated device (sim:<name>)")
        elif where == "power.device" and not simulated:
            if device.partition(":")[0] not in ("gpio", "adc") or not device.partition(":")[2].startswith(
                "/"
            ):
                ctx.error(where, f"{device!r} is not gpio:<value file> or adc:<raw file> (absolute paths)")
        elif not simulated and not device.startswith("/"):
            hint = "an absolute device path such as /dev/ttyS1"
            if backend == "sim":
                hint = f"'sim:<name>' or {hint}"
            ctx.error(where, f"{device!r} is not {hint}")


def _check_file(ctx: ValidationContext, where: str, path: Path | None) -> bool:
    if path is None:
        return False
    if not path.is_file():
        ctx.error(where, f"file not found: {path}")
        return False
    return True


def _check_uplink(board: Board, ctx: ValidationContext) -> None:
    uplink = board.uplink
    if uplink is None:
        return
    if uplink.tls is not None:
        _check_file(ctx, "uplink.tls.ca", uplink.tls.ca)
        _check_file(ctx, "uplink.tls.cert", uplink.tls.cert)
        _check_file(ctx, "uplink.tls.key", uplink.tls.key)
    if _check_file(ctx, "uplink.credentials_file", uplink.credentials_file):
        assert uplink.credentials_file is not None
        try:
            load_credentials(uplink.credentials_file, display=_display(board, uplink.credentials_file))
        except ConfigErrors as err:
            ctx.errors.extend(err.errors)


def _display(board: Board, path: Path) -> str:
    """``path`` as the user would write it: relative to the board's folder when inside it."""
    try:
        relative = path.relative_to(board.root)
    except ValueError:
        return str(path)
    if board.source is None:
        return str(relative)
    return str(Path(board.source).parent / relative)


def _check_store(board: Board, ctx: ValidationContext) -> None:
    path = board.store.path
    if path.is_dir():
        ctx.error("store.path", f"{path} is a folder, not a database file")
    elif path.parent.exists() and not path.parent.is_dir():
        ctx.error("store.path", f"{path.parent} is not a folder")


def _check_apps(board: Board, ctx: ValidationContext, apps_dir: Path) -> None:
    for name in board.apps:
        manifest = apps_dir / name / "app.toml"
        if not manifest.is_file():
            ctx.error(f"apps.{name}", f"no such app: {manifest} does not exist")


def decode_trusted_key(text: str, *, root: Path) -> bytes:
    """Raw 32-byte Ed25519 key from base64 text or a ``*.pem`` file path (relative to ``root``).

    Raises ``ValueError`` with the reason. Only a ``*.pem`` file needs ``cryptography`` (imported
    here, not at module level): the base64 form ``ttu keys new`` prints is checked without it, so
    a terminal that lists its keys that way does not hold the library (~9.5 MB of RSS) just
    for having read its board; the package manager loads it when it verifies a package.
    """
    stripped = text.strip()
    if stripped.endswith(".pem"):
        path = Path(stripped) if Path(stripped).is_absolute() else root / stripped
        try:
            pem = path.read_bytes()
        except OSError as err:
            raise ValueError(f"cannot read key file {path}: {err.strerror or err}") from err
        from cryptography.exceptions import UnsupportedAlgorithm
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        try:
            key = load_pem_public_key(pem)
        except (ValueError, UnsupportedAlgorithm) as err:
            raise ValueError(f"{path} is not a PEM public key") from err
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError(f"{path} is not an Ed25519 public key")
        return key.public_bytes_raw()
    try:
        raw = base64.b64decode(stripped, validate=True)
    except (binascii.Error, ValueError) as err:
        raise ValueError("neither base64 nor a .pem file path") from err
    if len(raw) != 32:
        raise ValueError(f"decodes to {len(raw)} bytes; an Ed25519 public key is 32")
    return raw


__all__ = ["FIXED_NODES", "check_board", "decode_trusted_key"]
