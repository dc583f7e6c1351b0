"""Downlink commands: decode, authenticate, check freshness, de-duplicate, validate, execute.

Layer: runtime (uplink). Turns one raw payload from the command topic into exactly one
``protocols.cloud.Reply``; it never touches MQTT (the uplink sends the reply through the
outbox). A rejected command never reaches its handler, so it changes nothing.

Order of checks: size (``too_large``: over ``max_bytes``, board ``uplink.max_command_bytes``)
-> nesting deeper than 32 or too many values (``too_complex``, refused by a scan before
parsing: a payload of 100,000 brackets cannot reach the JSON parser's recursion) -> JSON/shape
(``bad_json``/``bad_command``) -> HMAC (``unauthenticated``)
-> age within +-10 min of the clock (``expired``) -> replay cache (same id: the cached
reply, no second execution) -> lookup (``unknown_command``) -> ``validate(args)``
(``bad_args``) -> handler (``failed``, ``bad_args`` for a ``ValueError``, or the code of a
``CommandError`` it raises) -> the reply's size (``result_too_large``: a result over
``MAX_MESSAGE_BYTES`` could not go up; commands with large answers take a ``part``).
Replies to authenticated commands are cached in the store (kv namespace
``uplink.commands``) for twice the freshness window, so a reboot does not re-execute a
replayed command either.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from hal.clock import Clock
from protocols.cloud import (
    DEFAULT_MAX_COMMAND_BYTES,
    MAX_MESSAGE_BYTES,
    Command,
    Reply,
    json_size,
    load_bounded,
    verify_command,
)
from protocols.errors import ProtocolError
from runtime.errors import CommandError
from runtime.store import Store

_log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
Validator = Callable[[dict[str, Any]], None]

FRESHNESS_S = 600.0
REPLAY_NS = "uplink.commands"


@dataclass(frozen=True, slots=True)
class _Registered:
    handler: Handler
    validate: Validator | None


class CommandDispatcher:
    """Registry of command handlers plus the checks every command passes through."""

    def __init__(
        self, *, store: Store, clock: Clock, key: bytes, max_bytes: int = DEFAULT_MAX_COMMAND_BYTES
    ) -> None:
        if not key:
            raise ValueError("command key must not be empty")
        self.max_bytes = max_bytes
        self._store = store
        self._clock = clock
        self._key = key
        self._commands: dict[str, _Registered] = {}
        self._replies: dict[str, tuple[float, Reply]] = {}
        self._loaded = False
        self.ok = 0
        self.replayed = 0
        self.rejected: Counter[str] = Counter()

    def register(self, name: str, handler: Handler, *, validate: Validator | None = None) -> None:
        if not name or name in self._commands:
            raise ValueError(f"command {name!r} is empty or already registered")
        self._commands[name] = _Registered(handler, validate)

    def unregister(self, name: str) -> bool:
        """Forget command ``name`` (its app stopped); True if it was registered. A command that
        arrives afterwards is answered ``unknown_command``."""
        return self._commands.pop(name, None) is not None

    @property
    def names(self) -> list[str]:
        return sorted(self._commands)

    async def _load_cache(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for cmd_id, item in (await self._store.kv_items(REPLAY_NS)).items():
            try:
                self._replies[cmd_id] = (float(item["ts"]), Reply.from_json(item["reply"]))
            except (KeyError, TypeError, ValueError, ProtocolError):
                await self._store.kv_delete(REPLAY_NS, cmd_id)

    async def _remember(self, cmd_id: str, reply: Reply) -> None:
        now = self._clock.now()
        self._replies[cmd_id] = (now, reply)
        await self._store.kv_set(REPLAY_NS, cmd_id, {"ts": now, "reply": reply.to_json()})
        # a replay older than the freshness window is rejected as expired before the cache is consulted
        stale = [i for i, (ts, _) in self._replies.items() if now - ts > 2 * FRESHNESS_S]
        for i in stale:
            del self._replies[i]
            await self._store.kv_delete(REPLAY_NS, i)

    def _reject(self, cmd_id: str, code: str, message: str) -> Reply:
        self.rejected[code] += 1
        _log.warning("command %r rejected: %s: %s", cmd_id, code, message)
        return Reply(cmd_id, False, code=code, message=message)

    async def dispatch(self, payload: bytes) -> Reply:
        """Exactly one reply for one payload; never raises for bad input."""
        await self._load_cache()
        if len(payload) > self.max_bytes:  # not even looked at: no id to salvage
            return self._reject("", "too_large", f"command of {len(payload)} bytes is over {self.max_bytes}")
        try:
            cmd = Command.decode(payload, max_bytes=self.max_bytes)
        except ProtocolError as err:
            reason = str(err)
            if "nested deeper" in reason or "values" in reason:
                return self._reject("", "too_complex", reason)
            code = "bad_json" if "not JSON" in reason or "JSON object" in reason else "bad_command"
            return self._reject(_salvage_id(payload, self.max_bytes), code, reason)
        if not verify_command(cmd, self._key):
            return self._reject(cmd.id, "unauthenticated", f"command {cmd.id}: bad or missing signature")
        age = self._clock.now() - cmd.ts
        if abs(age) > FRESHNESS_S:
            return self._reject(
                cmd.id, "expired", f"command {cmd.id}: ts is {age:+.0f} s from the terminal clock"
            )
        cached = self._replies.get(cmd.id)
        if cached is not None:
            self.replayed += 1
            _log.info("command %r replayed: sending the cached reply", cmd.id)
            return cached[1]
        reply = await self._execute(cmd)
        await self._remember(cmd.id, reply)
        return reply

    async def _execute(self, cmd: Command) -> Reply:
        entry = self._commands.get(cmd.name)
        if entry is None:
            return self._reject(cmd.id, "unknown_command", f"command {cmd.id}: no command named {cmd.name!r}")
        if entry.validate is not None:
            try:
                entry.validate(cmd.args)
            except Exception as err:  # any validation failure is the sender's fault: bad_args
                return self._reject(cmd.id, "bad_args", f"{cmd.name}: {err}")
        try:
            result = await entry.handler(cmd.args)
        except CommandError as err:
            return self._reject(cmd.id, err.code, f"{cmd.name}: {err.reason}")
        except ValueError as err:  # the handler's own check of its arguments: the sender's mistake
            return self._reject(cmd.id, "bad_args", f"{cmd.name}: {err}")
        except Exception as err:  # a crashing handler must still produce a reply
            _log.exception("command %r (%s) failed", cmd.id, cmd.name)
            return self._reject(cmd.id, "failed", f"{cmd.name}: {type(err).__name__}: {err}")
        if not isinstance(result, dict):
            return self._reject(cmd.id, "failed", f"{cmd.name}: handler returned {type(result).__name__}")
        reply = Reply(cmd.id, True, result=result)
        size = json_size(reply.to_json())
        if size > MAX_MESSAGE_BYTES:  # the outbox would refuse it: say so instead of no reply at all
            return self._reject(
                cmd.id,
                "result_too_large",
                f"{cmd.name}: a reply of {size} bytes is over {MAX_MESSAGE_BYTES}; ask for it in parts",
            )
        self.ok += 1
        return reply


def _salvage_id(payload: bytes, max_bytes: int) -> str:
    """The command id of a malformed command when it can still be read, else ``""``."""
    try:
        data = load_bounded(payload, what="command", max_bytes=max_bytes, max_elements=max_bytes // 2)
    except ProtocolError:
        return ""
    cmd_id = data.get("id")
    return cmd_id if isinstance(cmd_id, str) and 0 < len(cmd_id) <= 128 else ""
