"""The slice of the DL/T 645 codec the virtual meters use, in one place.

Layer: sim. Only re-exports ``protocols.dlt645`` names (plus the error-bit values),
so the meters depend on one narrow surface of the codec.
"""

from __future__ import annotations

from protocols.dlt645 import (
    BROADCAST_ADDRESS,
    LOAD_CURVE_DI,
    LOAD_RECORDS_PER_FRAME,
    MAX_DATA,
    Control,
    DataItem,
    Frame,
    Framer,
    RelayAction,
    Value,
    abnormal_response,
    ack_response,
    decode,
    encode,
    lookup,
    parse_broadcast_time,
    parse_load_curve_query,
    parse_read_request,
    parse_relay_control,
    parse_write_request,
    read_address_response,
    read_response,
)

# Abnormal-reply error bits (PROTOCOLS.md §1.4); the codec names them only by bit index.
ERR_OTHER = 0x01
ERR_NO_DATA = 0x02
ERR_PASSWORD = 0x04
ERR_BAUD = 0x08

__all__ = [
    "BROADCAST_ADDRESS",
    "ERR_BAUD",
    "ERR_NO_DATA",
    "ERR_OTHER",
    "ERR_PASSWORD",
    "LOAD_CURVE_DI",
    "LOAD_RECORDS_PER_FRAME",
    "MAX_DATA",
    "Control",
    "DataItem",
    "Frame",
    "Framer",
    "RelayAction",
    "Value",
    "abnormal_response",
    "ack_response",
    "decode",
    "encode",
    "lookup",
    "parse_broadcast_time",
    "parse_load_curve_query",
    "parse_read_request",
    "parse_relay_control",
    "parse_write_request",
    "read_address_response",
    "read_response",
]
