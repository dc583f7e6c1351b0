"""Carrying out a relay command on a meter: send, read status word 3 back, retry until it shows.

Layer: apps (billing). Uses the hal's ``MeterClient`` (DL/T 645 1CH / DL/T 698.45 ACTION at
CONTROL priority) and the clock; decides nothing about *whether* to act (``feecontrol`` does).

An attempt sends the command (valid for ``valid_s`` by the meter's clock) and reads the status
back; the command counts as done only when the read-back shows it (``RelayStatus.satisfies``).
A meter that refuses (an abnormal reply / DAR, e.g. a trip under 保电) is not retried: the
outcome is ``refused``. No answer, garbage, or a status that does not show the command yet are
retried up to ``retries`` times, ``retry_delay_s`` apart; after that the outcome is ``failed``
and the next reading cycle decides again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from hal.clock import Clock
from hal.errors import DeviceError, HalError
from hal.meters import MeterClient, RelayCommand, RelayStatus
from protocols.errors import ProtocolError


@dataclass(frozen=True, slots=True)
class Outcome:
    result: str  # ok | refused | failed
    attempts: int
    status: RelayStatus | None
    error: str = ""
    done_at: float = 0.0  # clock time the read-back showed the command (ok only)


class RelayDriver:
    def __init__(
        self,
        clock: Clock,
        tz: ZoneInfo,
        *,
        retries: int = 3,
        retry_delay_s: float = 5.0,
        valid_s: float = 600.0,
    ) -> None:
        self.clock = clock
        self.tz = tz
        self.retries = retries
        self.retry_delay_s = retry_delay_s
        self.valid_s = valid_s

    def _valid_until(self) -> datetime:
        return datetime.fromtimestamp(self.clock.now() + self.valid_s, self.tz).replace(tzinfo=None)

    async def execute(self, client: MeterClient, command: RelayCommand) -> Outcome:
        status: RelayStatus | None = None
        error = ""
        for attempt in range(1, self.retries + 2):
            try:
                await client.relay(command, valid_until=self._valid_until())
            except DeviceError as err:
                return Outcome("refused", attempt, status, str(err))
            except (HalError, ProtocolError) as err:
                error = str(err)
            else:
                try:
                    status = await client.read_relay_status()
                except (HalError, ProtocolError) as err:
                    error = f"read-back: {err}"
                else:
                    if status is not None and status.satisfies(command):
                        return Outcome("ok", attempt, status, done_at=self.clock.now())
                    error = (
                        f"read-back shows status word 3 = {status.word:04X}" if status else "no status word"
                    )
            if attempt <= self.retries:
                await self.clock.sleep(self.retry_delay_s)
        return Outcome("failed", self.retries + 1, status, error)

    async def observe(self, client: MeterClient) -> RelayStatus | None:
        """The meter's relay status now, or None when it does not answer."""
        try:
            return await client.read_relay_status()
        except (HalError, ProtocolError):
            return None


__all__ = ["Outcome", "RelayDriver"]
