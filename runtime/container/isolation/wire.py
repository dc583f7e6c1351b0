"""The wire between the runtime and an app host process: frames, messages, codecs.

Layer: runtime. Shared by ``runtime.container.isolation.bridge`` (runtime side) and
``runtime.container.isolation.host`` (the app's process). It must not import either of them,
nor any app, nor know what a message means beyond its shape.

Framing over a Unix stream socket, one JSON object per frame::

    +----------------+------------------------------------+
    | length (u32 BE)| UTF-8 JSON object, ``length`` bytes |
    +----------------+------------------------------------+

Every object carries ``op``. Requests (host -> runtime: ``bus.publish``,
``store.get`` ...; runtime -> host: ``call``) carry an ``id`` unique per
direction, answered by ``{"op": "reply", "id": .., "ok": true, "result": ..}``
or ``{"op": "reply", "id": .., "ok": false, "error": {"type": .., "message": ..}}``.
Notifications (``hello``, ``hb``, ``ready``, ``log``, ``done``, ``crash``,
``msg``, ``stop``; runtime -> host ``clock`` {step} for a time sync and
``hal.event`` for carrier events; host -> runtime ``hal.cancel`` {rid} for a hal
request its caller stopped waiting for) carry no ``id``. hal requests
(``hal.rs485.transact`` ...) carry frames as base64 text; hal and protocol errors
cross typed (``TransportTimeout``, ``DeviceError``, ``ProtocolError``, ``CapabilityMissing``).

A frame longer than ``MAX_FRAME`` or not a JSON object is a ``WireError``: the
connection is dropped, since the stream cannot be resynchronized after it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import dataclasses
import json
import struct
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Any
from zoneinfo import ZoneInfo

from hal.errors import (
    CapabilityMissing,
    DeviceError,
    HalError,
    TransportBroken,
    TransportClosed,
    TransportError,
    TransportTimeout,
)
from hal.interfaces import CarrierEvent, MetrologySnapshot, PhaseValues
from hal.rs485 import DeviceHealth
from protocols.errors import ProtocolError
from runtime.container.context import TerminalInfo
from runtime.container.manifest import ConfigField, Limits, Manifest, RestartPolicy
from runtime.errors import AppError, AppNotReady, BusError, CapabilityError, RequestTimeout, TerminalError
from runtime.scheduler import Aligned, CatchUp, Daily, Interval, Monthly, Schedule

MAX_FRAME = 4 * 1024 * 1024
_HEADER = struct.Struct(">I")

ENV_SOCKET = "TTU_BRIDGE_SOCKET"
ENV_TOKEN = "TTU_BRIDGE_TOKEN"

# Exit statuses of the host process; anything else is an unexpected death.
EXIT_OK = 0  # the app returned
EXIT_CRASHED = 1  # the app raised (details in the ``crash`` message)
EXIT_BRIDGE = 2  # could not talk to the runtime (bad token, socket gone, protocol error)
EXIT_MEMORY = 3  # the app hit its memory limit (MemoryError)
EXIT_IMPORT = 4  # the app's entry point could not be imported
EXIT_REASONS = {
    EXIT_CRASHED: "the app raised",
    EXIT_BRIDGE: "lost the bridge to the runtime",
    EXIT_MEMORY: "memory limit reached",
    EXIT_IMPORT: "entry point could not be imported",
}


class WireError(TerminalError):
    """A frame that breaks the protocol (too long, not JSON, not an object, unknown op)."""


def encode_frame(obj: Mapping[str, Any]) -> bytes:
    data = json.dumps(obj, separators=(",", ":"), allow_nan=False).encode("utf-8")
    if len(data) > MAX_FRAME:
        raise WireError(f"frame of {len(data)} bytes exceeds the {MAX_FRAME} byte limit")
    return _HEADER.pack(len(data)) + data


async def read_frame(reader: asyncio.StreamReader) -> dict[str, Any] | None:
    """The next frame, or None at a clean end of stream (EOF between frames)."""
    try:
        header = await reader.readexactly(_HEADER.size)
    except asyncio.IncompleteReadError as err:
        if err.partial:
            raise WireError("stream ended inside a frame header") from err
        return None
    (length,) = _HEADER.unpack(header)
    if length > MAX_FRAME:
        raise WireError(f"frame of {length} bytes exceeds the {MAX_FRAME} byte limit")
    try:
        data = await reader.readexactly(length)
    except asyncio.IncompleteReadError as err:
        raise WireError(f"stream ended after {len(err.partial)} of {length} frame bytes") from err
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, ValueError) as err:
        raise WireError(f"frame is not JSON: {err}") from err
    if not isinstance(obj, dict) or not isinstance(obj.get("op"), str):
        raise WireError("frame is not a JSON object with a string 'op'")
    return obj


# -- errors across the wire ---------------------------------------------------------

_ERRORS: dict[str, type[TerminalError]] = {
    "CapabilityError": CapabilityError,
    "AppNotReady": AppNotReady,
    "AppError": AppError,
    "RequestTimeout": RequestTimeout,
    "BusError": BusError,
}
# hal errors cross as themselves, so an isolated app catches the same TransportTimeout,
# DeviceError or CapabilityMissing as an in-process one.
_HAL_ERRORS: dict[str, type[HalError]] = {
    cls.__name__: cls
    for cls in (
        HalError,
        TransportError,
        TransportTimeout,
        TransportClosed,
        TransportBroken,
        CapabilityMissing,
    )
}


def error_to_json(err: BaseException) -> dict[str, Any]:
    out: dict[str, Any] = {"type": type(err).__name__, "message": str(err)}
    if isinstance(err, AppError):
        out["app"], out["reason"] = err.app, err.reason
    elif isinstance(err, DeviceError):
        out["type"] = "DeviceError"
        out["device"], out["code"], out["reason"] = err.device, err.code, err.reason
    elif isinstance(err, ProtocolError):
        out["type"] = "ProtocolError"
        out["reason"], out["offset"], out["protocol"] = err.reason, err.offset, err.protocol
    elif isinstance(err, HalError) and type(err).__name__ not in _HAL_ERRORS:
        out["type"] = next(c.__name__ for c in type(err).__mro__ if c.__name__ in _HAL_ERRORS)
    return out


def error_from_json(doc: Any) -> Exception:
    """Rebuild the peer's error (unknown types become ``BusError``)."""
    if not isinstance(doc, Mapping):
        return BusError(f"bridge error: {doc!r}")
    name = str(doc.get("type"))
    message = str(doc.get("message", ""))
    try:
        if name == "DeviceError":
            return DeviceError(str(doc["device"]), int(doc["code"]), str(doc["reason"]))
        if name == "ProtocolError":
            offset = doc.get("offset")
            return ProtocolError(
                str(doc["reason"]),
                offset=offset if isinstance(offset, int) else None,
                protocol=str(doc.get("protocol") or ""),
            )
    except (KeyError, TypeError, ValueError):
        return BusError(f"{name}: {message}")
    hal = _HAL_ERRORS.get(name)
    if hal is not None:
        return hal(message)
    kind = _ERRORS.get(name)
    if kind is not None and issubclass(kind, AppError):
        return kind(str(doc.get("app", "?")), str(doc.get("reason", message)))
    if kind is not None:
        return kind(message)
    return BusError(f"{name}: {message}")


# -- codecs for what crosses ----------------------------------------------------------

_SCHEDULES: dict[str, type[Aligned] | type[Daily] | type[Monthly] | type[Interval]] = {
    "aligned": Aligned,
    "daily": Daily,
    "monthly": Monthly,
    "interval": Interval,
}


def schedule_to_json(schedule: Schedule) -> dict[str, Any]:
    return {"kind": type(schedule).__name__.lower(), **dataclasses.asdict(schedule)}


def schedule_from_json(doc: Mapping[str, Any]) -> Schedule:
    fields = dict(doc)
    cls = _SCHEDULES.get(str(fields.pop("kind", None)))
    if cls is None:
        raise WireError(f"unknown schedule kind {doc.get('kind')!r}")
    try:
        return cls(**fields)
    except (TypeError, ValueError) as err:
        raise WireError(f"bad {doc.get('kind')} schedule {fields!r}: {err}") from err


def catch_up_to_json(policy: CatchUp) -> dict[str, Any]:
    return dataclasses.asdict(policy)


def catch_up_from_json(doc: Mapping[str, Any]) -> CatchUp:
    try:
        return CatchUp(str(doc["kind"]), int(doc["max_missed"]), float(doc["grace_s"]))  # type: ignore[arg-type]
    except (KeyError, TypeError, ValueError) as err:
        raise WireError(f"bad catch-up policy {doc!r}: {err}") from err


def manifest_to_json(m: Manifest) -> dict[str, Any]:
    return {
        "name": m.name,
        "version": m.version,
        "api": m.api,
        "entry": m.entry,
        "description": m.description,
        "hal": sorted(m.hal),
        "publish": list(m.publish),
        "subscribe": list(m.subscribe),
        "config": {
            k: {**dataclasses.asdict(f), "choices": None if f.choices is None else list(f.choices)}
            for k, f in m.config.items()
        },
        "limits": dataclasses.asdict(m.limits),
        "folder": str(m.folder),
        "streams": list(m.streams),
        "station": m.station,
    }


def manifest_from_json(doc: Mapping[str, Any]) -> Manifest:
    limits = dict(doc["limits"])
    restart = RestartPolicy(**limits.pop("restart"))
    config = {
        k: ConfigField(**{**f, "choices": None if f["choices"] is None else tuple(f["choices"])})
        for k, f in doc["config"].items()
    }
    return Manifest(
        name=str(doc["name"]),
        version=str(doc["version"]),
        api=int(doc["api"]),
        entry=str(doc["entry"]),
        description=str(doc["description"]),
        hal=frozenset(doc["hal"]),
        publish=tuple(doc["publish"]),
        subscribe=tuple(doc["subscribe"]),
        config=MappingProxyType(config),
        limits=Limits(**limits, restart=restart),
        folder=Path(doc["folder"]),
        streams=tuple(doc.get("streams", ())),
        station=str(doc.get("station", "read")),
    )


def terminal_to_json(t: TerminalInfo) -> dict[str, Any]:
    return {
        "id": t.id,
        "tz": t.tz.key,
        "root": str(t.root),
        "rs485_ports": list(t.rs485_ports),
        "hplc": t.hplc,
        "metrology": t.metrology,
        "slots": list(t.slots),
    }


def terminal_from_json(doc: Mapping[str, Any]) -> TerminalInfo:
    return TerminalInfo(
        id=str(doc["id"]),
        tz=ZoneInfo(str(doc["tz"])),
        root=Path(doc["root"]),
        rs485_ports=tuple(doc["rs485_ports"]),
        hplc=bool(doc["hplc"]),
        metrology=bool(doc["metrology"]),
        slots=tuple(doc["slots"]),
    )


# -- hal values -----------------------------------------------------------------------


def bytes_to_json(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def bytes_from_json(doc: Any, *, what: str, limit: int = 64 * 1024) -> bytes:
    """Base64 text back to bytes; ``WireError`` naming ``what`` for anything else."""
    if not isinstance(doc, str):
        raise WireError(f"{what}: expected base64 text, got {type(doc).__name__}")
    try:
        data = base64.b64decode(doc, validate=True)
    except (binascii.Error, ValueError) as err:
        raise WireError(f"{what}: not base64 ({err})") from err
    if len(data) > limit:
        raise WireError(f"{what}: {len(data)} bytes exceed the {limit} byte limit")
    return data


def health_to_json(h: DeviceHealth) -> dict[str, Any]:
    return dataclasses.asdict(h)


def health_from_json(doc: Mapping[str, Any]) -> DeviceHealth:
    try:
        return DeviceHealth(**doc)
    except TypeError as err:
        raise WireError(f"bad device health {doc!r:.200}: {err}") from err


def snapshot_to_json(s: MetrologySnapshot) -> dict[str, Any]:
    return dataclasses.asdict(s)


def snapshot_from_json(doc: Mapping[str, Any]) -> MetrologySnapshot:
    phases = ("voltage", "current", "active_power_kw", "reactive_power_kvar", "power_factor")
    try:
        fields = dict(doc)
        for key in phases:
            fields[key] = PhaseValues(**fields[key])
        return MetrologySnapshot(**fields)
    except (KeyError, TypeError) as err:
        raise WireError(f"bad metrology snapshot {doc!r:.200}: {err}") from err


def carrier_event_to_json(e: CarrierEvent) -> dict[str, Any]:
    extra = {
        str(k): v if v is None or isinstance(v, str | int | float | bool) else repr(v)
        for k, v in e.extra.items()
    }
    return {
        "kind": e.kind,
        "addresses": list(e.addresses),
        "ts": e.ts,
        "payload": bytes_to_json(e.payload),
        "extra": extra,
    }


def carrier_event_from_json(doc: Mapping[str, Any]) -> CarrierEvent:
    try:
        return CarrierEvent(
            kind=str(doc["kind"]),
            addresses=tuple(str(a) for a in doc["addresses"]),
            ts=float(doc["ts"]),
            payload=bytes_from_json(doc["payload"], what="carrier event payload"),
            extra=dict(doc.get("extra") or {}),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise WireError(f"bad carrier event {doc!r:.200}: {err}") from err


__all__ = [
    "ENV_SOCKET",
    "ENV_TOKEN",
    "EXIT_BRIDGE",
    "EXIT_CRASHED",
    "EXIT_IMPORT",
    "EXIT_MEMORY",
    "EXIT_OK",
    "EXIT_REASONS",
    "MAX_FRAME",
    "WireError",
    "bytes_from_json",
    "bytes_to_json",
    "carrier_event_from_json",
    "carrier_event_to_json",
    "catch_up_from_json",
    "catch_up_to_json",
    "encode_frame",
    "error_from_json",
    "error_to_json",
    "health_from_json",
    "health_to_json",
    "manifest_from_json",
    "manifest_to_json",
    "read_frame",
    "schedule_from_json",
    "schedule_to_json",
    "snapshot_from_json",
    "snapshot_to_json",
    "terminal_from_json",
    "terminal_to_json",
]
