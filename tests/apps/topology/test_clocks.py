"""Points a wrong clock stamped take no part in an identification (``apps.topology.clocks``), as
acquisition's clock reads (``meter/<id>/clock``) tell them."""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import numpy as np

from apps.topology import service as svc
from apps.topology.clocks import Clocks
from apps.topology.identify import identify
from apps.topology.synthetic import Spec, station


def test_a_fit_that_changes_only_where_the_clock_was_put_right_is_no_move() -> None:
    """A meter whose points until its clock was corrected fit another phase is what a fast clock
    looks like (the default area's m-0031): without the clock read it is reported moved; with it,
    its points until the correction are dropped and no move is reported (too few points left to
    place it: unresolved, not guessed)."""
    inputs, truth = station(Spec(branches=3, moves=2, wrong_phase=0.0, days=8.25 / 24), seed=2)
    plain = {m.meter_id: m for m in identify(inputs, terminal="T", computed_at=0.0).meters}
    assert truth.moved and all(plain[m].phase.evidence.get("moved") for m in truth.moved)
    meter, (_, after, since) = next(iter(truth.moved.items()))
    clocks = Clocks()
    assert clocks.note(meter, {"ts": since + 60.0, "offset_s": 420.0, "corrected_at": since})
    masked = replace(inputs, curves=clocks.mask(inputs.curves))
    j = inputs.curves.index()[meter]
    wrong = inputs.curves.times <= since
    assert (
        np.isnan(masked.curves.voltage[wrong, j]).all()
        and not np.isnan(masked.curves.voltage[~wrong, j]).all()
    )
    assert np.array_equal(masked.curves.voltage[:, j + 1], inputs.curves.voltage[:, j + 1], equal_nan=True)
    got = {m.meter_id: m for m in identify(masked, terminal="T", computed_at=0.0).meters}
    assert not got[meter].phase.evidence.get("moved")
    assert got[meter].phase.value == after or got[meter].phase.outcome == "unresolved"  # few points left
    others = [m for m in truth.moved if m != meter]
    assert all(got[m].phase.evidence.get("moved") for m in others)  # a real move elsewhere stays


def test_what_a_clock_read_says_about_a_meters_points() -> None:
    clocks = Clocks()
    assert clocks.note("m-1", {"ts": 100.0, "offset_s": 420.0, "corrected_at": 110.0})
    assert clocks.wrong_until["m-1"] == 110.0  # stamped wrong until the correction
    assert clocks.note("m-2", {"ts": 100.0, "offset_s": -400.0, "corrected_at": None})
    assert math.isinf(clocks.wrong_until["m-2"])  # not put right: every point
    assert clocks.note("m-3", {"ts": 100.0, "offset_s": 3.0, "corrected_at": 110.0})
    assert "m-3" not in clocks.wrong_until  # a few seconds shift no 15-minute point
    assert clocks.note("m-2", {"ts": 86500.0, "offset_s": 1.0, "corrected_at": 86510.0})
    assert clocks.wrong_until["m-2"] == 86500.0  # found right the next day: right by then
    assert clocks.note("m-1", {"ts": 86500.0, "offset_s": 0.5, "corrected_at": 86510.0})
    assert clocks.wrong_until["m-1"] == 110.0  # a right clock keeps what was known
    for bad in (None, [], {"ts": "x", "offset_s": 1.0}, {"ts": 1.0, "offset_s": True}, {"ts": 1.0}):
        assert not clocks.note("m-4", bad)
    assert Clocks.from_json(clocks.to_json()).wrong_until == clocks.wrong_until


def test_the_service_drops_the_points_acquisition_found_stamped_by_a_wrong_clock() -> None:
    """Through ``TopologyService``: the clock messages from the bus are kept (and stored), and
    the inputs of the next identification lack that meter's points up to its correction."""
    inputs, _ = station(Spec(branches=1, boxes_per_branch=(2, 2), days=0.25), seed=1)
    stored: dict[str, Any] = {}

    async def store_set(key: str, value: Any) -> None:
        stored[key] = value

    ctx: Any = SimpleNamespace(
        log=logging.getLogger("test-topology"),
        store=SimpleNamespace(set=store_set),
        terminal=SimpleNamespace(id="T"),
    )
    app = svc.TopologyService(ctx, svc.Settings())
    meter = inputs.meters[0].id
    until = float(inputs.curves.times[4])

    async def messages() -> Any:
        yield SimpleNamespace(
            topic=f"meter/{meter}/clock", payload={"ts": until, "offset_s": 420.0, "corrected_at": until}
        )
        yield SimpleNamespace(topic="meter/m-x/clock", payload="garbage")

    asyncio.run(app._clock_reads(messages()))  # type: ignore[arg-type]
    assert stored["clocks"] == {meter: until} and app.counters["bad_messages"] == 1
    masked = app.clocks.mask(inputs.curves)
    j = inputs.curves.index()[meter]
    assert np.isnan(masked.voltage[:5, j]).all() and not np.isnan(masked.voltage[5:, j, 0]).any()
