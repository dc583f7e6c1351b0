"""App manifests: ``apps/<name>/app.toml`` parsed into a frozen ``Manifest``, checked statically.

Layer: runtime. Reads TOML and (for ``check_manifests``) parses the entry module's
source with ``ast``; it never imports app code. Validation is self-contained:
every error is a ``ConfigError`` whose ``source`` is the manifest file and whose
``path`` is the key (``config.realtime_interval_s.default``), all errors of a file
are collected in one pass.

Manifest shape::

    [app]            name (= folder), version (semver), api (int <= RUNTIME_API_VERSION),
                     entry ("module:function", default "apps.<name>:run"), description
    [capabilities]   hal = subset of rs485, hplc, metrology, slots, watchdog, power
                     station = "read" (default) | "propose" (may propose station-model corrections)
    [topics]         publish = [patterns], subscribe = [patterns]
    [uplink]         streams = [names] the app sends on (``readings``, ``events``, ``status``,
                     ``alarms`` are shared; result streams such as ``topology`` are its own);
                     priority = {stream = "urgent" | "normal" | "bulk"}: urgent streams overtake
                     any backlog of the others (outage reports), bulk ones wait (default normal)
    [config.<key>]   type = int|float|bool|str|list|table, default, min, max, choices, description
    [limits]         memory_mb, ready_timeout_s, stop_timeout_s,
                     restart = {max_crashes, window_s, backoff_initial_s, backoff_max_s}
"""

from __future__ import annotations

import ast
import copy
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from protocols.cloud import RUNTIME_STREAMS, StreamPriority, check_stream
from protocols.errors import ProtocolError
from runtime import RUNTIME_API_VERSION
from runtime.bus import validate_pattern
from runtime.errors import BusError, ConfigError, ConfigErrors

HAL_CAPABILITIES = frozenset({"rs485", "hplc", "metrology", "slots", "watchdog", "power"})
STATION_ACCESS = ("read", "propose")
CONFIG_TYPES = ("int", "float", "bool", "str", "list", "table")

_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_SEMVER = re.compile(
    r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)"
    r"(?:-[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
)
_ENTRY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*:[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True, slots=True)
class ConfigField:
    """One key of an app's config schema."""

    key: str
    type: str
    default: Any = None
    has_default: bool = False
    min: float | None = None
    max: float | None = None
    choices: tuple[Any, ...] | None = None
    description: str = ""


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    max_crashes: int = 5
    window_s: float = 600.0
    backoff_initial_s: float = 1.0
    backoff_max_s: float = 300.0

    def backoff(self, crashes: int) -> float:
        """Delay before restart number ``crashes`` (1-based): doubling, capped."""
        return float(min(self.backoff_max_s, self.backoff_initial_s * 2 ** max(0, crashes - 1)))


@dataclass(frozen=True, slots=True)
class Limits:
    memory_mb: int = 64
    ready_timeout_s: float = 10.0
    stop_timeout_s: float = 5.0
    restart: RestartPolicy = field(default_factory=RestartPolicy)


@dataclass(frozen=True, slots=True)
class Manifest:
    """A validated app manifest. ``folder`` is the app's directory."""

    name: str
    version: str
    api: int
    entry: str
    description: str
    hal: frozenset[str]
    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    config: Mapping[str, ConfigField]
    limits: Limits
    folder: Path
    streams: tuple[str, ...] = ()
    station: str = "read"
    priorities: Mapping[str, str] = field(default_factory=dict)  # stream -> urgent | normal | bulk

    @property
    def entry_module(self) -> str:
        return self.entry.split(":", 1)[0]

    @property
    def entry_function(self) -> str:
        return self.entry.split(":", 1)[1]


class _Errors:
    def __init__(self, source: str) -> None:
        self.source = source
        self.items: list[ConfigError] = []

    def add(self, path: str, reason: str) -> None:
        self.items.append(ConfigError(path, reason, source=self.source))


STREAM_PRIORITIES = tuple(p.name.lower() for p in StreamPriority)

_KNOWN = {
    "": {"app", "capabilities", "topics", "uplink", "config", "limits"},
    "app": {"name", "version", "api", "entry", "description"},
    "capabilities": {"hal", "station"},
    "topics": {"publish", "subscribe"},
    "uplink": {"streams", "priority"},
    "limits": {"memory_mb", "ready_timeout_s", "stop_timeout_s", "restart"},
    "limits.restart": {"max_crashes", "window_s", "backoff_initial_s", "backoff_max_s"},
    "field": {"type", "default", "min", "max", "choices", "description"},
}


def _unknown(errs: _Errors, table: Mapping[str, Any], known: set[str], prefix: str) -> None:
    for key in table:
        if key not in known:
            errs.add(f"{prefix}{key}", f"unknown key (expected one of: {', '.join(sorted(known))})")


def _table(errs: _Errors, doc: Mapping[str, Any], key: str, path: str) -> Mapping[str, Any]:
    value = doc.get(key, {})
    if not isinstance(value, Mapping):
        errs.add(path, f"must be a table, not {type(value).__name__}")
        return {}
    return value


def _number(
    errs: _Errors, table: Mapping[str, Any], key: str, path: str, default: float, *, integer: bool = False
) -> float:
    value = table.get(key, default)
    ok = isinstance(value, int) if integer else isinstance(value, int | float)
    if isinstance(value, bool) or not ok:
        errs.add(path, f"must be {'an integer' if integer else 'a number'}, not {value!r}")
        return default
    if not math.isfinite(value) or value <= 0:
        errs.add(path, f"must be positive, not {value!r}")
        return default
    return float(value)


def _patterns(errs: _Errors, table: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = table.get(key, [])
    if not isinstance(value, list):
        errs.add(f"topics.{key}", f"must be a list of topic patterns, not {value!r}")
        return ()
    out: list[str] = []
    for i, pattern in enumerate(value):
        try:
            validate_pattern(pattern)
        except BusError as err:
            errs.add(f"topics.{key}[{i}]", str(err))
            continue
        out.append(pattern)
    return tuple(out)


def _type_ok(kind: str, value: Any) -> bool:
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    if kind == "list":
        return isinstance(value, list | tuple)
    return isinstance(value, Mapping)


def _check_value(f: ConfigField, value: Any) -> str | None:
    """Why ``value`` is not acceptable for ``f``, or None."""
    if not _type_ok(f.type, value):
        return f"expected {f.type}, not {type(value).__name__} {value!r}"
    if f.type in ("int", "float"):
        if f.type == "float" and not math.isfinite(value):
            return f"{value!r} is not a finite number"
        if f.min is not None and value < f.min:
            return f"{value!r} is below the minimum {f.min:g}"
        if f.max is not None and value > f.max:
            return f"{value!r} is above the maximum {f.max:g}"
    if f.choices is not None and value not in f.choices:
        return f"{value!r} is not one of {list(f.choices)!r}"
    return None


def _config_field(errs: _Errors, key: str, spec: Any) -> ConfigField | None:
    path = f"config.{key}"
    if not _NAME.match(key):
        errs.add(path, "config keys must be lower_snake_case")
    if not isinstance(spec, Mapping):
        errs.add(path, f"must be a table {{type = ..., default = ...}}, not {spec!r}")
        return None
    _unknown(errs, spec, _KNOWN["field"], f"{path}.")
    kind = spec.get("type")
    if kind not in CONFIG_TYPES:
        errs.add(f"{path}.type", f"must be one of {', '.join(CONFIG_TYPES)}, not {kind!r}")
        return None
    bounds: dict[str, float | None] = {"min": None, "max": None}
    for bound in ("min", "max"):
        if bound not in spec:
            continue
        value = spec[bound]
        if kind not in ("int", "float"):
            errs.add(f"{path}.{bound}", f"only int and float keys take a {bound}")
        elif isinstance(value, bool) or not isinstance(value, int | float):
            errs.add(f"{path}.{bound}", f"must be a number, not {value!r}")
        else:
            bounds[bound] = value
    lo, hi = bounds["min"], bounds["max"]
    if lo is not None and hi is not None and lo > hi:
        errs.add(f"{path}.min", f"min {lo:g} is above max {hi:g}")
    choices: tuple[Any, ...] | None = None
    if "choices" in spec:
        raw = spec["choices"]
        if not isinstance(raw, list) or not raw:
            errs.add(f"{path}.choices", f"must be a non-empty list, not {raw!r}")
        else:
            for i, choice in enumerate(raw):
                if not _type_ok(kind, choice):
                    errs.add(f"{path}.choices[{i}]", f"expected {kind}, not {choice!r}")
            choices = tuple(raw)
    description = spec.get("description", "")
    if not isinstance(description, str):
        errs.add(f"{path}.description", "must be a string")
        description = ""
    f = ConfigField(key, kind, None, False, lo, hi, choices, description)
    if "default" in spec:
        default = spec["default"]
        reason = _check_value(f, default)
        if reason:
            errs.add(f"{path}.default", reason)
        f = ConfigField(key, kind, default, True, lo, hi, choices, description)
    return f


def _parse(path: Path, doc: Mapping[str, Any], errs: _Errors) -> Manifest:
    _unknown(errs, doc, _KNOWN[""], "")
    app = _table(errs, doc, "app", "app")
    _unknown(errs, app, _KNOWN["app"], "app.")
    folder = path.parent
    name = app.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        errs.add("app.name", f"must be a lower_snake_case name, not {name!r}")
        name = folder.name
    elif name != folder.name:
        errs.add("app.name", f"{name!r} must equal the app's folder name {folder.name!r}")
    version = app.get("version")
    if not isinstance(version, str) or not _SEMVER.match(version):
        errs.add("app.version", f"must be a semantic version like '1.2.0', not {version!r}")
        version = "0.0.0"
    api = app.get("api")
    if isinstance(api, bool) or not isinstance(api, int) or api < 1:
        errs.add("app.api", f"must be a positive integer, not {api!r}")
        api = RUNTIME_API_VERSION
    elif api > RUNTIME_API_VERSION:
        errs.add("app.api", f"needs runtime API {api}, this runtime provides {RUNTIME_API_VERSION}")
    entry = app.get("entry", f"apps.{name}:run")
    if not isinstance(entry, str) or not _ENTRY.match(entry):
        errs.add("app.entry", f"must be 'package.module:function', not {entry!r}")
        entry = f"apps.{name}:run"
    description = app.get("description", "")
    if not isinstance(description, str):
        errs.add("app.description", "must be a string")
        description = ""

    caps = _table(errs, doc, "capabilities", "capabilities")
    _unknown(errs, caps, _KNOWN["capabilities"], "capabilities.")
    hal_raw = caps.get("hal", [])
    hal: set[str] = set()
    if not isinstance(hal_raw, list):
        errs.add("capabilities.hal", f"must be a list, not {hal_raw!r}")
    else:
        for i, cap in enumerate(hal_raw):
            if cap not in HAL_CAPABILITIES:
                errs.add(
                    f"capabilities.hal[{i}]",
                    f"unknown capability {cap!r} (expected: {', '.join(sorted(HAL_CAPABILITIES))})",
                )
            else:
                hal.add(cap)

    station = caps.get("station", "read")
    if station not in STATION_ACCESS:
        errs.add("capabilities.station", f"must be one of {', '.join(STATION_ACCESS)}, not {station!r}")
        station = "read"

    uplink = _table(errs, doc, "uplink", "uplink")
    _unknown(errs, uplink, _KNOWN["uplink"], "uplink.")
    streams = _streams(errs, uplink)
    priorities = _priorities(errs, uplink, streams)

    topics = _table(errs, doc, "topics", "topics")
    _unknown(errs, topics, _KNOWN["topics"], "topics.")
    publish = _patterns(errs, topics, "publish")
    subscribe = _patterns(errs, topics, "subscribe")

    config: dict[str, ConfigField] = {}
    for key, spec in _table(errs, doc, "config", "config").items():
        f = _config_field(errs, key, spec)
        if f is not None:
            config[key] = f

    lim = _table(errs, doc, "limits", "limits")
    _unknown(errs, lim, _KNOWN["limits"], "limits.")
    d = Limits()
    restart_raw = _table(errs, lim, "restart", "limits.restart")
    _unknown(errs, restart_raw, _KNOWN["limits.restart"], "limits.restart.")
    dr = d.restart
    restart = RestartPolicy(
        max_crashes=int(
            _number(
                errs, restart_raw, "max_crashes", "limits.restart.max_crashes", dr.max_crashes, integer=True
            )
        ),
        window_s=_number(errs, restart_raw, "window_s", "limits.restart.window_s", dr.window_s),
        backoff_initial_s=_number(
            errs, restart_raw, "backoff_initial_s", "limits.restart.backoff_initial_s", dr.backoff_initial_s
        ),
        backoff_max_s=_number(
            errs, restart_raw, "backoff_max_s", "limits.restart.backoff_max_s", dr.backoff_max_s
        ),
    )
    limits = Limits(
        memory_mb=int(_number(errs, lim, "memory_mb", "limits.memory_mb", d.memory_mb, integer=True)),
        ready_timeout_s=_number(errs, lim, "ready_timeout_s", "limits.ready_timeout_s", d.ready_timeout_s),
        stop_timeout_s=_number(errs, lim, "stop_timeout_s", "limits.stop_timeout_s", d.stop_timeout_s),
        restart=restart,
    )
    return Manifest(
        name=name,
        version=version,
        api=api,
        entry=entry,
        description=description,
        hal=frozenset(hal),
        publish=publish,
        subscribe=subscribe,
        config=MappingProxyType(config),
        limits=limits,
        folder=folder,
        streams=streams,
        station=str(station),
        priorities=MappingProxyType(priorities),
    )


def _streams(errs: _Errors, table: Mapping[str, Any]) -> tuple[str, ...]:
    value = table.get("streams", [])
    if not isinstance(value, list):
        errs.add("uplink.streams", f"must be a list of stream names, not {value!r}")
        return ()
    out: list[str] = []
    for i, stream in enumerate(value):
        try:
            check_stream(stream)
        except ProtocolError as err:
            errs.add(f"uplink.streams[{i}]", err.reason)
            continue
        if stream in RUNTIME_STREAMS:
            errs.add(f"uplink.streams[{i}]", f"{stream!r} is the runtime's own stream")
        elif stream in out:
            errs.add(f"uplink.streams[{i}]", f"{stream!r} is listed twice")
        else:
            out.append(stream)
    return tuple(out)


def _priorities(errs: _Errors, table: Mapping[str, Any], streams: tuple[str, ...]) -> dict[str, str]:
    """``[uplink] priority = {outage = "urgent"}``: how urgent each of the app's streams is."""
    value = table.get("priority", {})
    if not isinstance(value, Mapping):
        errs.add("uplink.priority", f"must be a table of stream = priority, not {value!r}")
        return {}
    out: dict[str, str] = {}
    for stream, level in value.items():
        if stream not in streams:
            errs.add(f"uplink.priority.{stream}", "not one of the streams in uplink.streams")
        elif level not in STREAM_PRIORITIES:
            allowed = ", ".join(STREAM_PRIORITIES)
            errs.add(f"uplink.priority.{stream}", f"must be one of {allowed}, not {level!r}")
        else:
            out[stream] = level
    return out


def _read(path: Path, errs: _Errors) -> Manifest | None:
    try:
        with path.open("rb") as fh:
            doc = tomllib.load(fh)
    except FileNotFoundError:
        errs.add("", "no app.toml")
        return None
    except OSError as err:
        errs.add("", f"cannot read: {err.strerror or err}")
        return None
    except (tomllib.TOMLDecodeError, RecursionError) as err:  # RecursionError: nested too deeply
        errs.add("", f"not valid TOML: {err or 'nested too deeply'}")
        return None
    return _parse(path, doc, errs)


def load_manifest(path: str | Path) -> Manifest:
    """Parse and validate one ``app.toml``; raises ``ConfigErrors`` listing every problem."""
    path = Path(path)
    errs = _Errors(str(path))
    manifest = _read(path, errs)
    if errs.items or manifest is None:
        raise ConfigErrors(errs.items)
    return manifest


def entry_source(manifest: Manifest) -> Path | None:
    """The file that should define the entry function, found without importing.

    The entry module must be the app's package or inside it: the module path must
    contain the app's name as a component, and what follows maps into the folder.
    """
    parts = manifest.entry_module.split(".")
    if manifest.name not in parts:
        return None
    rest = parts[len(parts) - 1 - parts[::-1].index(manifest.name) + 1 :]
    base = manifest.folder.joinpath(*rest)
    for candidate in (base / "__init__.py", base.with_suffix(".py") if rest else None):
        if candidate is not None and candidate.is_file():
            return candidate
    return None


def _check_entry(manifest: Manifest, errs: _Errors) -> None:
    source = entry_source(manifest)
    if source is None:
        errs.add(
            "app.entry",
            f"module {manifest.entry_module!r} not found inside the app folder {manifest.folder}",
        )
        return
    try:
        tree = ast.parse(source.read_text(encoding="utf-8"), filename=str(source))
    except (OSError, SyntaxError, ValueError) as err:
        errs.add("app.entry", f"{source}: cannot parse: {err}")
        return
    func = manifest.entry_function
    for node in tree.body:
        if isinstance(node, ast.AsyncFunctionDef) and node.name == func:
            if len(node.args.args) + len(node.args.posonlyargs) < 2 and node.args.vararg is None:
                errs.add("app.entry", f"{source}: {func}() must take (ctx, config)")
            return
        if isinstance(node, ast.FunctionDef) and node.name == func:
            errs.add("app.entry", f"{source}:{node.lineno}: {func}() must be 'async def'")
            return
        if isinstance(node, ast.ImportFrom) and any((a.asname or a.name) == func for a in node.names):
            return  # re-exported from a submodule: cannot tell statically whether it is async
    errs.add("app.entry", f"{source}: defines no 'async def {func}(ctx, config)'")


def check_manifests(apps_dir: str | Path) -> list[ConfigError]:
    """Statically check every ``<apps_dir>/<name>/app.toml`` (hassfest-style), never importing app code."""
    apps_dir = Path(apps_dir)
    errors: list[ConfigError] = []
    if not apps_dir.is_dir():
        return [ConfigError("", "apps directory not found", source=str(apps_dir))]
    for folder in sorted(p for p in apps_dir.iterdir() if p.is_dir()):
        if folder.name.startswith((".", "_")):
            continue
        path = folder / "app.toml"
        if not path.exists():
            if any(folder.glob("*.py")):
                errors.append(ConfigError("", "app folder without app.toml", source=str(path)))
            continue
        errs = _Errors(str(path))
        manifest = _read(path, errs)
        if manifest is not None:
            _check_entry(manifest, errs)
        errors.extend(errs.items)
    return errors


def resolve_config(
    manifest: Manifest, raw: Mapping[str, Any], *, path: str | None = None, source: str | None = None
) -> dict[str, Any]:
    """Apply the manifest's defaults to ``raw`` and check types, ranges and choices.

    ``path`` is the key path of ``raw`` in its document (default
    ``apps.<name>.config``); ``source`` the file it came from. Unknown keys and
    missing keys without a default are errors. Raises ``ConfigErrors``.
    """
    prefix = path if path is not None else f"apps.{manifest.name}.config"
    errors: list[ConfigError] = []
    if not isinstance(raw, Mapping):
        raise ConfigErrors([ConfigError(prefix, f"must be a table, not {raw!r}", source=source)])
    out: dict[str, Any] = {}
    for key in raw:
        if key not in manifest.config:
            known = ", ".join(sorted(manifest.config)) or "none"
            errors.append(ConfigError(f"{prefix}.{key}", f"unknown key (known: {known})", source=source))
    for key, f in manifest.config.items():
        if key in raw:
            value = raw[key]
            reason = _check_value(f, value)
            if reason:
                errors.append(ConfigError(f"{prefix}.{key}", reason, source=source))
                continue
            out[key] = float(value) if f.type == "float" else copy.deepcopy(value)
        elif f.has_default:
            out[key] = float(f.default) if f.type == "float" else copy.deepcopy(f.default)
        else:
            errors.append(ConfigError(f"{prefix}.{key}", "required (no default)", source=source))
    if errors:
        raise ConfigErrors(errors)
    return out


__all__ = [
    "CONFIG_TYPES",
    "HAL_CAPABILITIES",
    "ConfigField",
    "Limits",
    "Manifest",
    "RestartPolicy",
    "check_manifests",
    "entry_source",
    "load_manifest",
    "resolve_config",
]
