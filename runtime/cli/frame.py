"""``ttu frame decode``: describe captured meter-bus frames as JSON, one object per line.

Layer: runtime (CLI). Protocol knowledge lives in ``protocols.inspect``; this module
only parses arguments, reads hex and prints. Bad hex or a bad frame is reported in
the JSON (``ok: false``) and turns the exit status to 1, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterable, Iterator


def _frames(items: Iterable[str]) -> Iterator[str]:
    for item in items:
        if item == "-":
            yield from (line for line in sys.stdin.read().splitlines() if line.strip())
        else:
            yield item


def _parse_hex(text: str) -> bytes:
    """Hex with optional spaces, commas, colons and 0x prefixes per byte group."""
    tokens = text.replace(",", " ").replace(":", " ").split()
    return bytes.fromhex("".join(t[2:] if t[:2].lower() == "0x" else t for t in tokens))


def _decode(args: argparse.Namespace) -> int:
    from protocols.inspect import PROTOCOLS, describe  # the codecs load when a frame is decoded

    if args.protocol not in ("auto", *PROTOCOLS):
        print(
            f"ttu frame decode: --protocol {args.protocol!r}: one of auto, {', '.join(PROTOCOLS)}",
            file=sys.stderr,
        )
        return 2
    status = 0
    for text in _frames(args.hex):
        try:
            raw = _parse_hex(text)
        except ValueError as err:
            result: dict[str, object] = {
                "ok": False,
                "error": f"not hex: {err}",
                "offset": None,
                "input": text,
            }
        else:
            result = describe(raw, protocol=args.protocol)
        if not result.get("ok"):
            status = 1
        print(json.dumps(result, ensure_ascii=False))
    return status


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("frame", help="inspect meter-bus frames")
    commands = parser.add_subparsers(dest="frame_command", metavar="COMMAND", required=True)
    decode = commands.add_parser(
        "decode",
        help="decode hex frames to JSON (one object per line; exit 1 if any frame is bad)",
        description="Each HEX argument is one frame (quote it to keep spaces); "
        "'-' reads one frame per line from stdin.",
    )
    decode.add_argument("--protocol", default="auto", help="auto (default), dlt645, dlt698 or gdw1376.2")
    decode.add_argument("hex", nargs="+", metavar="HEX")
    decode.set_defaults(handler=_decode)


__all__ = ["register"]
