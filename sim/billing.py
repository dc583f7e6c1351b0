"""The utility and the bank of the simulated station area, for the billing app (本地费控).

Layer: sim (the master-station side). Talks to the terminal only through the cloud stub (signed
commands over MQTT) and listens to what it sends on stream ``billing``. Must not import apps.

* Keys: the simulated utility and bank sign with Ed25519 keys derived from fixed seeds, so the
  repo's board.toml can trust their public keys (``SIM_UTILITY_PUBLIC`` / ``SIM_BANK_PUBLIC``);
  ``write_keys`` puts the private keys (0600 PEM) in the run folder for ``ttu cloud billing``.
* ``BillingDriver`` tops every customer up (``opening_yuan``, or the scenario's
  ``[[billing.balance]]``), publishes the scenario's contract (an example contract is re-dated
  to start on the run's first local day, so it bills from the start), then plays the scenario's
  top-ups and 保电 orders at their times. Commands the terminal does not answer yet (the app is
  starting) are sent again; a refusal is logged, not retried.
* ``LedgerArchive`` acknowledges the ledger: when the records received so far form an unbroken
  chain (each ``prev`` the hash of the one before) it sends ``billing.archived {seq, hash}``, and
  the terminal may then prune what the master station holds. When records arrive past a gap it
  asks for the missing ones (``billing.resend {from}``), at most once a minute.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hal.clock import Clock
from protocols import billing
from protocols.cloud import DEFAULT_MAX_COMMAND_BYTES
from protocols.ledger import PieceJoiner, Record
from sim.cloud.stub import CloudStub, CloudStubError
from sim.scenarios import Billing as BillingScenario

log = logging.getLogger("ttu.sim.billing")

EXAMPLES = Path(billing.__file__).parent / "examples"
SIM_UTILITY_PUBLIC = "HxtdfhFl+Fddn5YglTgAzHn8sQG8107rpx4iLCdmlcs="
SIM_BANK_PUBLIC = "pV5/+8rXQQWVRuoNjxUOlCbexEYPwecQ+K89fXeBuWw="
STREAM = "billing"


def _key(seed: bytes) -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(hashlib.sha256(seed).digest())


def utility_key() -> Ed25519PrivateKey:
    return _key(b"ttu-sim utility key")


def bank_key() -> Ed25519PrivateKey:
    return _key(b"ttu-sim bank key")


def write_keys(folder: Path) -> dict[str, Path]:
    """The simulated utility's and bank's private keys as 0600 PEM files in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, key in (("utility", utility_key()), ("bank", bank_key())):
        path = folder / f"{name}.pem"
        if not path.exists():
            pem = key.private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, pem)
            finally:
                os.close(fd)
        out[name] = path
    return out


def contract_document(name: str, *, start: float, tz: ZoneInfo) -> dict[str, Any]:
    """The scenario's contract, canonical: an example by name, or a contract that would start after
    the run began, is re-dated to start on the run's first local day."""
    path = Path(name) if name.endswith((".toml", ".json")) else EXAMPLES / f"{name}.toml"
    text = path.read_text(encoding="utf-8")
    data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    day = datetime.fromtimestamp(start, tz).strftime("%Y-%m-%dT00:00")
    if path.parent == EXAMPLES or str(data.get("effective_from", "")) > day:
        data = {**data, "effective_from": day, "timezone": tz.key}
    return billing.normalize(data)


@dataclass(frozen=True, slots=True)
class Party:
    terminal: str
    customers: Mapping[str, str]  # meter id -> customer id
    start: float
    tz: ZoneInfo


class BillingDriver:
    def __init__(
        self,
        stub: CloudStub,
        clock: Clock,
        party: Party,
        scenario: BillingScenario,
        *,
        max_command_bytes: int = DEFAULT_MAX_COMMAND_BYTES,
    ) -> None:
        self.stub = stub
        self.clock = clock
        self.party = party
        self.scenario = scenario
        self.max_command_bytes = max_command_bytes  # the terminal's (and broker's) downlink limit
        self.replies: list[dict[str, Any]] = []
        self.refused: list[str] = []

    async def _command(self, name: str, document: Any, *, key: str = "document") -> dict[str, Any] | None:
        """Send until the terminal answers (its app may still be starting); None if it refused."""
        delay = 2.0
        while True:
            try:
                reply = await self.stub.send_command(self.party.terminal, name, {key: document}, timeout=30.0)
            except (TimeoutError, CloudStubError):  # not connected or no answer: send it again
                reply = None
            if reply is not None and reply.ok:
                result = dict(reply.result or {})
                self.replies.append({"command": name, **result})
                return result
            if reply is not None and reply.code != "unknown_command":
                self.refused.append(f"{name}: {reply.code}: {reply.message}")
                log.warning("%s refused by %s: %s", name, self.party.terminal, reply.message)
                return None
            await self.clock.sleep(delay)
            delay = min(delay * 2, 60.0)

    def _topup(self, txn: str, meter: str, yuan: str) -> dict[str, Any]:
        body = {
            "txn_id": txn,
            "terminal": self.party.terminal,
            "customer_id": self.party.customers[meter],
            "type": "topup",
            "amount_yuan": yuan,
            "bank": "SIM-BANK",
            "issued_at": datetime.fromtimestamp(self.clock.now(), self.party.tz).isoformat(
                timespec="seconds"
            ),
        }
        return billing.sign("topup", body, bank_key())

    async def run(self) -> None:
        s = self.scenario
        contract = contract_document(s.contract, start=self.party.start, tz=self.party.tz)
        opening = dict(s.balances)
        batch = [  # the bank's opening batch: accounts are funded before fee control starts
            self._topup(f"SIM-OPEN-{meter}", meter, opening.get(meter, s.opening_yuan))
            for meter in sorted(self.party.customers)
        ]
        for chunk in batches(batch, self.max_command_bytes // 2):  # half: envelope and signature
            await self._command("billing.topup", chunk, key="documents")
        await self._command("billing.contract", billing.sign("contract", contract, utility_key()))
        events: list[tuple[float, str, Any]] = [
            *((self.party.start + at, "topup", (meter, yuan)) for meter, at, yuan in s.topups),
            *((self.party.start + at, "keep_power", (meter, on)) for meter, at, on in s.keep_power),
        ]
        for n, (at, kind, what) in enumerate(sorted(events, key=lambda e: e[0])):
            await self.clock.sleep_until(at)
            meter = what[0]
            if meter not in self.party.customers:
                log.warning("scenario billing: %s is not a customer meter", meter)
                continue
            if kind == "topup":
                await self._command("billing.topup", self._topup(f"SIM-{n:04d}-{meter}", meter, what[1]))
            else:
                body = {
                    "terminal": self.party.terminal,
                    "customer_id": self.party.customers[meter],
                    "on": what[1],
                    "reason": "scenario",
                    "issued_at": datetime.fromtimestamp(self.clock.now(), self.party.tz).isoformat(
                        timespec="seconds"
                    ),
                }
                await self._command("billing.keep_power", billing.sign("keep_power", body, utility_key()))


def batches(documents: list[dict[str, Any]], max_bytes: int) -> list[list[dict[str, Any]]]:
    """``documents`` cut into consecutive batches whose JSON stays within ``max_bytes`` (a single
    document larger than that is a batch of its own: the terminal refuses it by name)."""
    out: list[list[dict[str, Any]]] = []
    size = max_bytes + 1
    for doc in documents:
        n = len(json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode()) + 1
        if size + n > max_bytes:
            out.append([])
            size = 1
        out[-1].append(doc)
        size += n
    return out


class LedgerArchive:
    """Acknowledges the ledger records the master station holds in an unbroken chain.

    ``on_message`` (a stub listener) only takes note; ``run`` sends the acknowledgements, so a
    listener never waits on a reply the stub's own receive loop has to deliver."""

    def __init__(self, stub: CloudStub, clock: Clock) -> None:
        self.stub = stub
        self.clock = clock
        self.held: dict[str, dict[int, Record]] = {}
        self.pieces: dict[str, PieceJoiner] = {}
        self.chained: dict[str, int] = {}  # highest seq of an unbroken chain from 1
        self.archived: dict[str, int] = {}  # acknowledged to the terminal
        self.acks = 0
        self.resends = 0
        self._asked: dict[str, float] = {}  # terminal -> clock time of the last resend request
        self._wake = asyncio.Event()

    async def on_message(self, terminal: str, body: dict[str, Any]) -> None:
        if body.get("type") == "ledger_piece":  # a record too big for one message, in pieces
            try:
                joined = self.pieces.setdefault(terminal, PieceJoiner()).add(body)
            except ValueError:
                return
            raws = [] if joined is None else [joined.to_json()]
        elif body.get("type") == "ledger":
            raws = body.get("records", [])
        else:
            return
        held = self.held.setdefault(terminal, {})
        for raw in raws:
            try:
                record = Record.from_json(raw)
            except ValueError:
                continue
            if record.computed_hash() == record.hash:
                held.setdefault(record.seq, record)
        seq = self.chained.get(terminal, 0)
        while (nxt := held.get(seq + 1)) is not None and (seq == 0 or nxt.prev == held[seq].hash):
            seq += 1
        if seq > self.chained.get(terminal, 0):
            for old in [s for s in held if s < seq]:
                del held[old]
            self.chained[terminal] = seq
            self._wake.set()
        if any(s > seq + 1 for s in held):  # something is missing after seq
            self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            for terminal, seq in list(self.chained.items()):
                await self._ask_missing(terminal, seq)
                if seq <= self.archived.get(terminal, 0):
                    continue
                digest = self.held[terminal][seq].hash
                try:
                    reply = await self.stub.send_command(
                        terminal, "billing.archived", {"seq": seq, "hash": digest}
                    )
                except (TimeoutError, CloudStubError):
                    self._wake.set()
                    await self.clock.sleep(10.0)
                    continue
                if reply.ok:
                    self.archived[terminal] = seq
                    self.acks += 1
                else:
                    log.error("billing.archived refused by %s: %s", terminal, reply.message)

    async def _ask_missing(self, terminal: str, seq: int) -> None:
        held = self.held.get(terminal, {})
        if not any(s > seq + 1 for s in held):
            return
        now = self.clock.now()
        if now - self._asked.get(terminal, -1e18) < 60.0:
            self._wake.set()  # look again later
            return
        self._asked[terminal] = now
        try:
            await self.stub.send_command(terminal, "billing.resend", {"from": seq + 1})
            self.resends += 1
        except (TimeoutError, CloudStubError):
            pass


__all__ = [
    "SIM_BANK_PUBLIC",
    "SIM_UTILITY_PUBLIC",
    "BillingDriver",
    "LedgerArchive",
    "Party",
    "bank_key",
    "batches",
    "contract_document",
    "utility_key",
    "write_keys",
]
