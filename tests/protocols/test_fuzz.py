"""A small seeded run of the fuzz campaign (``bench/fuzz.py`` runs a million inputs per protocol):
random and mutated frames, checksums recomputed so the payload decoders are reached, into every
framer and decoder. Nothing but ``ProtocolError`` may come out, the framers never fault, and their
buffer stays within one maximum frame."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench" / "fuzz.py"


def _fuzz() -> ModuleType:
    spec = importlib.util.spec_from_file_location("ttu_bench_fuzz", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses need their module registered
    spec.loader.exec_module(module)
    return module


FUZZ = _fuzz()
MAX_PENDING = {"dlt645": 212 + 16, "dlt698": 0x3FFF + 2, "gdw1376_2": 4096}


@pytest.mark.parametrize("protocol", sorted(FUZZ.TARGETS))
@pytest.mark.parametrize("seed", [1, 2])
def test_seeded_fuzz_finds_nothing_but_protocol_errors(protocol: str, seed: int) -> None:
    report = FUZZ.campaign(protocol, 2500, seed=seed)
    assert report.untyped == {}, report.examples
    assert report.framer_faults == 0
    assert report.max_pending <= MAX_PENDING[protocol]
    assert report.decoded > 100 and report.framed > 100  # the mutations reach the decoders
