"""The uplink credentials file: broker login and the key that authenticates downlink commands.

Layer: runtime. Reads one small TOML file named by ``[uplink] credentials_file``::

    username = "ttu-0001"          # optional broker login
    password = "..."               # optional
    command_key = "00112233..."    # REQUIRED: hex, >= 16 bytes; HMAC-SHA256 key of downlink commands

Secrets never appear in a repr or an error message. Must not open network
connections or know about MQTT.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runtime.config.schema import INVALID, Str, ValidationContext, describe, validate_mapping
from runtime.config.toml import parse_toml
from runtime.errors import ConfigError, ConfigErrors

MIN_COMMAND_KEY_BYTES = 16


@dataclass(frozen=True, slots=True)
class Credentials:
    """Broker login (optional) and the downlink command HMAC key."""

    username: str | None
    password: str | None = field(repr=False)
    command_key: bytes = field(repr=False)


def _hex_key(value: str) -> str | None:
    try:
        key = bytes.fromhex(value)
    except ValueError:
        return "is not a hex string"
    if len(key) < MIN_COMMAND_KEY_BYTES:
        return f"is {len(key)} bytes, at least {MIN_COMMAND_KEY_BYTES} are required"
    return None


class _Secret(Str):
    """A string whose value is never echoed in an error message."""

    def convert(self, value: object, path: str, ctx: ValidationContext) -> Any:
        if not isinstance(value, str):
            ctx.error(path, f"expected a string, got {describe(value)}")
            return INVALID
        return super().convert(value, path, ctx)


_FIELDS = {
    "username": Str(default=None),
    "password": _Secret(default=None),
    "command_key": _Secret(checks=(_hex_key,)),
}


def parse_credentials(text: str, *, source: str | None = None) -> Credentials:
    """Validate a credentials document; raise ``ConfigErrors`` naming every problem."""
    data = parse_toml(text, source=source)
    values, errors = validate_mapping(data, _FIELDS, source=source)
    if errors:
        raise ConfigErrors(errors)
    return Credentials(values["username"], values["password"], bytes.fromhex(values["command_key"]))


def load_credentials(path: str | os.PathLike[str], *, display: str | None = None) -> Credentials:
    """Read and validate a credentials file. ``display`` is the name used in error messages."""
    source = display or str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise ConfigErrors([ConfigError("", "file not found", source=source)]) from err
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigErrors([ConfigError("", f"cannot read: {err}", source=source)]) from err
    return parse_credentials(text, source=source)


__all__ = ["MIN_COMMAND_KEY_BYTES", "Credentials", "load_credentials", "parse_credentials"]
