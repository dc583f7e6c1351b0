"""Billing's ledger at the scale of 2,000 customers: every message fits the uplink, nothing is lost.

The daily ``checkpoint`` restates every account (~300 B each, over the uplink's message limit at
2,000 customers), and the ``customers`` and ``readings`` records list all of them. The real engine
writes the real store's ledger; ``LedgerUplink`` sends it through the real outbox, which refuses
any message over ``MAX_MESSAGE_BYTES``; the master station's side (``LedgerArchive``, the billing
report) joins what arrived and must hold every record, chained and verified.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from apps.billing.report import summary
from apps.billing.uplink import LedgerUplink
from protocols.cloud import MAX_MESSAGE_BYTES, json_size
from sim.billing import LedgerArchive

from .rig import TERMINAL, local, rig, signed_contract

CUSTOMERS = 2_000


class Kv:
    def __init__(self) -> None:
        self.values: dict[str, Any] = {}

    async def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    async def set(self, key: str, value: Any) -> None:
        self.values[key] = value


async def test_a_2000_customer_ledger_reaches_the_cloud_in_messages_that_each_fit(tmp_path: Path) -> None:
    async with rig(tmp_path, n=CUSTOMERS, kw=2.0) as r:
        await r.engine.install_contract(signed_contract(effective_from="2026-01-01T00:00"))
        day = local(2026, 3, 2)
        for k in (0, 4, 96):  # 2 kW each (rows written here: the virtual meters are slow at 2,000)
            t = day + 900 * k
            r.clock.set(t)
            rows = [[m, int(t), 2 * 900 * k * 10_000 // 3600, 0, "curve"] for m in r.meters]
            await r.engine.readings(rows, control=False)
        r.clock.set(day + 86400 + 3600)
        await r.engine.daily("2026-03-02")
        records = await r.store.ledger.records()
        assert "checkpoint" in {x.kind for x in records}
        biggest = max(json_size(x.to_json()) for x in records)
        assert biggest > MAX_MESSAGE_BYTES  # the case this test is about

        sent: list[dict[str, Any]] = []

        class Outbox:
            async def send(self, stream: str, body: dict[str, Any]) -> str:
                limit = MAX_MESSAGE_BYTES
                entry = await r.store.outbox_append(stream, body, terminal=TERMINAL, max_bytes=limit)
                sent.append(body)
                return entry.key

        uplink = LedgerUplink(r.store.ledger, Kv(), Outbox(), TERMINAL)
        await uplink.flush()

    assert uplink.sent == len(records) and max(json_size(b) for b in sent) <= MAX_MESSAGE_BYTES
    assert any(b["type"] == "ledger_piece" for b in sent)
    archive = LedgerArchive(None, None)  # type: ignore[arg-type]  # on_message needs neither
    for body in reversed(sent):  # any order: the cloud holds pieces until a record is whole
        await archive.on_message(TERMINAL, body)
    assert archive.chained[TERMINAL] == records[-1].seq
    ledger = summary(TERMINAL, sent)["ledger"]
    assert ledger["length"] == len(records) and ledger["head"] == records[-1].hash
