"""Uniform draws of a numpy ``Generator`` taken a block at a time, in the same order.

Layer: sim. ``Draws(rng).next()`` gives what successive ``rng.random()`` calls would, and
``uniform(lo, hi)`` what ``rng.uniform(lo, hi)`` would (numpy computes it as ``lo + (hi - lo) * u``
from the same double): one numpy call per block instead of one per draw, whose overhead was most
of a draw's cost on the virtual meters' hot path. The generator must not be drawn from otherwise
once wrapped (the block runs ahead of it).
"""

from __future__ import annotations

import numpy as np

BLOCK = 256


class Draws:
    """Successive uniform [0, 1) doubles of ``rng``."""

    __slots__ = ("_at", "_block", "_rng")

    def __init__(self, rng: np.random.Generator) -> None:
        self._rng = rng
        self._block: list[float] = []
        self._at = 0

    def next(self) -> float:
        if self._at == len(self._block):
            self._block = self._rng.random(BLOCK).tolist()
            self._at = 0
        self._at += 1
        return self._block[self._at - 1]

    def uniform(self, lo: float, hi: float) -> float:
        return lo + (hi - lo) * self.next()


__all__ = ["Draws"]
