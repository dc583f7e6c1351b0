"""The carrier module's own view of the station: which nodes joined, on which phase, and the
curves of nodes the archive lacks.

Layer: apps (topology). Asks the CCO (Q/GDW 1376.2 AFN10 F21: every STA of the network, archived
or not; AFN10 F31: each node's phase from its zero-crossing, and whether it is three-phase) and
reads a day of curve from each unlisted node so the identification can place it. Must not
weigh any of it (``identify`` does) nor change the archive.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from hal.errors import CapabilityMissing, HalError
from hal.interfaces import CarrierModule
from protocols.errors import ProtocolError
from runtime.api import HalFacet
from runtime.errors import CapabilityError

from .devices import Devices
from .inputs import UnknownNode
from .window import STEP_S, Window

#: the protocols an unlisted node may speak, tried in this order (the module does not say)
NODE_PROTOCOLS = ("dlt645", "dlt698")


@dataclass(frozen=True)
class CarrierView:
    """What the module said: phase per address (``"ABC"`` for a three-phase node), the addresses
    of the network (None: not asked or no module), and the nodes the archive lacks."""

    phases: dict[str, str] = field(default_factory=dict)
    network: set[str] | None = None
    unknown: tuple[UnknownNode, ...] = ()


def module_of(hal: HalFacet, log: logging.Logger) -> CarrierModule | None:
    try:
        return hal.hplc()
    except (CapabilityMissing, CapabilityError) as err:
        log.info("topology: no carrier module: %s", err)
        return None


async def survey(
    module: CarrierModule | None,
    listed: set[str],
    *,
    devices: Devices,
    window: Window,
    read_unknown: bool,
    hours: float,
    tz: ZoneInfo,
    log: logging.Logger,
) -> CarrierView:
    """Ask the module for its network and phases; read the curves of every node not in ``listed``
    (addresses) into ``window`` as device ``node-<address>``."""
    if module is None:
        return CarrierView()
    try:
        phases = {
            p.address: ("ABC" if p.three_phase else p.phases) for p in await module.phases() if p.phases
        }
        network = {n.address for n in await module.network()}
    except (HalError, ProtocolError) as err:
        log.warning("topology: carrier module network/phases: %s", err)
        return CarrierView()
    unknown = []
    for address in sorted(network - listed):
        device = f"node-{address}"
        read = read_unknown and await read_node(devices, address, device, window, hours=hours, tz=tz)
        unknown.append(UnknownNode(address, phases.get(address), device if read else None))
    return CarrierView(phases, network, tuple(unknown))


async def read_node(
    devices: Devices, address: str, device: str, window: Window, *, hours: float, tz: ZoneInfo
) -> bool:
    """Read ``hours`` of 15-min curve of an unlisted node into ``window``; True when it answered."""
    latest = window.latest()
    if latest is None:
        return False
    since = datetime.fromtimestamp(latest - hours * 3600, tz).replace(tzinfo=None)
    until = since + timedelta(hours=hours)
    count = int(hours * 3600 // STEP_S) + 1
    for protocol in NODE_PROTOCOLS:
        client = devices.node(address, protocol)
        if client is None:
            return False
        rows: list[dict[str, object]] = []
        at = since
        try:
            while at <= until:
                records = await client.read_curve(at, min(client.curve_batch, count))
                if not records:
                    break
                for rec in records:
                    ts = rec.at.replace(tzinfo=tz).timestamp()
                    rows += [
                        {"device": device, "quantity": q, "value": v, "ts": ts} for q, v in rec.values.items()
                    ]
                at = records[-1].at + timedelta(seconds=STEP_S)
        except (HalError, ProtocolError):
            continue
        if rows:
            window.add_curve(rows)
            return True
    return False


__all__ = ["NODE_PROTOCOLS", "CarrierView", "module_of", "read_node", "survey"]
