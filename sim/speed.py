"""How fast the simulated station may run: the wire model's bound on ``ttu sim --speed``.

Layer: sim. Pure arithmetic on the lines' timing (the CLI reads it from the board); no I/O.

The virtual meters answer over real ptys, and the wire model scales byte times and reply
delays by the speed, but the terminal's reply timeouts scale too: at x600 a 1 s meter timeout
is 1.7 ms of real time, less than one request/reply takes through a pty and both event loops.
A run that fast reads nothing (every read times out) yet looks alive. So a speed is allowed
only while the slack a transaction has on the wire -- its timeout, less the meter's longest
reply delay and the bytes' wire time -- still covers ``REAL_TURNAROUND_S`` of real time.

Measured (default board, physics station, 2-core machine shared with other work): x30, x60
and x80 read 97.7 % of points (the scenario's faulty meters are the rest), x120 reads 48 % and
x240 14 %. The default board's slack is 0.69 s, so ``REAL_TURNAROUND_S = 10 ms`` allows x69.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from hal.interfaces import SerialSettings
from protocols.errors import ConfigError

REAL_TURNAROUND_S = 0.010
#: one DL/T 645 read on the wire: 4 FE + 16-byte request, 4 FE + a ~32-byte reply
TRANSACTION_BYTES = 56


def max_speed(lines: Iterable[tuple[float, SerialSettings]], *, response_delay_max_s: float) -> float:
    """The fastest speed at which every line -- ``(reply timeout in s, line settings)`` of each
    enabled RS-485 port -- keeps ``REAL_TURNAROUND_S`` of real slack (``inf`` without lines)."""
    bound = math.inf
    for timeout_s, settings in lines:
        slack = timeout_s - response_delay_max_s - settings.wire_seconds(TRANSACTION_BYTES)
        bound = min(bound, max(slack, 0.0) / REAL_TURNAROUND_S)
    return bound


def check_speed(speed: float, fastest: float) -> None:
    """``ConfigError`` naming the fastest allowed speed when ``speed`` is above it."""
    if speed > fastest:
        allowed = math.floor(fastest)
        raise ConfigError(
            "--speed",
            f"x{speed:g} is faster than the wire model allows (at most x{allowed}): a meter's reply "
            f"timeout must still leave {REAL_TURNAROUND_S * 1000:g} ms of real time for a request and "
            f"its reply through a pty; use --speed {allowed} or less",
        )


__all__ = ["REAL_TURNAROUND_S", "check_speed", "max_speed"]
