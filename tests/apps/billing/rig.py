"""A billing engine on a real store, with virtual meters behind fake meter clients, in manual time.

Test helper (tests/apps/billing). ``MeterClientOnModel`` turns ``hal.meters`` relay commands into
``sim.meters.VirtualMeter`` calls and reads status word 3 back from it, so the engine's relay
logic meets the virtual meter's own semantics (保电 refusal, close allowed waiting for the button)
without the wire; the wire is covered by tests/hal and the end-to-end tests.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from apps.billing.book import Customer
from apps.billing.engine import Billing, Keys, Settings
from hal.errors import DeviceError, TransportTimeout
from hal.meters import RelayCommand, RelayStatus
from protocols import billing
from runtime.store import Store
from sim.loads import ConstantProfile
from sim.meters import VirtualMeter
from sim.meters.model import RelayRefused

from .contracts import document

TZ = ZoneInfo("Asia/Shanghai")
TERMINAL = "TTU-T1"
UTILITY = Ed25519PrivateKey.from_private_bytes(b"u" * 32)
BANK = Ed25519PrivateKey.from_private_bytes(b"b" * 32)
TERMINAL_KEY = Ed25519PrivateKey.from_private_bytes(b"t" * 32)


def local(*args: int) -> float:
    return datetime(*args, tzinfo=TZ).timestamp()  # type: ignore[misc]


class ManualClock:
    """Clock time moves only when the test says (``set``/``advance``) or something sleeps."""

    def __init__(self, start: float) -> None:
        self.t = start
        self.speed = 1.0

    def now(self) -> float:
        return self.t

    def monotonic(self) -> float:
        return self.t

    def set(self, t: float) -> None:
        self.t = t

    async def sleep(self, seconds: float) -> None:
        self.t += max(0.0, seconds)
        await asyncio.sleep(0)

    async def sleep_until(self, epoch: float) -> None:
        self.t = max(self.t, epoch)
        await asyncio.sleep(0)


@dataclass
class MeterClientOnModel:
    meter: VirtualMeter
    clock: ManualClock
    commands: list[str] = field(default_factory=list)
    silent: int = 0  # the next N calls time out

    @property
    def address(self) -> str:
        return self.meter.address

    def _maybe_silent(self) -> None:
        if self.silent > 0:
            self.silent -= 1
            raise TransportTimeout(f"{self.meter.address}: no answer")

    async def relay(self, command: RelayCommand, *, valid_until: datetime) -> None:
        self._maybe_silent()
        self.commands.append(command.value)
        t, m = self.clock.now(), self.meter
        try:
            match command:
                case RelayCommand.TRIP:
                    m.trip(t)
                case RelayCommand.CLOSE_ALLOWED:
                    m.allow_close(t)
                case RelayCommand.DIRECT_CLOSE:
                    m.close(t)
                case RelayCommand.ALARM | RelayCommand.ALARM_RELEASE:
                    m.set_alarm(command is RelayCommand.ALARM, t)
                case RelayCommand.KEEP_POWER | RelayCommand.KEEP_POWER_RELEASE:
                    m.set_keep_power(command is RelayCommand.KEEP_POWER, t)
        except RelayRefused as err:
            raise DeviceError(m.address, 4, str(err)) from err

    async def read_relay_status(self, **_: Any) -> RelayStatus:
        self._maybe_silent()
        self.meter.advance(self.clock.now())
        return RelayStatus.from_word(self.meter.status_word3())


def signed_contract(name: str = "zhejiang-residential", **changes: Any) -> dict[str, Any]:
    return billing.sign("contract", document(name, **changes), UTILITY)


def signed_topup(txn: str, customer: str, amount: str, *, kind: str = "topup", terminal: str = TERMINAL,
                 key: Ed25519PrivateKey = BANK) -> dict[str, Any]:  # fmt: skip
    body = {"txn_id": txn, "terminal": terminal, "customer_id": customer, "type": kind, "amount_yuan": amount,
            "bank": "ICBC", "issued_at": "2026-03-02T08:00:00+08:00"}  # fmt: skip
    return billing.sign("topup", body, key)


def signed_keep_power(
    customer: str, on: bool, *, issued: str = "2026-03-02T08:00:00+08:00"
) -> dict[str, Any]:
    body = {
        "terminal": TERMINAL,
        "customer_id": customer,
        "on": on,
        "reason": "hospital",
        "issued_at": issued,
    }
    return billing.sign("keep_power", body, UTILITY)


@dataclass
class Rig:
    store: Store
    clock: ManualClock
    engine: Billing
    meters: dict[str, VirtualMeter]
    clients: dict[str, MeterClientOnModel]
    path: Path

    def row(self, meter: str, t: float, source: str = "curve") -> list[Any]:
        """The meter's own register at ``t`` (truncated to 0.01 kWh like its display) as an anchor row."""
        m = self.meters[meter]
        reg = m.registers(t)
        imp = int(reg.forward[0] * 100 + 1e-6) * 100
        exp = int(reg.reverse[0] * 100 + 1e-6) * 100
        return [meter, int(t), imp, None if source == "freeze" else exp, source]

    async def cycle(self, t: float, meters: list[str] | None = None) -> Any:
        self.clock.set(t)
        rows = [self.row(m, t) for m in (meters or list(self.meters))]
        return await self.engine.readings(rows)


def customers(n: int) -> list[Customer]:
    return [Customer(f"C{i:04d}", f"m-{i:04d}", "residential") for i in range(1, n + 1)]


@asynccontextmanager
async def rig(tmp_path: Path, *, n: int = 2, start: float = local(2026, 3, 2, 0, 0), kw: float = 2.0,
              settings: Settings | None = None) -> AsyncIterator[Rig]:  # fmt: skip
    clock = ManualClock(start)
    meters = {
        c.meter: VirtualMeter(f"{i:012d}", profile=ConstantProfile(kw), start=start - 3600, seed=i)
        for i, c in enumerate(customers(n), 1)
    }
    clients = {m: MeterClientOnModel(v, clock) for m, v in meters.items()}
    async with await Store.open(tmp_path / "ttu.sqlite", clock=clock) as store:  # type: ignore[arg-type]
        engine = make_engine(store, clock, clients, n, settings)
        await engine.start()
        yield Rig(store, clock, engine, meters, clients, tmp_path)


def make_engine(store: Store, clock: ManualClock, clients: dict[str, MeterClientOnModel], n: int,
                settings: Settings | None = None) -> Billing:  # fmt: skip
    return Billing(
        terminal=TERMINAL,
        timezone="Asia/Shanghai",
        clock=clock,  # type: ignore[arg-type]
        ledger=store.ledger,
        keys=Keys(TERMINAL_KEY, [UTILITY.public_key()], [BANK.public_key()]),
        customers=customers(n),
        clients=clients.get,  # type: ignore[arg-type]
        settings=settings or Settings(relay_retry_delay_s=1.0),
    )
