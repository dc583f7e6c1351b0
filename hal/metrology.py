"""The metrology unit (交采, AC sampling) read over DL/T 698.45 at logical address 1.

Layer: hal. Implements ``hal.interfaces.Metrology`` over any ``SerialLink`` (a UART to the
unit on a real board, a pty on the simulated one). Fusion terminals reach their internal
AC-sampling module with a wildcard server address and logical address 1 (AF = 55H,
PROTOCOLS.md §2.1); one GET-Request-NormalList asks for every quantity at once::

    68 L L 43 55 AA AA AA AA AA AA 00 HCS HCS | 05 02 PIID 08 OAD x 8 00 | FCS FCS 16

The unit answers in *secondary* values (what its CT/PT secondaries see); the ratios from
board.toml turn them into primary values: currents x CT, voltages x PT, powers and
energies x CT x PT. A DAR for any object, or an ERROR-Response, raises ``DeviceError``
naming the object. Must not know apps or how readings are published.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from types import TracebackType
from typing import Self

from hal.errors import DeviceError
from hal.interfaces import HalClock, MetrologySnapshot, PhaseValues, Priority, SerialLink
from hal.rs485 import Rs485Port
from protocols import dlt698
from protocols.errors import ProtocolError

DEVICE = "metrology"
WILDCARD_SA = "AAAAAAAAAAAA"

#: what is read, and which ratio makes it primary: "i" = CT, "u" = PT, "p" = CT x PT, "" = none
OADS: tuple[tuple[int, str], ...] = (
    (0x20000200, "u"),  # voltage A/B/C
    (0x20010200, "i"),  # current A/B/C
    (0x20040200, "p"),  # active power total/A/B/C
    (0x20050200, "p"),  # reactive power total/A/B/C
    (0x200A0200, ""),  # power factor total/A/B/C
    (0x200F0200, ""),  # frequency
    (0x00100200, "p"),  # forward active energy total + tariffs
    (0x00200200, "p"),  # reverse active energy total + tariffs
)


@dataclass(frozen=True, slots=True)
class Ratios:
    """CT and PT ratios of the metrology unit's inputs (primary / secondary)."""

    ct: float = 1.0
    pt: float = 1.0

    def __post_init__(self) -> None:
        if not (self.ct > 0 and self.pt > 0):
            raise ValueError(f"CT/PT ratios must be positive, got CT {self.ct}, PT {self.pt}")

    def factor(self, kind: str) -> float:
        return {"i": self.ct, "u": self.pt, "p": self.ct * self.pt}.get(kind, 1.0)


class DltMetrology:
    """``Metrology`` over DL/T 698.45. ``async with`` opens and closes the link."""

    def __init__(
        self,
        link: SerialLink,
        *,
        clock: HalClock,
        ratios: Ratios | None = None,
        logical_address: int = 1,
        timeout: float = 1.0,
    ) -> None:
        if logical_address not in (0, 1):
            raise ValueError(f"logical address {logical_address}: the AF field carries 0 or 1")
        self._port = Rs485Port(link, clock=clock, name=f"metrology:{link.name}")
        self._clock = clock
        self.ratios = ratios or Ratios()
        self._logical = logical_address
        self._timeout = timeout
        self._piid = itertools.cycle(range(64))
        self._requests: dict[int, bytes] = {}
        self.last_values: dict[str, float] = {}
        """Every primary value of the last snapshot by quantity name (tariff energies, totals)."""

    @property
    def port(self) -> Rs485Port:
        return self._port

    def request(self, piid: int) -> bytes:
        """The GET-Request-NormalList frame of every object under ``piid`` (the same bytes every
        time: kept per piid, 64 of them)."""
        frame = self._requests.get(piid)
        if frame is None:
            frame = self._requests[piid] = self._request(piid)
        return frame

    def _request(self, piid: int) -> bytes:
        apdu = dlt698.GetRequestNormalList(piid=piid, oads=tuple(dlt698.OAD.of(o) for o, _ in OADS))
        frame = dlt698.Frame(
            dlt698.CONTROL_CLIENT_REQUEST,
            WILDCARD_SA,
            ca=0,
            apdu=apdu.encode(),
            sa_type=dlt698.AddressType.WILDCARD,
            logical_address=self._logical,
        )
        return dlt698.encode(frame)

    async def read_values(self, *, timeout: float | None = None) -> dict[str, float]:  # noqa: ASYNC109 (reply timeout, applied by the port's clock scope)
        """Primary values of every object by normalized quantity name (``voltage.a`` ...)."""
        piid = next(self._piid)

        def is_reply(frame: dlt698.Frame) -> bool:
            return frame.from_server and frame.logical == self._logical

        reply = await self._port.transact(
            self.request(piid),
            decoder=dlt698.Framer(),
            match=is_reply,
            device=DEVICE,
            priority=Priority.REALTIME,
            timeout=self._timeout if timeout is None else timeout,
        )
        apdu = dlt698.decode_apdu(reply.apdu)
        if isinstance(apdu, dlt698.ErrorResponse):
            raise DeviceError(DEVICE, apdu.error, "ERROR-Response to GET-Request-NormalList")
        if not isinstance(apdu, dlt698.GetResponseNormalList):
            raise ProtocolError(f"metrology unit answered {apdu.service}, not GET-Response-NormalList")
        kinds = {dlt698.OAD.of(o): k for o, k in OADS}
        out: dict[str, float] = {}
        for result in apdu.results:
            if result.oad not in kinds:
                raise ProtocolError(f"metrology unit answered unrequested object {result.oad}")
            if result.dar is not None:
                raise DeviceError(DEVICE, result.dar, f"object {result.oad}: {dlt698.dar_name(result.dar)}")
            assert result.data is not None  # ResultNormal holds exactly one of data / dar
            elements = dlt698.values(result.oad, result.data) or []
            factor = self.ratios.factor(kinds[result.oad])
            for element in elements:
                value = element.get("value")
                name = element.get("quantity") or element.get("name")
                if isinstance(value, int | float) and not isinstance(value, bool) and isinstance(name, str):
                    out[name] = float(value) * factor
        missing = set(kinds) - {r.oad for r in apdu.results}
        if missing:
            raise ProtocolError(
                f"metrology unit left out {', '.join(str(o) for o in sorted(missing, key=str))}"
            )
        return out

    async def snapshot(self) -> MetrologySnapshot:
        values = await self.read_values()
        self.last_values = values

        def phases(prefix: str) -> PhaseValues:
            return PhaseValues(
                values.get(f"{prefix}.a"), values.get(f"{prefix}.b"), values.get(f"{prefix}.c")
            )

        return MetrologySnapshot(
            ts=self._clock.now(),
            voltage=phases("voltage"),
            current=phases("current"),
            active_power_kw=phases("power.active"),
            reactive_power_kvar=phases("power.reactive"),
            power_factor=phases("power_factor"),
            frequency_hz=values.get("frequency"),
            energy_import_kwh=values.get("energy.active.import.total"),
            energy_export_kwh=values.get("energy.active.export.total"),
        )

    async def __aenter__(self) -> Self:
        await self._port.__aenter__()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self._port.__aexit__(exc_type, exc, tb)


__all__ = ["DEVICE", "OADS", "DltMetrology", "Ratios"]
