"""The billing engine end to end over a real store: contract, top-ups, charging each cycle, alarm ->
trip -> top-up -> close on virtual meters, 保电, day close with the meter's freeze, reconciliation,
root, checkpoint and restart. Amounts are worked out by hand in the comments."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from apps.billing.contracts import ContractRefused
from apps.billing.engine import Refused
from protocols import billing
from protocols.ledger import audit
from sim.meters.model import RelayRefused

from .rig import (
    BANK,
    TERMINAL_KEY,
    Rig,
    local,
    make_engine,
    rig,
    signed_contract,
    signed_keep_power,
    signed_topup,
)

PEAK_8KW = 113_600_000  # exact amount of 2 kWh at 0.568 元 (8 kW for 15 min, peak)


async def prepare(r: Rig, *, topup: str = "25.00", customers: tuple[str, ...] = ("C0001", "C0002")) -> None:
    await r.engine.install_contract(signed_contract(effective_from="2026-01-01T00:00"))
    for i, c in enumerate(customers):
        reply = await r.engine.topup(signed_topup(f"T-{i}", c, topup))
        assert reply["status"] == "applied"
    await r.cycle(local(2026, 3, 2, 8, 0))  # first anchors: nothing to charge yet


def commands(r: Rig, meter: str) -> list[str]:
    return r.clients[meter].commands


async def test_prepaid_cycle_alarm_trip_topup_close(tmp_path: Path) -> None:
    async with rig(tmp_path, n=1, kw=8.0) as r:
        await prepare(r, customers=("C0001",))
        acc = r.engine.book.account("C0001")
        levels = []
        for k in range(1, 32):  # 08:15 .. 15:45, 2 kWh each at peak 0.568 = 1.136 元
            await r.cycle(local(2026, 3, 2, 8, 0) + 900 * k)
            levels.append((k, acc.balance, acc.alarm, r.meters["m-0001"].relay_closed))
        # 25 - 1.136 k: alarm 1 (<= 20) at k = 5 (19.32), alarm 2 (<= 10) at k = 14 (9.10),
        # zero at k = 23 (-1.13), trip (<= -10) at k = 31 (-10.22): every one in its own cycle
        assert [k for k, b, a, _ in levels if a and (k == 1 or levels[k - 2][2] != a)] == [5, 14, 23]
        assert levels[29][1:] == (2500 - 3408, 3, True)  # k = 30: -9.08, still supplied
        assert levels[30][1:] == (2500 - 3522, 3, False)  # k = 31: 35.216 -> 35.22 debited, tripped
        assert commands(r, "m-0001") == ["alarm", "alarm", "alarm", "trip"]
        assert acc.relay == "open" and acc.tripped
        # tripped: the meter counts nothing more, so nothing more is debited
        await r.cycle(local(2026, 3, 2, 16, 0))
        assert acc.balance == 2500 - 3522
        # top-up 50 -> 39.78 > close allowed 2.00: close allowed (1BH) and alarm release
        reply = await r.engine.topup(signed_topup("T-9", "C0001", "50.00"))
        assert reply == {"txn_id": "T-9", "status": "applied", "balance_yuan": "39.78", "seq": reply["seq"]}
        assert commands(r, "m-0001")[-2:] == ["alarm_release", "close_allowed"]
        assert acc.relay == "close_allowed" and not r.meters["m-0001"].relay_closed  # waits for the button
        r.clock.set(local(2026, 3, 2, 16, 2))  # the customer pressed it a minute after
        await r.engine.observe()
        assert acc.relay == "closed" and r.meters["m-0001"].relay_closed
        await r.cycle(local(2026, 3, 2, 16, 15))  # 14 min of supply since 16:01: 1.8667 kWh, shown 1.86
        assert acc.balance == 3978 - 105  # day so far 35.216 + 1.86 x 0.568 = 36.27248 -> 36.27, 1.05 more
        result = await r.store.ledger.audit(public_key=TERMINAL_KEY.public_key())
        assert result.ok, result.problems
        kinds = [x.body["command"] for x in await r.store.ledger.records(kind="relay")]
        assert kinds == ["alarm", "alarm", "alarm", "trip", "alarm_release", "close_allowed", "observed"]


async def test_keep_power_blocks_the_trip_until_released(tmp_path: Path) -> None:
    async with rig(tmp_path, n=2, kw=8.0) as r:
        await prepare(r)
        assert (await r.engine.keep_power(signed_keep_power("C0002", True)))["status"] == "applied"
        assert r.meters["m-0002"].keep_power
        for k in range(1, 33):
            await r.cycle(local(2026, 3, 2, 8, 0) + 900 * k)
        assert not r.meters["m-0001"].relay_closed  # C0001 tripped at k = 31
        assert r.meters["m-0002"].relay_closed and "trip" not in commands(r, "m-0002")
        assert r.engine.counters["trips_blocked_keep_power"] >= 1
        released = await r.engine.keep_power(
            signed_keep_power("C0002", False, issued="2026-03-02T16:05:00+08:00")
        )
        assert released["keep_power"] is False
        assert not r.meters["m-0002"].relay_closed and commands(r, "m-0002")[-1] == "trip"


async def test_keep_power_flag_of_the_station_model_is_sent_to_the_meter_and_blocks_trips(
    tmp_path: Path,
) -> None:
    """保电 from the archive (station-model flag ``keep_power``), no signed order: the meter is told
    (3AH) at the first decision, the customer runs into overdraft but is never tripped; when the
    flag goes, 3BH and the trip follow."""
    async with rig(tmp_path, n=2, kw=8.0) as r:
        flagged = [replace(c, keep_power=True) if c.id == "C0002" else c for c in r.engine.customers]
        r.engine.set_customers(flagged)
        await prepare(r)
        for k in range(1, 33):
            await r.cycle(local(2026, 3, 2, 8, 0) + 900 * k)
        assert not r.meters["m-0001"].relay_closed  # C0001 tripped at k = 31
        assert r.meters["m-0002"].keep_power and r.meters["m-0002"].relay_closed
        assert commands(r, "m-0002") == ["keep_power", "alarm", "alarm", "alarm"]
        held = [x for x in await r.store.ledger.records(kind="relay") if x.body["result"] == "blocked"]
        assert [x.body["customer"] for x in held] == ["C0002"]  # recorded once
        r.engine.set_customers([replace(c, keep_power=False) for c in flagged])
        await r.cycle(local(2026, 3, 2, 16, 15))
        assert commands(r, "m-0002")[-2:] == ["keep_power_release", "trip"]
        assert not r.meters["m-0002"].relay_closed


async def test_a_meter_that_refuses_keep_power_still_gets_its_alarms(tmp_path: Path) -> None:
    async with rig(tmp_path, n=1, kw=8.0) as r:
        r.engine.set_customers([replace(c, keep_power=True) for c in r.engine.customers])

        def refuse(on: bool, t: float) -> None:
            raise RelayRefused("no 保电 on this firmware")

        r.meters["m-0001"].set_keep_power = refuse  # type: ignore[method-assign]
        await prepare(r, customers=("C0001",))
        for k in range(1, 6):  # alarm 1 at k = 5
            await r.cycle(local(2026, 3, 2, 8, 0) + 900 * k)
        assert commands(r, "m-0001") == ["keep_power", "alarm"]  # refused once, not sent again
        relays = await r.store.ledger.records(kind="relay")
        assert [(x.body["command"], x.body["result"]) for x in relays] == [
            ("keep_power", "refused"),
            ("alarm", "ok"),
        ]


async def test_a_trip_the_meter_refuses_is_recorded_and_tried_again_next_cycle(tmp_path: Path) -> None:
    async with rig(tmp_path, n=1, kw=8.0) as r:
        await prepare(r, customers=("C0001",))
        r.meters["m-0001"].keep_power = True  # set on the meter by hand, not ordered by the utility
        for k in range(1, 32):
            await r.cycle(local(2026, 3, 2, 8, 0) + 900 * k)
        relays = await r.store.ledger.records(kind="relay")
        assert relays[-1].body["command"] == "trip" and relays[-1].body["result"] == "refused"
        r.meters["m-0001"].keep_power = False
        await r.cycle(local(2026, 3, 2, 16, 0))
        assert not r.meters["m-0001"].relay_closed


async def test_a_silent_meter_is_retried_then_failed_and_decided_again(tmp_path: Path) -> None:
    async with rig(tmp_path, n=1, kw=8.0) as r:
        await prepare(r, customers=("C0001",))
        for k in range(1, 5):
            await r.cycle(local(2026, 3, 2, 8, 0) + 900 * k)
        r.clients["m-0001"].silent = 99
        await r.cycle(local(2026, 3, 2, 9, 15))  # k = 5: alarm 1 due, the meter does not answer
        last = (await r.store.ledger.records(kind="relay"))[-1]
        assert (last.body["command"], last.body["result"], last.body["attempts"]) == ("alarm", "failed", 4)
        r.clients["m-0001"].silent = 0
        await r.cycle(local(2026, 3, 2, 9, 30))
        assert r.meters["m-0001"].alarm and r.engine.book.account("C0001").alarm == 1


async def test_topups_are_idempotent_and_checked(tmp_path: Path) -> None:
    async with rig(tmp_path, n=1) as r:
        await r.engine.install_contract(signed_contract(effective_from="2026-01-01T00:00"))
        first = await r.engine.topup(signed_topup("ICBC-1", "C0001", "100.00"))
        again = await r.engine.topup(signed_topup("ICBC-1", "C0001", "100.00"))
        assert (first["status"], again["status"], again["seq"]) == ("applied", "duplicate", first["seq"])
        assert r.engine.book.account("C0001").balance == 10000
        refused = await r.engine.topup(signed_topup("ICBC-2", "C0001", "1950.00"))  # 2050 > hoarding 2000
        assert refused["status"] == "refused" and "hoarding limit 2000.00" in refused["reason"]
        assert (await r.engine.topup(signed_topup("ICBC-2", "C0001", "1950.00")))["status"] == "refused"
        refund = await r.engine.topup(signed_topup("ICBC-3", "C0001", "30.00", kind="refund"))
        assert refund["balance_yuan"] == "70.00"
        over = await r.engine.topup(signed_topup("ICBC-4", "C0001", "90.00", kind="refund"))
        assert over["status"] == "refused" and "exceeds the balance" in over["reason"]
        for doc, message in (
            (signed_topup("ICBC-5", "C0001", "1.00", key=TERMINAL_KEY), "does not verify"),
            (signed_topup("ICBC-6", "C0001", "1.00", terminal="TTU-OTHER"), "addressed to terminal"),
            (signed_topup("ICBC-7", "C9999", "1.00"), "not in this station area"),
            ({"kind": "topup", "body": {}}, "not signed"),
        ):
            with pytest.raises(Refused, match=message):
                await r.engine.topup(doc)
        assert r.engine.book.account("C0001").balance == 7000


async def test_contract_rules_keep_the_running_contract(tmp_path: Path) -> None:
    async with rig(tmp_path, n=1) as r:
        installed = await r.engine.install_contract(signed_contract(effective_from="2026-01-01T00:00"))
        assert installed["status"] == "installed" and installed["customers"] == 1
        same = await r.engine.install_contract(signed_contract(effective_from="2026-01-01T00:00"))
        assert same["status"] == "already installed"
        cases = [
            (billing.sign("contract", signed_contract()["body"], BANK), "does not verify"),
            ({"kind": "contract", "body": signed_contract()["body"]}, "not signed"),
            (signed_contract(version=1, effective_from="2026-05-01T00:00"), "installed with other content"),
            (signed_contract(version=2, effective_from="2026-01-01T00:00"), "starts before version 1"),
            (signed_contract(timezone="Europe/Berlin", version=2), "time zone"),
            (signed_contract("beijing-tou-monthly", effective_from="2026-05-01T00:00"), "overlaps ZJ-RES@1"),
        ]
        for doc, message in cases:
            with pytest.raises(ContractRefused, match=message):
                await r.engine.install_contract(doc)
        future = await r.engine.install_contract(
            signed_contract(version=2, effective_from="2026-04-01T00:00")
        )
        assert future["status"] == "installed"
        assert [c.key for c in r.engine.book.timeline.contracts] == ["ZJ-RES@1", "ZJ-RES@2"]


async def test_day_close_with_freeze_gap_fill_reconciliation_root_and_restart(tmp_path: Path) -> None:
    async with rig(tmp_path, n=2, kw=2.0) as r:
        await r.engine.install_contract(signed_contract(effective_from="2026-01-01T00:00"))
        await r.engine.topup(signed_topup("T-1", "C0001", "100.00"))
        await r.engine.topup(signed_topup("T-2", "C0002", "100.00"))
        day = local(2026, 3, 2)
        for k in range(96):
            missing = "m-0002" if 40 <= k < 50 else None  # C0002's meter silent 10:00-12:15
            await r.cycle(day + 900 * k, [m for m in r.meters if m != missing])
        midnight = day + 86400
        r.clock.set(midnight + 300)
        freezes = [r.row(m, midnight, "freeze") for m in r.meters]
        await r.engine.readings(freezes)
        charges = {x.body["customer"]: x.body for x in await r.store.ledger.records(kind="charge")}
        # 2 kW all day = 48 kWh: 0-8 and 22-24 valley (20 kWh x 0.288), 8-22 peak (28 kWh x 0.568)
        # = 5.76 + 15.904 = 21.664 -> 21.66 for both: the gap of C0002 is filled exactly
        assert {c: b["charge_fen"] for c, b in charges.items()} == {"C0001": 2166, "C0002": 2166}
        # points 10:00..12:15 missing: the 11 intervals from 09:45 to 12:30 are filled
        assert charges["C0002"]["estimated"] == 11 and charges["C0001"]["estimated"] == 0
        assert charges["C0002"]["kwh"] == {"sharp": 0, "peak": 280000, "flat": 0, "valley": 200000}
        assert r.engine.book.account("C0002").balance == 10000 - 2166
        r.clock.set(midnight + 3600)
        result = await r.engine.daily("2026-03-02")
        assert result["ok"] and result["charges_yuan"] == result["debits_yuan"] == "43.32"
        assert result["credits_yuan"] == "200.00"
        state = await r.store.ledger.state()
        records = await r.store.ledger.records()
        assert audit(records, public_key=TERMINAL_KEY.public_key(), head=(state.head_seq, state.head_hash)).ok
        assert records[-1].kind == "root" and records[-1].body["first_seq"] == 1
        # restart: a new engine over the same ledger has the same book
        again = make_engine(r.store, r.clock, r.clients, 2)
        await again.start()
        for c in ("C0001", "C0002"):
            a, b = again.book.account(c), r.engine.book.account(c)
            assert (a.balance, a.closed_through, a.tier, a.relay) == (
                b.balance,
                b.closed_through,
                b.tier,
                b.relay,
            )
        await r.cycle(midnight + 900)
        more = await r.store.ledger.records(kind="debit", after=state.head_seq)
        assert more and all(e[1] == "2026-03-03" for rec in more for e in rec.body["entries"])


async def test_late_reading_corrects_a_closed_day(tmp_path: Path) -> None:
    async with rig(tmp_path, n=1, kw=2.0) as r:
        await r.engine.install_contract(signed_contract(effective_from="2026-01-01T00:00"))
        day = local(2026, 3, 2)
        every = [r.row("m-0001", day + 900 * k) for k in range(97)]
        rows = [row for k, row in enumerate(every) if not 30 <= k < 34]  # 07:30-08:15 missing
        r.clock.set(day + 86400 + 300)
        await r.engine.readings([*rows, [*every[96][:3], None, "freeze"]])
        (charge,) = await r.store.ledger.records(kind="charge")
        # the gap 07:15-08:30 (5 intervals, 2.5 kWh) spread evenly: 3 valley, 2 peak intervals
        assert charge.body["estimated"] == 5 and charge.body["charge_fen"] == 2166
        # the points come in late: same total energy, same split here -> no correction needed;
        # a late point that moves energy between periods does correct the closed day
        late = every[32]
        late[2] -= 2000  # 0.2 kWh less before 08:00 than the even split said, 0.2 more after
        await r.engine.readings([late])
        (correction,) = await r.store.ledger.records(kind="correction")
        # 0.2 kWh moves from valley to peak: + 0.2 x (0.568 - 0.288) = 0.056 -> 21.72 - 21.66
        assert correction.body["fen"] == 6 and correction.body["charge_fen"] == 2172
        assert r.engine.book.account("C0001").balance == -2172


async def test_the_day_after_a_close_starts_from_the_accounts_tier_object(tmp_path: Path) -> None:
    """A day that closes with the next day's first point in the same batch opens that day from
    the closed bill's tier count (a copy); once the account holds the equal count, the open day
    keeps the account's object (one object a customer, never changed), and prices the same."""
    async with rig(tmp_path, n=1, kw=2.0) as r:
        await r.engine.install_contract(signed_contract(effective_from="2026-01-01T00:00"))
        day = local(2026, 3, 2)
        for k in range(92, 96):
            await r.cycle(day + 900 * k)
        midnight = day + 86400
        r.clock.set(midnight + 900)
        await r.engine.readings([r.row("m-0001", midnight, "freeze"), r.row("m-0001", midnight + 900)])
        opened = r.engine.charger._open["C0001"]
        acc = r.engine.book.account("C0001")
        assert opened.day == "2026-03-03" and not r.engine.charger._older
        assert opened.tier_start == acc.tier and opened.tier_start is not acc.tier
        await r.cycle(midnight + 1800)
        assert r.engine.charger._open["C0001"].tier_start is acc.tier
        assert opened.bill.intervals == 2
