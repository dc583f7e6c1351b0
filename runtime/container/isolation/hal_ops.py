"""The runtime's side of hal for isolated apps: bridge requests run against the real hal objects.

Layer: runtime, used by ``runtime.container.isolation.bridge``. Every request goes through the
session's ``LocalContext.hal`` -- the same ``ScopedHal`` an in-process app gets -- on every
call, not only when the host "opens" a node: an undeclared capability is the counted
refusal the bridge reports as a violation, a node the board lacks is ``CapabilityMissing``,
whatever the host process sends. Priorities and timeouts are the real port's (the
runtime's ``Rs485Port`` queue decides who goes next); errors go back typed
(``TransportTimeout``, ``DeviceError``, ``ProtocolError``, ``CapabilityMissing``).

RS-485 transactions cross as bytes: the host names the protocol of its decoder, the
framing table (``hal.framings``) builds the decoder and the reply predicate from the
request, and the reply goes back as every byte the port read for it, for the host to
decode with its own decoder and check with its own predicate.

The watchdog stays runtime-only. It must not spawn processes, import apps, or keep hal
objects past the session (every lookup is fresh, so a stopped app holds nothing).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, Protocol

from hal.errors import CapabilityMissing
from hal.framings import FRAMINGS
from hal.interfaces import Priority, StreamDecoder
from runtime.container.context import LocalContext
from runtime.container.isolation.channel import Channel
from runtime.container.isolation.wire import (
    bytes_from_json,
    bytes_to_json,
    carrier_event_to_json,
    health_to_json,
    snapshot_to_json,
)
from runtime.errors import AppError, BusError

log = logging.getLogger("ttu.bridge.hal")

MAX_TIMEOUT_S = 60.0  # a per-device reply timeout beyond this is a hostile or broken request
MAX_SILENCE_S = 1.0  # an idle line asked for before a request; longer is a hostile request
MAX_REQUEST = 2048  # bytes of one meter frame (DL/T 698.45 frames are at most 2 KiB here)
MAX_EVENT_STREAMS = 8


class HalSession(Protocol):
    """What these ops need of an ``AppSession``."""

    ctx: LocalContext
    chan: Channel
    app: str
    event_streams: dict[int, asyncio.Task[Any]]

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]: ...


HalOp = Callable[[HalSession, dict[str, Any]], Awaitable[Any]]


class _Capture:
    """The real decoder, plus every byte fed to it (what the host decodes again)."""

    def __init__(self, inner: StreamDecoder[Any]) -> None:
        self._inner = inner
        self.raw = bytearray()

    def feed(self, data: bytes) -> Any:
        self.raw += data
        return self._inner.feed(data)


def _timeout(f: Mapping[str, Any], default: float = 1.0) -> float:
    value = float(f.get("timeout", default))
    if not 0 < value <= MAX_TIMEOUT_S:
        raise BusError(f"timeout {value:g} s out of range (0, {MAX_TIMEOUT_S:g}]")
    return value


def _silence(f: Mapping[str, Any]) -> float | None:
    if f.get("silence") is None:
        return None
    value = float(f["silence"])
    if not 0 <= value <= MAX_SILENCE_S:
        raise BusError(f"silence {value:g} s out of range [0, {MAX_SILENCE_S:g}]")
    return value


def _priority(f: Mapping[str, Any]) -> Priority:
    name = f.get("priority", "REALTIME")
    try:
        return Priority[str(name)]
    except KeyError:
        raise BusError(f"unknown priority {name!r}; one of {', '.join(p.name for p in Priority)}") from None


def _port(s: HalSession, f: Mapping[str, Any]) -> Any:
    return s.ctx.hal.rs485(str(f["port"]))


def describe(ctx: LocalContext, rs485_ports: tuple[str, ...], slots: tuple[str, ...]) -> dict[str, Any]:
    """The declared hal nodes this board has, for the host to build its proxies from.

    Only what the manifest declares is looked at, so nothing here counts as a violation; a
    node whose backend fails to answer is left out (the app then sees ``CapabilityMissing``).
    """
    declared = ctx.manifest.hal
    out: dict[str, Any] = {"rs485": {}, "hplc": False, "metrology": False, "slots": {}}
    if not ctx.hal.has_backend:
        return out

    def look(what: str, get: Callable[[], Any]) -> Any:
        try:
            return get()
        except CapabilityMissing:
            return None
        except Exception as err:  # a broken backend must not keep the app (or the runtime) from starting
            log.warning("app %s: hal %s not described: %s: %s", ctx.name, what, type(err).__name__, err)
            return None

    def port_node(name: str) -> dict[str, Any]:
        port = ctx.hal.rs485(name)
        settings = port.link.settings
        return {
            "link": str(port.link.name),
            "baud": settings.baud,
            "parity": settings.parity,
            "bytesize": settings.bytesize,
            "stopbits": settings.stopbits,
        }

    if "rs485" in declared:
        for name in rs485_ports:
            node = look(f"rs485 {name}", lambda name=name: port_node(name))  # type: ignore[misc]
            if node is not None:
                out["rs485"][name] = node
    if "hplc" in declared:
        out["hplc"] = look("hplc", ctx.hal.hplc) is not None
    if "metrology" in declared:
        out["metrology"] = look("metrology", ctx.hal.metrology) is not None
    if "slots" in declared:
        for name in slots:
            kind = look(f"slot {name}", lambda name=name: ctx.hal.slot(name).kind)  # type: ignore[misc]
            if kind is not None:
                out["slots"][name] = {"kind": str(kind)}
    return out


# -- ops --------------------------------------------------------------------------------


async def _open(s: HalSession, f: dict[str, Any]) -> dict[str, Any]:
    """The host's explicit look-up: refusals and missing nodes answered here, counted if undeclared."""
    cap = f.get("cap")
    hal = s.ctx.hal
    if cap == "rs485":
        port = hal.rs485(str(f.get("name")))
        return {"name": port.name}
    if cap == "slots":
        slot = hal.slot(str(f.get("name")))
        return {"name": slot.name, "kind": slot.kind}
    if cap == "hplc":
        hal.hplc()
    elif cap == "metrology":
        hal.metrology()
    elif cap == "watchdog":
        hal.watchdog()
        raise AppError(s.app, "the watchdog is kicked by the runtime only; isolated apps cannot use it")
    else:
        raise BusError(f"unknown hal capability {cap!r}")
    return {}


async def _rs485_transact(s: HalSession, f: dict[str, Any]) -> dict[str, Any]:
    port = _port(s, f)
    framing = FRAMINGS.get(str(f.get("protocol")))
    if framing is None:
        raise BusError(f"unknown protocol {f.get('protocol')!r}; one of {', '.join(FRAMINGS)}")
    request = bytes_from_json(f.get("request"), what="request frame", limit=MAX_REQUEST)
    match = framing.reply_matcher(request)  # ProtocolError: the bytes are no request of that protocol
    capture = _Capture(framing.decoder())
    device = str(f["device"])
    await port.transact(
        request,
        decoder=capture,
        match=match,
        device=device,
        priority=_priority(f),
        timeout=_timeout(f),
        silence=_silence(f),
    )
    sent, received = port.last_exchange
    return {
        "reply": bytes_to_json(bytes(capture.raw)),
        "exchange": [sent, received],
        "health": health_to_json(port.health(device)),
    }


async def _rs485_send(s: HalSession, f: dict[str, Any]) -> None:
    port = _port(s, f)
    frame = bytes_from_json(f.get("frame"), what="broadcast frame", limit=MAX_REQUEST)
    await port.send(frame, device=str(f.get("device", "broadcast")), priority=_priority(f))


async def _rs485_health(s: HalSession, f: dict[str, Any]) -> dict[str, Any]:
    return health_to_json(_port(s, f).health(str(f["device"])))


async def _rs485_statistics(s: HalSession, f: dict[str, Any]) -> Any:
    return _port(s, f).statistics()


async def _hplc_transact(s: HalSession, f: dict[str, Any]) -> str:
    module = s.ctx.hal.hplc()
    frame = bytes_from_json(f.get("frame"), what="carrier frame", limit=MAX_REQUEST)
    return bytes_to_json(await module.transact(str(f["address"]), frame, timeout=_timeout(f)))


async def _hplc_broadcast(s: HalSession, f: dict[str, Any]) -> None:
    await s.ctx.hal.hplc().broadcast(bytes_from_json(f.get("frame"), what="carrier frame", limit=MAX_REQUEST))


async def _hplc_reset(s: HalSession, f: dict[str, Any]) -> None:
    await s.ctx.hal.hplc().reset()


async def _hplc_sync_archive(s: HalSession, f: dict[str, Any]) -> None:
    addresses = f.get("addresses")
    if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
        raise BusError("hal.hplc.sync_archive: addresses must be a list of strings")
    protocols = f.get("protocols") or {}
    if not isinstance(protocols, dict) or not all(
        isinstance(k, str) and v in ("dlt645", "dlt698") for k, v in protocols.items()
    ):
        raise BusError('hal.hplc.sync_archive: protocols must map addresses to "dlt645" or "dlt698"')
    await s.ctx.hal.hplc().sync_archive(addresses, protocols=protocols)


async def _hplc_network(s: HalSession, f: dict[str, Any]) -> list[dict[str, Any]]:
    return [dataclasses.asdict(n) for n in await s.ctx.hal.hplc().network()]


async def _hplc_phases(s: HalSession, f: dict[str, Any]) -> list[dict[str, Any]]:
    return [dataclasses.asdict(n) for n in await s.ctx.hal.hplc().phases()]


async def _hplc_events(s: HalSession, f: dict[str, Any]) -> None:
    module = s.ctx.hal.hplc()
    sid = int(f["sid"])
    if sid not in s.event_streams and len(s.event_streams) >= MAX_EVENT_STREAMS:
        raise BusError(f"more than {MAX_EVENT_STREAMS} carrier event streams")
    old = s.event_streams.pop(sid, None)
    if old is not None:
        old.cancel()

    async def forward() -> None:
        stream = module.events()
        try:
            async for event in stream:
                try:
                    await s.chan.send({"op": "hal.event", "sid": sid, "event": carrier_event_to_json(event)})
                except BusError:
                    return  # the host is gone
        finally:
            close = getattr(stream, "aclose", None)
            if close is not None:
                await close()
            s.event_streams.pop(sid, None)

    s.event_streams[sid] = s.spawn(forward(), f"hplc-events:{sid}")


async def _hplc_unevents(s: HalSession, f: dict[str, Any]) -> None:
    task = s.event_streams.pop(int(f["sid"]), None)
    if task is not None:
        task.cancel()


async def _metrology_snapshot(s: HalSession, f: dict[str, Any]) -> dict[str, Any]:
    return snapshot_to_json(await s.ctx.hal.metrology().snapshot())


async def _slot_read(s: HalSession, f: dict[str, Any]) -> dict[str, float | bool]:
    return await s.ctx.hal.slot(str(f["name"])).read_inputs()


async def _slot_write(s: HalSession, f: dict[str, Any]) -> None:
    value = f.get("value")
    if not isinstance(value, int | float | bool):
        raise BusError(f"hal.slot.write_output: value must be a number or a boolean, not {value!r:.40}")
    await s.ctx.hal.slot(str(f["name"])).write_output(str(f["point"]), value)


HAL_OPS: dict[str, HalOp] = {
    "hal.open": _open,
    "hal.rs485.transact": _rs485_transact,
    "hal.rs485.send": _rs485_send,
    "hal.rs485.health": _rs485_health,
    "hal.rs485.statistics": _rs485_statistics,
    "hal.hplc.transact": _hplc_transact,
    "hal.hplc.broadcast": _hplc_broadcast,
    "hal.hplc.reset": _hplc_reset,
    "hal.hplc.sync_archive": _hplc_sync_archive,
    "hal.hplc.network": _hplc_network,
    "hal.hplc.phases": _hplc_phases,
    "hal.hplc.events": _hplc_events,
    "hal.hplc.unevents": _hplc_unevents,
    "hal.metrology.snapshot": _metrology_snapshot,
    "hal.slot.read_inputs": _slot_read,
    "hal.slot.write_output": _slot_write,
}

__all__ = ["HAL_OPS", "MAX_REQUEST", "MAX_TIMEOUT_S", "HalSession", "describe"]
