"""``ModbusIoSlot``: the ``modbus-rtu`` expansion slot, I/O modules behind the slot's own UART.

Layer: hal. The slot module is a Modbus RTU line of its own (board.toml ``[[slots]]``:
``device``, ``baud``, ``parity``, ``unit_ids``); each unit id is one I/O module laid out by
a ``protocols.modbus`` profile (default: the built-in ``io-module``, 8 DI / 4 DO / 2 AI).
The slot exposes them through the ``hal.interfaces.Slot`` protocol with points named
``u<unit>.<point>`` (``u1.di3``, ``u1.do1``, ``u1.ai1``):

* ``read_inputs`` reads every unit's profile points -- inputs and the read-back of the
  outputs, as ``MemorySlot`` reports them -- in as few requests as ``ModbusMaster`` plans.
  A unit that does not answer (``TransportTimeout``) or answers abnormally (``DeviceError``,
  ``ProtocolError``) is left out of the result, counted in ``statistics()`` and logged once
  when it starts failing and once when it answers again (the port's health book does the
  same for timeouts). When no unit answers, the first unit's error is raised unchanged (it
  names the slot's port and ``modbus:<unit>``): a dead module is never an empty reading.
  ``TransportClosed`` / ``TransportBroken`` are the UART's fault and always propagate.
* ``write_output`` writes one writable point and verifies it by reading it back
  (``ModbusMaster.write``: ``WriteNotVerified`` on a mismatch); a dead unit raises its
  ``TransportTimeout``. Unknown and read-only points raise ``CapabilityMissing`` naming the
  point and the slot; a value of the wrong kind (a number for a relay) ``DeviceError``, as
  ``MemorySlot`` does.

Must not: open or close the port (``runtime.board_hal`` owns it), retry, poll on its own,
or know what a point is wired to (door contact, oil thermometer) -- that is the installation's.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from hal.errors import CapabilityMissing, DeviceError, TransportTimeout
from hal.modbus import ModbusMaster
from protocols import modbus
from protocols.errors import ProtocolError

_log = logging.getLogger(__name__)

KIND = "modbus-rtu"
DEFAULT_PROFILE = "io-module"

Value = float | bool


class ModbusIoSlot:
    """Modbus RTU I/O modules at ``unit_ids`` on the slot's port, as one ``Slot``."""

    def __init__(
        self,
        master: ModbusMaster,
        *,
        name: str,
        unit_ids: Sequence[int],
        profile: modbus.Profile | None = None,
    ) -> None:
        if not unit_ids:
            raise ValueError(f"slot {name}: a modbus-rtu slot needs at least one unit id")
        if len(set(unit_ids)) != len(unit_ids):
            raise ValueError(f"slot {name}: unit ids must be unique, not {list(unit_ids)}")
        for unit in unit_ids:
            if not 1 <= unit <= 247:
                raise ValueError(f"slot {name}: Modbus unit id {unit}: expected 1..247")
        self._master = master
        self._name = name
        self._units = tuple(unit_ids)
        self._profile = profile if profile is not None else modbus.builtin_profile(DEFAULT_PROFILE)
        self._failing: dict[int, str] = {}  # unit -> the error that made it fail (edge-triggered log)
        self._reads = 0
        self._unit_failures = dict.fromkeys(self._units, 0)

    @property
    def name(self) -> str:
        return self._name

    @property
    def kind(self) -> str:
        return KIND

    @property
    def master(self) -> ModbusMaster:
        return self._master

    @property
    def unit_ids(self) -> tuple[int, ...]:
        return self._units

    @property
    def points(self) -> tuple[str, ...]:
        """Every point of the slot, ``u<unit>.<point>``, unit by unit in profile order."""
        return tuple(f"u{u}.{p}" for u in self._units for p in self._profile.registers)

    @property
    def outputs(self) -> tuple[str, ...]:
        """The writable points."""
        return tuple(
            f"u{u}.{r.name}" for u in self._units for r in self._profile.registers.values() if r.writable
        )

    def statistics(self) -> dict[str, object]:
        return {
            "slot": self._name,
            "profile": self._profile.name,
            "reads": self._reads,
            "units": {
                u: {"answering": u not in self._failing, "failed_reads": self._unit_failures[u]}
                for u in self._units
            },
        }

    async def read_inputs(self) -> dict[str, Value]:
        """Every answering unit's points; raises the first unit's error when none answers."""
        self._reads += 1
        out: dict[str, Value] = {}
        first: TransportTimeout | DeviceError | ProtocolError | None = None
        for unit in self._units:
            try:
                values = await self._master.read(unit, self._profile)
            except (TransportTimeout, DeviceError, ProtocolError) as err:
                first = first or err
                self._failed(unit, err)
                continue
            self._answered(unit)
            out.update({f"u{unit}.{point}": value for point, value in values.items()})
        if not out and first is not None:
            raise first
        return out

    async def write_output(self, point: str, value: Value) -> None:
        unit, reg = self._point(point)
        if not reg.writable:
            raise CapabilityMissing(
                f"slot {self._name}: point {point!r} is read-only ({reg.table}); "
                f"outputs: {', '.join(self.outputs) or 'none'}"
            )
        if isinstance(value, bool) != reg.is_bit:
            wanted = "a bool (relay)" if reg.is_bit else "a number"
            raise DeviceError(self._name, 0, f"output {point!r} takes {wanted}, not {value!r}")
        await self._master.write(unit, self._profile, reg.name, value)

    # ------------------------------------------------------------------ internals

    def _point(self, point: str) -> tuple[int, modbus.Register]:
        head, dot, rest = point.partition(".")
        unit = int(head[1:]) if dot and head[:1] == "u" and head[1:].isdigit() else None
        reg = self._profile.registers.get(rest) if unit in self._units else None
        if unit is None or reg is None:
            raise CapabilityMissing(
                f"slot {self._name}: no point {point!r} (units {', '.join(map(str, self._units))}; "
                f"points u<unit>.<name>, outputs: {', '.join(self.outputs) or 'none'})"
            )
        return unit, reg

    def _failed(self, unit: int, err: Exception) -> None:
        self._unit_failures[unit] += 1
        if unit not in self._failing:
            _log.warning("slot %s: unit %d not read, its points are left out: %s", self._name, unit, err)
        self._failing[unit] = str(err)

    def _answered(self, unit: int) -> None:
        if self._failing.pop(unit, None) is not None:
            _log.info("slot %s: unit %d answers again", self._name, unit)


__all__ = ["DEFAULT_PROFILE", "KIND", "ModbusIoSlot"]
