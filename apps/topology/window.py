"""The rolling window of curve points the identification works on, fed from the bus.

Layer: apps (topology). Pure state (numpy), no I/O: the service feeds it what acquisition
publishes and saves/loads it through the app's store. Must not read meters.

Per device it keeps, at each 15-minute point, the meter's own curve record (``meter/<id>/curve``:
voltage and current of each phase slot, import and export energy registers); for the
transformer, the metrology unit's snapshots (``meter/transformer/reading``, every realtime cycle)
integrated into per-phase energy per interval, and its phase voltages at the points. A ring of
``keep_points`` points per device bounds memory (float32 values of the quantities the device
gives -- 4 x 4 bytes a point for a single-phase meter, 8 x 4 for a three-phase one -- and an
int32 slot number).

Held and past points (``hold``): the daily run and the checks only read the newest day, so a
window told to hold ``points`` keeps only the newest blocks of ``BLOCK`` points per device in
memory; a block leaving memory, and a late point for such a block, go to ``pending`` (full
rows, NaN = not known), which the service writes to its store (``encode_block``/``merge_block``)
and reads back for a longer window (``curves(..., past=...)``). What ``curves`` returns is the
same as a window holding every point in memory. A point older than ``keep_points`` behind the
newest block is dropped (``too_old``). A held window's rows stand for the same slot in every
device's ring, so the rings share one slot array (a block leaving memory is emptied in all of
them): 16 bytes a point for a single-phase meter. A held window's devices are rows of one
array per set of stored columns (``_Tables``: no ring object or array header a device).
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from .inputs import Curves
from .numeric import FArray

STEP_S = 900
QUANTITIES = (
    "voltage.a", "voltage.b", "voltage.c", "current.a", "current.b", "current.c",
    "energy.active.import.total", "energy.active.export.total",
)  # fmt: skip
_COLUMN = {q: k for k, q in enumerate(QUANTITIES)}
TRANSFORMER = "transformer"
#: an interval counts when the transformer's snapshots cover this share of it
COVERAGE_MIN = 0.8
#: the longest gap between two snapshots still integrated [s]
GAP_MAX_S = 300.0
#: a snapshot this close to a 15-min point gives that point's voltages [s]
POINT_TOLERANCE_S = 30.0
#: points of a block: the unit in which a held window moves past points to the store (4 h)
BLOCK = 16
#: rows a held window's table of devices grows by
TABLE_GROWTH = 64
#: a block's rows of each device: block number -> device -> (BLOCK, len(QUANTITIES)) float32
Blocks = dict[int, dict[str, np.ndarray]]


#: a window's column lists: column indices -> the one list of them its rings share (``_shared_columns``;
#: a set of the 8 quantities: at most 256 entries). Each ``Window`` holds its own (``Window.column_lists``)
ColumnLists = dict[tuple[int, ...], list[int]]


def _shared_columns(lists: ColumnLists, columns: Iterable[int]) -> list[int]:
    """The one list of these column indices every ring of the window owning ``lists`` storing them
    shares (thousands of rings store one of a few sets: a list each was ~90 bytes a device)."""
    key = tuple(columns)
    return lists.setdefault(key, list(key))


class _Ring:
    """``keep`` points of one device: slot numbers and their values (NaN = not known).

    ``columns`` are the indices (into the device's full row) the ring stores, ascending; a column
    never given a value is not stored at all (a single-phase meter has no voltage or current on
    phases b and c: 20 bytes a point instead of 36) and reads back as NaN, as a stored column
    does at a slot it was not given. ``set`` adds a column when its first value arrives.
    ``lists``: the owning window's ``column_lists`` (passed in: a ring keeps no reference to it)."""

    __slots__ = ("columns", "slots", "values", "width")

    def __init__(
        self,
        keep: int,
        width: int,
        lists: ColumnLists,
        columns: Sequence[int] | None = None,
        *,
        slots: np.ndarray | None = None,
    ) -> None:
        self.width = width
        #: one list for every ring storing the same columns (never changed in place: ``_add_column``)
        self.columns: list[int] = _shared_columns(lists, range(width) if columns is None else sorted(columns))
        # 15-min slot numbers (~2e6 today): int32 holds them; a held window's rings share one array
        self.slots = np.full(keep, -1, dtype=np.int32) if slots is None else slots
        self.values = np.full((keep, len(self.columns)), np.nan, dtype=np.float32)

    def _at(self, slot: int) -> int:
        """The ring row of ``slot``, emptied when it held an older slot."""
        k = slot % len(self.slots)
        if self.slots[k] != slot:
            self.slots[k] = slot
            self.values[k] = np.nan
        return k

    def row(self, slot: int) -> np.ndarray:
        """The stored values at ``slot`` (a view: every column when the ring stores all)."""
        row: np.ndarray = self.values[self._at(slot)]
        return row

    def set(self, slot: int, column: int, value: float, lists: ColumnLists) -> None:
        """Column ``column`` of the full row at ``slot``."""
        try:
            j = self.columns.index(column)
        except ValueError:
            j = self._add_column(column, lists)
        self.values[self._at(slot), j] = value

    def _add_column(self, column: int, lists: ColumnLists) -> int:
        j = int(np.searchsorted(self.columns, column))
        self.columns = _shared_columns(lists, [*self.columns[:j], column, *self.columns[j:]])
        self.values = np.insert(self.values, j, np.float32(np.nan), axis=1)
        return j

    def block_rows(self, block: int) -> np.ndarray | None:
        """Full rows (float32, NaN = not known) of ``block``'s slots; None when it holds none."""
        slots = block * BLOCK + np.arange(BLOCK)
        k = slots % len(self.slots)
        held = self.slots[k] == slots
        if not held.any():
            return None
        out = np.full((BLOCK, self.width), np.nan, dtype=np.float32)
        out[:, self.columns] = self.values[k]
        out[~held] = np.nan
        return None if np.isnan(out).all() else out  # nothing known (a held window's slots are shared)

    def get(self, slots: np.ndarray) -> np.ndarray:
        """Full rows (every column, float64) at ``slots``: NaN where not known."""
        k = slots % len(self.slots)
        out = np.full((len(slots), self.width), np.nan)
        out[:, self.columns] = self.values[k]
        out[self.slots[k] != slots] = np.nan
        return out

    def full_values(self) -> np.ndarray:
        """The ring's values with every column (float32; NaN in the columns not stored)."""
        if len(self.columns) == self.width:
            return self.values
        out = np.full((len(self.slots), self.width), np.nan, dtype=np.float32)
        out[:, self.columns] = self.values
        return out

    @classmethod
    def from_full(cls, slots: np.ndarray, values: np.ndarray, lists: ColumnLists, *, compact: bool) -> _Ring:
        """A ring of ``values`` (keep, width); ``compact``: storing only the columns holding a value."""
        keep, width = values.shape
        kept = [c for c in range(width) if not (compact and np.isnan(values[:, c]).all())]
        ring = cls(keep, width, lists, kept)
        ring.slots[:] = slots
        ring.values[:] = values[:, kept]
        return ring


class _Table:
    """The rows of every device of a held window that stores one set of ``columns``: one float32
    array ``(devices, held, len(columns))`` (a device is a row of it), not a ``_Ring`` and an
    array a device (~0.15 kB of headers each). A row given back is emptied and used again; the
    array grows by ``TABLE_GROWTH`` rows and is dropped when all are free."""

    __slots__ = ("columns", "free", "values")

    def __init__(self, held: int, columns: list[int]) -> None:
        self.columns = columns
        self.values = np.full((0, held, len(columns)), np.nan, dtype=np.float32)
        self.free: list[int] = []

    def take(self) -> int:
        """A free row (all NaN)."""
        if not self.free:
            have, held, width = self.values.shape
            more = TABLE_GROWTH  # (at most TABLE_GROWTH - 1 rows unused; copied ~35 times to 2,200)
            grown = np.full((have + more, held, width), np.nan, dtype=np.float32)
            grown[:have] = self.values
            self.values = grown
            self.free = list(range(have + more - 1, have - 1, -1))  # the lowest row first
        return self.free.pop()

    def give(self, row: int) -> None:
        """``row`` is free again; a table whose rows are all free keeps no array (the tables of
        a device's first columns, before the rest of its record arrives, are empty again)."""
        self.values[row] = np.nan
        self.free.append(row)
        if len(self.free) == len(self.values):
            self.values = np.full((0, *self.values.shape[1:]), np.nan, dtype=np.float32)
            self.free = []


class _Tables:
    """The devices of a held window: device -> its row in the ``_Table`` of the columns it stores
    (one int a device). Reads like a ``dict[str, _Ring]`` whose rings are views of a row sharing
    the window's slot array; ``set`` adds a point (moving the device to another table when it
    gives a new column, as ``_Ring.set`` widens a ring). ``lists``: the window's ``column_lists``."""

    __slots__ = ("_by_columns", "_lists", "_tables", "_where", "slots")

    def __init__(self, slots: np.ndarray, lists: ColumnLists) -> None:
        self.slots = slots
        self._lists = lists
        self._tables: list[_Table] = []
        self._by_columns: dict[tuple[int, ...], int] = {}
        # device -> row << 8 | table number (8 quantities: at most 256 column sets, one byte)
        self._where: dict[str, int] = {}

    def _table(self, columns: Sequence[int]) -> int:
        key = tuple(columns)
        t = self._by_columns.get(key)
        if t is None:
            t = self._by_columns[key] = len(self._tables)
            self._tables.append(_Table(len(self.slots), _shared_columns(self._lists, key)))
        return t

    def _ring(self, code: int) -> _Ring:
        table = self._tables[code & 0xFF]
        ring = _Ring.__new__(_Ring)
        ring.width = len(QUANTITIES)
        ring.columns = table.columns
        ring.slots = self.slots
        ring.values = table.values[code >> 8]
        return ring

    def add(self, device: str, columns: Sequence[int]) -> _Ring:
        """A new device storing ``columns`` (all NaN)."""
        t = self._table(columns)
        self._where[device] = self._tables[t].take() << 8 | t
        return self._ring(self._where[device])

    def set(self, device: str, slot: int, column: int, value: float) -> None:
        """Column ``column`` of ``device``'s full row at ``slot`` (a new device when unknown)."""
        code = self._where.get(device)
        if code is None:
            self.add(device, ())
            code = self._where[device]
        table, row = self._tables[code & 0xFF], code >> 8
        k = slot % len(self.slots)
        if self.slots[k] != slot:
            self.slots[k] = slot
            table.values[row, k] = np.nan
        try:
            j = table.columns.index(column)
        except ValueError:
            columns = sorted([*table.columns, column])
            t = self._table(columns)
            wider = self._tables[t]
            new_row = wider.take()
            keep = [columns.index(c) for c in table.columns]
            wider.values[new_row][:, keep] = table.values[row]
            table.give(row)
            self._where[device] = new_row << 8 | t
            table, row, j = wider, new_row, columns.index(column)
        table.values[row, k, j] = value

    def empty_rows(self, at: np.ndarray) -> None:
        """Rows ``at`` of every device emptied (NaN)."""
        for table in self._tables:
            table.values[:, at] = np.nan

    def get(self, device: str) -> _Ring | None:
        code = self._where.get(device)
        return None if code is None else self._ring(code)

    def __getitem__(self, device: str) -> _Ring:
        return self._ring(self._where[device])

    def __contains__(self, device: object) -> bool:
        return device in self._where

    def __iter__(self) -> Iterator[str]:
        return iter(self._where)

    def __len__(self) -> int:
        return len(self._where)

    def items(self) -> Iterator[tuple[str, _Ring]]:
        return ((d, self._ring(code)) for d, code in self._where.items())

    def values(self) -> Iterator[_Ring]:
        return (self._ring(code) for code in self._where.values())


class Window:
    """Curve points of every device and the transformer's per-phase energy, by 15-min slot."""

    def __init__(self, *, keep_points: int = 4 * 96 + 8) -> None:
        self.keep = keep_points
        #: device points held in memory (``hold``): ``keep`` unless told fewer
        self.held = keep_points
        #: the newest block a device point fell in (-1: none yet); only tracked when held < keep
        self._newest_block = -1
        #: rows of blocks no longer held, not yet in the store (``take_pending``)
        self.pending: Blocks = {}
        #: a held window's slot of each ring row, one array for every device (``_share_slots``)
        self._held_slots: np.ndarray | None = None
        self.too_old = 0
        #: every device's ring; a held window's are rows of tables (``_Tables``)
        self._devices: dict[str, _Ring] | _Tables = {}
        #: the column lists this window's rings share (``_shared_columns``): its own, so two windows
        #: in one process share none and they go with the window
        self.column_lists: ColumnLists = {}
        # transformer: per slot the integrated energy per phase, the seconds covered, voltages
        self._energy = _Ring(keep_points, 4, self.column_lists)
        self._volts = _Ring(keep_points, 3, self.column_lists)
        self._last_snapshot: tuple[float, np.ndarray] | None = None
        self.points_added = 0
        self.ignored = 0

    # -- feeding ----------------------------------------------------------------------------------
    def add_curve(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Readings of one or more meters' own curve records (``Reading.to_json`` dicts)."""
        for r in rows:
            try:
                device, quantity, ts, value = (
                    str(r["device"]),
                    str(r["quantity"]),
                    float(r["ts"]),
                    float(r["value"]),
                )
            except (KeyError, TypeError, ValueError):
                self.ignored += 1
                continue
            col = _COLUMN.get(quantity)
            if col is None or ts % STEP_S:
                continue
            slot = int(ts // STEP_S)
            if self.held < self.keep and not self._place(slot):
                past = self._past_row(device, slot)
                if past is not None:
                    past[col] = value
                    self.points_added += 1
                continue
            if isinstance(self._devices, _Tables):
                self._devices.set(device, slot, col, value)
            else:
                ring = self._devices.get(device)
                if ring is None:
                    ring = self._devices[device] = _Ring(self.held, len(QUANTITIES), self.column_lists, ())
                ring.set(slot, col, value, self.column_lists)
            self.points_added += 1

    # -- held and past points ---------------------------------------------------------------------
    @property
    def _blocks_held(self) -> int:
        return self.held // BLOCK

    @property
    def _blocks_kept(self) -> int:
        """Blocks back from the newest still answered (held or in the store): ``keep`` points."""
        return -(-self.keep // BLOCK) + 1

    def oldest_held(self) -> int | None:
        """The first slot held in memory (older ones: ``pending`` or the store); None: all held."""
        if self.held >= self.keep or self._newest_block < 0:
            return None
        return (self._newest_block - self._blocks_held + 1) * BLOCK

    def oldest_kept_block(self) -> int:
        """Blocks before this one are forgotten (the store may delete them)."""
        return self._newest_block - self._blocks_kept + 1

    def _place(self, slot: int) -> bool:
        """True when ``slot`` belongs in memory; blocks pushed out by it go to ``pending`` first."""
        block = slot // BLOCK
        newest = self._newest_block
        if block > newest:
            if newest >= 0:
                first_gone = newest - self._blocks_held + 1
                for b in range(first_gone, min(newest, block - self._blocks_held) + 1):
                    self._chill(b)
            self._newest_block = block
            return True
        return block > newest - self._blocks_held

    def _chill(self, block: int) -> None:
        """``block``'s rows to ``pending``, and emptied in every ring: a row of a held window is
        then either empty or the slot its shared slot number says, for every device alike."""
        rows: dict[str, np.ndarray] = {}
        at = (block * BLOCK + np.arange(BLOCK)) % self.held
        for device, ring in self._devices.items():
            got = ring.block_rows(block)
            if got is not None:
                rows[device] = got
            ring.values[at] = np.nan
        if rows:
            merge_block(self.pending.setdefault(block, {}), rows)

    def _past_row(self, device: str, slot: int) -> np.ndarray | None:
        """The pending full row of a slot no longer held (None: older than kept, counted)."""
        block = slot // BLOCK
        if block < self.oldest_kept_block():
            self.too_old += 1
            return None
        rows = self.pending.setdefault(block, {})
        if device not in rows:
            rows[device] = np.full((BLOCK, len(QUANTITIES)), np.nan, dtype=np.float32)
        row: np.ndarray = rows[device][slot % BLOCK]
        return row

    def _share_slots(self) -> None:
        """After loading a held window: one slot array for every ring (each row the slot of the
        held range it stands for); a row a ring held for another slot (an older one, given to
        the store when its block left) is emptied."""
        shared = np.full(self.held, -1, dtype=np.int32)
        if self._newest_block >= 0:
            held_slots = self._newest_block * BLOCK + BLOCK - self.held + np.arange(self.held)
            rows = held_slots % self.held
            given = np.zeros(self.held, dtype=bool)  # a row some ring holds its held slot in
            for ring in self._devices.values():
                given |= ring.slots[rows] == held_slots
            shared[rows[given]] = held_slots[given]
        tables = _Tables(shared, self.column_lists)
        for device, ring in self._devices.items():
            ring.values[ring.slots != shared] = np.nan
            tables.add(device, ring.columns).values[:] = ring.values
        self._devices = tables
        self._held_slots = shared

    def take_pending(self) -> Blocks:
        """The rows waiting for the store, handed over (the window forgets them)."""
        pending, self.pending = self.pending, {}
        return pending

    def hold(self, points: int) -> None:
        """Hold in memory only the blocks needed to answer ``points`` points back from the newest;
        what a ring held before that is older goes to ``pending``. No-op when that holds no fewer
        (a window never holds more again: what it gave away is in the store, read back from there)."""
        rows = BLOCK * (-(-max(points - 1, 0) // BLOCK) + 1)
        if rows >= self.held:
            return
        best = max((int(r.slots.max()) for r in self._devices.values()), default=-1)
        rings = self._devices
        self.held = rows
        self._newest_block = best // BLOCK if best >= 0 else -1
        self._held_slots = np.full(rows, -1, dtype=np.int32)
        tables = self._devices = _Tables(self._held_slots, self.column_lists)
        for device, ring in rings.items():
            fresh = tables.add(device, ring.columns)
            for k in np.argsort(ring.slots, kind="stable"):
                slot = int(ring.slots[k])
                if slot < 0:
                    continue
                if self._place(slot):
                    fresh.values[fresh._at(slot)] = ring.values[k]
                    continue
                past = self._past_row(device, slot)
                if past is not None:
                    known = ~np.isnan(ring.values[k])
                    past[np.asarray(ring.columns, dtype=np.intp)[known]] = ring.values[k][known]

    def add_transformer(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """One metrology snapshot (readings of device ``transformer`` at one instant): its
        per-phase power is integrated since the previous snapshot; at a 15-min point its
        voltages are kept."""
        power = np.full(3, np.nan)
        volts = np.full(3, np.nan)
        ts: float | None = None
        for r in rows:
            try:
                quantity, value, ts = str(r["quantity"]), float(r["value"]), float(r["ts"])
            except (KeyError, TypeError, ValueError):
                self.ignored += 1
                continue
            for k, ph in enumerate("abc"):
                if quantity == f"power.active.{ph}":
                    power[k] = value
                elif quantity == f"voltage.{ph}":
                    volts[k] = value
        if ts is not None:
            self.add_snapshot(ts, power, volts)

    def add_snapshot(
        self, ts: float, power: Sequence[float | None] | FArray, volts: Sequence[float | None] | FArray
    ) -> None:
        """Per-phase active power [kW] and voltages [V] of the transformer at ``ts``: the power is
        integrated since the previous snapshot (it holds until this one); voltages are kept at a
        15-min point (a snapshot within ``POINT_TOLERANCE_S`` of it)."""
        p = np.array([np.nan if x is None else float(x) for x in power])
        v = np.array([np.nan if x is None else float(x) for x in volts])
        if not np.isfinite(p).all() or len(p) != 3:
            self.ignored += 1
            return
        point = round(ts / STEP_S)
        if abs(ts - point * STEP_S) <= POINT_TOLERANCE_S and len(v) == 3:
            self._volts.row(point)[:] = v
        prev = self._last_snapshot
        self._last_snapshot = (ts, p)
        if prev is None or not 0 < ts - prev[0] <= GAP_MAX_S:
            return
        t0, p0 = prev
        while t0 < ts:
            slot = int(t0 // STEP_S)
            t1 = min(ts, (slot + 1) * STEP_S)
            row = self._energy.row(slot)
            if np.isnan(row[3]):
                row[:] = 0.0
            row[:3] += (p0 * (t1 - t0) / 3600.0).astype(np.float32)
            row[3] += t1 - t0
            t0 = t1

    # -- reading ----------------------------------------------------------------------------------
    def devices(self) -> list[str]:
        return sorted(self._devices)

    def latest(self) -> float | None:
        """The newest point any device has (UTC epoch)."""
        best = max((int(r.slots.max()) for r in self._devices.values()), default=-1)
        return None if best < 0 else float(best * STEP_S)

    def curves(
        self, devices: Sequence[str], first: float, points: int, *, past: Blocks | None = None
    ) -> Curves:
        """Aligned curves of ``devices`` at ``points`` points from ``first`` (a 15-min point);
        ``past``: the rows of the blocks no longer held that the points reach (from the store)."""
        slots = int(first // STEP_S) + np.arange(points, dtype=np.int64)
        oldest = self.oldest_held()
        old = None if oldest is None else slots < oldest
        if old is not None and not old.any():
            old = None
        n = len(devices)
        volt = np.full((points, n, 3), np.nan)
        cur = np.full((points, n, 3), np.nan)
        energy = np.full((max(points - 1, 0), n), np.nan)
        for j, d in enumerate(devices):
            ring = self._devices.get(d)
            if ring is not None:
                v = ring.get(slots)
            elif old is not None and any(d in rows for rows in (past or {}).values()):
                v = np.full((points, len(QUANTITIES)), np.nan)  # only past points of this device
            else:
                continue
            if old is not None:
                v[old] = np.nan
                for b, rows in (past or {}).items():
                    got = rows.get(d)
                    if got is not None:
                        at = (slots >= b * BLOCK) & (slots < (b + 1) * BLOCK) & old
                        v[at] = got[slots[at] - b * BLOCK]
            volt[:, j, :] = v[:, 0:3]
            cur[:, j, :] = v[:, 3:6]
            net = v[:, 6] - np.nan_to_num(v[:, 7])
            energy[:, j] = _spread(net)
        times = slots.astype(np.float64) * STEP_S
        return Curves(times=times, devices=tuple(devices), voltage=volt, current=cur, energy=energy)

    def transformer(self, first: float, points: int) -> tuple[FArray, FArray]:
        """Per-phase energy per interval (points - 1, 3) and voltages at the points (points, 3)."""
        slots = int(first // STEP_S) + np.arange(points, dtype=np.int64)
        e = self._energy.get(slots[:-1])
        energy = np.where(
            (e[:, 3] >= COVERAGE_MIN * STEP_S)[:, None],
            e[:, :3] * STEP_S / np.maximum(e[:, 3:4], 1.0),
            np.nan,
        )
        return energy, self._volts.get(slots)

    # -- persistence ------------------------------------------------------------------------------
    def to_json(self) -> dict[str, Any]:
        def ring(r: _Ring) -> dict[str, str]:
            return {
                "slots": base64.b64encode(r.slots.astype(np.int64).tobytes()).decode(),  # saved as before
                "values": base64.b64encode(r.full_values().tobytes()).decode(),  # every column, as before
            }

        return {
            "keep": self.keep,
            "held": self.held,
            "devices": {d: ring(r) for d, r in self._devices.items()},
            "energy": ring(self._energy),
            "volts": ring(self._volts),
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> Window:
        """A window saved by ``to_json``; ValueError when the document is not one."""
        try:
            keep = int(doc["keep"])
            held = int(doc.get("held", keep))  # saved before ``hold``: every point held
            if not 0 < held <= keep or (held < keep and held % BLOCK):
                raise ValueError(f"holds {held} of {keep} points")
            w = cls(keep_points=keep)

            def load(data: Mapping[str, str], width: int, rows: int, *, compact: bool = False) -> _Ring:
                slots = np.frombuffer(base64.b64decode(data["slots"]), dtype=np.int64)
                values = np.frombuffer(base64.b64decode(data["values"]), dtype=np.float32)
                if len(slots) != rows:
                    raise ValueError(f"{len(slots)} slots, the window keeps {rows}")
                return _Ring.from_full(slots, values.reshape(rows, width), w.column_lists, compact=compact)

            w._devices = {
                str(d): load(data, len(QUANTITIES), held, compact=True) for d, data in doc["devices"].items()
            }
            w._energy = load(doc["energy"], 4, keep)
            w._volts = load(doc["volts"], 3, keep)
            if held < keep:
                w.held = held
                best = max((int(r.slots.max()) for r in w._devices.values()), default=-1)
                w._newest_block = best // BLOCK if best >= 0 else -1
                w._share_slots()
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"saved window unreadable: {err}") from err
        return w


def encode_block(rows: Mapping[str, np.ndarray]) -> dict[str, str]:
    """A block's rows for the store: per device its full rows, float32, base64."""
    return {
        d: base64.b64encode(np.ascontiguousarray(v, dtype=np.float32).tobytes()).decode()
        for d, v in rows.items()
    }


def decode_block(doc: Any) -> dict[str, np.ndarray]:
    """``encode_block``'s document back (empty when it is not one)."""
    if not isinstance(doc, dict):
        return {}
    out: dict[str, np.ndarray] = {}
    for d, text in doc.items():
        try:
            values = np.frombuffer(base64.b64decode(text), dtype=np.float32)
            out[str(d)] = values.reshape(BLOCK, len(QUANTITIES)).copy()
        except (TypeError, ValueError):
            continue
    return out


def merge_block(stored: dict[str, np.ndarray], newer: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``stored`` with ``newer``'s known values written over it (NaN in ``newer``: keep)."""
    for d, rows in newer.items():
        old = stored.get(d)
        stored[d] = rows.copy() if old is None else np.where(np.isnan(rows), old, rows)
    return stored


def _spread(register: FArray) -> FArray:
    """Interval energy from a cumulative register sampled at points (NaN where missing): a gap is
    bridged by spreading the register's advance evenly over the intervals it spans."""
    t = len(register)
    out = np.full(max(t - 1, 0), np.nan)
    known = np.nonzero(np.isfinite(register))[0]
    for a, b in itertools.pairwise(known):
        out[a:b] = (register[b] - register[a]) / (b - a)
    return out


__all__ = [
    "BLOCK",
    "QUANTITIES",
    "STEP_S",
    "TRANSFORMER",
    "Blocks",
    "Window",
    "decode_block",
    "encode_block",
    "merge_block",
]
