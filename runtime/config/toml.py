"""Read a TOML document, turning syntax errors into a ``ConfigError`` that names line and column.

Layer: runtime. Pure: text in, dict out. Validation is the schema's job.
"""

from __future__ import annotations

import re
import tomllib
from typing import Any

from runtime.errors import ConfigError, ConfigErrors

_WHERE = re.compile(r"\s*\(at (line (\d+), column (\d+)|end of document)\)\s*$")


def parse_toml(text: str, *, source: str | None = None) -> dict[str, Any]:
    """Parse ``text``; raise ``ConfigErrors([ConfigError("", "line L, column C: invalid TOML: ...")])``."""
    try:
        return tomllib.loads(text)
    except RecursionError as err:  # tomllib recurses per nesting level: a hostile file must not crash us
        raise ConfigErrors([ConfigError("", "invalid TOML: nested too deeply", source=source)]) from err
    except tomllib.TOMLDecodeError as err:
        message = str(err)
        match = _WHERE.search(message)
        what = message[: match.start()] if match else message
        what = what[:1].lower() + what[1:]
        if match and match.group(2):
            where = f"line {match.group(2)}, column {match.group(3)}: "
        elif match:
            where = "end of document: "
        else:
            where = ""
        raise ConfigErrors([ConfigError("", f"{where}invalid TOML: {what}", source=source)]) from err


__all__ = ["parse_toml"]
