"""The injection log the night keeps: its detections and every meter's last injection, in columns.

Layer: apps (topology), pure data. A detection is a row: its source (an index into ``names``), its
time (float64), the units that heard it (a run of name indexes) and the units listening that night
(an index into one tuple a night). ``names`` holds each meter or unit id once, the station model's
own string where the model has the device (``share``), so a week of nights (up to ``per_day``
injections each, 400 by default: 2,800 rows at 2,400 meters) costs ~30 B a row instead of a
``Detection`` with its tuple and float (~160 B). ``inputs.Detection`` objects are made on demand
(``since``) for the one identification that weighs them. No dict stays: lookups by id build one
for the call.

Must not plan, order or weigh anything (``night``, ``injections``, ``evidence`` do).
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Iterable, Iterator

from .inputs import Detection


class Kept:
    """The detections of the last nights (newest last) and the last injection of every meter."""

    __slots__ = ("_at", "_heard", "_heard_end", "_last", "_listening", "_night", "_source", "names")

    def __init__(self) -> None:
        self._clear()

    def _clear(self) -> None:
        self.names: list[str] = []  # meter and unit ids, each once
        self._last = array("d")  # per name: UTC epoch of its last injection (NaN: never)
        self._source = array("i")  # per detection: index into names
        self._at = array("d")  # per detection: UTC epoch of the injection
        self._heard_end = array("i")  # per detection: end of its run in _heard
        self._heard = array("i")  # the units that heard, as name indexes, detection after detection
        self._night = array("i")  # per detection: index into _listening
        self._listening: list[tuple[str, ...]] = []  # the units listening, one tuple a night

    def __len__(self) -> int:
        return len(self._at)

    def __iter__(self) -> Iterator[Detection]:
        names, heard, ends, listening = self.names, self._heard, self._heard_end, self._listening
        begin = 0
        for i, at in enumerate(self._at):
            end = ends[i]
            yield Detection(
                names[self._source[i]],
                at,
                tuple(names[k] for k in heard[begin:end]),
                listening[self._night[i]],
            )
            begin = end

    def since(self, since: float) -> tuple[Detection, ...]:
        """The detections at or after ``since`` (UTC epoch), in the order they were added."""
        return tuple(d for d in self if d.at >= since)

    def extend(self, detections: Iterable[Detection]) -> None:
        """Add detections after those kept (``mark`` says they were the last injections)."""
        index = {name: i for i, name in enumerate(self.names)}
        nights = {id(t): i for i, t in enumerate(self._listening)}
        for d in detections:
            night = nights.get(id(d.listening))
            if night is None:
                night = nights.setdefault(id(d.listening), self._night_of(d.listening))
            source = self._name(index, d.source)
            self._source.append(source)
            self._at.append(d.at)
            self._heard.extend(self._name(index, u) for u in d.heard_by)
            self._heard_end.append(len(self._heard))
            self._night.append(night)

    def keep_since(self, since: float, share: Callable[[str], str] | None = None) -> None:
        """Drop the detections before ``since``; names nothing refers to any more go. ``share``
        gives the string to keep for an id (the station model's own, where it has the device)."""
        kept = [d for d in self if d.at >= since]
        last = self.last()
        self._clear()
        if share is not None:
            last = {share(k): v for k, v in last.items()}
            kept = [
                Detection(share(d.source), d.at, tuple(share(u) for u in d.heard_by), d.listening)
                for d in kept
            ]
        self.set_last(last)
        self.extend(kept)

    def last(self) -> dict[str, float]:
        """Meter id -> UTC epoch of its last injection (a new dict)."""
        return {n: t for n, t in zip(self.names, self._last, strict=True) if not math.isnan(t)}

    def mark(self, detections: Iterable[Detection]) -> None:
        """Each detection's time is its source's last injection (later ones win)."""
        self.set_last({d.source: d.at for d in detections})

    def set_last(self, last: dict[str, float]) -> None:
        index = {name: i for i, name in enumerate(self.names)}
        for name, at in last.items():
            self._last[self._name(index, name)] = at

    def last_of(self) -> Callable[[str], float | None]:
        """A lookup id -> its last injection (None: never) for one plan (it holds a dict)."""
        last = self.last()
        return last.get

    def _name(self, index: dict[str, int], name: str) -> int:
        i = index.get(name)
        if i is None:
            i = index[name] = len(self.names)
            self.names.append(name)
            self._last.append(math.nan)
        return i

    def _night_of(self, listening: tuple[str, ...]) -> int:
        for i, t in enumerate(self._listening):
            if t == listening:
                return i
        self._listening.append(listening)
        return len(self._listening) - 1


__all__ = ["Kept"]
