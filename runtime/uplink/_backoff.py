"""Jittered exponential backoff for reconnecting (clock-based).

Layer: runtime (uplink internals). Computes delays only; the caller sleeps on its Clock.
"""

from __future__ import annotations

import random


class Backoff:
    """Delays ``initial, 2*initial, ...`` capped at ``maximum``, each scaled by a random factor in [0.5, 1].

    Jitter keeps a fleet of terminals from reconnecting in lock-step after a broker restart.
    """

    def __init__(
        self, *, initial: float = 1.0, maximum: float = 60.0, rng: random.Random | None = None
    ) -> None:
        if initial <= 0 or maximum < initial:
            raise ValueError(f"bad backoff bounds initial={initial} maximum={maximum}")
        self.initial = initial
        self.maximum = maximum
        self._rng = rng or random.Random()
        self._next = initial

    def next_delay(self) -> float:
        base = self._next
        self._next = min(self._next * 2.0, self.maximum)
        return base * self._rng.uniform(0.5, 1.0)

    def reset(self) -> None:
        self._next = self.initial
