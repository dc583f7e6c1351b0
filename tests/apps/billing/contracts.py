"""Contracts for the billing tests: the shipped examples, loaded and varied."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

from protocols.billing import Contract, normalize, parse_contract

EXAMPLES = Path(__file__).resolve().parents[3] / "protocols" / "billing" / "examples"


def document(name: str, **changes: Any) -> dict[str, Any]:
    """The canonical document of example ``name`` with top-level ``changes`` applied."""
    data = normalize(tomllib.loads((EXAMPLES / f"{name}.toml").read_text(encoding="utf-8")))
    data = copy.deepcopy(data)
    data.update(changes)
    return data


def contract(name: str, **changes: Any) -> Contract:
    return parse_contract(document(name, **changes))


def zhejiang(**changes: Any) -> Contract:
    return contract("zhejiang-residential", **changes)


def beijing(**changes: Any) -> Contract:
    return contract("beijing-tou-monthly", **changes)
