"""The master station's side: the ``ttu cloud billing --json`` summary, the three views, and
``verify`` finding every kind of tampering with the archived ledger."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from apps.billing.reconcile import BankTxn
from apps.billing.report import bank_transactions, bank_view, finance, marketing, summary, verify
from protocols.ledger import Record, make_record

from .rig import TERMINAL, TERMINAL_KEY, local, rig, signed_contract, signed_topup


async def ledger_of_two_days(tmp_path: Path) -> tuple[list[Record], list[dict[str, Any]]]:
    async with rig(tmp_path, n=2, kw=2.0) as r:
        await r.engine.install_contract(signed_contract(effective_from="2026-01-01T00:00"))
        topups = [signed_topup("B-1", "C0001", "100.00"), signed_topup("B-2", "C0002", "50.00")]
        for doc in topups:
            await r.engine.topup(doc)
        day = local(2026, 3, 2)
        for k in range(0, 97, 4):  # hourly points (the gaps are filled): two days of 2 kW
            await r.cycle(day + 900 * k)
        r.clock.set(day + 86400 + 300)
        await r.engine.readings([r.row(m, day + 86400, "freeze") for m in r.meters])
        r.clock.set(day + 86400 + 3600)
        await r.engine.daily("2026-03-02")
        for k in range(100, 120, 4):
            await r.cycle(day + 900 * k)
        return await r.store.ledger.records(), topups


def bodies(records: list[Record], head: Record | None = None) -> list[dict[str, Any]]:
    last = head or records[-1]
    return [
        {
            "type": "ledger",
            "records": [x.to_json() for x in records[i : i + 7]],
            "head": {"seq": last.seq, "hash": last.hash},
        }
        for i in range(0, len(records), 7)
    ]


def rechain(records: list[Record], start: int = 0) -> list[Record]:
    out = list(records[:start])
    prev = out[-1].hash if out else records[0].prev
    for r in records[start:]:
        out.append(make_record(r.seq, r.ts, r.kind, r.uid, r.body, prev))
        prev = out[-1].hash
    return out


async def test_summary_has_the_issue_shape_and_the_day_charges(tmp_path: Path) -> None:
    records, topups = await ledger_of_two_days(tmp_path)
    bank = bank_transactions(topups)
    out = summary(TERMINAL, bodies(records), bank=bank)
    assert set(out) == {"terminal", "customers", "ledger", "reconciliation"} and out["terminal"] == TERMINAL
    c1, c1_open = [c for c in out["customers"] if c["customer_id"] == "C0001"]
    keys = ("customer_id", "meter_id", "date", "charge_yuan", "balance_yuan", "relay")
    assert {k: c1[k] for k in keys} == {
        "customer_id": "C0001", "meter_id": "m-0001", "date": "2026-03-02",
        "charge_yuan": "21.66", "balance_yuan": "78.34", "relay": "closed",
    }  # fmt: skip
    assert c1["kwh"] == {"sharp": 0.0, "peak": 28.0, "flat": 0.0, "valley": 20.0}  # 2 kW, 8-22 peak
    # the day still open: 00:00 (the freeze) to 05:00 at 2 kW, valley 0.288: 10 kWh, 2.88 so far
    assert {k: c1_open[k] for k in keys} == {
        "customer_id": "C0001", "meter_id": "m-0001", "date": "2026-03-03",
        "charge_yuan": "2.88", "balance_yuan": "75.46", "relay": "closed",
    }  # fmt: skip
    assert c1_open["kwh"] == {"sharp": 0.0, "peak": 0.0, "flat": 0.0, "valley": 10.0}
    assert [c["date"] for c in summary(TERMINAL, bodies(records), open_days=False)["customers"]] == [
        "2026-03-02",
        "2026-03-02",
    ]
    detailed = summary(TERMINAL, bodies(records), date="2026-03-03", detail=True)["customers"]
    assert [(c["customer_id"], c["closed"], c["contracts"]) for c in detailed] == [
        ("C0001", False, ["ZJ-RES@1"]),
        ("C0002", False, ["ZJ-RES@1"]),
    ]
    assert isinstance(c1["charge_yuan"], str) and isinstance(c1["balance_yuan"], str)
    assert out["ledger"]["verified"] and out["ledger"]["length"] == records[-1].seq
    assert out["ledger"]["head"] == records[-1].hash
    assert [(x["date"], x["ok"], x["difference_yuan"]) for x in out["reconciliation"]] == [
        ("2026-03-02", True, "0.00")
    ]


async def test_views_of_the_three_parties_agree(tmp_path: Path) -> None:
    records, topups = await ledger_of_two_days(tmp_path)
    bank = bank_transactions(topups)
    m = marketing(TERMINAL, bodies(records))
    f = finance(TERMINAL, bodies(records), bank)
    b = bank_view(TERMINAL, bodies(records), bank)
    assert [c["key"] for c in m["contracts"]] == ["ZJ-RES@1"]
    marketing_total = sum(int(c["charge_yuan"].replace(".", "")) for c in m["charges"])
    (day,) = f["days"]
    assert (
        day["charges_yuan"] == day["debits_yuan"] == f"{marketing_total // 100}.{marketing_total % 100:02d}"
    )
    assert day["bank_yuan"] == day["credits_yuan"] == "150.00"
    assert [t["status"] for t in b["transactions"]] == ["topup", "topup"]


async def test_verify_clean_then_every_kind_of_tampering(tmp_path: Path) -> None:
    records, topups = await ledger_of_two_days(tmp_path)
    key = TERMINAL_KEY.public_key()
    bank = bank_transactions(topups)
    clean = verify(TERMINAL, bodies(records), bank=bank, public_key=key)
    assert clean["ok"], clean
    assert clean["charges"]["checked"] == 2 and clean["ledger"]["roots"] == 1
    charge = next(i for i, r in enumerate(records) if r.kind == "charge")
    debit = next(i for i, r in enumerate(records) if r.kind == "debit")
    topup = next(i for i, r in enumerate(records) if r.kind == "topup")
    tail_debit = max(i for i, r in enumerate(records) if r.kind == "debit")

    def kinds(tampered: list[Record], *, head: Record | None = None, bank_: Any = bank) -> set[str]:
        result = verify(TERMINAL, bodies(tampered, head=head or records[-1]), bank=bank_, public_key=key)
        assert not result["ok"]
        return {p["kind"] for p in result["ledger"]["problems"]}

    edited = list(records)
    edited[charge] = dataclasses.replace(records[charge], body={**records[charge].body, "charge_fen": 1})
    assert "edited" in kinds(edited)
    # edited and every hash after it recomputed: the terminal's signed root no longer matches
    assert "bad_root" in kinds(rechain(edited, charge), head=rechain(edited, charge)[-1])
    removed = [r for i, r in enumerate(records) if i != debit]
    assert "removed" in kinds(removed)
    swapped = list(records)
    a, b = swapped[debit], swapped[debit + 1]
    swapped[debit], swapped[debit + 1] = dataclasses.replace(b, seq=a.seq), dataclasses.replace(a, seq=b.seq)
    assert {"edited", "broken_link"} & kinds(swapped)
    replay = records[topup]
    replayed = [
        *records,
        make_record(records[-1].seq + 1, replay.ts, replay.kind, replay.uid, replay.body, records[-1].hash),
    ]
    assert "replayed" in kinds(replayed, head=replayed[-1])
    # a debit of the unsigned tail removed and the chain rebuilt to match a forged head: the
    # reported head differs, and the books no longer balance
    truncated = rechain([r for i, r in enumerate(records) if i != tail_debit], 0)
    truncated = [dataclasses.replace(r, seq=k + 1) for k, r in enumerate(truncated)]
    result = verify(TERMINAL, bodies(rechain(truncated), head=records[-1]), bank=bank, public_key=key)
    assert not result["ok"]
    # the bank's list against the ledger: a transaction the ledger lacks, one the bank never issued
    extra = {**bank, "B-9": BankTxn("B-9", "C0001", 500)}
    result = verify(TERMINAL, bodies(records), bank=extra, public_key=key)
    assert not result["ok"] and any(
        d["kind"] == "bank_missing" for x in result["reconciliation"] for d in x["differences"]
    )
    fewer = {k: v for k, v in bank.items() if k != "B-2"}
    result = verify(TERMINAL, bodies(records), bank=fewer, public_key=key)
    assert any(d["kind"] == "ledger_extra" for x in result["reconciliation"] for d in x["differences"])


async def test_a_wrong_charge_in_a_consistent_chain_is_found_by_pricing_it_again(tmp_path: Path) -> None:
    records, _ = await ledger_of_two_days(tmp_path)
    charge = next(i for i, r in enumerate(records) if r.kind == "charge")
    wrong = list(records)
    wrong[charge] = dataclasses.replace(records[charge], body={**records[charge].body, "charge_fen": 999})
    forged = rechain(wrong, charge)
    result = verify(TERMINAL, bodies(forged, head=forged[-1]))  # no key pinned, head forged too
    assert [m["customer"] for m in result["charges"]["mismatched"]] == ["C0001"]
    assert result["charges"]["mismatched"][0]["priced_yuan"] == "21.66"


def cloud_db(path: Path, records: list[Record], topups: list[dict[str, Any]]) -> str:
    """The stub's database as the uplink and the bank's commands left it."""
    from protocols.cloud import Reply, UpBatch, UpMessage, up_topic
    from sim.cloud.db import CloudDb

    db = CloudDb(path)
    try:
        messages = tuple(
            UpMessage(f"{TERMINAL}:billing:{i + 1}", i + 1, 0.0, b) for i, b in enumerate(bodies(records))
        )
        db.ingest_batch(
            topic=up_topic(TERMINAL, "billing"), batch=UpBatch(TERMINAL, "billing", messages), now=0.0
        )
        replies = []
        for i, doc in enumerate(topups):
            db.record_command(
                command_id=f"c-{i}", terminal=TERMINAL, name="billing.topup", args={"document": doc}, now=0.0
            )
            reply = Reply(f"c-{i}", True, {"status": "applied"})
            replies.append(UpMessage(f"{TERMINAL}:reply:{i + 1}", i + 1, 0.0, reply.to_json()))
        db.ingest_batch(
            topic=up_topic(TERMINAL, "reply"), batch=UpBatch(TERMINAL, "reply", tuple(replies)), now=0.0
        )
    finally:
        db.close()
    return str(path)


async def test_ttu_cloud_billing_commands(tmp_path: Path, capsys: Any) -> None:
    """``ttu cloud billing --terminal T --json`` prints exactly the issue's shape; verify, the views and
    the refusals go through the stub's CloudTools (entry point ``ttu.cloud``)."""
    import json

    from runtime.cli import main

    records, topups = await ledger_of_two_days(tmp_path / "run")
    db = cloud_db(tmp_path / "cloud.sqlite", records, topups)
    assert main(["cloud", "billing", "--db", db, "--terminal", TERMINAL, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out == summary(TERMINAL, bodies(records), bank=bank_transactions(topups))
    assert set(out) == {"terminal", "customers", "ledger", "reconciliation"}
    assert set(out["customers"][0]) == {
        "customer_id", "meter_id", "date", "kwh", "charge_yuan", "balance_yuan", "relay"
    }  # fmt: skip
    assert set(out["customers"][0]["kwh"]) == {"sharp", "peak", "flat", "valley"}
    assert set(out["ledger"]) == {"length", "head", "verified"}
    assert set(out["reconciliation"][0]) >= {"date", "ok", "difference_yuan"}
    assert main(["cloud", "billing", "verify", "--db", db, "--terminal", TERMINAL]) == 0
    assert f"{TERMINAL}: OK" in capsys.readouterr().out
    assert main(["cloud", "billing", "view", "bank", "--db", db, "--terminal", TERMINAL]) == 0
    bank = json.loads(capsys.readouterr().out)
    assert bank["bank_list"] is True and [t["status"] for t in bank["transactions"]] == ["topup", "topup"]
    assert main(["cloud", "billing", "--db", db]) == 0  # every terminal, as a table
    assert "reconciliation 2026-03-02: ok 0.00" in capsys.readouterr().out
    # a top-up the bank issued that the ledger does not hold: verify fails and names it
    missing = [*topups, signed_topup("B-3", "C0001", "9.99")]
    db2 = cloud_db(tmp_path / "cloud2.sqlite", records, missing)
    assert main(["cloud", "billing", "verify", "--db", db2, "--terminal", TERMINAL]) == 1
    assert "B-3" in capsys.readouterr().out
    # user mistakes: one line on stderr, exit 2
    key = tmp_path / "nokey.pem"
    contract = tmp_path / "c.toml"
    contract.write_text("[contract]\nid = 1\n", encoding="utf-8")
    args = [
        "cloud",
        "billing",
        "contract",
        "publish",
        str(contract),
        "--key",
        str(key),
        "--terminal",
        TERMINAL,
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "c.toml" in err
    assert main(["cloud", "billing", "--db", str(tmp_path / "missing.sqlite")]) == 2
