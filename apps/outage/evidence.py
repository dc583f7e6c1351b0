"""Typed evidence about supply, from every source the terminal has, for the outage classifier.

Layer: apps (outage), pure. Each piece of evidence says what was seen, about whom, when it
happened (with the bounds its source allows) and when the terminal received it (``received``:
the hal's receipt, the clock of the latency goal). The app's collectors turn bus messages and
hal reads into these; the classifier consumes them. Must not do I/O.

Sources (``Source``):

* ``hplc``           the carrier module's AFN06 F5 power-off / power-on lists (already judged by
                     each STA and aggregated by the CCO; a list carries no time of its own);
* ``meter_record``   a meter's own power-down record (DL/T 645 0311000n, DL/T 698.45 3011),
                     read after the meter is back: start and end by the meter's clock;
* ``rs485``          reads that fail or succeed (a failure alone is comms, not supply);
* ``breaker``        a branch breaker's switch state and trip records;
* ``branch_unit`` / ``box_terminal``   the voltage a branch monitoring unit / meter-box terminal
                     measures on the group it watches;
* ``metrology``      the terminal's own AC sampling at the transformer, per phase;
* ``power_monitor``  the terminal's own supply input (mains in front of its supercapacitor).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from .members import Group

Source = Literal[
    "hplc",
    "meter_record",
    "rs485",
    "breaker",
    "branch_unit",
    "box_terminal",
    "metrology",
    "power_monitor",
]
SOURCES: tuple[Source, ...] = (
    "hplc",
    "meter_record",
    "rs485",
    "breaker",
    "branch_unit",
    "box_terminal",
    "metrology",
    "power_monitor",
)


@dataclass(frozen=True, slots=True)
class Window:
    """When something happened: best estimate ``at`` within ``[lo, hi]`` (the source's resolution)."""

    at: float
    lo: float
    hi: float

    @classmethod
    def exact(cls, t: float) -> Window:
        return cls(t, t, t)

    @classmethod
    def between(cls, lo: float, hi: float, *, at: float | None = None) -> Window:
        """Somewhere in ``[lo, hi]``; the estimate defaults to ``hi`` (the time it was seen)."""
        lo, hi = min(lo, hi), max(lo, hi)
        return cls(hi if at is None else min(max(at, lo), hi), lo, hi)

    @property
    def resolution(self) -> float:
        return self.hi - self.lo


@dataclass(frozen=True, slots=True)
class MetersDark:
    """These meters lost supply (an HPLC power-off list)."""

    meters: tuple[str, ...]
    when: Window
    received: float
    source: Source = "hplc"


@dataclass(frozen=True, slots=True)
class MetersBack:
    """These meters have supply again (an HPLC power-on list)."""

    meters: tuple[str, ...]
    when: Window
    received: float
    source: Source = "hplc"


@dataclass(frozen=True, slots=True)
class PowerDownRecord:
    """A meter's own record of a power-down, read after it came back (``end`` None: still open)."""

    meter: str
    start: float
    end: float | None
    received: float
    source: Source = "meter_record"


@dataclass(frozen=True, slots=True)
class RecordsRead:
    """A meter's power-down records were read at ``at`` (after a restore, on request): any record
    newer than the previous read was published before this, so an outage the meter has no
    record of did not happen at its supply (a pure communication loss, say)."""

    meter: str
    at: float
    received: float
    source: Source = "meter_record"


@dataclass(frozen=True, slots=True)
class ReadResult:
    """A read of a meter (or a device) succeeded or failed at ``at`` (``at`` = when it finished)."""

    meter: str
    ok: bool
    at: float
    received: float
    source: Source = "rs485"


@dataclass(frozen=True, slots=True)
class RelayState:
    """A meter's own relay (status word 3 bit 4): open by fee control or a remote trip, or closed."""

    meter: str
    open: bool
    at: float
    received: float
    cause: str = "unknown"


@dataclass(frozen=True, slots=True)
class GroupSupply:
    """A device watching a whole group says it is supplied or not.

    ``sampled``: the device is polled, so one sample cannot tell a dip from an outage (a second
    sample at least the judgement delay later, or other evidence, confirms it); a ``breaker``
    opening is not a dip and comes unsampled, so does a change of the terminal's own supply
    (the classifier judges it by waiting).
    """

    group: Group
    powered: bool
    when: Window
    received: float
    source: Source
    sampled: bool = True


Evidence = MetersDark | MetersBack | PowerDownRecord | RecordsRead | ReadResult | RelayState | GroupSupply

__all__ = [
    "SOURCES",
    "Evidence",
    "GroupSupply",
    "MetersBack",
    "MetersDark",
    "PowerDownRecord",
    "ReadResult",
    "RecordsRead",
    "RelayState",
    "Source",
    "Window",
]
