"""The simulated bank and utility (``sim.billing``) keep every command within the terminal's
downlink limit: a big station area's opening top-ups go as several bank batches, none refused
or silently dropped by the broker for its size, every transaction sent exactly once."""

from __future__ import annotations

import json
from typing import Any
from zoneinfo import ZoneInfo

from protocols.cloud import DEFAULT_MAX_COMMAND_BYTES, Reply
from sim.billing import BillingDriver, Party, batches
from sim.scenarios import Billing as BillingScenario

START = 1_717_171_200.0


class Clock:
    def __init__(self) -> None:
        self.t = START

    def now(self) -> float:
        return self.t

    def monotonic(self) -> float:
        return self.t

    async def sleep(self, s: float) -> None:
        self.t += s

    async def sleep_until(self, t: float) -> None:
        self.t = max(self.t, t)


class Stub:
    """Answers every command; refuses (like the terminal) one over the downlink limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.sent: list[tuple[str, dict[str, Any], int]] = []

    async def send_command(
        self, terminal: str, name: str, args: dict[str, Any] | None = None, **options: Any
    ) -> Reply:
        size = len(json.dumps({"name": name, "args": args}).encode())
        self.sent.append((name, dict(args or {}), size))
        if size > self.limit:
            return Reply("c", False, code="too_large", message=f"{size} bytes")
        return Reply("c", True, result={})


async def test_opening_topups_of_a_big_station_area_go_in_batches_within_the_limit() -> None:
    meters = {f"m-{k:04d}": f"C{k:04d}" for k in range(2200)}
    stub = Stub(DEFAULT_MAX_COMMAND_BYTES)
    party = Party("TTU-X", meters, START, ZoneInfo("Asia/Shanghai"))
    driver = BillingDriver(stub, Clock(), party, BillingScenario())  # type: ignore[arg-type]
    await driver.run()
    topups = [(args, size) for name, args, size in stub.sent if name == "billing.topup"]
    assert len(topups) > 1 and not driver.refused
    assert all(size <= DEFAULT_MAX_COMMAND_BYTES for _, size in topups)
    txns = [doc["body"]["txn_id"] for args, _ in topups for doc in args["documents"]]
    assert txns == [f"SIM-OPEN-{m}" for m in sorted(meters)]  # each once, in order
    assert [name for name, _, _ in stub.sent][-1] == "billing.contract"


def test_batches_keep_order_and_size_and_an_oversized_document_alone() -> None:
    docs: list[dict[str, Any]] = [{"n": k, "pad": "x" * (30 if k != 5 else 500)} for k in range(12)]
    out = batches(docs, 200)
    assert [d for b in out for d in b] == docs
    assert [docs[5]] in out
    for b in out:
        if b != [docs[5]]:
            assert len(json.dumps(b, separators=(",", ":"))) <= 200
