"""protocols.cloud delivery pieces: bounded JSON, the batch header, signed acks, priorities."""

from __future__ import annotations

import json
import random

import pytest

from protocols.cloud import (
    MAX_BATCH_BYTES,
    MAX_JSON_DEPTH,
    Ack,
    Command,
    Nack,
    StreamPriority,
    UpBatch,
    UpMessage,
    check_json_shape,
    encode_batch,
    load_bounded,
    message_json,
    peek_batch,
)
from protocols.errors import ProtocolError

KEY = b"k"


def test_deep_nesting_is_refused_without_recursion() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000  # issue 14 reproduction 1: this killed the terminal
    with pytest.raises(ProtocolError, match=f"nested deeper than {MAX_JSON_DEPTH}"):
        Command.decode(deep)
    with pytest.raises(ProtocolError, match="nested deeper"):
        load_bounded(b'{"a":' * 40 + b"1" + b"}" * 40, what="x", max_bytes=1 << 20, max_elements=100)
    load_bounded(b'{"a":' * 31 + b"1" + b"}" * 31, what="x", max_bytes=1 << 20, max_elements=100)


def test_size_and_element_count_are_bounded_before_parsing() -> None:
    with pytest.raises(ProtocolError, match="over 100"):
        check_json_shape(b"[" + b"1," * 100 + b"1]", what="x", max_bytes=100, max_elements=10**6)
    with pytest.raises(ProtocolError, match="more than 50 values"):
        check_json_shape(b"[" + b"1," * 60 + b"1]", what="x", max_bytes=1000, max_elements=50)


def test_brackets_in_strings_do_not_count_and_odd_strings_stay_linear() -> None:
    text = json.dumps({"s": "[[[[{{{{" * 100, "t": '"\\'}).encode()
    assert load_bounded(text, what="x", max_bytes=1 << 20, max_elements=10)["s"].startswith("[[[[")
    nasty = b'"' + b'\\"' * 30_000  # an unterminated string of escaped quotes: one pass, not quadratic
    check_json_shape(nasty, what="x", max_bytes=1 << 20, max_elements=10)
    with pytest.raises(ProtocolError, match="not JSON"):
        load_bounded(nasty, what="x", max_bytes=1 << 20, max_elements=10)


def _verdict(payload: bytes, **bounds: int) -> str | None:
    try:
        check_json_shape(payload, what="x", max_bytes=1 << 20, **bounds)
    except ProtocolError as err:
        return err.reason
    return None


def _verdict_by_tokens(payload: bytes, **bounds: int) -> str | None:
    from protocols.cloud._delivery import _check_by_tokens

    try:
        _check_by_tokens(payload, what="x", **bounds)
    except ProtocolError as err:
        return err.reason
    return None


def test_the_fast_shape_pass_agrees_with_the_token_pass_on_any_bytes() -> None:
    """The C-speed pass may only accept what the token-by-token pass accepts: random strings of
    brackets, commas, quotes and escapes, under random bounds, get the same verdict from both."""
    rnd = random.Random(20261206)
    alphabet = b'[]{},"\\a:1'
    for _ in range(40_000):
        payload = bytes(rnd.choice(alphabet) for _ in range(rnd.randint(0, 24)))
        bounds = {"max_depth": rnd.randint(1, 4), "max_elements": rnd.randint(1, 8)}
        assert _verdict(payload, **bounds) == _verdict_by_tokens(payload, **bounds), (payload, bounds)


def test_batch_header_encoding_matches_the_dataclass_and_is_peekable() -> None:
    batch = UpBatch("T", "readings", (UpMessage("T:readings:7", 7, 1.5, {"x": [1, "é"]}),), acked=6)
    raw = batch.encode()
    assert raw.startswith(b'{"acked":6,"first":7,"last":7,"messages":[')
    assert UpBatch.decode(raw) == batch
    assert peek_batch(raw) == (7, 7)
    assert peek_batch(raw + b" " * MAX_BATCH_BYTES) == (7, 7)  # too big to parse, still named
    assert peek_batch(b'{"terminal":"T"}') is None
    built = encode_batch("T", "readings", 6, [(7, message_json("T:readings:7", 7, 1.5, '{"x":[1,"é"]}'))])
    assert json.loads(built) == json.loads(raw)


def test_batches_over_the_shared_limits_are_refused() -> None:
    messages = tuple(UpMessage(f"T:r:{i}", i, 0.0, {}) for i in range(1, 502))
    with pytest.raises(ProtocolError, match=r"1\.\.500 messages"):
        UpBatch.decode(UpBatch("T", "r", messages).encode())
    big = UpBatch("T", "r", (UpMessage("T:r:1", 1, 0.0, {"pad": "x" * MAX_BATCH_BYTES}),)).encode()
    with pytest.raises(ProtocolError, match=f"over {MAX_BATCH_BYTES}"):
        UpBatch.decode(big)


def test_acks_are_signed_and_verified() -> None:
    ack = Ack(
        {"readings": 10}, {"readings": 12}, (Nack("events", 3, 4, "too_large", "big"),), ("readings", 11, 12)
    )
    signed = ack.signed(KEY)
    decoded = Ack.decode(signed.encode())
    assert decoded == signed and decoded.verify(KEY)
    assert not decoded.verify(b"other key")
    forged = json.loads(signed.encode())
    forged["acks"]["readings"] = 10_000  # an attacker marking undelivered rows delivered
    assert not Ack.decode(json.dumps(forged).encode()).verify(KEY)
    for bad in (b"[]", b'{"v":1,"acks":{"r":-1}}', b'{"v":1,"acks":{},"nacks":[{}]}', b'{"v":2,"acks":{}}'):
        with pytest.raises(ProtocolError):
            Ack.decode(bad)


def test_priorities_parse_from_words() -> None:
    assert StreamPriority.parse("urgent") < StreamPriority.parse("normal") < StreamPriority.parse("BULK")
    with pytest.raises(ValueError, match="urgent, normal or bulk"):
        StreamPriority.parse("asap")
