"""One read of one meter: retries with backoff, counted, and the success rate it feeds.

Layer: apps (acquisition). Every task reads meters through ``MeterReader.attempt``: a
transport timeout or a garbled reply is retried (``retries`` times, doubling the pause from
0.5 s) while the transport still counts the meter as available; an abnormal reply
(``DeviceError``) is an answer -- the meter is there, the item is not -- and is not retried.
Each scheduled read is recorded in the ``SuccessTracker`` (采集成功率), and a meter that stops
or resumes answering is logged once each way. Read health is published for other apps (the
outage app tells comms from supply by it): ``meter/<id>/health`` (retained)
``{"online", "at", "port", "kind"}`` after every failed read and when the meter answers again.
Must not decide what to read or when.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from hal.errors import DeviceError, HalError, TransportTimeout
from protocols.errors import ProtocolError
from protocols.station import Meter
from runtime.api import AppContext

from .plan import Plan
from .stats import SuccessTracker

T = TypeVar("T")
FIRST_RETRY_S = 0.5

COUNTERS = ("reads_ok", "reads_failed", "device_errors", "protocol_errors")


class MeterReader:
    """Reads with retries over the plan's clients; owns the success tracker."""

    def __init__(self, ctx: AppContext, plan: Plan, *, retries: int, counters: dict[str, int]) -> None:
        self._ctx = ctx
        self._log = ctx.log
        self._plan = plan
        self._retries = retries
        self.counters = counters
        for key in COUNTERS:
            counters.setdefault(key, 0)
        self.tracker = SuccessTracker([])

    def follow(self) -> None:
        """Track the plan's meters (after each re-plan); meters that stay keep their history.
        Unreachable meters are tracked too: they count against the success rate."""
        meters = self._plan.model.meters
        self.tracker.reset_meters([m.id for m in meters], {m.id: m.transport for m in meters})

    def available(self, meter: Meter) -> bool:
        client = self._plan.client(meter.id)
        return client is not None and client.available()

    async def attempt(
        self, meter: Meter, kind: str, call: Callable[[], Awaitable[T]], *, record: bool = True
    ) -> T | None:
        """Run one read with retries and backoff; count it; None when it finally failed.

        ``record``: count this read in the success rate (per-item reads of one cycle record
        the cycle once, through ``record`` below)."""
        delay = FIRST_RETRY_S
        for attempt in range(self._retries + 1):
            try:
                result = await call()
            except DeviceError as err:
                self.counters["device_errors"] += 1
                self._log.debug("%s: %s", meter.id, err)
                if record:
                    self.record(meter, kind, True)
                return None
            except (TransportTimeout, ProtocolError) as err:
                if isinstance(err, ProtocolError):
                    self.counters["protocol_errors"] += 1
                if attempt < self._retries and self.available(meter):
                    await self._ctx.clock.sleep(delay)
                    delay *= 2
                    continue
                self.counters["reads_failed"] += 1
                if record:
                    self.record(meter, kind, False)
                return None
            except HalError as err:
                self.counters["reads_failed"] += 1
                self._log.warning("%s: %s", meter.id, err)
                if record:
                    self.record(meter, kind, False)
                return None
            self.counters["reads_ok"] += 1
            if record:
                self.record(meter, kind, True)
            return result
        return None

    def record(self, meter: Meter, kind: str, ok: bool) -> None:
        """Count one scheduled read of ``meter``; log the edges (stopped / resumed answering)."""
        offline, back = self.tracker.record(meter.id, kind, ok, self._ctx.clock.now())
        if offline:
            where = meter.transport
            self._log.warning("meter %s (%s on %s) is not answering", meter.id, meter.address, where)
        elif back:
            self._log.info("meter %s answers again", meter.id)
        if not ok or back:
            self.health(meter, kind, ok)

    def health(self, meter: Meter, kind: str, ok: bool) -> None:
        """Tell the bus how a read of ``meter`` ended (not counted in the success rate)."""
        body = {"online": ok, "at": self._ctx.clock.now(), "port": meter.transport, "kind": kind}
        self._ctx.bus.publish(f"meter/{meter.id}/health", body, retain=True)


__all__ = ["MeterReader"]
