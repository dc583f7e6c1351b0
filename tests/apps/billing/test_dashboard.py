"""The billing panel drawn by a real browser (headless Chromium) from the stored stream: balances,
relay states (a tripped customer marked), 保电, the ledger's status and the reconciled days."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from apps.billing.dashboard import SCRIPT, data

from ..lineloss._browser import Elements, dump_dom
from .rig import local, rig, signed_contract, signed_keep_power, signed_topup
from .test_report import bodies


async def test_the_panel_shows_balances_relays_and_the_ledger_in_chromium(tmp_path: Path) -> None:
    async with rig(tmp_path / "run", n=3, kw=8.0) as r:
        await r.engine.install_contract(signed_contract(effective_from="2026-01-01T00:00"))
        await r.engine.topup(signed_topup("T-1", "C0001", "25.00"))
        await r.engine.topup(signed_topup("T-2", "C0002", "100.00"))
        await r.engine.topup(signed_topup("T-3", "C0003", "1.00"))
        await r.engine.keep_power(signed_keep_power("C0003", True))
        for k in range(33):  # from 08:00: C0001 runs out and is tripped at 15:45, C0003 is kept
            await r.cycle(local(2026, 3, 2, 8, 0) + 900 * k)
        records = await r.store.ledger.records()
    panel = data("TTU-T1", bodies(records))
    assert panel["counts"] == {"customers": 3, "tripped": 1, "alarm": 2, "keep_power": 1}
    page = tmp_path / "panel.html"
    page.write_text(
        "<html><head><meta charset='utf-8'></head><body><div id='panel'></div><script>"
        + SCRIPT
        + f"\nrender(document.getElementById('panel'), {json.dumps(panel)});"
        + "</script></body></html>",
        encoding="utf-8",
    )
    dom = Elements(dump_dom(page.as_uri(), tmp_path / "profile"))
    (ledger,) = dom.find("p", class_="billing-ledger")
    assert ledger["data-verified"] == "true" and ledger["data-length"] == str(records[-1].seq)
    rows = {a["data-customer"]: a for a in dom.find("tr", class_="customer")}
    assert set(rows) == {"C0001", "C0002", "C0003"}
    assert rows["C0001"]["data-relay"] == "open" and "tripped" in rows["C0001"]["class"].split()
    assert "tripped" not in rows["C0003"]["class"].split() and "overdrawn" in rows["C0003"]["class"].split()
    assert rows["C0002"]["class"] == "customer"
    assert "保电" in dom.cells and "-10.22" in dom.cells  # C0001 tripped at -10.22


async def test_the_simulator_dashboard_serves_the_billing_panel_from_the_cloud_db(tmp_path: Path) -> None:
    """The real page of ``make sim``: panels from the ``ttu.dashboard`` entry points, data read from
    the cloud stub's database, drawn by Chromium fetching from the dashboard over HTTP."""
    import asyncio

    from apps.billing.dashboard import PANEL
    from protocols.cloud import UpBatch, UpMessage, up_topic
    from sim.cloud.db import CloudDb
    from sim.cloud.plugins import load_panels
    from sim.dashboard import Dashboard

    assert load_panels().get("billing") == PANEL
    async with rig(tmp_path / "run", n=2, kw=8.0) as r:
        await r.engine.install_contract(signed_contract(effective_from="2026-01-01T00:00"))
        await r.engine.topup(signed_topup("T-1", "C0001", "25.00"))
        await r.engine.topup(signed_topup("T-2", "C0002", "100.00"))
        for k in range(33):
            await r.cycle(local(2026, 3, 2, 8, 0) + 900 * k)
        records = await r.store.ledger.records()
    db = CloudDb(tmp_path / "cloud.sqlite")
    messages = tuple(
        UpMessage(f"TTU-T1:billing:{i + 1}", i + 1, 0.0, body) for i, body in enumerate(bodies(records))
    )
    db.ingest_batch(
        topic=up_topic("TTU-T1", "billing"), batch=UpBatch("TTU-T1", "billing", messages), now=0.0
    )

    class DbCloud:  # the stub's database behind the dashboard, as CloudStub serves it (one thread here)
        async def terminals(self) -> list[object]:
            return list(db.terminals())

        async def readings(self, *args: object, **kwargs: object) -> list[object]:
            return []

        async def events(self, *args: object, **kwargs: object) -> list[object]:
            return []

        async def query(self, fn: Any) -> Any:
            return fn(db)

    async def summary() -> dict[str, object]:
        return {"meters": 2, "speed": 1, "elapsed_s": 0, "sim_time": 0, "acquisition": {},
                "apps": [{"name": "billing", "state": "running", "restarts": 0}]}  # fmt: skip

    try:
        async with Dashboard(summary, DbCloud(), port=0) as dash:  # panels from the entry points
            html = await asyncio.to_thread(dump_dom, dash.url, tmp_path / "profile", budget_ms=8000)
    finally:
        db.close()
    dom = Elements(html)
    assert dom.find("section", id="panel-billing")
    (ledger,) = dom.find("p", class_="billing-ledger")
    assert ledger["data-verified"] == "true" and ledger["data-length"] == str(records[-1].seq)
    rows = {a["data-customer"]: a["data-relay"] for a in dom.find("tr", class_="customer")}
    assert rows == {"C0001": "open", "C0002": "closed"}
