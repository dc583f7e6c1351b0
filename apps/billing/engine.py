"""The billing engine: readings in, ledger records out, relays acted on.

Layer: apps (billing). Everything the app does, behind narrow interfaces so it can be driven by
the app service, by tests and by the bench alike: a ``LedgerBackend`` (the store's ledger), the
customers (from the station model), a meter-client lookup (the hal), a clock and the keys.

One lock serializes every decision: decide from the book -> append to the ledger (durable) ->
fold what was appended into the book. A restart replays the ledger from the last checkpoint, so
the book is always what the ledger says. After every append, listeners are told (the uplink).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from hal.clock import Clock
from hal.meters import MeterClient, RelayCommand
from protocols import billing
from protocols.billing import FeeControl, yuan
from protocols.errors import ProtocolError
from protocols.ledger import ROOT_KIND, Audit, Record, root_body
from runtime.store import Appended, LedgerEntry, LedgerState

from . import contracts, feecontrol
from .book import Book, Customer, customer_row
from .charging import Charger, ChargingSettings, Cycle, Row
from .reconcile import reconcile
from .relays import Outcome, RelayDriver

log = logging.getLogger("ttu.app.billing")


class LedgerBackend(Protocol):
    """What billing needs of the store's ledger (``runtime.store.Ledger``)."""

    async def append(self, entries: Sequence[LedgerEntry]) -> list[Appended]: ...

    async def records(
        self,
        *,
        after: int = 0,
        limit: int | None = None,
        kind: str | None = None,
        kinds: Sequence[str] | None = None,
    ) -> list[Record]: ...

    async def hashes(self, *, after: int = 0) -> list[tuple[int, str]]: ...

    async def last(self, kind: str) -> Record | None: ...

    async def first_since(self, ts_ms: int, *, kind: str | None = None) -> int | None: ...

    async def state(self) -> LedgerState: ...

    async def audit(self, **kwargs: Any) -> Audit: ...

    async def mark_archived(self, seq: int, digest: str) -> int: ...


@dataclass(frozen=True, slots=True)
class Keys:
    terminal: Ed25519PrivateKey  # signs the daily Merkle roots
    utility: list[Ed25519PublicKey]  # contracts, 保电 orders
    bank: list[Ed25519PublicKey]  # top-ups, refunds


@dataclass(frozen=True, slots=True)
class Settings:
    close_grace_s: int = 3 * 3600
    relay_retries: int = 3
    relay_retry_delay_s: float = 5.0
    command_valid_s: float = 600.0


class Refused(ValueError):
    """A party command refused for good (bad signature, unknown customer, over the hoarding limit)."""


Listener = Callable[[], None]
ClientLookup = Callable[[str], MeterClient | None]
REPLAY_PAGE = 2000
KEEP_POWER_COMMANDS = (RelayCommand.KEEP_POWER, RelayCommand.KEEP_POWER_RELEASE)
RECONCILED = ("debit", "charge", "correction", "topup", "refund", "topup_refused")  # what reconcile reads


class Billing:
    def __init__(
        self,
        *,
        terminal: str,
        timezone: str,
        clock: Clock,
        ledger: LedgerBackend,
        keys: Keys,
        customers: Sequence[Customer] = (),
        clients: ClientLookup = lambda meter: None,
        settings: Settings | None = None,
    ) -> None:
        self.terminal = terminal
        self.timezone = timezone
        self.clock = clock
        self.ledger = ledger
        self.keys = keys
        self.settings = settings or Settings()
        self.book = Book(ZoneInfo(timezone))
        self.charger = Charger(self.book, ChargingSettings(self.settings.close_grace_s))
        self.driver = RelayDriver(
            clock,
            self.book.tz,
            retries=self.settings.relay_retries,
            retry_delay_s=self.settings.relay_retry_delay_s,
            valid_s=self.settings.command_valid_s,
        )
        self.clients = clients
        self._customers: dict[str, Customer] = {}
        self._by_meter: dict[str, Customer] = {}
        self.set_customers(customers)
        self._lock = asyncio.Lock()
        self._listeners: list[Listener] = []
        self.counters: dict[str, int] = {
            "cycles": 0,
            "rows": 0,
            "relay_ok": 0,
            "relay_failed": 0,
            "relay_refused": 0,
            "trips_blocked_keep_power": 0,
            "refused_commands": 0,
        }
        self.last_audit: Audit | None = None
        # (customer, command, crossed, done) of the newest relay actions, for benches and tests
        self.crossings: deque[tuple[str, str, float, float]] = deque(maxlen=1024)

    # ------------------------------------------------------------------ customers

    def set_customers(self, customers: Iterable[Customer]) -> None:
        self._customers = {c.id: c for c in customers}
        self._by_meter = {c.meter: c for c in self._customers.values()}

    @property
    def customers(self) -> list[Customer]:
        return list(self._customers.values())

    async def record_customers(self) -> None:
        """A ``customers`` record when who is billed (meter, tariff, flags) differs from what the
        ledger last said: the parties reprice and audit with it."""
        async with self._lock:
            known = self.book.directory
            changed = [c for c in self.customers if known.get(c.id) != c]
            removed = sorted(set(known) - set(self._customers))
            if changed or removed:
                body = {
                    "set": [customer_row(c) for c in sorted(changed, key=lambda c: c.id)],
                    "removed": removed,
                }
                await self._append([LedgerEntry("customers", body, self._now_ms())])
            directory = self.book.directory
            for c in self.customers:  # one object a customer: the book keeps ours where they are equal
                if directory.get(c.id) == c:
                    directory[c.id] = c

    def listen(self, listener: Listener) -> None:
        """Call ``listener()`` after every append (the uplink sends what is new)."""
        self._listeners.append(listener)

    # ------------------------------------------------------------------ the ledger loop

    async def _append(self, entries: Sequence[LedgerEntry]) -> list[Appended]:
        if not entries:
            return []
        appended = await self.ledger.append(entries)
        for done in appended:
            if done.created:
                self.book.apply(done.record)
        for listener in self._listeners:
            listener()
        return appended

    def _now_ms(self) -> int:
        return int(self.clock.now() * 1000)

    async def start(self) -> None:
        """Rebuild the book from the ledger and make sure the terminal's key is on record."""
        async with self._lock:
            await self._replay()
            public = billing.public_key_text(self.keys.terminal.public_key())
            if self.book.terminal_key != public:
                body = {
                    "terminal": self.terminal,
                    "key_id": billing.key_id(self.keys.terminal.public_key()),
                    "public_key": public,
                }
                await self._append(
                    [LedgerEntry("terminal", body, self._now_ms(), f"terminal:{body['key_id']}")]
                )
            self.last_audit = await self.ledger.audit(public_key=self.keys.terminal.public_key())
            if not self.last_audit.ok:
                log.error(
                    "ledger audit found %d problems: %s",
                    len(self.last_audit.problems),
                    self.last_audit.problems[:5],
                )
        await self.record_customers()

    async def _replay(self) -> None:
        checkpoint = await self.ledger.last("checkpoint")
        after = 0
        if checkpoint is not None:
            self.book.restore(checkpoint.body)
            start = int(checkpoint.body["anchors_from"])
            async for record in self._pages(start - 1, kind="readings"):
                if record.seq >= checkpoint.seq:
                    break
                self.book.apply(record)
            after = checkpoint.seq - 1
        async for record in self._pages(after):
            self.book.apply(record)

    async def _pages(self, after: int, *, kind: str | None = None) -> AsyncIterator[Record]:
        while True:
            page = await self.ledger.records(after=after, limit=REPLAY_PAGE, kind=kind)
            for record in page:
                yield record
            if len(page) < REPLAY_PAGE:
                return
            after = page[-1].seq

    # ------------------------------------------------------------------ readings -> charges -> relays

    async def readings(self, rows: Iterable[Row], *, control: bool = True) -> Cycle:
        """New register anchors (curve points, freezes): record, charge, act on relays."""
        async with self._lock:
            now = self.clock.now()
            accepted = self.charger.accept(rows, set(self._by_meter))
            if accepted:
                self.counters["rows"] += len(accepted)
                await self._append([LedgerEntry("readings", {"rows": accepted}, self._now_ms())])
            cycle = self.charger.charge(self.customers, now)
            await self._append(cycle.entries)
            self.counters["cycles"] += 1
        if control:
            touched = {e[0] for e in cycle.debit.body["entries"]} if cycle.debit else set()
            touched |= {e.body["customer"] for e in [*cycle.corrections, *cycle.charges]}
            await self.control(sorted(touched), crossed_at=now)
        return cycle

    async def sweep(self) -> Cycle:
        """Price and close every customer (the days that only the grace time closes)."""
        async with self._lock:
            cycle = self.charger.charge(self.customers, self.clock.now(), everyone=True)
            await self._append(cycle.entries)
        return cycle

    def fee_control_of(self, customer: Customer, at: float) -> FeeControl | None:
        terms = self.book.timeline.terms(at, customer.id, customer.tariff)
        return None if terms is None else terms[0].fee_control

    async def control(self, customer_ids: Iterable[str], *, crossed_at: float | None = None) -> None:
        """Bring each customer's relay and alarm to where its balance says (one command at a time
        per customer, every customer at once)."""

        async def one(customer: Customer) -> None:
            client = self.clients(customer.meter)
            fee = self.fee_control_of(customer, self.clock.now())
            acc = self.book.account(customer.id)
            archived = customer.keep_power
            if feecontrol.blocked(acc, fee, archived_keep_power=archived) and not acc.trip_blocked:
                self.counters["trips_blocked_keep_power"] += 1
                held = feecontrol.Action(RelayCommand.TRIP, "held back: 保电 (keep power)")
                await self._relay_record(customer, held, Outcome("blocked", 0, None))
            for action in feecontrol.plan(acc, fee, prepaid=customer.prepaid, archived_keep_power=archived):
                if client is None:
                    return
                outcome = await self.driver.execute(client, action.command)
                await self._relay_record(customer, action, outcome)
                if crossed_at is not None and outcome.result == "ok":
                    self.crossings.append((customer.id, action.command.value, crossed_at, outcome.done_at))
                if outcome.result != "ok" and action.command not in KEEP_POWER_COMMANDS:
                    return  # decided again next cycle (a 保电 command failing holds nothing else back)
                acc = self.book.account(customer.id)

        now = self.clock.now()
        wanted = []
        for c in customer_ids:  # decided here, so only customers with something to do get a task
            customer = self._customers.get(c)
            if customer is None:
                continue
            acc, fee = self.book.account(c), self.fee_control_of(customer, now)
            archived = customer.keep_power
            if feecontrol.plan(acc, fee, prepaid=customer.prepaid, archived_keep_power=archived) or (
                feecontrol.blocked(acc, fee, archived_keep_power=archived) and not acc.trip_blocked
            ):
                wanted.append(customer)
        if not wanted:
            return
        async with asyncio.TaskGroup() as tg:
            for customer in wanted:
                tg.create_task(one(customer), name=f"billing:relay:{customer.id}")

    async def _relay_record(self, customer: Customer, action: feecontrol.Action, outcome: Outcome) -> None:
        self.counters[f"relay_{outcome.result}"] = self.counters.get(f"relay_{outcome.result}", 0) + 1
        acc = self.book.account(customer.id)
        status = outcome.status
        body: dict[str, Any] = {
            "customer": customer.id,
            "meter": customer.meter,
            "command": action.command.value,
            "reason": action.reason,
            "result": outcome.result,
            "attempts": outcome.attempts,
            "balance": acc.balance,
            "status": None if status is None else status.word,
            "open": None if status is None else status.open,
        }
        if action.level:
            body["level"] = action.level
        if outcome.error:
            body["error"] = outcome.error
        log.info(
            "relay %s %s on %s: %s (%s)",
            action.command.value,
            customer.id,
            customer.meter,
            outcome.result,
            action.reason,
        )
        async with self._lock:
            await self._append([LedgerEntry("relay", body, self._now_ms())])

    async def observe(self) -> None:
        """Read back the relays waiting for the customer's button (close allowed) or uncertain."""
        waiting = [c for c in self.customers if self.book.account(c.id).relay in ("close_allowed", "unknown")]
        for customer in waiting:
            client = self.clients(customer.meter)
            status = None if client is None else await self.driver.observe(client)
            if status is None:
                continue
            state = "open" if status.open else "closed"
            if state == "closed" or self.book.account(customer.id).relay == "unknown":
                body = {
                    "customer": customer.id,
                    "meter": customer.meter,
                    "command": "observed",
                    "result": "ok",
                    "open": status.open,
                    "status": status.word,
                }
                async with self._lock:
                    await self._append([LedgerEntry("relay", body, self._now_ms())])

    # ------------------------------------------------------------------ party commands

    def _customer(self, customer_id: str, what: str) -> Customer:
        customer = self._customers.get(customer_id)
        if customer is None:
            raise Refused(f"{what}: customer {customer_id!r} is not in this station area's model")
        return customer

    async def topup(self, document: object) -> dict[str, Any]:
        """A bank top-up or refund; idempotent by transaction id."""
        try:
            verified = billing.verify(document, self.keys.bank, kind="topup")
            topup = billing.parse_topup(verified.body)
        except ProtocolError as err:
            self.counters["refused_commands"] += 1
            raise Refused(err.reason) from err
        assert isinstance(document, dict)
        uid = f"topup:{topup.txn_id}"
        if topup.terminal != self.terminal:
            raise Refused(
                f"topup {topup.txn_id}: addressed to terminal {topup.terminal!r}, this is {self.terminal!r}"
            )
        customer = self._customer(topup.customer_id, f"topup {topup.txn_id}")
        async with self._lock:
            acc = self.book.account(customer.id)
            fee = self.fee_control_of(customer, self.clock.now())
            after = acc.balance + topup.signed_amount
            reason = ""
            if fee is not None and topup.type == "topup" and after > fee.max_stored:
                reason = f"balance would be {yuan(after)}, above the hoarding limit {yuan(fee.max_stored)}"
            elif topup.type == "refund" and after < 0:
                reason = f"refund of {yuan(topup.amount)} exceeds the balance {yuan(acc.balance)}"
            base = {"document": document, "customer": customer.id, "txn_id": topup.txn_id, "bank": topup.bank}
            if reason:
                entry = LedgerEntry("topup_refused", base | {"fen": 0, "reason": reason}, self._now_ms(), uid)
            else:
                entry = LedgerEntry(
                    topup.type, base | {"fen": topup.signed_amount, "balance": after}, self._now_ms(), uid
                )
            (done,) = await self._append([entry])
        record = done.record
        if record.kind == "topup_refused":
            reply = {
                "txn_id": topup.txn_id,
                "status": "refused",
                "reason": record.body["reason"],
                "seq": record.seq,
            }
            if done.created:
                self.counters["refused_commands"] += 1
            return reply
        if done.created:
            await self.control([customer.id])
        return {
            "txn_id": topup.txn_id,
            "status": "applied" if done.created else "duplicate",
            "balance_yuan": yuan(self.book.account(customer.id).balance),
            "seq": record.seq,
        }

    async def keep_power(self, document: object) -> dict[str, Any]:
        """保电 ordered or lifted by the utility: the meter is told (3AH / 3BH), trips are held back."""
        try:
            verified = billing.verify(document, self.keys.utility, kind="keep_power")
            order = billing.parse_keep_power(verified.body)
        except ProtocolError as err:
            self.counters["refused_commands"] += 1
            raise Refused(err.reason) from err
        if order.terminal != self.terminal:
            raise Refused(f"keep_power: addressed to terminal {order.terminal!r}, this is {self.terminal!r}")
        customer = self._customer(order.customer_id, "keep_power")
        assert isinstance(document, dict)
        signature = str(document["signature"]["value"])
        uid = f"keep_power:{hashlib.sha256(signature.encode()).hexdigest()[:24]}"
        body = {"document": document, "customer": customer.id, "on": order.on, "reason": order.reason}
        async with self._lock:
            (done,) = await self._append([LedgerEntry("keep_power", body, self._now_ms(), uid)])
        await self.control([customer.id])  # the meter is told (3AH / 3BH), then trips or closes follow
        return {
            "customer": customer.id,
            "keep_power": order.on,
            "status": "applied" if done.created else "duplicate",
        }

    async def install_contract(self, document: object) -> dict[str, Any]:
        async with self._lock:
            try:
                accepted = contracts.check(
                    document,
                    self.keys.utility,
                    self.book,
                    self.customers,
                    timezone=self.timezone,
                    now=self.clock.now(),
                )
            except contracts.ContractRefused:
                self.counters["refused_commands"] += 1
                raise
            c = accepted.contract
            if accepted.new:
                body = {
                    "document": accepted.document,
                    "key": c.key,
                    "digest": accepted.digest,
                    "start": c.start_epoch(),
                    "customers": len(accepted.covered),
                }
                await self._append([LedgerEntry("contract", body, self._now_ms(), f"contract:{c.key}")])
                start = int(c.start_epoch())
                for customer_id in accepted.covered:  # open days from the start are priced again
                    anchors = self.book.anchors.get(self._customers[customer_id].meter)
                    if anchors is not None and anchors.last is not None and anchors.last > start:
                        anchors.dirty_from = (
                            start if anchors.dirty_from is None else min(anchors.dirty_from, start)
                        )
        if accepted.new:
            await self.readings([])
        return {
            "contract": c.key,
            "status": "installed" if accepted.new else "already installed",
            "effective_from": c.effective_from.strftime("%Y-%m-%dT%H:%M"),
            "customers": len(accepted.covered),
        }

    # ------------------------------------------------------------------ daily: reconcile, checkpoint, root

    async def daily(self, day: str | None = None) -> dict[str, Any]:
        """Close what the grace time closes, reconcile ``day`` (yesterday), checkpoint, sign the root."""
        await self.sweep()
        now = self.clock.now()
        day = day or (datetime.fromtimestamp(now, self.book.tz).date() - timedelta(days=1)).isoformat()
        async with self._lock:
            start, _ = self.book.day_bounds(day)
            first = await self.ledger.first_since(start * 1000)
            records = [] if first is None else await self.ledger.records(after=first - 1, kinds=RECONCILED)
            result = reconcile(records, day, self.book.tz)
            uid = f"reconciliation:{day}"
            await self._append([LedgerEntry("reconciliation", result.to_json(), self._now_ms(), uid)])
            await self._append([LedgerEntry("checkpoint", await self._checkpoint(), self._now_ms())])
            await self._root(day)
        return result.to_json()

    async def _checkpoint(self) -> dict[str, Any]:
        """Accounts and contracts; anchors are replayed from the readings of the oldest day that
        can still be corrected (and the day before it, whose last anchor starts that day)."""
        days = [d for a in self.book.accounts.values() if (d := a.oldest_closed(self.book.names)) is not None]
        keep_from = self.book.day_bounds(min(days))[0] - 86400 if days else self.clock.now() - 86400
        first = await self.ledger.first_since(int(keep_from * 1000), kind="readings")
        anchors_from = first if first is not None else self.book.last_seq + 1
        return self.book.checkpoint([r.body for r in self.book.contracts.values()], anchors_from)

    async def _root(self, label: str) -> None:
        previous = await self.ledger.last(ROOT_KIND)
        after = 0 if previous is None else previous.seq - 1
        covered = await self.ledger.hashes(after=after)
        if covered:
            body = root_body(label, covered, self.keys.terminal)
            await self._append([LedgerEntry(ROOT_KIND, body, self._now_ms(), f"root:{label}")])

    # ------------------------------------------------------------------ archive, audit, status

    async def archived(self, seq: int, digest: str) -> int:
        return await self.ledger.mark_archived(seq, digest)

    async def audit(self) -> Audit:
        self.last_audit = await self.ledger.audit(public_key=self.keys.terminal.public_key())
        return self.last_audit


__all__ = ["Billing", "Keys", "LedgerBackend", "Refused", "Settings"]
