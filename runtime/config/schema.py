"""A small declarative validation toolkit: TOML tables in, frozen typed objects out.

Layer: runtime. Generic: knows nothing of boards, apps or protocols (board.toml's
sections live in ``runtime.config.board``; app configs are validated by the app
container against each manifest with the same field specs). Performs no I/O.

Model: ESPHome's ``CONFIG_SCHEMA``. A schema is a mapping ``key -> FieldSpec``;
``validate_mapping`` walks a document once and COLLECTS every problem as a
``ConfigError`` whose path names the key (``rs485[2].baud``,
``apps.acquisition.config.realtime_interval_s``, ``uplink.tls.ca``), so a user
sees all of their mistakes at once. Unknown keys are errors with a "did you mean"
suggestion. Values are returned converted (ints, floats, ``Path``, tuples for
lists, read-only mappings for tables, or the dataclass a ``Table`` names).

    fields = {"baud": Int(choices=(1200, 2400), default=2400), "name": Str()}
    values, errors = validate_mapping(data, fields, "rs485[0]", source="board.toml")
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import date, datetime, time
from pathlib import Path
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import urlsplit

from runtime.errors import ConfigError, ConfigErrors


class _Sentinel:
    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


REQUIRED: Final = _Sentinel("REQUIRED")
"""Default marker: the key must be present."""

EMPTY: Final = _Sentinel("EMPTY")
"""``Table(default=EMPTY)``: an absent table takes all of its keys' defaults."""

INVALID: Final = _Sentinel("INVALID")
"""Returned by ``FieldSpec.validate`` for a value that failed; its error is already recorded."""

Check = Callable[[Any], str | None]
"""An extra check on a converted value: returns the reason it is wrong, or None."""

TableCheck = Callable[[Mapping[str, Any]], Iterable[tuple[str, str]]]
"""A check across the keys of one table: yields ``(key, reason)`` pairs (key may be "")."""


class ValidationContext:
    """Collects the errors of one validation run; ``source`` names the file they are in."""

    def __init__(self, *, source: str | None = None) -> None:
        self.source = source
        self.errors: list[ConfigError] = []

    def error(self, path: str, reason: str) -> None:
        self.errors.append(ConfigError(path, reason, source=self.source))


def join(path: str, key: str) -> str:
    """``join("uplink", "tls")`` -> ``uplink.tls``; keys that are not bare TOML keys are quoted."""
    if not re.fullmatch(r"[A-Za-z0-9_-]+", key):
        key = '"' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{path}.{key}" if path else key


def describe(value: object) -> str:
    """A TOML-flavoured name for the type of ``value``, for error messages."""
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, Mapping):
        return "a table"
    if isinstance(value, list | tuple):
        return "an array"
    if isinstance(value, datetime | date | time):
        return "a date/time"
    return type(value).__name__


def freeze(value: Any) -> Any:
    """Deep read-only copy of a TOML value: tables become read-only mappings, arrays tuples."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, list | tuple):
        return tuple(freeze(v) for v in value)
    return value


class FieldSpec(ABC):
    """One key of a schema: how to convert and check its value, and its default.

    ``default=REQUIRED`` makes the key mandatory; any other default (``None``
    included) is used as-is when the key is absent. ``checks`` run on the
    converted value, in order, and stop at the first failure.
    """

    def __init__(self, *, default: Any = REQUIRED, checks: Sequence[Check] = (), doc: str = "") -> None:
        self.default = default
        self.checks = tuple(checks)
        self.doc = doc

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def missing(self, path: str, ctx: ValidationContext) -> Any:
        """The value of an absent key: its default, or an error if it is required."""
        if self.default is REQUIRED:
            ctx.error(path, "missing required key")
            return INVALID
        return self.default

    def validate(self, value: object, path: str, ctx: ValidationContext) -> Any:
        """Convert ``value``; on failure record the error(s) in ``ctx`` and return ``INVALID``."""
        converted = self.convert(value, path, ctx)
        if converted is INVALID:
            return INVALID
        for check in self.checks:
            reason = check(converted)
            if reason:
                ctx.error(path, reason)
                return INVALID
        return converted

    @abstractmethod
    def convert(self, value: object, path: str, ctx: ValidationContext) -> Any:
        """Type conversion and the spec's own constraints."""


def _expected(ctx: ValidationContext, path: str, what: str, value: object) -> _Sentinel:
    shown = f" {value!r}" if isinstance(value, str | int | float) and not isinstance(value, bool) else ""
    ctx.error(path, f"expected {what}, got {describe(value)}{shown}")
    return INVALID


def _one_of(value: object, choices: Sequence[object], label: str | None) -> str:
    listed = ", ".join(repr(c) if isinstance(c, str) else str(c) for c in choices)
    shown = repr(value) if isinstance(value, str) else str(value)
    if label:
        return f"{shown} is not {label} ({listed})"
    return f"{shown} is not one of {listed}"


class Str(FieldSpec):
    """A string. ``pattern`` is a full-match regex (``pattern_reason`` explains it)."""

    def __init__(
        self,
        *,
        default: Any = REQUIRED,
        choices: Sequence[str] | None = None,
        pattern: str | None = None,
        pattern_reason: str | None = None,
        min_len: int = 1,
        max_len: int | None = None,
        checks: Sequence[Check] = (),
        doc: str = "",
    ) -> None:
        super().__init__(default=default, checks=checks, doc=doc)
        self.choices = tuple(choices) if choices is not None else None
        self.pattern = re.compile(pattern) if pattern else None
        self.pattern_reason = pattern_reason
        self.min_len = min_len
        self.max_len = max_len

    def convert(self, value: object, path: str, ctx: ValidationContext) -> Any:
        if not isinstance(value, str):
            return _expected(ctx, path, "a string", value)
        if self.choices is not None and value not in self.choices:
            ctx.error(path, _one_of(value, self.choices, None))
            return INVALID
        if len(value) < self.min_len:
            ctx.error(path, "must not be empty" if self.min_len == 1 else f"shorter than {self.min_len}")
            return INVALID
        if self.max_len is not None and len(value) > self.max_len:
            ctx.error(path, f"longer than {self.max_len} characters")
            return INVALID
        if self.pattern is not None and not self.pattern.fullmatch(value):
            ctx.error(path, f"{value!r} {self.pattern_reason or f'does not match {self.pattern.pattern}'}")
            return INVALID
        return value


class Int(FieldSpec):
    """An integer (booleans are not integers here). ``choices_label`` names the allowed set."""

    def __init__(
        self,
        *,
        default: Any = REQUIRED,
        min: int | None = None,
        max: int | None = None,
        choices: Sequence[int] | None = None,
        choices_label: str | None = None,
        checks: Sequence[Check] = (),
        doc: str = "",
    ) -> None:
        super().__init__(default=default, checks=checks, doc=doc)
        self.min = min
        self.max = max
        self.choices = tuple(choices) if choices is not None else None
        self.choices_label = choices_label

    def convert(self, value: object, path: str, ctx: ValidationContext) -> Any:
        if isinstance(value, bool) or not isinstance(value, int):
            return _expected(ctx, path, "an integer", value)
        if self.choices is not None and value not in self.choices:
            ctx.error(path, _one_of(value, self.choices, self.choices_label))
            return INVALID
        if self.min is not None and value < self.min:
            ctx.error(path, f"{value} is below the minimum {self.min}")
            return INVALID
        if self.max is not None and value > self.max:
            ctx.error(path, f"{value} is above the maximum {self.max}")
            return INVALID
        return value


class Float(FieldSpec):
    """A finite number; integers are accepted and converted. ``gt`` is an exclusive minimum."""

    def __init__(
        self,
        *,
        default: Any = REQUIRED,
        min: float | None = None,
        max: float | None = None,
        gt: float | None = None,
        checks: Sequence[Check] = (),
        doc: str = "",
    ) -> None:
        super().__init__(default=default, checks=checks, doc=doc)
        self.min = min
        self.max = max
        self.gt = gt

    def convert(self, value: object, path: str, ctx: ValidationContext) -> Any:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return _expected(ctx, path, "a number", value)
        number = float(value)
        if not math.isfinite(number):
            ctx.error(path, f"{value} is not a finite number")
            return INVALID
        if self.gt is not None and number <= self.gt:
            ctx.error(path, f"{value} must be greater than {self.gt:g}")
            return INVALID
        if self.min is not None and number < self.min:
            ctx.error(path, f"{value} is below the minimum {self.min:g}")
            return INVALID
        if self.max is not None and number > self.max:
            ctx.error(path, f"{value} is above the maximum {self.max:g}")
            return INVALID
        return number


class Bool(FieldSpec):
    """``true`` or ``false`` (not 0/1, not "yes")."""

    def convert(self, value: object, path: str, ctx: ValidationContext) -> Any:
        if not isinstance(value, bool):
            return _expected(ctx, path, "true or false", value)
        return value


class PathField(Str):
    """A file or folder path, returned as an unresolved ``Path`` (the caller knows the base)."""

    def convert(self, value: object, path: str, ctx: ValidationContext) -> Any:
        text = super().convert(value, path, ctx)
        if text is INVALID:
            return INVALID
        if "\x00" in text:
            ctx.error(path, "contains a NUL character")
            return INVALID
        return Path(text)


class Url(Str):
    """A URL with one of ``schemes`` and a host; the port, if any, must be valid."""

    def __init__(self, *, schemes: Sequence[str], default: Any = REQUIRED, doc: str = "") -> None:
        super().__init__(default=default, doc=doc)
        self.schemes = tuple(schemes)

    def convert(self, value: object, path: str, ctx: ValidationContext) -> Any:
        text = super().convert(value, path, ctx)
        if text is INVALID:
            return INVALID
        wanted = " or ".join(f"{s}://" for s in self.schemes)
        try:
            parts = urlsplit(text)
            port = parts.port
        except ValueError as err:
            ctx.error(path, f"{text!r} is not a valid URL: {err}")
            return INVALID
        if parts.scheme not in self.schemes:
            ctx.error(path, f"{text!r} must start with {wanted}")
            return INVALID
        if not parts.hostname:
            ctx.error(path, f"{text!r} has no host")
            return INVALID
        if port == 0:
            ctx.error(path, f"{text!r} has port 0")
            return INVALID
        return text


class ListOf(FieldSpec):
    """An array whose items all match ``item``; returned as a tuple."""

    def __init__(
        self,
        item: FieldSpec,
        *,
        default: Any = REQUIRED,
        min_len: int = 0,
        max_len: int | None = None,
        unique: bool = False,
        checks: Sequence[Check] = (),
        doc: str = "",
    ) -> None:
        super().__init__(default=default, checks=checks, doc=doc)
        self.item = item
        self.min_len = min_len
        self.max_len = max_len
        self.unique = unique

    def convert(self, value: object, path: str, ctx: ValidationContext) -> Any:
        if not isinstance(value, list | tuple):
            return _expected(ctx, path, "an array", value)
        if len(value) < self.min_len:
            ctx.error(path, f"needs at least {self.min_len} item{'s' if self.min_len > 1 else ''}")
            return INVALID
        if self.max_len is not None and len(value) > self.max_len:
            ctx.error(path, f"has {len(value)} items, at most {self.max_len} allowed")
            return INVALID
        items = [self.item.validate(v, f"{path}[{i}]", ctx) for i, v in enumerate(value)]
        if any(v is INVALID for v in items):
            return INVALID
        if self.unique:
            seen: set[Any] = set()
            for i, v in enumerate(items):
                if v in seen:
                    ctx.error(f"{path}[{i}]", f"duplicate value {v!r}")
                    return INVALID
                seen.add(v)
        return tuple(items)


class Table(FieldSpec):
    """A table with a fixed set of keys (a nested schema).

    Returns ``into(**values)`` (usually a frozen dataclass) or a read-only mapping.
    ``checks_table`` run after every key validated, for rules across keys.
    ``default=EMPTY`` means "absent = an empty table", i.e. all of its defaults.
    """

    def __init__(
        self,
        fields: Mapping[str, FieldSpec],
        *,
        into: Callable[..., Any] | None = None,
        default: Any = REQUIRED,
        checks_table: Sequence[TableCheck] = (),
        checks: Sequence[Check] = (),
        doc: str = "",
    ) -> None:
        super().__init__(default=default, checks=checks, doc=doc)
        self.fields = fields
        self.into = into
        self.checks_table = tuple(checks_table)

    def missing(self, path: str, ctx: ValidationContext) -> Any:
        if self.default is EMPTY:
            return self.validate({}, path, ctx)
        return super().missing(path, ctx)

    def convert(self, value: object, path: str, ctx: ValidationContext) -> Any:
        if not isinstance(value, Mapping):
            return _expected(ctx, path, "a table", value)
        before = len(ctx.errors)
        values = _validate_fields(value, self.fields, path, ctx)
        if len(ctx.errors) > before:
            return INVALID
        for check in self.checks_table:
            for key, reason in check(values):
                ctx.error(join(path, key) if key else path, reason)
        if len(ctx.errors) > before:
            return INVALID
        if self.into is not None:
            return self.into(**values)
        return MappingProxyType(values)


class TableOf(FieldSpec):
    """A table with free keys (``[apps.<name>]``) whose values all match ``value``.

    Returns a read-only mapping in document order.
    """

    def __init__(
        self,
        value: FieldSpec,
        *,
        default: Any = REQUIRED,
        key_pattern: str | None = None,
        key_reason: str = "is not a valid name",
        checks: Sequence[Check] = (),
        doc: str = "",
    ) -> None:
        super().__init__(default=default, checks=checks, doc=doc)
        self.value = value
        self.key_pattern = re.compile(key_pattern) if key_pattern else None
        self.key_reason = key_reason

    def convert(self, value: object, path: str, ctx: ValidationContext) -> Any:
        if not isinstance(value, Mapping):
            return _expected(ctx, path, "a table", value)
        out: dict[str, Any] = {}
        ok = True
        for key, item in value.items():
            where = join(path, str(key))
            if self.key_pattern is not None and not self.key_pattern.fullmatch(str(key)):
                ctx.error(where, f"{key!r} {self.key_reason}")
                ok = False
                continue
            converted = self.value.validate(item, where, ctx)
            ok = ok and converted is not INVALID
            out[str(key)] = converted
        return MappingProxyType(out) if ok else INVALID


class Opaque(FieldSpec):
    """A table passed through unvalidated (deep read-only); someone else owns its schema."""

    def convert(self, value: object, path: str, ctx: ValidationContext) -> Any:
        if not isinstance(value, Mapping):
            return _expected(ctx, path, "a table", value)
        return freeze(value)


def _validate_fields(
    data: Mapping[Any, object], fields: Mapping[str, FieldSpec], path: str, ctx: ValidationContext
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in data:
        if key not in fields:
            import difflib  # only for a mistake: a terminal whose board loaded never holds it

            close = difflib.get_close_matches(str(key), list(fields), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            ctx.error(join(path, str(key)), f"unknown key{hint}")
    for key, spec in fields.items():
        where = join(path, key)
        out[key] = spec.validate(data[key], where, ctx) if key in data else spec.missing(where, ctx)
    return out


def validate_mapping(
    data: Mapping[str, object],
    fields: Mapping[str, FieldSpec],
    path: str = "",
    *,
    source: str | None = None,
) -> tuple[dict[str, Any], list[ConfigError]]:
    """Validate a table against ``fields``; return the converted values and every error found.

    ``path`` prefixes every error path (``apps.acquisition.config``). Values that
    failed are ``INVALID`` in the returned dict; when the error list is empty every
    key is present and converted (absent optional keys hold their defaults).
    """
    ctx = ValidationContext(source=source)
    if not isinstance(data, Mapping):
        _expected(ctx, path, "a table", data)
        return {}, ctx.errors
    return _validate_fields(data, fields, path, ctx), ctx.errors


def validate_or_raise(
    data: Mapping[str, object],
    fields: Mapping[str, FieldSpec],
    path: str = "",
    *,
    source: str | None = None,
) -> dict[str, Any]:
    """``validate_mapping`` that raises ``ConfigErrors`` with every error, if there is one."""
    values, errors = validate_mapping(data, fields, path, source=source)
    if errors:
        raise ConfigErrors(errors)
    return values


__all__ = [
    "EMPTY",
    "INVALID",
    "REQUIRED",
    "Bool",
    "Check",
    "FieldSpec",
    "Float",
    "Int",
    "ListOf",
    "Opaque",
    "PathField",
    "Str",
    "Table",
    "TableCheck",
    "TableOf",
    "Url",
    "ValidationContext",
    "describe",
    "freeze",
    "join",
    "validate_mapping",
    "validate_or_raise",
]
