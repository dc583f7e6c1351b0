"""Modbus device profiles (TOML register maps) and register value codecs.

Layer: protocols (pure). Must not import asyncio, serial, hal, runtime -- nor pymodbus,
whose package import pulls asyncio in: the RTU framing and PDUs (pymodbus's own
``FramerRTU`` and PDU classes) are used from ``hal.modbus`` instead.

    >>> from protocols import modbus
    >>> p = modbus.builtin_profile("breaker")
    >>> [b.table for b in modbus.plan_blocks(p.registers.values())][:2]
    ['coil', 'discrete']
"""

from protocols.modbus._profile import (
    BIT_TABLES,
    TABLES,
    Command,
    Profile,
    ProfileError,
    Register,
    Table,
    builtin_names,
    builtin_profile,
    load_profile,
    parse_profile,
)
from protocols.modbus._values import (
    MAX_BITS,
    MAX_REGISTERS,
    Block,
    decode_value,
    describe,
    encode_value,
    plan_blocks,
)

__all__ = [
    "BIT_TABLES",
    "MAX_BITS",
    "MAX_REGISTERS",
    "TABLES",
    "Block",
    "Command",
    "Profile",
    "ProfileError",
    "Register",
    "Table",
    "builtin_names",
    "builtin_profile",
    "decode_value",
    "describe",
    "encode_value",
    "load_profile",
    "parse_profile",
    "plan_blocks",
]
