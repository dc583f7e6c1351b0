"""``FrameTrace``: a ring buffer of the last N frames seen on one link (STYLE.md §19).

Layer: hal. Filled by ``hal.rs485.Rs485Port`` (and any other link owner); dumped by a
CLI command or a diagnostics reply via ``snapshot()``. Must not decode frames or do I/O:
it stores bytes as hex with a free-text note, and timestamps given by the caller's clock.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal

Direction = Literal["tx", "rx"]


@dataclass(frozen=True, slots=True)
class TraceEntry:
    ts: float
    direction: Direction
    device: str
    data: bytes
    note: str = ""

    def to_dict(self) -> dict[str, object]:
        return {
            "ts": self.ts,
            "direction": self.direction,
            "device": self.device,
            "hex": self.data.hex(" ").upper(),
            "note": self.note,
        }


class FrameTrace:
    """The last ``size`` frames (older ones fall off); ``total`` counts every record ever made."""

    def __init__(self, size: int = 256) -> None:
        if size < 1:
            raise ValueError(f"trace size must be >= 1, not {size}")
        self._entries: deque[TraceEntry] = deque(maxlen=size)
        self.total = 0

    @property
    def size(self) -> int:
        assert self._entries.maxlen is not None
        return self._entries.maxlen

    def record(self, direction: Direction, data: bytes, *, ts: float, device: str, note: str = "") -> None:
        self._entries.append(
            TraceEntry(ts=ts, direction=direction, device=device, data=bytes(data), note=note)
        )
        self.total += 1

    def entries(self) -> list[TraceEntry]:
        return list(self._entries)

    def snapshot(self) -> list[dict[str, object]]:
        """Oldest first: ``{"ts", "direction", "device", "hex", "note"}`` per frame."""
        return [entry.to_dict() for entry in self._entries]

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


__all__ = ["Direction", "FrameTrace", "TraceEntry"]
