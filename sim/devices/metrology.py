"""The virtual metrology unit (交采): DL/T 698.45 GET at logical address 1, on a pty.

Layer: sim. Answers GET-Request-Normal/NormalList addressed to logical address 1 with
the transformer LV-side values of a ``TransformerSource`` as its CT/PT *secondaries* see
them (current / CT, voltage / PT, power and energy / (CT x PT)), so the terminal's ratio
handling is exercised. ``ct_ratio_actual`` is the "wrong CT ratio" fault: the CT really
fitted differs from the one configured in board.toml, so the terminal's primary values come
out x configured/actual. ``dar`` answers chosen objects with a DAR; ``silent`` stops
answering (timeout tests). Must not import the terminal, hal backends or apps.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from hal.clock import Clock
from hal.interfaces import SerialLink, SerialSettings
from protocols import dlt698
from protocols.errors import ProtocolError
from sim.physics.measure import DeviceErrors
from sim.pty import PtyPair
from sim.wiring import PtyLink

DT = dlt698.DataType


@dataclass(frozen=True, slots=True)
class TransformerSample:
    """Primary values at the transformer LV side, per phase A/B/C."""

    voltage_v: tuple[float, float, float]
    current_a: tuple[float, float, float]
    p_kw: tuple[float, float, float]
    q_kvar: tuple[float, float, float]
    frequency_hz: float = 50.0


class TransformerSource(Protocol):
    def sample(self, t: float) -> TransformerSample: ...


@dataclass(slots=True)
class ConstantSource:
    """A fixed operating point (tests, the synthetic station)."""

    value: TransformerSample

    def sample(self, t: float) -> TransformerSample:
        return self.value


@dataclass(slots=True)
class FunctionSource:
    fn: Callable[[float], TransformerSample]

    def sample(self, t: float) -> TransformerSample:
        return self.fn(t)


Measure = Callable[[float, float, int], float]  # (true value, t, phase) -> what the instrument reads


@dataclass(slots=True)
class VirtualMetrology:
    source: TransformerSource
    ct_ratio: float = 1.0  # the ratio board.toml configures (what the terminal multiplies by)
    pt_ratio: float = 1.0
    ct_ratio_actual: float | None = None  # fault: the CT really fitted
    logical_address: int = 1
    settings: SerialSettings = field(default_factory=lambda: SerialSettings(9600, "E"))
    response_delay_s: float = 0.02
    dar: dict[int, int] = field(default_factory=dict)  # OAD (0x20000200) -> DAR code to answer
    silent: bool = False
    #: the unit's own measurement errors (0.5S / 0.2 class: ``sim.physics.measure``); None = ideal
    errors: DeviceErrors | None = None
    energy_import_kwh: float = 1000.0  # primary, integrated from the source
    energy_export_kwh: float = 0.0
    requests: int = 0
    replies: int = 0
    ignored: int = 0
    garbage: int = 0
    last_reply_t: float | None = None
    _last_t: float | None = None

    @property
    def ct_seen(self) -> float:
        return self.ct_ratio if self.ct_ratio_actual is None else self.ct_ratio_actual

    def advance(self, t: float) -> TransformerSample:
        """Integrate energy up to ``t`` (step-held power) and return the sample at ``t``."""
        s = self.source.sample(t)
        if self._last_t is not None and t > self._last_t:
            gain = self.errors.energy_gain if self.errors is not None else 1.0
            p = sum(s.p_kw) * gain * (t - self._last_t) / 3600.0
            if p >= 0:
                self.energy_import_kwh += p
            else:
                self.energy_export_kwh -= p
        self._last_t = t if self._last_t is None else max(t, self._last_t)
        return s

    def _measured(self, s: TransformerSample, t: float) -> TransformerSample:
        """``s`` as the unit's instruments see it: per-phase gain and noise of its class."""
        e = self.errors
        if e is None:
            return s

        def per_phase(values: tuple[float, ...], measure: Measure) -> tuple[float, ...]:
            return tuple(measure(v, t, ph) for ph, v in enumerate(values))

        return dataclasses.replace(
            s,
            voltage_v=per_phase(s.voltage_v, e.voltage_at),  # type: ignore[arg-type]
            current_a=per_phase(s.current_a, e.current_at),  # type: ignore[arg-type]
            p_kw=per_phase(s.p_kw, e.power_at),  # type: ignore[arg-type]
            q_kvar=per_phase(s.q_kvar, e.power_at),  # type: ignore[arg-type]
        )

    def objects(self, t: float) -> Mapping[int, dlt698.Data]:
        """The secondary-side Data of every object the unit serves."""
        s = self._measured(self.advance(t), t)
        ct, pt = self.ct_seen, self.pt_ratio

        def arr(kind: DT, values: list[float], scaler: int) -> dlt698.Data:
            return dlt698.Data(DT.ARRAY, tuple(dlt698.Data(kind, round(v / 10**scaler)) for v in values))

        p_w = [x * 1000 / (ct * pt) for x in s.p_kw]
        q_var = [x * 1000 / (ct * pt) for x in s.q_kvar]
        pf = []
        for p, q in zip([sum(s.p_kw), *s.p_kw], [sum(s.q_kvar), *s.q_kvar], strict=True):
            apparent = math.hypot(p, q)
            pf.append(abs(p) / apparent if apparent > 0 else 1.0)
        energy_i = self.energy_import_kwh / (ct * pt)
        energy_e = self.energy_export_kwh / (ct * pt)
        tariffs = (0.1, 0.3, 0.35, 0.25)  # tariff split of the total; sums stay consistent
        return {
            0x20000200: arr(DT.LONG_UNSIGNED, [v / pt for v in s.voltage_v], -1),
            0x20010200: arr(DT.DOUBLE_LONG, [i / ct for i in s.current_a], -3),
            0x20040200: arr(DT.DOUBLE_LONG, [sum(p_w), *p_w], -1),
            0x20050200: arr(DT.DOUBLE_LONG, [sum(q_var), *q_var], -1),
            0x200A0200: arr(DT.LONG, pf, -3),
            0x200F0200: dlt698.Data(DT.LONG_UNSIGNED, round(s.frequency_hz * 100)),
            0x00100200: arr(DT.DOUBLE_LONG_UNSIGNED, [energy_i] + [energy_i * k for k in tariffs], -2),
            0x00200200: arr(DT.DOUBLE_LONG_UNSIGNED, [energy_e] + [energy_e * k for k in tariffs], -2),
        }

    def _result(self, oad: dlt698.OAD, objects: Mapping[int, dlt698.Data]) -> dlt698.ResultNormal:
        key = (oad.oi << 16) | (oad.attr << 8) | oad.index
        if key in self.dar:
            return dlt698.ResultNormal(oad, dar=self.dar[key])
        data = objects.get((oad.oi << 16) | (oad.attr << 8))
        if data is None:
            return dlt698.ResultNormal(oad, dar=6)  # object does not exist
        if oad.index:
            if data.type != DT.ARRAY or oad.index > len(data.value):
                return dlt698.ResultNormal(oad, dar=8)
            data = data.value[oad.index - 1]
        return dlt698.ResultNormal(oad, data=data)

    def answer(self, frame: dlt698.Frame, now: float) -> bytes | None:
        """The reply frame to ``frame``, or None when it is not for this unit."""
        if frame.from_server or frame.logical != self.logical_address:
            return None
        if frame.sa_type not in (dlt698.AddressType.WILDCARD, dlt698.AddressType.BROADCAST):
            return None
        try:
            apdu = dlt698.decode_apdu(frame.apdu)
        except ProtocolError:
            reply: dlt698.Apdu = dlt698.ErrorResponse(piid=0, error=1)
        else:
            objects = self.objects(now)
            if isinstance(apdu, dlt698.GetRequestNormalList):
                reply = dlt698.GetResponseNormalList(
                    apdu.piid, tuple(self._result(o, objects) for o in apdu.oads)
                )
            elif isinstance(apdu, dlt698.GetRequestNormal):
                reply = dlt698.GetResponseNormal(apdu.piid, self._result(apdu.oad, objects))
            else:
                reply = dlt698.ErrorResponse(piid=getattr(apdu, "piid", 0), error=2)
        out = dlt698.Frame(
            dlt698.CONTROL_SERVER_RESPONSE,
            "000000000001",
            ca=frame.ca,
            apdu=reply.encode(),
            logical_address=self.logical_address,
        )
        return dlt698.encode(out)

    def _handler(
        self, clock: Clock, write: Callable[[bytes], Awaitable[None]]
    ) -> Callable[[bytes], Awaitable[None]]:
        framer = dlt698.Framer()

        async def handle(chunk: bytes) -> None:
            for item in framer.feed(chunk):
                if isinstance(item, ProtocolError):
                    self.garbage += 1
                    continue
                self.requests += 1
                reply = None if self.silent else self.answer(item, clock.now())
                if reply is None:
                    self.ignored += 1
                    continue
                wire = self.settings.wire_seconds
                await clock.sleep(wire(len(dlt698.encode(item))) + self.response_delay_s + wire(len(reply)))
                await write(reply)
                self.replies += 1
                self.last_reply_t = clock.now()

        return handle

    async def serve(self, pty: PtyPair, *, clock: Clock) -> None:
        """Answer on the master side of ``pty`` until cancelled; closes the pty."""
        await self.serve_link(PtyLink(pty, self.settings), clock=clock)

    async def serve_link(self, link: SerialLink, *, clock: Clock) -> None:
        """Answer over any hal ``SerialLink`` (``sim.wiring``) until cancelled."""
        handle = self._handler(clock, link.write)
        async with link:
            while True:
                await handle(await link.read())


__all__ = [
    "ConstantSource",
    "FunctionSource",
    "TransformerSample",
    "TransformerSource",
    "VirtualMetrology",
]
