"""Diagnostics commands of the terminal: the frame traces of its links, on request from the cloud.

Layer: runtime. ``hal.trace`` answers with the last frames of one link (or of every link) as
kept by the hal's ``FrameTrace`` ring buffers (STYLE.md §19), so an engineer can see what went
over an RS-485 bus or the HPLC module's UART without a site visit. Read-only: it must not touch
the links, and it knows no protocol (the cloud side decodes the hex, e.g. ``ttu frame decode``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from hal.trace import FrameTrace
from runtime.errors import CommandError

MAX_FRAMES = 256
_ARGS = {"link", "limit"}


def validate_trace_args(args: dict[str, Any]) -> None:
    """``{"link": str (optional), "limit": 1..256 (optional)}``; raises ValueError naming the key."""
    unknown = sorted(set(args) - _ARGS)
    if unknown:
        raise ValueError(f"unknown argument(s) {', '.join(unknown)}; expected link, limit")
    link = args.get("link")
    if link is not None and (not isinstance(link, str) or not link):
        raise ValueError(f"link: must be a link name, got {link!r}")
    limit = args.get("limit", 50)
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_FRAMES:
        raise ValueError(f"limit: must be a whole number from 1 to {MAX_FRAMES}, got {limit!r}")


def trace_handler(
    traces: Callable[[], Mapping[str, FrameTrace]],
) -> Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]:
    """The ``hal.trace`` handler over ``traces()`` (e.g. ``BoardHal.traces``)."""

    async def handle(args: dict[str, Any]) -> dict[str, Any]:
        available = traces()
        link = args.get("link")
        limit = int(args.get("limit", 50))
        if link is not None and link not in available:
            known = ", ".join(sorted(available)) or "none"
            raise CommandError("bad_args", f"no link {link!r} with a frame trace (links: {known})")
        chosen = {link: available[link]} if link is not None else dict(available)
        return {
            "links": {
                name: {"total": trace.total, "frames": trace.snapshot()[-limit:]}
                for name, trace in sorted(chosen.items())
            }
        }

    return handle


__all__ = ["MAX_FRAMES", "trace_handler", "validate_trace_args"]
