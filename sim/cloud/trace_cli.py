"""``ttu cloud trace``: the last frames a terminal saw on its links, fetched and decoded.

Layer: sim (cloud stub CLI). Sends the terminal's ``hal.trace`` command (the frame ring buffers
of its RS-485 ports and HPLC module UART) and prints every frame with what ``ttu frame decode``
makes of it: protocol, function or service, data item, value. A frame that does not decode
shows its error; nothing here changes the terminal.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sim.cloud.cli import DEFAULT_BROKER, DEFAULT_KEY_FILE, CloudCliError, load_command_key, render_table

Handler = Callable[[argparse.Namespace], int]


def summary(decoded: dict[str, Any]) -> str:
    """One line of what a frame is, from its ``describe`` output (carried frames after a '>')."""
    if not decoded.get("ok"):
        return f"{decoded.get('protocol', '?')}: {decoded.get('error')} (at byte {decoded.get('offset')})"
    protocol = str(decoded.get("protocol"))
    parts = [protocol]
    if "afn" in decoded and "fn" in decoded:  # Q/GDW 1376.2
        parts.append(f"AFN{int(decoded['afn']):02X} F{decoded['fn']} {decoded.get('direction', '')}".rstrip())
    else:
        parts.append(str(decoded.get("service") or decoded.get("function") or ""))
        address = decoded.get("address") or decoded.get("sa")
        if address:
            parts.append(str(address))
        for key in ("di", "oad", "item"):
            if decoded.get(key) is not None:
                parts.append(str(decoded[key]))
        if decoded.get("oads"):
            parts.append(",".join(str(o) for o in decoded["oads"]))
        if decoded.get("value") is not None:
            unit = f" {decoded['unit']}" if decoded.get("unit") else ""
            parts.append(f"= {decoded['value']}{unit}")
    line = " ".join(p for p in parts if p)
    inner = decoded.get("inner")
    return f"{line} > {summary(inner)}" if isinstance(inner, dict) else line


def decoded_frames(result: dict[str, Any]) -> list[dict[str, Any]]:
    from protocols.inspect import describe  # the codecs load when frames are decoded
    """Every frame of a ``hal.trace`` result, oldest first per link, with its decoding added."""
    out = []
    for link, body in sorted(result.get("links", {}).items()):
        for frame in body.get("frames", []):
            try:
                raw = bytes.fromhex(str(frame.get("hex", "")))
            except ValueError:
                raw = b""
            decoded = describe(raw) if raw else {"ok": False, "error": "no bytes", "offset": 0}
            out.append({**frame, "link": link, "decoded": decoded})
    return out


async def _fetch(args: argparse.Namespace, key: bytes, command_args: dict[str, Any]) -> dict[str, Any]:
    from hal.clock import LoopClock
    from sim.cloud.simclock import terminal_time
    from sim.cloud.stub import CloudStub

    async with CloudStub(
        broker_url=args.broker,
        db_path=":memory:",
        clock=LoopClock(),
        default_key=key,
        terminal=args.terminal,
        connect_timeout=args.timeout,
        command_time=await terminal_time(args.broker),
    ) as stub:
        reply = await stub.send_command(args.terminal, "hal.trace", command_args, timeout=args.timeout)
    if not reply.ok:
        raise CloudCliError(f"hal.trace refused by {args.terminal}: {reply.code}: {reply.message}")
    return reply.result or {}


def _cmd_trace(args: argparse.Namespace) -> int:
    if not 1 <= args.limit <= 256:
        raise CloudCliError(f"--limit: {args.limit} is not from 1 to 256")
    command_args: dict[str, Any] = {"limit": args.limit}
    if args.link:
        command_args["link"] = args.link
    key = load_command_key(args.key_file)
    try:
        result = asyncio.run(_fetch(args, key, command_args))
    except TimeoutError as err:
        print(f"ttu cloud: error: {err}", file=sys.stderr)
        return 2
    frames = decoded_frames(result)
    if args.json:
        print(json.dumps(frames, indent=2, sort_keys=True, default=str))
        return 0
    rows = [
        [
            datetime.fromtimestamp(float(f["ts"]), UTC).strftime("%H:%M:%S.%f")[:-3],
            f["link"],
            f["direction"],
            f.get("device", ""),
            summary(f["decoded"]),
            f.get("note", ""),
        ]
        for f in frames
    ]
    print(render_table(["time (UTC)", "link", "dir", "device", "frame", "note"], rows))
    return 0


def register_trace(sub: Any, *, guard: Callable[[Handler], Handler]) -> None:
    """Add ``ttu cloud trace`` to the ``ttu cloud`` subparsers; ``guard`` turns user errors into one line."""
    p = sub.add_parser("trace", help="the last frames of a terminal's links, decoded (hal.trace)")
    p.add_argument("--terminal", required=True, help="terminal id")
    p.add_argument("--link", help="one link, e.g. rs485-1 or hplc (default: every link)")
    p.add_argument("--limit", type=int, default=20, help="frames per link, 1-256 (default 20)")
    p.add_argument("--json", action="store_true", help="print JSON (raw frames + decoding)")
    p.add_argument("--broker", default=DEFAULT_BROKER, help=f"broker URL (default {DEFAULT_BROKER})")
    p.add_argument("--key-file", default=DEFAULT_KEY_FILE, help='TOML file with command_key = "<hex>"')
    p.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the reply (default 30)")
    p.set_defaults(handler=guard(_cmd_trace))


__all__ = ["decoded_frames", "register_trace", "summary"]
