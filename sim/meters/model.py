"""A virtual electricity meter's own state, advanced lazily to a given time.

Layer: sim. Pure state and arithmetic: no I/O, no event loop, no protocol bytes (the
responder turns this state into DL/T 645 replies). Time is always passed in as UTC
epoch seconds of *true* time; the meter keeps its own clock as ``true + skew`` and
does everything a meter does by its own clock (tariff hour, 15-min curve points,
midnight freezes, event timestamps).

Energy integrates the load profile numerically on a grid of ``step_s`` seconds
aligned to the meter's clock (midpoint rule; every tariff, curve and midnight
boundary falls on a grid point). Registers are kept as exact floats and truncated to
0.01 kWh only when shown. Deterministic given the seed.
"""

from __future__ import annotations

import math
import struct
from array import array
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from sim.loads import (
    CHINA_UTC_OFFSET_S,
    FloatArray,
    LoadProfile,
    sample_phase_power,
    sample_phase_reactive,
    sample_power,
    sample_reactive,
    sample_voltage,
)
from sim.meters._draws import Draws
from sim.meters.signature import SignatureState
from sim.physics.measure import DeviceErrors

Phase = Literal["A", "B", "C", "ABC"]

SHARP, PEAK, FLAT, VALLEY = 1, 2, 3, 4  # 尖 峰 平 谷: DL/T 645 tariff numbers 1..4

# Tariff by local hour 0..23 (Beijing residential TOU periods, 尖峰 taken all year for simplicity).
DEFAULT_TOU: tuple[int, ...] = (
    (VALLEY,) * 7  # 00-07 谷
    + (FLAT,) * 3  # 07-10 平
    + (PEAK,)  # 10-11 峰
    + (SHARP,) * 2  # 11-13 尖
    + (PEAK,) * 2  # 13-15 峰
    + (FLAT,)  # 15-16 平
    + (SHARP,)  # 16-17 尖
    + (FLAT,)  # 17-18 平
    + (PEAK,) * 3  # 18-21 峰
    + (FLAT,) * 2  # 21-23 平
    + (VALLEY,)  # 23-24 谷
)

CURVE_PERIOD_S = 900
DAY_S = 86400
FEW_STEPS = 32  # integration steps a chunk may have for the Python-float path (``_advance_few``)
FEW_SAMPLES = 4  # up to this many, the profile is sampled instant by instant (no array round trip)

# Active-report status word (04001501) bits used by the simulator.
REPORT_BIT_RELAY_TRIP = 14
REPORT_BIT_RELAY_CLOSE = 15
REPORT_BIT_POWER_DOWN = 69

# Status word 3 (04000503) bits.
SW3_RELAY_OPEN = 1 << 4
SW3_RELAY_TRIP_COMMAND = 1 << 6
SW3_PRE_TRIP_ALARM = 1 << 7
SW3_MONEY_PREPAID = 2 << 8
SW3_KEEP_POWER = 1 << 12

#: Fee-control limits a meter ships with (元): alarm 1 / 2 set by the utility, overdraft 10.00,
#: hoarding 2000.00, close allowed 2.00 (GRID.md §4, one meter firmware's defaults).
DEFAULT_CREDIT_LIMITS: dict[str, float] = {
    "credit.alarm1": 0.0,
    "credit.alarm2": 0.0,
    "credit.overdraft_limit": 10.0,
    "credit.max_stored": 2000.0,
    "credit.close_allowed": 2.0,
}
#: After "close allowed" (1BH) the customer presses the meter's button this long after (s).
DEFAULT_BUTTON_DELAY_S = 60.0


@dataclass(frozen=True, slots=True)
class Registers:
    """Energy registers, kWh: index 0 is the total, 1..4 the tariffs 尖/峰/平/谷."""

    forward: tuple[float, float, float, float, float]
    reverse: tuple[float, float, float, float, float]


@dataclass(frozen=True, slots=True)
class Instant:
    """Instantaneous values; ``None`` for what this meter does not measure (B/C on single phase)."""

    voltage: tuple[float | None, float | None, float | None]
    current: tuple[float | None, float | None, float | None]
    power_kw: tuple[float | None, float | None, float | None]
    total_power_kw: float
    reactive_kvar: float
    power_factor: float
    frequency_hz: float


@dataclass(frozen=True, slots=True)
class CurvePoint:
    """One 15-min load-curve record; ``ts`` is the meter's own clock (UTC epoch)."""

    ts: float
    instant: Instant
    forward_total: float
    reverse_total: float


class CurveMemory:
    """A meter's load-curve memory: its newest ``maxlen`` 15-min records, oldest first.

    Records are kept packed in one ring of bytes (16 doubles, 128 B) with their times in an
    ``array`` (8 B) and become ``CurvePoint`` again only when read. A ``CurvePoint`` with its
    ``Instant`` is ~700 B of objects (ten days of a 2,400-meter area: 1.6 GB); a ``bytes`` per
    record in a deque was ~200 B. A read gives back exactly what was stored (doubles; ``None`` is
    kept as NaN, which no measured value is).

    ``reserve`` allocates the room for the records a run will write at once, so a long run's
    memory does not grow (and fragment the allocator) record by record while the ring fills.
    """

    __slots__ = ("_count", "_head", "_maxlen", "_records", "_times")

    def __init__(self, maxlen: int) -> None:
        self._maxlen = maxlen
        self._times = array("d")  # each record's ts, to search without unpacking (room reserved too)
        self._records = bytearray()
        self._count = 0  # records held (the first ``_count`` places until the ring is full)
        self._head = 0  # the oldest record's place once the ring is full

    def reserve(self, records: int) -> None:
        """Make room for ``records`` records in all (at most ``maxlen``) now, not as they come."""
        room = min(records, self._maxlen) - len(self._times)
        if room > 0:
            self._times.extend(array("d", bytes(8 * room)))
            self._records.extend(bytes(room * _RECORD_SIZE))

    @property
    def maxlen(self) -> int | None:
        return self._maxlen

    def append(self, point: CurvePoint) -> None:
        if self._maxlen <= 0:
            return
        i = point.instant
        record = _CURVE_RECORD.pack(
            point.ts, point.forward_total, point.reverse_total,
            *_nan3(i.voltage), *_nan3(i.current), *_nan3(i.power_kw),
            i.total_power_kw, i.reactive_kvar, i.power_factor, i.frequency_hz,
        )  # fmt: skip
        n = self._count
        if n < self._maxlen:
            self._count = n + 1
            if n == len(self._times):  # no room reserved
                self._times.append(point.ts)
                self._records += record
            else:
                self._times[n] = point.ts
                self._records[n * _RECORD_SIZE : (n + 1) * _RECORD_SIZE] = record
            return
        k = self._head  # full: the oldest record gives way
        self._times[k] = point.ts
        self._records[k * _RECORD_SIZE : (k + 1) * _RECORD_SIZE] = record
        self._head = (k + 1) % self._maxlen

    def __len__(self) -> int:
        return self._count

    def _places(self) -> Iterator[int]:
        n, head = self._count, self._head
        return iter(range(n)) if head == 0 else (k % n for k in range(head, head + n))

    def _point(self, k: int) -> CurvePoint:
        return _curve_point(_CURVE_RECORD.unpack_from(self._records, k * _RECORD_SIZE))

    def __iter__(self) -> Iterator[CurvePoint]:
        return map(self._point, self._places())

    def __getitem__(self, index: int) -> CurvePoint:
        n = self._count
        if not -n <= index < n:
            raise IndexError("curve memory index out of range")
        return self._point((self._head + index % n) % n)

    def since(self, meter_epoch: float, count: int) -> list[CurvePoint]:
        """Up to ``count`` records at or after ``meter_epoch`` (meter clock), oldest first."""
        out: list[CurvePoint] = []
        if count <= 0:
            return out
        times = self._times
        for k in self._places():
            if times[k] >= meter_epoch:
                out.append(self._point(k))
                if len(out) == count:
                    break
        return out

    def between(self, lo: float, hi: float) -> list[CurvePoint]:
        """The records with ``lo <= ts < hi`` (meter clock), oldest first."""
        times = self._times
        return [self._point(k) for k in self._places() if lo <= times[k] < hi]


_CURVE_RECORD = struct.Struct("<16d")
_RECORD_SIZE = _CURVE_RECORD.size


def _nan3(values: tuple[float | None, float | None, float | None]) -> tuple[float, float, float]:
    a, b, c = values
    nan = math.nan
    return (nan if a is None else a, nan if b is None else b, nan if c is None else c)


def _none3(a: float, b: float, c: float) -> tuple[float | None, float | None, float | None]:
    return (None if a != a else a, None if b != b else b, None if c != c else c)  # NaN != NaN


def _curve_point(record: tuple[float, ...]) -> CurvePoint:
    ts, fwd, rev, va, vb, vc, ia, ib, ic, pa, pb, pc, p, q, pf, f = record
    instant = Instant(_none3(va, vb, vc), _none3(ia, ib, ic), _none3(pa, pb, pc), p, q, pf, f)
    return CurvePoint(ts, instant, fwd, rev)


@dataclass(frozen=True, slots=True)
class Freeze:
    """A frozen register block; ``ts`` is the meter's own clock (UTC epoch)."""

    ts: float
    registers: Registers


@dataclass(slots=True)
class PowerDown:
    """A power-down event by the meter's own clock; ``end`` is None while still off."""

    start: float
    end: float | None = None


@dataclass(slots=True)
class Faults:
    """Injected meter faults. ``slow_pct`` = the meter registers that much less energy.

    Both act on the energy registers only (a worn or faulty register / pulse path, 有电流无电量):
    the metrology front end still measures voltage, current, power and power factor right, so
    a meter's own V x I x PF exposes the fault."""

    stopped: bool = False
    slow_pct: float = 0.0
    miss_rate: float = 0.0  # probability that the meter ignores a request addressed to it
    mute: bool = False  # its communication is cut (wire, module): it hears and answers nothing

    @property
    def factor(self) -> float:
        return 0.0 if self.stopped else max(0.0, 1.0 - self.slow_pct / 100.0)


class RelayRefused(Exception):
    """The meter refuses a relay command (keep-power active)."""


@dataclass(slots=True)
class _State:
    forward: FloatArray = field(default_factory=lambda: np.zeros(4))  # tariffs 1..4
    reverse: FloatArray = field(default_factory=lambda: np.zeros(4))


class VirtualMeter:
    """One meter. Call methods with the current true time; state advances lazily."""

    def __init__(
        self,
        address: str,
        *,
        profile: LoadProfile,
        start: float,
        phase: Phase = "A",
        seed: int = 0,
        tou: Sequence[int] = DEFAULT_TOU,
        utc_offset_s: int = CHINA_UTC_OFFSET_S,
        skew_s: float = 0.0,
        initial_kwh: Sequence[float] = (0.0, 0.0, 0.0, 0.0),
        passwords: dict[int, str] | None = None,
        credit_yuan: float | None = None,
        prices: Sequence[float] = (0.6, 0.568, 0.538, 0.288),
        step_s: float = 60.0,
        curve_days: int = 10,
        freeze_days: int = 62,
        errors: DeviceErrors | None = None,
    ) -> None:
        if len(address) != 12 or not address.isdigit():
            raise ValueError(f"meter address {address!r}: not 12 BCD digits")
        if len(tou) != 24 or any(x not in (1, 2, 3, 4) for x in tou):
            raise ValueError("tou: need 24 tariff numbers in 1..4, one per local hour")
        if CURVE_PERIOD_S % step_s or utc_offset_s % step_s:
            raise ValueError(f"step_s {step_s} must divide 900 s and the UTC offset")
        self.address = address
        self.phase: Phase = phase
        self.profile = profile
        self.tou = tuple(tou)
        self.utc_offset_s = utc_offset_s
        self.skew_s = float(skew_s)
        self.passwords = dict(passwords) if passwords is not None else {0: "000000", 2: "000000", 4: "000000"}
        self.credit_yuan = credit_yuan
        self.prices = tuple(prices)
        self.faults = Faults()
        self.errors = errors  # measurement errors (class, gain, noise); None = an ideal instrument
        self.step_s = float(step_s)
        self.rng = np.random.default_rng([seed, int(address)])
        weights = self.rng.uniform(0.8, 1.2, 3)
        self._draws: Draws | None = None
        self._phase_weights = tuple(float(w) for w in weights / weights.sum())
        self._state = _State(forward=np.array(initial_kwh, dtype=np.float64), reverse=np.zeros(4))
        self._t = float(start)
        self.on = True
        self.relay_closed = True
        self.relay_trip_command = False
        self.relay_changed_at: float | None = None  # true time of the last relay flip
        self.alarm = False
        self.keep_power = False
        self.credit_limits = dict(DEFAULT_CREDIT_LIMITS)
        self.button_delay_s: float | None = DEFAULT_BUTTON_DELAY_S  # None: nobody presses it
        self._press_at: float | None = None  # close allowed: when the customer presses the button
        self.on_relay: Callable[[], None] | None = None  # told when the relay moves or a press is due
        self.report_status = 0  # 96-bit active-report status word
        self.curve = CurveMemory(curve_days * DAY_S // CURVE_PERIOD_S)
        self.daily_freezes: deque[Freeze] = deque(maxlen=freeze_days)  # newest first
        self.instant_freezes: deque[Freeze] = deque(maxlen=3)
        self.power_downs: deque[PowerDown] = deque(maxlen=10)  # newest first
        self.power_down_count = 0
        self.relay_trip_count = 0
        self.signature = SignatureState()
        self._record_start()

    def _record_start(self) -> None:
        """A meter installed long before the run: when the run starts on a curve boundary (or a
        local midnight) of its clock, its memory already holds that point (or that freeze)."""
        mt = self.meter_time(self._t)
        if mt % CURVE_PERIOD_S:
            return
        reg = Registers(_block(self._state.forward), _block(self._state.reverse))
        if (mt + self.utc_offset_s) % DAY_S == 0:
            self.daily_freezes.appendleft(Freeze(ts=mt, registers=reg))
        self.curve.append(
            CurvePoint(
                ts=mt,
                instant=self._instant(self._t),
                forward_total=reg.forward[0],
                reverse_total=reg.reverse[0],
            )
        )

    # -- time ---------------------------------------------------------------------------------------
    @property
    def time(self) -> float:
        """The true time the state has been advanced to."""
        return self._t

    def meter_time(self, t: float) -> float:
        """The meter's own clock reading at true time ``t``."""
        return t + self.skew_s

    def set_clock(self, meter_epoch: float, t: float) -> None:
        """Set the meter's clock to ``meter_epoch`` at true time ``t`` (write 04000101/02 or sync)."""
        self.advance(t)
        self.skew_s = meter_epoch - t

    def broadcast_sync(self, meter_epoch: float, t: float, *, limit_s: float = 300.0) -> bool:
        """Broadcast time sync: accepted only if it corrects at most ``limit_s`` (DL/T 645: 5 min)."""
        if abs(meter_epoch - self.meter_time(t)) > limit_s:
            return False
        self.set_clock(meter_epoch, t)
        return True

    def local_hour(self, meter_epoch: float) -> int:
        return int(((meter_epoch + self.utc_offset_s) % DAY_S) // 3600)

    # -- integration --------------------------------------------------------------------------------
    def advance(self, t: float) -> None:
        """Integrate the load up to true time ``t`` (no-op for the past); a button press due
        on the way closes the relay at its own time."""
        while self._t < t:
            end = min(t, self._t + DAY_S)
            press = self._press_at
            if press is not None and press <= end:
                end = max(press, self._t)
            if end > self._t:
                self._advance_chunk(self._t, end)
                self._t = end
            if press is not None and press <= self._t:
                self._press_at = None
                self._set_relay(True, press)

    def _flowing(self) -> bool:
        return self.on and self.relay_closed

    def _advance_chunk(self, t0: float, t1: float) -> None:
        step, skew = self.step_s, self.skew_s
        m0, m1 = t0 + skew, t1 + skew
        k0, k1 = math.floor(m0 / step) + 1, math.ceil(m1 / step)
        if k1 - k0 < FEW_STEPS:
            self._advance_few([m0, *[k * step for k in range(k0, k1)], m1])
            return
        inner = np.arange(k0, k1, dtype=np.float64) * step
        edges = np.concatenate(([m0], inner, [m1]))
        n = len(edges) - 1
        tariff = np.asarray(self.tou, dtype=np.int64)[
            (((edges[:-1] + self.utc_offset_s) % DAY_S) // 3600).astype(np.int64)
        ]
        cum_f = np.zeros((n + 1, 4))
        cum_r = np.zeros((n + 1, 4))
        factor = self.faults.factor * (self.errors.energy_gain if self.errors is not None else 1.0)
        if self._flowing() and factor > 0:
            mids = (edges[:-1] + edges[1:]) / 2.0 - skew
            e = sample_power(self.profile, mids) * factor * np.diff(edges) / 3600.0
            onehot = np.zeros((n, 4))
            onehot[np.arange(n), tariff - 1] = 1.0
            cum_f[1:] = np.cumsum(np.clip(e, 0.0, None)[:, None] * onehot, axis=0)
            cum_r[1:] = np.cumsum(np.clip(-e, 0.0, None)[:, None] * onehot, axis=0)
        base_f, base_r = self._state.forward.copy(), self._state.reverse.copy()
        curve_idx = np.nonzero(np.mod(edges[1:], CURVE_PERIOD_S) == 0)[0] + 1
        # (only when a curve point closes in this chunk: most chunks end at a read between two)
        instants = self._instants(edges[curve_idx] - skew) if self.on and len(curve_idx) else []
        for k, i in enumerate(curve_idx):
            self._close_point(
                float(edges[i]), base_f + cum_f[i], base_r + cum_r[i], instants[k] if self.on else None
            )
        if self.credit_yuan is not None:
            used = (cum_f[-1] * np.asarray(self.prices)).sum()
            self.credit_yuan -= float(used)
        self._state.forward = base_f + cum_f[-1]
        self._state.reverse = base_r + cum_r[-1]

    def _close_point(
        self, mt: float, forward: Sequence[float], reverse: Sequence[float], instant: Instant | None
    ) -> None:
        """A 15-min boundary of the meter's clock ``mt`` passed with these tariff registers: its
        curve point (``instant`` None: the meter is off, no point), and at local midnight the
        daily freeze."""
        reg = Registers(_block(forward), _block(reverse))
        if (mt + self.utc_offset_s) % DAY_S == 0:
            self.daily_freezes.appendleft(Freeze(ts=mt, registers=reg))
        if instant is not None:
            self.curve.append(
                CurvePoint(ts=mt, instant=instant, forward_total=reg.forward[0], reverse_total=reg.reverse[0])
            )

    def _advance_few(self, edges: list[float]) -> None:
        """``_advance_chunk`` of a chunk of a few steps (the common case: a read a few seconds or
        minutes after the last), on Python floats: numpy's per-call overhead is most of the cost
        at this size. The same operations in the same order, so the same bits: the midpoint
        energy of each step summed per tariff onto the registers, a curve point at each 15-min
        boundary."""
        skew = self.skew_s
        n = len(edges) - 1
        factor = self.faults.factor * (self.errors.energy_gain if self.errors is not None else 1.0)
        flowing = self._flowing() and factor > 0
        power: list[float] = []
        if flowing:
            mids = [(edges[i] + edges[i + 1]) / 2.0 - skew for i in range(n)]
            if n <= FEW_SAMPLES:  # a LoadProfile's one-instant methods give its arrays' values
                power = [self.profile.power_kw(m) for m in mids]
            else:
                power = sample_power(self.profile, np.array(mids, dtype=np.float64)).tolist()
        tou, offset = self.tou, self.utc_offset_s
        base_f, base_r = self._state.forward.tolist(), self._state.reverse.tolist()
        forward, reverse = [0.0] * 4, [0.0] * 4
        for i in range(n):
            if flowing:
                e = power[i] * factor * (edges[i + 1] - edges[i]) / 3600.0
                tariff = tou[int(((edges[i] + offset) % DAY_S) // 3600)] - 1
                if e > 0.0:
                    forward[tariff] += e
                elif e < 0.0:
                    reverse[tariff] -= e
            mt = edges[i + 1]
            if mt % CURVE_PERIOD_S == 0:
                self._close_point(
                    mt,
                    [b + x for b, x in zip(base_f, forward, strict=True)],
                    [b + x for b, x in zip(base_r, reverse, strict=True)],
                    self._instant(mt - skew) if self.on else None,
                )
        if not flowing:
            return  # nothing registered (the numpy path adds zeros)
        if self.credit_yuan is not None:
            self.credit_yuan -= float((np.array(forward) * np.asarray(self.prices)).sum())
        self._state.forward = self._state.forward + np.array(forward)
        self._state.reverse = self._state.reverse + np.array(reverse)

    # -- readings -----------------------------------------------------------------------------------
    def registers(self, t: float) -> Registers:
        self.advance(t)
        return Registers(_block(self._state.forward), _block(self._state.reverse))

    def instant(self, t: float) -> Instant:
        self.advance(t)
        return self._instant(t)

    def _instant(self, t: float) -> Instant:
        if self.phase == "ABC":
            return self._instants(np.array([t], dtype=np.float64))[0]
        return self._instant_one_phase(t)

    def _instant_one_phase(self, t: float) -> Instant:
        """``_instants`` of one instant of a single-phase meter, on Python floats (each read takes
        one; numpy's per-call overhead was most of its cost): the same operations in the same
        order, so the same bits."""
        profile = self.profile  # a LoadProfile's one-instant methods give its arrays' values
        flow = 1.0 if self._flowing() else 0.0
        p = profile.power_kw(t) * flow
        q = profile.reactive_kvar(t) * flow
        s = float(np.hypot(p, q))
        pf = abs(p) / s if s > 0 else 1.0
        freq = float(50.0 + 0.03 * np.sin(t / 97.0) + 0.01 * np.sin(t / 13.0))
        v = profile.voltage_v(t, self.phase)
        amps = p * 1000.0 / (v * pf) if v * pf > 0 else 0.0
        errors = self.errors
        if errors is not None:
            amps = errors.current_at(amps, t)
            v, p = errors.voltage_at(v, t), errors.power_at(p, t)
        return Instant(
            voltage=(v, None, None),
            current=(amps, None, None),
            power_kw=(p, None, None),
            total_power_kw=p,
            reactive_kvar=q,
            power_factor=pf,
            frequency_hz=freq,
        )

    def _instants(self, t: FloatArray) -> list[Instant]:
        flow = 1.0 if self._flowing() else 0.0  # register faults do not touch the front end
        p = sample_power(self.profile, t) * flow
        q = sample_reactive(self.profile, t) * flow
        s = np.hypot(p, q)
        pf = np.where(s > 0, np.abs(p) / np.where(s > 0, s, 1.0), 1.0)
        freq = 50.0 + 0.03 * np.sin(t / 97.0) + 0.01 * np.sin(t / 13.0)
        split = sample_phase_power(self.profile, t) if self.phase == "ABC" else None
        if split is not None:  # a profile that knows its phases (branch head, meter box)
            phases = [(sample_voltage(self.profile, t, ph), split[:, j] * flow) for j, ph in enumerate("ABC")]
            amps = _phase_amps(phases, q, sample_phase_reactive(self.profile, t))
        else:
            if self.phase == "ABC":
                phases = [
                    (sample_voltage(self.profile, t, ph), p * w)
                    for ph, w in zip("ABC", self._phase_weights, strict=True)
                ]
            else:
                # A single-phase meter does not know its phase: it reports in the A slot.
                phases = [(sample_voltage(self.profile, t, self.phase), p)]
            # no voltage (an outage inside a curve step): no current, not a division by zero
            amps = [
                np.divide(pw * 1000.0, v * pf, out=np.zeros_like(v * pf), where=v * pf > 0)
                for v, pw in phases
            ]
        errors = self.errors
        if errors is not None:  # what the instrument makes of the true values
            amps = [errors.current(a, t, ph) for ph, a in enumerate(amps)]
            phases = [
                (errors.voltage(v, t, ph), errors.power(pw, t, ph)) for ph, (v, pw) in enumerate(phases)
            ]
            p = sum(pw for _, pw in phases) if self.phase == "ABC" else phases[0][1]
        out = []
        for k in range(len(t)):
            volts = [float(v[k]) for v, _ in phases]
            pws = [float(pw[k]) for _, pw in phases]
            cur = [float(a[k]) for a in amps]
            out.append(
                Instant(
                    voltage=_pad3(volts),
                    current=_pad3(cur),
                    power_kw=_pad3(pws),
                    total_power_kw=float(p[k]),
                    reactive_kvar=float(q[k]),
                    power_factor=float(pf[k]),
                    frequency_hz=float(freq[k]),
                )
            )
        return out

    def curve_since(self, meter_epoch: float, count: int) -> list[CurvePoint]:
        """Up to ``count`` curve points at or after ``meter_epoch`` (meter clock), oldest first."""
        return self.curve.since(meter_epoch, count)

    # -- events -------------------------------------------------------------------------------------
    def power_off(self, t: float) -> None:
        """Supply lost: the meter stops answering and records the start of a power-down."""
        if not self.on:
            return
        self.advance(t)
        self.on = False
        self.power_down_count += 1
        self.power_downs.appendleft(PowerDown(start=self.meter_time(t)))

    def power_on(self, t: float) -> None:
        """Supply back: end the power-down record and raise report bit 69."""
        if self.on:
            return
        self.advance(t)
        self.on = True
        if self.power_downs and self.power_downs[0].end is None:
            self.power_downs[0].end = self.meter_time(t)
        self.report_status |= 1 << REPORT_BIT_POWER_DOWN

    def _set_relay(self, closed: bool, t: float) -> None:
        if self.relay_closed == closed:
            return
        self.relay_closed = closed
        self.relay_changed_at = t
        if self.on_relay is not None:
            self.on_relay()
        if closed:
            self.report_status |= 1 << REPORT_BIT_RELAY_CLOSE
        else:
            self.relay_trip_count += 1
            self.report_status |= 1 << REPORT_BIT_RELAY_TRIP

    def trip(self, t: float) -> None:
        """跳闸 (1AH): refused under keep-power."""
        if self.keep_power:
            raise RelayRefused("keep-power (保电) is active")
        self.advance(t)
        self.relay_trip_command = True
        self._press_at = None
        self._set_relay(False, t)

    def close(self, t: float) -> None:
        """直接合闸 (1CH): the relay closes now."""
        self.advance(t)
        self.relay_trip_command = False
        self._press_at = None
        self._set_relay(True, t)

    def allow_close(self, t: float) -> None:
        """合闸允许 (1BH): the trip command is lifted; the relay closes when the customer presses
        the meter's button, ``button_delay_s`` later (never when that is None)."""
        self.advance(t)
        self.relay_trip_command = False
        if not self.relay_closed and self._press_at is None and self.button_delay_s is not None:
            self._press_at = t + self.button_delay_s
            if self.on_relay is not None:
                self.on_relay()

    @property
    def press_due(self) -> float | None:
        """When the customer will press the button (close allowed, relay still open), if ever."""
        return self._press_at

    def settle(self, t: float) -> None:
        """Apply what has happened by ``t`` without a reading (a button press that is due)."""
        if self._press_at is not None and self._press_at <= t:
            self.advance(t)

    def press_button(self, t: float) -> None:
        """The customer presses the button: closes the relay if closing is allowed."""
        self.advance(t)
        if not self.relay_trip_command:
            self._press_at = None
            self._set_relay(True, t)

    def set_alarm(self, on: bool, t: float) -> None:
        """报警 (2AH) / 报警解除 (2BH)."""
        self.advance(t)
        self.alarm = on

    def set_keep_power(self, on: bool, t: float) -> None:
        self.advance(t)
        self.keep_power = on

    def freeze_now(self, t: float) -> Freeze:
        self.advance(t)
        frz = Freeze(ts=self.meter_time(t), registers=self.registers(t))
        self.instant_freezes.appendleft(frz)
        return frz

    def clear_report(self, keep_mask: int) -> None:
        """Write 04001503: bits that are 0 in ``keep_mask`` are cleared."""
        self.report_status &= keep_mask

    def status_word3(self) -> int:
        word = 0
        if not self.relay_closed:
            word |= SW3_RELAY_OPEN
        if self.relay_trip_command:
            word |= SW3_RELAY_TRIP_COMMAND
        if self.alarm:
            word |= SW3_PRE_TRIP_ALARM
        if self.credit_yuan is not None:
            word |= SW3_MONEY_PREPAID
        if self.keep_power:
            word |= SW3_KEEP_POWER
        return word

    def check_password(self, level: int, password: str) -> bool:
        return self.passwords.get(level) == password

    def misses(self) -> bool:
        """Draw once per request addressed to this meter: True = it does not answer."""
        if self.faults.mute:
            return True
        if self.faults.miss_rate <= 0:
            return False
        if self._draws is None:  # from here on ``rng`` is drawn through it (a block at a time)
            self._draws = Draws(self.rng)
        return self._draws.next() < self.faults.miss_rate


def _block(tariffs: Sequence[float] | FloatArray) -> tuple[float, float, float, float, float]:
    t1, t2, t3, t4 = (float(x) for x in tariffs)
    return (t1 + t2 + t3 + t4, t1, t2, t3, t4)


def _phase_amps(
    phases: list[tuple[FloatArray, FloatArray]], q: FloatArray, q3: FloatArray | None
) -> list[FloatArray]:
    """Per-phase current of a device whose profile splits its power by phase (a branch head, a
    meter box): each phase's own apparent power over its voltage, signed as its active power
    (negative = export). The reactive power per phase is the profile's (``q3``) or else the
    total shared in proportion to each phase's active power: the total's power factor would blow
    the currents up when the phases' flows cancel (PV export on one phase, load on the others)."""
    p3 = np.stack([pw for _, pw in phases], axis=1)
    if q3 is None:
        weight = np.abs(p3).sum(axis=1, keepdims=True)
        share = np.divide(np.abs(p3), weight, out=np.full_like(p3, 1.0 / 3.0), where=weight > 0)
        q3 = q[:, None] * share
    out = []
    for j, (v, pw) in enumerate(phases):
        s = np.hypot(pw, q3[:, j]) * np.where(pw < 0, -1.0, 1.0)
        out.append(np.divide(s * 1000.0, v, out=np.zeros_like(v), where=v > 0))
    return out


def _pad3(values: Sequence[float]) -> tuple[float | None, float | None, float | None]:
    padded: list[float | None] = [*values, None, None, None]
    return (padded[0], padded[1], padded[2])


__all__ = [
    "DEFAULT_BUTTON_DELAY_S",
    "DEFAULT_CREDIT_LIMITS",
    "DEFAULT_TOU",
    "FLAT",
    "PEAK",
    "SHARP",
    "VALLEY",
    "CurveMemory",
    "CurvePoint",
    "Faults",
    "Freeze",
    "Instant",
    "Phase",
    "PowerDown",
    "Registers",
    "RelayRefused",
    "VirtualMeter",
]
