"""The billing app service: wires the engine to the terminal (bus, scheduler, store, uplink, hal).

Layer: apps (billing). Uses only its context. What it does:

* collects the meters' own records from acquisition -- ``meter/<id>/curve`` (15-min points,
  catch-up included) and ``meter/<id>/freeze`` (daily freezes) -- a cycle at a time, and hands
  them to the engine, which charges and acts on relays within the same cycle;
* at start, takes the daily freezes the store already holds (missed while billing was down);
* serves the party commands: ``billing.contract``, ``billing.topup`` (one, or a bank batch as
  ``documents``), ``billing.keep_power``
  (signed documents, see ``protocols.billing``), ``billing.archived`` (the master station
  archived the ledger up to a seq), ``billing.resend`` (it misses records from a seq on),
  ``billing.status``, ``billing.audit``;
* daily at ``daily_at``: closes what is due, reconciles yesterday, checkpoints and signs the
  Merkle root; hourly a sweep; every ``observe_interval_s`` reads back relays waiting for the
  customer's button;
* sends every ledger record up on stream ``billing`` (``uplink``) and publishes a summary on
  ``billing/status`` (retained): the status without its row a customer (the ``billing.status``
  command answers with them; the bus holds the retained body until the next one, and the rows
  were ~0.4 kB a customer).
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from protocols import billing
from protocols.billing import yuan
from protocols.errors import ProtocolError
from protocols.ledger import sign_head
from protocols.station import StationModel
from runtime.api import AppContext
from runtime.bus import Overflow
from runtime.errors import ConfigError
from runtime.scheduler import CatchUp, Daily, Interval

from .charging import Row
from .contracts import ContractRefused
from .directory import Directory, from_model
from .engine import Billing, Keys, Refused, Settings
from .uplink import LedgerUplink

CURVE = "energy.active.import.total"
CURVE_EXPORT = "energy.active.export.total"
FREEZE = "daily.energy.active.import.total"
ENERGY_UNITS = billing.ENERGY
MAX_BATCH = 5000  # top-ups in one bank batch command


@dataclass(frozen=True, slots=True)
class Config:
    utility_keys: list[Ed25519PublicKey]
    bank_keys: list[Ed25519PublicKey]
    terminal_key: Path
    settings: Settings
    daily_at: tuple[int, int]
    observe_interval_s: int

    @classmethod
    def parse(cls, config: dict[str, Any], root: Path) -> Config:
        def keys(name: str) -> list[Ed25519PublicKey]:
            out = []
            for i, text in enumerate(config.get(name, [])):
                try:
                    out.append(billing.parse_public_key(str(text)))
                except ProtocolError as err:
                    raise ConfigError(f"apps.billing.config.{name}[{i}]", err.reason) from err
            return out

        hh, _, mm = str(config.get("daily_at", "01:00")).partition(":")
        if not (hh.isdigit() and mm.isdigit() and int(hh) < 24 and int(mm) < 60):
            raise ConfigError("apps.billing.config.daily_at", f"{config.get('daily_at')!r} is not HH:MM")

        def path(name: str, default: str) -> Path:
            p = Path(str(config.get(name, default)))
            return p if p.is_absolute() else root / p

        return cls(
            utility_keys=keys("utility_keys"),
            bank_keys=keys("bank_keys"),
            terminal_key=path("terminal_key", "var/billing/terminal.key"),
            settings=Settings(
                close_grace_s=int(config.get("close_grace_s", 3 * 3600)),
                relay_retries=int(config.get("relay_retries", 3)),
                relay_retry_delay_s=float(config.get("relay_retry_delay_s", 5.0)),
            ),
            daily_at=(int(hh), int(mm)),
            observe_interval_s=int(config.get("observe_interval_s", 60)),
        )


def terminal_key(path: Path) -> Ed25519PrivateKey:
    """The terminal's signing key, made (0600) on first use."""
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey):
            raise ConfigError("apps.billing.config.terminal_key", f"{path} is not an Ed25519 private key")
        return key
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        os.write(fd, pem)
        os.fsync(fd)
    finally:
        os.close(fd)
    return key


def rows_of(device: str, payload: Any, source: str) -> list[Row]:
    """Anchor rows from the reading rows of one meter published by acquisition."""
    if not isinstance(payload, list):
        return []
    by_ts: dict[int, dict[str, float]] = {}
    quality: dict[int, str] = {}
    for item in payload:
        if not isinstance(item, dict):
            continue
        ts, value = item.get("ts"), item.get("value")
        if not isinstance(ts, int | float) or not isinstance(value, int | float):
            continue
        by_ts.setdefault(int(ts), {})[str(item.get("quantity"))] = float(value)
        quality[int(ts)] = str(item.get("quality", "good"))
    out: list[Row] = []
    for ts, values in sorted(by_ts.items()):
        imp = values.get(FREEZE if source == "freeze" else CURVE)
        if imp is None:
            continue
        exp = values.get(CURVE_EXPORT) if source != "freeze" else None
        kind = source if source == "freeze" or quality[ts] != "catch_up" else "catch_up"
        out.append(
            [device, ts, billing.energy_units(imp), None if exp is None else billing.energy_units(exp), kind]
        )
    return out


class BillingService:
    def __init__(self, ctx: AppContext, config: Config) -> None:
        self.ctx = ctx
        self.config = config
        self.directory = Directory(ctx.hal, ctx.clock)
        customers, places = from_model(ctx.station.model)
        self.directory.use(places)
        self.engine = Billing(
            terminal=ctx.terminal.id,
            timezone=ctx.terminal.tz.key,
            clock=ctx.clock,
            ledger=ctx.store.ledger,
            keys=Keys(terminal_key(config.terminal_key), config.utility_keys, config.bank_keys),
            customers=customers,
            clients=self.directory.client,
            settings=config.settings,
        )
        key = self.engine.keys.terminal
        self.uplink = LedgerUplink(
            ctx.store.ledger,
            ctx.store,
            ctx.uplink,
            ctx.terminal.id,
            sign=lambda seq, h: sign_head(seq, h, key),
        )
        self.engine.listen(self.uplink.poke)

    async def start(self) -> None:
        if not self.engine.customers:
            self.ctx.log.warning("no customers to bill yet: the station model has no customer meters")
        await self.engine.start()
        await self._freezes_from_store()
        uplink = self.ctx.uplink
        uplink.register_command("billing.contract", self._cmd(self.engine.install_contract))
        uplink.register_command("billing.topup", self._topups)
        uplink.register_command("billing.keep_power", self._cmd(self.engine.keep_power))
        uplink.register_command("billing.archived", self._archived)
        uplink.register_command("billing.resend", self._resend)
        uplink.register_command("billing.status", self._status_cmd)
        uplink.register_command("billing.audit", self._audit)
        scheduler = self.ctx.scheduler
        hh, mm = self.config.daily_at
        scheduler.add("daily", Daily(hh, mm), self._daily, catch_up=CatchUp.LATEST)
        scheduler.add("sweep", Interval(3600), self._sweep, catch_up=CatchUp.SKIP)
        scheduler.add(
            "observe", Interval(self.config.observe_interval_s), self._observe, catch_up=CatchUp.SKIP
        )
        self.uplink.poke()

    def _cmd(self, handler: Any) -> Any:
        async def run(args: dict[str, Any]) -> dict[str, Any]:
            document = args.get("document")
            try:
                result: dict[str, Any] = await handler(document)
            except (Refused, ContractRefused) as err:
                raise ValueError(str(err)) from err
            await self._publish()
            return result

        return run

    async def _topups(self, args: dict[str, Any]) -> dict[str, Any]:
        """One signed top-up (``document``) or a bank's batch of them (``documents``), each on its own:
        a refused one does not stop the others."""
        if "documents" not in args:
            single: dict[str, Any] = await self._cmd(self.engine.topup)(args)
            return single
        documents = args["documents"]
        if not isinstance(documents, list) or len(documents) > MAX_BATCH:
            raise ValueError(f"billing.topup: documents must be a list of at most {MAX_BATCH} signed top-ups")
        results: list[dict[str, Any]] = []
        for document in documents:
            try:
                results.append(await self.engine.topup(document))
            except Refused as err:
                results.append({"status": "refused", "reason": str(err)})
        await self._publish()
        return {"results": results}

    async def _archived(self, args: dict[str, Any]) -> dict[str, Any]:
        seq, digest = args.get("seq"), args.get("hash")
        if not isinstance(seq, int) or not isinstance(digest, str):
            raise ValueError("billing.archived: expected {seq: int, hash: str}")
        return {"archived_seq": await self.engine.archived(seq, digest)}

    async def _resend(self, args: dict[str, Any]) -> dict[str, Any]:
        start = args.get("from")
        if not isinstance(start, int) or start < 1:
            raise ValueError("billing.resend: expected {from: seq >= 1}")
        return {"resending_after": await self.uplink.rewind(start - 1)}

    async def _audit(self, args: dict[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = (await self.engine.audit()).to_json()
        return result

    async def _status_cmd(self, args: dict[str, Any]) -> dict[str, Any]:
        return await self.status()

    async def _freezes_from_store(self) -> None:
        """Daily freezes stored while billing was not running (acquisition keeps reading)."""
        since = self.ctx.clock.now() - 86400 * (self.engine.book.keep_days + 1)
        rows: list[Row] = []
        for reading in await self.ctx.store.query_readings(quantity=FREEZE, since=since):
            rows.append(
                [reading.device, int(reading.ts), billing.energy_units(reading.value), None, "freeze"]
            )
        if rows:
            await self.engine.readings(rows)

    async def consume(self) -> None:
        """One engine cycle per burst of curve/freeze messages from acquisition; the station
        model's changes (customers added, moved or re-tariffed) as they come."""
        curve = self.ctx.bus.subscribe("meter/+/curve", maxsize=50_000, overflow=Overflow.DROP_OLDEST)
        freeze = self.ctx.bus.subscribe("meter/+/freeze", maxsize=50_000, overflow=Overflow.DROP_OLDEST)
        async with asyncio.TaskGroup() as tg:
            tg.create_task(self._consume(curve, "curve"), name="billing:curve")
            tg.create_task(self._consume(freeze, "freeze"), name="billing:freeze")
            tg.create_task(self._follow_model(), name="billing:station")

    async def _follow_model(self) -> None:
        async with self.ctx.station.watch() as changes:
            async for change in changes:
                if change.model is not None:
                    await self.use_model(change.model)

    async def use_model(self, model: StationModel) -> None:
        """Bill the customers of ``model`` from now on (a customer that left keeps its ledger)."""
        customers, places = from_model(model)
        if customers == self.engine.customers:
            return
        self.directory.use(places)
        self.engine.set_customers(customers)
        await self.engine.record_customers()
        self.ctx.log.info("station model v%s: %d customers billed", model.version, len(customers))

    async def _consume(self, sub: Any, source: str) -> None:
        async for msg in sub:
            rows = rows_of(msg.topic.split("/")[1], msg.payload, source)
            while (more := sub.get_nowait()) is not None:
                rows.extend(rows_of(more.topic.split("/")[1], more.payload, source))
            await asyncio.sleep(0)  # let the other ports' bursts of this cycle arrive first
            while (more := sub.get_nowait()) is not None:
                rows.extend(rows_of(more.topic.split("/")[1], more.payload, source))
            await self.engine.readings(rows)
            await self._publish()

    async def _daily(self, slot: Any) -> None:
        result = await self.engine.daily()
        if not result["ok"]:
            self.ctx.log.error(
                "reconciliation of %s: difference %s 元", result["date"], result["difference_yuan"]
            )
        await self._publish()

    async def _sweep(self, slot: Any) -> None:
        await self.engine.sweep()

    async def _observe(self, slot: Any) -> None:
        await self.engine.observe()

    async def status(self, *, customers: bool = True) -> dict[str, Any]:
        """The ledger's state, the contracts, the counters and (``customers``) a row a customer."""
        book = self.engine.book
        state = await self.ctx.store.ledger.state()
        audit = self.engine.last_audit
        rows = []
        for c in self.engine.customers if customers else ():
            acc = book.account(c.id)
            rows.append(
                {
                    "customer_id": c.id,
                    "meter_id": c.meter,
                    "balance_yuan": yuan(acc.balance),
                    "relay": acc.relay,
                    "alarm": acc.alarm,
                    "keep_power": acc.keep_power,
                    "closed_through": acc.closed_through,
                }
            )
        out = {
            "terminal": self.ctx.terminal.id,
            "at": self.ctx.clock.now(),
            "ledger": {
                "length": state.head_seq,
                "head": state.head_hash,
                "archived": state.archived_seq,
                "kept": state.records,
                "verified": None if audit is None else audit.ok,
            },
            "contracts": sorted(book.contracts),
            "counters": dict(self.engine.counters),
        }
        if customers:
            out["customers"] = rows
        return out

    async def _publish(self) -> None:
        status = await self.status(customers=False)
        self.ctx.bus.publish("billing/status", status, retain=True)


async def run_billing(ctx: AppContext, config: dict[str, Any]) -> None:
    service = BillingService(ctx, Config.parse(config, ctx.terminal.root))
    await service.start()
    async with asyncio.TaskGroup() as tg:
        consumer = tg.create_task(service.consume(), name="billing:consume")
        sender = tg.create_task(service.uplink.run(), name="billing:uplink")
        await ctx.ready()
        await ctx.wait_stop()
        consumer.cancel()
        sender.cancel()


__all__ = ["BillingService", "Config", "rows_of", "run_billing"]
