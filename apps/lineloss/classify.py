"""Classes of a scope-day: qualified, high (高损), negative (负损), incomputable (不可算).

Layer: apps (lineloss). Pure. The thresholds are configuration (``app.toml``, where each
default names its source); this module only applies them. Must not compute balances.

Rules, in order:

1. incomputable when the supply was not read, is not positive, or the coverage is below
   ``min_coverage`` (an unread customer's energy is missing from the sales);
2. negative when rate <= ``negative_max_pct``;
3. high when rate > ``high_min_pct``;
4. qualified otherwise; ``economic`` marks a qualified rate inside the economic-operation band
   (经济运行, ``economic_min_pct`` <= rate <= ``economic_max_pct``, both inclusive).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

QUALIFIED = "qualified"
HIGH = "high"
NEGATIVE = "negative"
INCOMPUTABLE = "incomputable"
CLASSES = (QUALIFIED, HIGH, NEGATIVE, INCOMPUTABLE)


@dataclass(frozen=True, slots=True)
class Thresholds:
    high_min_pct: float = 10.0
    negative_max_pct: float = -1.0
    economic_min_pct: float = 0.0
    economic_max_pct: float = 4.0
    min_coverage: float = 0.995

    def __post_init__(self) -> None:
        if not self.negative_max_pct < self.high_min_pct:
            raise ValueError(
                f"negative_max_pct ({self.negative_max_pct}) must be below high_min_pct ({self.high_min_pct})"
            )
        if not self.economic_min_pct <= self.economic_max_pct:
            raise ValueError("economic_min_pct must not exceed economic_max_pct")
        if not 0.0 <= self.min_coverage <= 1.0:
            raise ValueError(f"min_coverage {self.min_coverage} is outside 0..1")

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> Thresholds:
        """The thresholds among an app config's keys (missing keys keep their defaults)."""
        names = cls.__dataclass_fields__
        return cls(**{k: float(v) for k, v in config.items() if k in names})


@dataclass(frozen=True, slots=True)
class Verdict:
    klass: str
    economic: bool
    reason: str


def classify(
    rate_pct: float | None, supply_kwh: float | None, coverage: float, thresholds: Thresholds
) -> Verdict:
    t = thresholds
    if supply_kwh is None:
        return Verdict(INCOMPUTABLE, False, "supply meter not read")
    if supply_kwh <= 0 or rate_pct is None:
        return Verdict(INCOMPUTABLE, False, "no supply in the period")
    if coverage < t.min_coverage:
        return Verdict(INCOMPUTABLE, False, f"coverage {coverage:.1%} below {t.min_coverage:.1%}")
    if rate_pct <= t.negative_max_pct:
        return Verdict(NEGATIVE, False, f"rate {rate_pct:.2f} % <= {t.negative_max_pct:g} %")
    if rate_pct > t.high_min_pct:
        return Verdict(HIGH, False, f"rate {rate_pct:.2f} % > {t.high_min_pct:g} %")
    economic = t.economic_min_pct <= rate_pct <= t.economic_max_pct
    return Verdict(QUALIFIED, economic, "")


__all__ = ["CLASSES", "HIGH", "INCOMPUTABLE", "NEGATIVE", "QUALIFIED", "Thresholds", "Verdict", "classify"]
