"""DL/T 698.45 fee control: relay, alarm and keep-power (保电) methods; the credit objects.

Layer: protocols (pure: builds and reads the ``Data`` of ACTION/SET/GET; no I/O). The frames
around them are ordinary ACTION-Request-Normal / SET-Request-Normal APDUs.

Methods (OMD = OI, method id, mode 0), as meter and terminal code use them:

=====================  =====================  ===============================================
OMD                    meaning                parameter
=====================  =====================  ===============================================
8000 m127 (80007F00)   alarm (告警)            NULL
8000 m128 (80008000)   alarm release          NULL
8000 m129 (80008100)   trip (跳闸)             array of {relay OAD, alarm delay unsigned (min),
                                              power-limit time long-unsigned (min, 0 = until
                                              closed), auto close bool}
8000 m130 (80008200)   close (合闸)            array of {relay OAD, command enum: 0 = close
                                              allowed (合闸允许), 1 = direct close (直接合闸)}
8001 m127 (80017F00)   keep power (保电)        NULL
8001 m128 (80018000)   keep-power release     NULL
=====================  =====================  ===============================================

The relay is output 1 of the relay object, OAD F2050201. Credit objects (scaler -2, 元): 202C
wallet {remaining double-long-unsigned, purchase count}, 202D overdraft amount, 401E
{alarm limit 1, alarm limit 2}, 401F {overdraft limit, hoarding (max stored) limit, close-allowed
limit}; 4020 / 4021 are the same limits in kWh for energy-prepaid meters (scaler -2, kWh).
Meter status word 3 (20140203) is the DL/T 645 word 04000503 (bit 4 relay open, bit 6 relay
command trip, bit 7 pre-trip alarm, bit 12 keep power).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from protocols.dlt698._axdr import OAD, OMD, Data, DataType
from protocols.dlt698._wire import PROTOCOL
from protocols.errors import ProtocolError

RELAY_OI = 0x8000
KEEP_POWER_OI = 0x8001
RELAY_OUTPUT_1 = OAD(0xF205, 2, 1)
WALLET = OAD(0x202C, 2, 0)
OVERDRAFT_AMOUNT = OAD(0x202D, 2, 0)
ALARM_LIMITS = OAD(0x401E, 2, 0)
OTHER_LIMITS = OAD(0x401F, 2, 0)
ENERGY_ALARM_LIMITS = OAD(0x4020, 2, 0)
ENERGY_OTHER_LIMITS = OAD(0x4021, 2, 0)
STATUS_WORD_3 = OAD(0x2014, 2, 3)


class Control(enum.Enum):
    """What a fee-control method asks of the meter (the DL/T 645 N1 codes in brackets)."""

    TRIP = "trip"  # 1AH
    CLOSE_ALLOWED = "close_allowed"  # 1BH
    DIRECT_CLOSE = "direct_close"  # 1CH
    ALARM = "alarm"  # 2AH
    ALARM_RELEASE = "alarm_release"  # 2BH
    KEEP_POWER = "keep_power"  # 3AH
    KEEP_POWER_RELEASE = "keep_power_release"  # 3BH


_NULL = Data(DataType.NULL, None)
_SIMPLE: dict[Control, OMD] = {
    Control.ALARM: OMD(RELAY_OI, 127, 0),
    Control.ALARM_RELEASE: OMD(RELAY_OI, 128, 0),
    Control.KEEP_POWER: OMD(KEEP_POWER_OI, 127, 0),
    Control.KEEP_POWER_RELEASE: OMD(KEEP_POWER_OI, 128, 0),
}


def control_action(
    control: Control,
    *,
    relay: OAD = RELAY_OUTPUT_1,
    alarm_delay_min: int = 0,
    limit_min: int = 0,
    auto_close: bool = False,
) -> tuple[OMD, Data]:
    """The OMD and parameter of ``control`` (trip options only apply to a trip)."""
    if control in _SIMPLE:
        return _SIMPLE[control], _NULL
    if control is Control.TRIP:
        unit = Data(
            DataType.STRUCTURE,
            (
                Data(DataType.OAD, relay),
                Data(DataType.UNSIGNED, alarm_delay_min),
                Data(DataType.LONG_UNSIGNED, limit_min),
                Data(DataType.BOOL, auto_close),
            ),
        )
        return OMD(RELAY_OI, 129, 0), Data(DataType.ARRAY, (unit,))
    command = 1 if control is Control.DIRECT_CLOSE else 0
    unit = Data(DataType.STRUCTURE, (Data(DataType.OAD, relay), Data(DataType.ENUM, command)))
    return OMD(RELAY_OI, 130, 0), Data(DataType.ARRAY, (unit,))


@dataclass(frozen=True, slots=True)
class ControlRequest:
    control: Control
    relays: tuple[OAD, ...]
    limit_min: int = 0
    auto_close: bool = False


def _units(data: Data, fields: int) -> list[tuple[Data, ...]]:
    if data.type is not DataType.ARRAY or not data.value:
        raise ProtocolError("control parameter: expected a non-empty array", protocol=PROTOCOL)
    units = []
    for unit in data.value:
        if unit.type is not DataType.STRUCTURE or len(unit.value) != fields:
            raise ProtocolError(f"control parameter: expected structures of {fields}", protocol=PROTOCOL)
        if unit.value[0].type is not DataType.OAD:
            raise ProtocolError(
                "control parameter: the first element must be the relay OAD", protocol=PROTOCOL
            )
        units.append(tuple(unit.value))
    return units


def parse_control(omd: OMD, data: Data) -> ControlRequest:
    """What a meter is asked to do by ACTION ``omd``; ``ProtocolError`` for anything else."""
    for control, known in _SIMPLE.items():
        if (omd.oi, omd.method) == (known.oi, known.method):
            return ControlRequest(control, ())
    if (omd.oi, omd.method) == (RELAY_OI, 129):
        units = _units(data, 4)
        first = units[0]
        return ControlRequest(
            Control.TRIP,
            tuple(u[0].value for u in units),
            limit_min=int(first[2].value),
            auto_close=bool(first[3].value),
        )
    if (omd.oi, omd.method) == (RELAY_OI, 130):
        units = _units(data, 2)
        commands = {int(u[1].value) for u in units}
        if not commands <= {0, 1} or len(commands) != 1:
            raise ProtocolError(f"close command {sorted(commands)}: expected 0 or 1", protocol=PROTOCOL)
        control = Control.DIRECT_CLOSE if commands == {1} else Control.CLOSE_ALLOWED
        return ControlRequest(control, tuple(u[0].value for u in units))
    raise ProtocolError(f"{omd} is not a fee-control method", protocol=PROTOCOL)


def money_structure(*fen: int) -> Data:
    """A structure of double-long-unsigned amounts in fen (scaler -2 元): 401E / 401F values."""
    for value in fen:
        if not 0 <= value <= 0xFFFFFFFF:
            raise ProtocolError(f"amount {value} fen does not fit double-long-unsigned", protocol=PROTOCOL)
    return Data(DataType.STRUCTURE, tuple(Data(DataType.DOUBLE_LONG_UNSIGNED, v) for v in fen))


def money_values(data: Data, count: int) -> tuple[int, ...]:
    """The fen amounts of a 401E/401F/202C structure (or a single 202D value)."""
    items = data.value if data.type in (DataType.STRUCTURE, DataType.ARRAY) else (data,)
    numbers = [d.value for d in items if d.type in (DataType.DOUBLE_LONG_UNSIGNED, DataType.DOUBLE_LONG)]
    if len(numbers) < count:
        raise ProtocolError(f"expected {count} amounts, got {data.type.label}", protocol=PROTOCOL)
    return tuple(int(n) for n in numbers[:count])


__all__ = [
    "ALARM_LIMITS",
    "ENERGY_ALARM_LIMITS",
    "ENERGY_OTHER_LIMITS",
    "KEEP_POWER_OI",
    "OTHER_LIMITS",
    "OVERDRAFT_AMOUNT",
    "RELAY_OI",
    "RELAY_OUTPUT_1",
    "STATUS_WORD_3",
    "WALLET",
    "Control",
    "ControlRequest",
    "control_action",
    "money_structure",
    "money_values",
    "parse_control",
]
