"""A thief is named only on its own evidence: the section's loss moves when its load moves.

A customer whose load merely has the loss's time of day (an unmetered household with the same
habits, say) fits the loss's level about as well as a thief does. What only the thief's load can
explain is the loss's interval-to-interval ups and downs, so that is what a named thief must show.
"""

from __future__ import annotations

import numpy as np

from apps.lineloss.causes.anomaly import Anomaly
from apps.lineloss.causes.archive import Records
from apps.lineloss.engine import Settings, analyse
from apps.lineloss.layout import BranchInfo, MeterInfo

from ._days import readings, window

T = 96
DAYS = 2


def households(seed: int, n: int) -> np.ndarray:
    """``n`` households over two days, each with its own size and ups and downs: rows 0 and
    ``n - 1`` with a late-evening habit, the others with morning and evening peaks."""
    rng = np.random.default_rng(seed)
    t = np.tile(np.linspace(0, 24, T, endpoint=False), DAYS)
    common = 0.05 + 0.25 * np.exp(-(((t - 19.0) / 1.5) ** 2)) + 0.15 * np.exp(-(((t - 7.5) / 1.0) ** 2))
    late = 0.04 + 0.3 * np.exp(-(((t - 22.0) / 1.2) ** 2))
    size = rng.uniform(0.6, 1.4, n)[:, None]
    out = size * common[None, :] + rng.gamma(2.0, 0.02, size=(n, T * DAYS))
    out[[0, -1]] = late[None, :] + rng.gamma(2.0, 0.02, size=(2, T * DAYS))
    return out


def thefts(drawn: np.ndarray, registered: np.ndarray) -> list[Anomaly]:
    """The theft findings on branch F1 whose customers draw ``drawn`` (every load behind the branch
    unit) while their registers count ``registered`` (one row per archived customer)."""
    meters = [MeterInfo("T", "assessment"), MeterInfo("bu1", "branch_unit", branch="F1")]
    meters += [MeterInfo(f"c{i}", branch="F1", phase="ABC"[i % 3]) for i in range(len(registered))]
    rec = Records(meters, [BranchInfo("F1", monitor="bu1")], [], "T")
    lay = rec.layout()
    flow = drawn.sum(axis=0)
    supply = flow + 0.004 * flow**2  # the branch's I²R
    supply += np.random.default_rng(9).normal(0.0, 0.01, flow.shape)  # what no model explains
    net = np.vstack([supply, supply, registered])
    fwd, rev = np.maximum(net, 0.0), np.maximum(-net, 0.0)  # an export is read by the reverse register
    days = []
    for d in range(DAYS):
        part = slice(d * T, (d + 1) * T)
        days.append(readings(lay, 86400.0 * d, fwd[:, part], reverse=rev[:, part]))
    return [a for a in analyse(rec, lay, window(lay, days), Settings()).anomalies if a.kind == "theft"]


def test_a_customer_who_only_shares_an_unmetered_households_habits_is_not_named() -> None:
    loads = households(seed=1, n=21)  # the last one is not in the archive: nobody meters it
    found = thefts(loads, loads[:-1])
    assert [a.target for a in found if a.target != "F1"] == []  # c0 looks like it; it is not
    # what may be reported names the section and its candidate meters, not a person
    for a in found:
        assert "unexplained energy" in a.evidence["finding"] and a.evidence["candidates"]
        assert a.confidence <= 0.5


def test_a_thief_with_those_habits_is_named_on_its_own_evidence() -> None:
    loads = households(seed=3, n=20)
    registered = loads.copy()
    registered[0] *= 0.6  # c0 bypasses 40 % of its load: the loss follows its every move
    (found,) = thefts(loads, registered)
    assert found.target == "c0"
    # its own evidence: the loss's changes follow c0's (the technical terms take a part of the share)
    assert found.evidence["change_t"] >= 3.0 and 0.15 < found.evidence["change_share"] <= 0.4 / 0.6 * 1.1
    assert found.confidence > 0.5


def sunshine(seed: int) -> np.ndarray:
    """One kW of PV, kWh an interval over the two days: the sun's arc times passing clouds (the
    same clouds for every panel of the area)."""
    rng = np.random.default_rng(seed)
    t = np.tile(np.linspace(0, 24, T, endpoint=False), DAYS)
    arc = np.clip(np.sin((t - 6.0) / 12.0 * np.pi), 0.0, None)
    clouds = np.clip(1.0 - 0.6 * rng.random(T * DAYS) ** 3, 0.2, 1.0)
    return 0.25 * arc * clouds


def test_a_prosumer_whose_export_the_loss_follows_is_no_thief() -> None:
    """PV the archive lacks exports behind the branch unit (or a prosumer counted on another
    section): the loss dips with the sun and the clouds, as a listed prosumer's net does. That
    prosumer exports on net over the window; a bypass never makes a loss follow an export."""
    loads = households(seed=5, n=12)
    sun = sunshine(seed=5)
    loads[0] -= 5.0 * sun  # c0: 5 kW of PV, exports on net
    hidden = -4.0 * sun  # unlisted PV behind the unit
    lamps = np.full(T * DAYS, 0.4)  # a constant unmetered load (lights, a pump): the loss stays positive
    found = thefts(np.vstack([loads, hidden, lamps]), loads)
    assert [a.target for a in found] == []


def test_no_unmetered_consumption_is_found_where_more_is_sold_than_supplied() -> None:
    """The same unlisted PV, the listed prosumer smaller (it draws on net): the section sells more
    than its unit supplies, which no bypass explains."""
    loads = households(seed=5, n=12)
    sun = sunshine(seed=5)
    loads[0] -= 1.5 * sun
    found = thefts(np.vstack([loads, -4.0 * sun]), loads)
    assert loads[0].sum() > 0
    assert [a.target for a in found] == []
