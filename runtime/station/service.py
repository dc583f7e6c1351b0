"""The terminal's station model (台区档案): one live, versioned model, from the file to the cloud and back.

Layer: runtime. ``StationService`` owns the model every app reads through ``ctx.station``:

* **file -> store**: at start the archive file (``board.toml [station] file``) is read; when
  its content differs from the one loaded last time (its SHA-256 is kept) it becomes the new
  archive, else the stored model stands. A bad file is logged with every problem and counted
  (``file_errors``); the stored model stays (an empty one when there is none).
* **the model = archive + facts**: the archive is what the utility said (file or
  ``station.replace``); on top of it lie the facts apps identified (``station.propose``) and the
  master station confirmed (``station.patch`` sets, ``station.confirm``), each with its
  provenance. A new archive that changes an attribute drops the facts about that attribute
  (the utility's newer word); facts about records that are gone are dropped too.
* **bus**: ``station/model`` retained (the model, with its version), ``station/changed`` one
  ``StationChange`` per new version (before/after per attribute).
* **cloud**: stream ``station`` gets a ``snapshot`` (first boot, replace, daily), a ``change``
  per version and every ``proposal``, each paged to fit the uplink's message limit
  (``protocols.station.snapshot_messages``: a 2,000-meter model is ~900 kB); commands
  ``station.get|replace|patch|proposals|confirm|reject`` (HMAC-signed like every command) change
  it (``station.get`` answers one part of the model at a time).
* **proposals**: an app's corrections apply at once (``[station] proposals = "auto"``, confidence
  >= ``auto_min_confidence``, never over a confirmed fact, never adding or removing records) or
  wait for the cloud's confirmation; pending ones are persisted.

Every change goes through one lock, bumps the version, is persisted before it is published.
Must not know what apps do with the model, nor read meters.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from hal.clock import Clock
from hal.streams import Stream
from protocols.cloud import MAX_MESSAGE_BYTES, json_size, paged
from protocols.station import (
    ARCHIVE,
    KINDS,
    Correction,
    PatchOp,
    Proposal,
    ProposalResult,
    ProposalStatus,
    Provenance,
    RecordKind,
    StationChange,
    StationError,
    StationModel,
    apply_ops,
    change_messages,
    diff,
    dumps,
    loads,
    model_from_doc,
    model_to_doc,
    proposal_messages,
    provenance_from_doc,
    snapshot_messages,
)
from runtime.bus import Bus
from runtime.errors import CommandError

log = logging.getLogger("ttu.station")

MODEL_TOPIC = "station/model"
CHANGED_TOPIC = "station/changed"
STREAM = "station"
KV = "station"
KEEP_DECIDED = 200  # decided proposals kept (newest), besides every pending one
MAX_CORRECTIONS = 10_000  # per proposal
MAX_REPLY_MODEL_BYTES = MAX_MESSAGE_BYTES - (4 << 10)  # a reply wraps the result in its own envelope

Send = Callable[[str, dict[str, Any]], Awaitable[str]]
Register = Callable[[str, Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]], None]
FactKey = tuple[RecordKind, str, str]  # (kind, id, field)


@dataclass(slots=True)
class StationStats:
    versions: int = 0
    file_loads: int = 0
    file_errors: int = 0
    proposals: int = 0
    applied: int = 0
    pending: int = 0
    refused: int = 0
    facts_dropped: int = 0
    last_error: str | None = None
    watchers_dropped: int = 0
    by_cause: dict[str, int] = field(default_factory=dict)


class StationService:
    """The live station model of one terminal. ``await start()`` before use."""

    def __init__(
        self,
        *,
        store: Any,
        bus: Bus,
        clock: Clock,
        file: Path,
        proposals: str = "confirm",
        auto_min_confidence: float = 0.9,
        send: Send | None = None,
        known_ports: Sequence[str] | None = None,
    ) -> None:
        if proposals not in ("auto", "confirm"):
            raise ValueError(f"proposals must be 'auto' or 'confirm', not {proposals!r}")
        self._store = store
        self._bus = bus
        self._clock = clock
        self.file = file
        self.mode = proposals
        self.auto_min_confidence = auto_min_confidence
        self._send = send
        self._known_ports = None if known_ports is None else frozenset(known_ports)
        self._archive = StationModel()
        self._facts: dict[FactKey, tuple[Any, Provenance]] = {}
        self._model = StationModel()
        self._proposals: dict[str, Proposal] = {}
        self._next_proposal = 1
        self._lock = asyncio.Lock()
        self._streams: set[Stream[StationChange]] = set()
        self.stats = StationStats()

    # ------------------------------------------------------------------ reading

    @property
    def model(self) -> StationModel:
        return self._model

    @property
    def version(self) -> int:
        return self._model.version

    def watch(self, *, maxsize: int = 64) -> Stream[StationChange]:
        """Every change from now on (``async with service.watch() as changes: async for c in changes``);
        a watcher that falls ``maxsize`` changes behind loses the oldest (each carries its model)."""
        stream: Stream[StationChange] = Stream(maxsize, on_close=self._streams.discard, on_drop=self._dropped)
        self._streams.add(stream)
        return stream

    def _dropped(self) -> None:
        self.stats.watchers_dropped += 1

    def proposals(self, *, pending_only: bool = False) -> list[Proposal]:
        items = sorted(self._proposals.values(), key=lambda p: (p.at, p.id))
        return [p for p in items if p.status == "pending"] if pending_only else items

    def statistics(self) -> dict[str, Any]:
        s = self.stats
        return {
            "version": self.version,
            "meters": len(self._model.meters),
            "facts": len(self._facts),
            "mode": self.mode,
            "pending": sum(1 for p in self._proposals.values() if p.status == "pending"),
            "versions": s.versions,
            "file_loads": s.file_loads,
            "file_errors": s.file_errors,
            "proposals": s.proposals,
            "applied": s.applied,
            "refused": s.refused,
            "facts_dropped": s.facts_dropped,
            "watchers_dropped": s.watchers_dropped,
            "last_error": s.last_error,
            "by_cause": dict(s.by_cause),
        }

    # ------------------------------------------------------------------ start

    async def start(self) -> None:
        """Load the stored model, then the file if it changed; publish; send a first snapshot."""
        stored = await self._store.kv_get(KV, "archive")
        if stored is not None:
            try:
                self._archive = model_from_doc(stored, source="store")
            except StationError as err:
                self._error(f"the stored archive is unusable, starting from the file: {err}")
                stored = None
        self._facts = _facts_from_doc(await self._store.kv_get(KV, "facts", []))
        for doc in await self._store.kv_get(KV, "proposals", []):
            with contextlib.suppress(StationError, KeyError, TypeError, ValueError):
                proposal = Proposal.from_doc(doc)
                self._proposals[proposal.id] = proposal
        self._next_proposal = int(await self._store.kv_get(KV, "next_proposal", 1))
        version = int(await self._store.kv_get(KV, "version", 0))
        self._model = self._derive(self._archive, version, await self._store.kv_get(KV, "updated_at"))
        async with self._lock:
            await self._load_file(first=stored is None)
        self._bus.publish(MODEL_TOPIC, self._model, retain=True)
        if await self._store.kv_get(KV, "snapshot_version") != self.version:
            await self.snapshot()
        log.info(
            "station model v%d: %d meters, %d boxes, %d branches, %d facts (%s)",
            self.version,
            len(self._model.meters),
            len(self._model.boxes),
            len(self._model.branches),
            len(self._facts),
            self.file,
        )

    async def _load_file(self, *, first: bool) -> None:
        try:
            text = await asyncio.to_thread(self.file.read_text, encoding="utf-8")
        except FileNotFoundError:
            if first:
                self._error(f"{self.file}: no station archive file; the model is empty until one arrives")
            return
        except (OSError, UnicodeDecodeError) as err:
            self._error(f"{self.file}: cannot read the station archive: {err}")
            return
        digest = hashlib.sha256(text.encode()).hexdigest()
        if not first and digest == await self._store.kv_get(KV, "file_sha256"):
            return
        try:
            archive = loads(text, source=str(self.file))
            self._check_ports(archive, source=str(self.file))
        except StationError as err:
            self.stats.file_errors += 1
            self._error(f"station archive refused, the model stays v{self.version}: {err}")
            return
        self.stats.file_loads += 1
        facts = _facts_kept(self._archive, archive, self._facts)
        self.stats.facts_dropped += len(self._facts) - len(facts)
        await self._commit(archive, facts, cause="file", by=str(self.file), snapshot=not first)
        await self._store.kv_set(KV, "file_sha256", digest)

    def _check_ports(self, model: StationModel, *, source: str) -> None:
        if self._known_ports is None:
            return
        problems = [
            (
                f"meters[{i}].port",
                f"{m.port!r} is not an RS-485 port of this board ({', '.join(sorted(self._known_ports))})",
            )
            for i, m in enumerate(model.meters)
            if m.channel == "rs485" and m.port not in self._known_ports
        ] + [
            (f"devices[{i}].port", f"{d.port!r} is not an RS-485 port of this board")
            for i, d in enumerate(model.devices)
            if d.port not in self._known_ports
        ]
        if problems:
            raise StationError(problems, source=source)

    def _error(self, text: str) -> None:
        self.stats.last_error = text
        log.error("%s", text)

    # ------------------------------------------------------------------ deriving the model

    def _derive(self, archive: StationModel, version: int, updated_at: float | None) -> StationModel:
        """``archive`` with the facts laid over it; facts that no longer apply are dropped."""
        model = self._apply_facts(archive) if self._facts else archive
        return replace(model, version=version, updated_at=updated_at)

    def _apply_facts(self, archive: StationModel) -> StationModel:
        groups: dict[tuple[str, str], list[tuple[FactKey, Any, Provenance]]] = {}
        for key, (value, prov) in self._facts.items():
            groups.setdefault((prov.source, prov.by), []).append((key, value, prov))
        model = archive
        for items in groups.values():
            prov = items[0][2]
            ops = [PatchOp("set", k[0], k[1], k[2], v) for k, v, p in items if p == prov]
            singles = [(k, v, p) for k, v, p in items if p != prov]
            try:
                model, _ = apply_ops(model, ops, prov)
            except StationError:
                singles = items  # find the facts that no longer apply, one by one
            for key, value, p in singles:
                try:
                    model, _ = apply_ops(model, [PatchOp("set", key[0], key[1], key[2], value)], p)
                except StationError as err:
                    self._facts.pop(key, None)
                    self.stats.facts_dropped += 1
                    log.info("station: fact %s.%s.%s dropped: %s", *key, err)
        return model

    async def _commit(
        self,
        archive: StationModel,
        facts: Mapping[FactKey, tuple[Any, Provenance]],
        *,
        cause: str,
        by: str,
        snapshot: bool,
    ) -> StationChange | None:
        """Make ``archive`` + ``facts`` the model: persist, publish, uplink. Lock held by the caller."""
        before = self._model
        old_archive, old_facts = self._archive, self._facts
        self._archive, self._facts = archive, dict(facts)
        candidate = self._derive(archive, before.version, before.updated_at)
        changes = diff(before, candidate)
        if not changes and not snapshot:
            await self._persist(candidate)  # the archive or facts changed without a visible difference
            return None
        now = self._clock.now()
        model = replace(candidate, version=before.version + 1, updated_at=now)
        change = StationChange(model.version, before.version, now, cause, by, tuple(changes), model)
        try:
            await self._persist(model)
        except Exception:
            self._archive, self._facts = old_archive, old_facts
            raise
        self._model = model
        self.stats.versions += 1
        self.stats.by_cause[cause] = self.stats.by_cause.get(cause, 0) + 1
        self._bus.publish(MODEL_TOPIC, model, retain=True)
        self._bus.publish(CHANGED_TOPIC, change)
        for stream in list(self._streams):
            stream.put(change)
        log.info("station model v%d (%s by %s): %d changes", model.version, cause, by or "-", len(changes))
        for message in change_messages(change):
            await self._uplink(message)
        if snapshot:
            await self.snapshot()
        return change

    async def _persist(self, model: StationModel) -> None:
        await self._store.kv_set(KV, "archive", model_to_doc(self._archive))
        await self._store.kv_set(KV, "facts", _facts_to_doc(self._facts))
        await self._store.kv_set(KV, "version", model.version)
        await self._store.kv_set(KV, "updated_at", model.updated_at)

    async def _uplink(self, body: dict[str, Any]) -> None:
        if self._send is not None:
            await self._send(STREAM, body)

    async def snapshot(self) -> None:
        """Send the whole model up (stream ``station``, ``type: snapshot``), in as many parts as
        the uplink's message limit asks (``protocols.station.snapshot_messages``)."""
        head = {"type": "snapshot", "version": self.version, "at": self._clock.now()}
        for message in snapshot_messages(self._model, head):
            await self._uplink(message)
        await self._store.kv_set(KV, "snapshot_version", self.version)

    # ------------------------------------------------------------------ changing

    async def replace(
        self, archive: StationModel, *, by: str, write_file: bool = True
    ) -> StationChange | None:
        """A new archive from the utility (the cloud's ``station.replace``); written to the file too.

        Facts about attributes the new archive changes are dropped; provenance that comes with
        the new archive's records stays theirs."""
        self._check_ports(archive, source="station.replace")
        async with self._lock:
            facts = _facts_kept(self._archive, archive, self._facts)
            self.stats.facts_dropped += len(self._facts) - len(facts)
            change = await self._commit(archive, facts, cause="replace", by=by, snapshot=True)
            if write_file:
                text = dumps(replace(archive, version=0, updated_at=None))
                await asyncio.to_thread(_write_atomically, self.file, text)
                await self._store.kv_set(KV, "file_sha256", hashlib.sha256(text.encode()).hexdigest())
            return change

    async def reload_file(self) -> None:
        """Re-read the archive file (e.g. after an installer replaced it); a bad one is refused."""
        async with self._lock:
            await self._load_file(first=False)

    async def patch(
        self, ops: Sequence[PatchOp], *, provenance: Provenance, by: str, base_version: int | None = None
    ) -> StationChange | None:
        """Apply ``ops``: sets become facts with ``provenance``, adds and removes change the archive.
        ``base_version``: refuse (``StationError``) unless the model is still at that version."""
        async with self._lock:
            if base_version is not None and base_version != self.version:
                raise StationError(
                    [("base_version", f"the model is at v{self.version}, not v{base_version}")]
                )
            return await self._apply(ops, provenance, cause="patch", by=by)

    async def _apply(
        self, ops: Sequence[PatchOp], provenance: Provenance, *, cause: str, by: str
    ) -> StationChange | None:
        structural = [op for op in ops if op.op != "set"]
        archive = self._archive
        if structural:
            archive, _ = apply_ops(archive, structural, provenance)
        facts = dict(self._facts)
        for op in ops:
            if op.op == "set" and op.field is not None:
                facts[(op.kind, op.id, op.field)] = (op.value, provenance)
        # validate the whole result first: nothing changes when any op is bad
        trial, _ = apply_ops(archive, _fact_ops(facts), ARCHIVE)
        self._check_ports(trial, source=cause)
        return await self._commit(archive, facts, cause=cause, by=by, snapshot=False)

    async def propose(self, app: str, corrections: Sequence[Correction]) -> ProposalResult:
        """An app's corrections: applied at once, pending the cloud, or refused (see module doc)."""
        if not corrections:
            raise StationError([("corrections", "nothing proposed")])
        if len(corrections) > MAX_CORRECTIONS:
            raise StationError(
                [("corrections", f"{len(corrections)} in one proposal, the limit is {MAX_CORRECTIONS}")]
            )
        async with self._lock:
            now = self._clock.now()
            refused: list[tuple[int, str]] = []
            good: list[Correction] = []
            formed = [(i, c) for i, c in enumerate(corrections) if c.problem() is None]
            if len(formed) == len(corrections) and self._all_apply([c for _, c in formed]):
                good = list(corrections)  # one check of the model, not one per correction
            else:
                for i, c in enumerate(corrections):
                    problem = c.problem() or self._problem(c)
                    if problem is not None:
                        refused.append((i, problem))
                    else:
                        good.append(c)
            self.stats.proposals += 1
            self.stats.refused += len(refused)
            pid = f"p-{self._next_proposal}"
            self._next_proposal += 1
            await self._store.kv_set(KV, "next_proposal", self._next_proposal)
            if not good:
                proposal = Proposal(pid, app, now, (), "refused", "; ".join(r for _, r in refused))
                await self._record(proposal)
                return ProposalResult(pid, "refused", self.version, tuple(refused))
            auto = self.mode == "auto" and all(self._may_apply(c) for c in good)
            status: ProposalStatus = "applied" if auto else "pending"
            proposal = Proposal(pid, app, now, tuple(good), status)
            if auto:
                prov = [self._identified(app, c, now) for c in good]
                try:
                    await self._apply_corrections(good, prov, cause="proposal", by=app)
                except StationError as err:  # valid one by one, not together (e.g. two boxes swapped badly)
                    proposal = replace(proposal, status="refused", reason=str(err))
                    self.stats.refused += len(good)
                    await self._record(proposal)
                    return ProposalResult(pid, "refused", self.version, (*refused, (-1, str(err))))
                self.stats.applied += len(good)
            else:
                self.stats.pending += 1
            await self._record(proposal)
            return ProposalResult(pid, status, self.version, tuple(refused))

    def _all_apply(self, corrections: Sequence[Correction]) -> bool:
        """True when ``corrections`` are sets of distinct attributes of existing records that apply to
        the model together, as they will be applied: one check of the whole model instead of one
        per correction (2,000 corrections of a 2,000-meter area took ~15 s checked one by one)."""
        if any(c.op != "set" or self._model.record(c.kind, c.id) is None for c in corrections):
            return False
        fields = {(c.kind, c.id, c.field) for c in corrections}
        if len(fields) != len(corrections):
            return False
        try:
            apply_ops(self._model, [c.patch() for c in corrections], ARCHIVE)
        except StationError:
            return False
        return True

    def _problem(self, c: Correction) -> str | None:
        """Why a well-formed correction cannot apply to the current model (checked alone)."""
        try:
            op = c.patch()
            if op.op == "set" and self._model.record(op.kind, op.id) is None:
                return f"no {op.kind} {op.id!r}"
            apply_ops(self._model, [op], ARCHIVE)
        except StationError as err:
            return "; ".join(f"{p}: {r}" if p else r for p, r in err.problems)
        return None

    def _may_apply(self, c: Correction) -> bool:
        if c.op != "set" or c.confidence < self.auto_min_confidence or c.field is None:
            return False
        record = self._model.record(c.kind, c.id)
        return record is not None and record.source_of(c.field).source != "confirmed"

    @staticmethod
    def _identified(app: str, c: Correction, now: float) -> Provenance:
        return Provenance("identified", by=app, confidence=float(c.confidence), at=now, evidence=c.evidence)

    async def _apply_corrections(
        self, corrections: Sequence[Correction], provenance: Sequence[Provenance], *, cause: str, by: str
    ) -> StationChange | None:
        structural = [(c.patch(), p) for c, p in zip(corrections, provenance, strict=True) if c.op != "set"]
        archive = self._archive
        for op, prov in structural:
            archive, _ = apply_ops(archive, [op], prov)
        facts = dict(self._facts)
        for c, prov in zip(corrections, provenance, strict=True):
            if c.op == "set" and c.field is not None:
                facts[(c.kind, c.id, c.field)] = (c.value, prov)
        apply_ops(archive, _fact_ops(facts), ARCHIVE)  # all together, or nothing
        return await self._commit(archive, facts, cause=cause, by=by, snapshot=False)

    async def _record(self, proposal: Proposal) -> None:
        self._proposals[proposal.id] = proposal
        decided = [p for p in self.proposals() if p.status != "pending"]
        for old in decided[: max(0, len(decided) - KEEP_DECIDED)]:
            self._proposals.pop(old.id, None)
        await self._store.kv_set(KV, "proposals", [p.to_doc() for p in self.proposals()])
        for message in proposal_messages(proposal):
            await self._uplink(message)

    async def confirm(self, proposal_id: str, *, by: str) -> StationChange | None:
        """The master station accepts a pending (or auto-applied) proposal: its corrections become
        confirmed facts."""
        async with self._lock:
            proposal = self._decidable(proposal_id, ("pending", "applied"))
            now = self._clock.now()
            prov = [
                Provenance("confirmed", by=by, confidence=float(c.confidence), at=now, evidence=c.evidence)
                for c in proposal.corrections
            ]
            change = await self._apply_corrections(proposal.corrections, prov, cause="confirm", by=by)
            await self._record(replace(proposal, status="confirmed"))
            return change

    async def reject(self, proposal_id: str, *, by: str, reason: str = "") -> StationChange | None:
        """The master station refuses a proposal; an auto-applied one is taken back."""
        async with self._lock:
            proposal = self._decidable(proposal_id, ("pending", "applied"))
            change = None
            if proposal.status == "applied":
                facts = {
                    k: v
                    for k, v in self._facts.items()
                    if not (
                        v[1].source == "identified" and v[1].by == proposal.app and v[1].at == proposal.at
                    )
                }
                change = await self._commit(self._archive, facts, cause="reject", by=by, snapshot=False)
            await self._record(replace(proposal, status="rejected", reason=reason))
            return change

    def _decidable(self, proposal_id: str, states: tuple[str, ...]) -> Proposal:
        proposal = self._proposals.get(proposal_id)
        if proposal is None:
            raise StationError([("proposal", f"no proposal {proposal_id!r}")])
        if proposal.status not in states:
            raise StationError(
                [("proposal", f"{proposal_id} is {proposal.status}, not {' or '.join(states)}")]
            )
        return proposal

    # ------------------------------------------------------------------ cloud commands

    def register_commands(self, register: Register) -> None:
        register("station.get", self._cmd_get)
        register("station.replace", self._cmd_replace)
        register("station.patch", self._cmd_patch)
        register("station.proposals", self._cmd_proposals)
        register("station.confirm", self._cmd_confirm)
        register("station.reject", self._cmd_reject)

    async def _cmd_get(self, args: dict[str, Any]) -> dict[str, Any]:
        """``{"part": i}`` (default 0): that part of the model, as a snapshot would carry it (a
        large model does not fit one reply); the reply says how many ``parts`` there are."""
        part = args.get("part", 0)
        messages = snapshot_messages(self._model, {"version": self.version}, limit=MAX_REPLY_MODEL_BYTES)
        if isinstance(part, bool) or not isinstance(part, int) or not 0 <= part < len(messages):
            raise CommandError("bad_args", f"part {part!r}: the model has parts 0..{len(messages) - 1}")
        return messages[part]

    async def _cmd_replace(self, args: dict[str, Any]) -> dict[str, Any]:
        with _bad_args("station.replace"):
            archive = model_from_doc(args.get("model"), source="station.replace")
            await self.replace(archive, by=str(args.get("by") or "cloud"))
        return {"version": self.version, "meters": len(self._model.meters)}

    async def _cmd_patch(self, args: dict[str, Any]) -> dict[str, Any]:
        with _bad_args("station.patch"):
            raw = args.get("ops")
            if not isinstance(raw, list) or not raw:
                raise StationError([("ops", "must be a non-empty list of operations")])
            ops = [PatchOp.from_doc(op, f"ops[{i}]") for i, op in enumerate(raw)]
            base = args.get("base_version")
            if base is not None and (isinstance(base, bool) or not isinstance(base, int)):
                raise StationError([("base_version", f"{base!r} is not a version number")])
            by = str(args.get("by") or "cloud")
            prov = Provenance("confirmed", by=by, at=self._clock.now())
            change = await self.patch(ops, provenance=prov, by=by, base_version=base)
        return {"version": self.version, "changes": 0 if change is None else len(change.changes)}

    async def _cmd_proposals(self, args: dict[str, Any]) -> dict[str, Any]:
        """The proposals, paged like ``station.get`` (``{"part": i}``): each proposal whole (at
        most ``MAX_CORRECTIONS`` corrections of bounded evidence may still be too big for one reply:
        those are listed without their corrections, ``"corrections_omitted": n``)."""
        pending = bool(args.get("pending_only", False))
        docs = [_fitting(p.to_doc()) for p in self.proposals(pending_only=pending)]
        messages = paged({}, "proposals", docs, limit=MAX_REPLY_MODEL_BYTES)
        part = args.get("part", 0)
        if isinstance(part, bool) or not isinstance(part, int) or not 0 <= part < len(messages):
            raise CommandError("bad_args", f"part {part!r}: the proposals have parts 0..{len(messages) - 1}")
        return messages[part]

    async def _cmd_confirm(self, args: dict[str, Any]) -> dict[str, Any]:
        with _bad_args("station.confirm"):
            await self.confirm(str(args.get("proposal")), by=str(args.get("by") or "cloud"))
        return {"version": self.version}

    async def _cmd_reject(self, args: dict[str, Any]) -> dict[str, Any]:
        with _bad_args("station.reject"):
            reason = str(args.get("reason") or "")
            await self.reject(str(args.get("proposal")), by=str(args.get("by") or "cloud"), reason=reason)
        return {"version": self.version}


@contextlib.contextmanager
def _bad_args(command: str) -> Any:
    try:
        yield
    except StationError as err:
        raise CommandError("bad_args", err.reason) from err


def _fitting(doc: dict[str, Any]) -> dict[str, Any]:
    """A proposal's document, its corrections left out when they alone would fill a reply."""
    if json_size(doc) <= MAX_REPLY_MODEL_BYTES // 2:
        return doc
    corrections = doc.get("corrections") or []
    return {**doc, "corrections": [], "corrections_omitted": len(corrections)}


def _facts_kept(
    old: StationModel, new: StationModel, facts: Mapping[FactKey, tuple[Any, Provenance]]
) -> dict[FactKey, tuple[Any, Provenance]]:
    """The facts that survive a new archive: their record is still there and the archive did not
    change that attribute."""
    kept: dict[FactKey, tuple[Any, Provenance]] = {}
    for key, fact in facts.items():
        kind, record_id, name = key
        a, b = old.record(kind, record_id), new.record(kind, record_id)
        if b is None or a is None or getattr(a, name, None) != getattr(b, name, None):
            continue
        kept[key] = fact
    return kept


def _fact_ops(facts: Mapping[FactKey, tuple[Any, Provenance]]) -> list[PatchOp]:
    return [
        PatchOp("set", kind, record_id, name, value) for (kind, record_id, name), (value, _) in facts.items()
    ]


def _facts_to_doc(facts: Mapping[FactKey, tuple[Any, Provenance]]) -> list[dict[str, Any]]:
    return [
        {
            "kind": k[0],
            "id": k[1],
            "field": k[2],
            "value": list(v) if isinstance(v, tuple) else v,
            "provenance": p.to_doc(),
        }
        for k, (v, p) in facts.items()
    ]


def _facts_from_doc(doc: Any) -> dict[FactKey, tuple[Any, Provenance]]:
    out: dict[FactKey, tuple[Any, Provenance]] = {}
    for item in doc if isinstance(doc, list) else []:
        problems: list[tuple[str, str]] = []
        if not isinstance(item, dict):
            continue
        prov = provenance_from_doc(item.get("provenance"), "fact", problems)
        if prov is None:
            continue
        kind = next((k for k in KINDS if k == item.get("kind")), None)
        if kind is not None:
            out[(kind, str(item.get("id")), str(item.get("field")))] = (item.get("value"), prov)
    return out


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


__all__ = ["CHANGED_TOPIC", "MODEL_TOPIC", "STREAM", "StationService", "StationStats"]
