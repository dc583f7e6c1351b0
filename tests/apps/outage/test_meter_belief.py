"""A meter's seldom-set state is made only when set, and reads as before either way."""

from __future__ import annotations

import sys

from apps.outage.beliefs import MeterBelief, Spell
from apps.outage.evidence import Window


def test_defaults_without_rare_state() -> None:
    b = MeterBelief()
    b.dark = None
    b.back = None
    b.relay_open_since = None
    b.relay_cause = ""
    b.records_read = b.records_received = None
    assert b._rare is None
    assert (b.dark, b.back, b.relay_open_since, b.relay_cause, b.records_read, b.records_received) == (
        None, None, None, "", None, None,
    )  # fmt: skip
    assert sys.getsizeof(b) <= 64


def test_set_and_cleared_fields_read_back() -> None:
    b = MeterBelief()
    w = Window(10.0, 5.0, 10.0)
    b.dark = Spell(w, {"cco"}, 11.0)
    assert b.dark is not None and b.dark.when == w and b.back is None
    b.back, b.dark = w, None
    assert b.back == w and b.dark is None
    b.relay_open_since, b.relay_cause = 3.0, "prepaid"
    b.records_read, b.records_received = 4.0, 4.5
    assert (b.relay_open_since, b.relay_cause) == (3.0, "prepaid")
    assert (b.records_read, b.records_received) == (4.0, 4.5)
    b.relay_open_since, b.relay_cause = None, ""
    assert (b.relay_open_since, b.relay_cause) == (None, "")
