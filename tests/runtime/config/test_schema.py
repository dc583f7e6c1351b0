"""The schema toolkit on its own: conversion, defaults, nested paths, collected errors."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import pytest

from runtime.config.schema import (
    EMPTY,
    INVALID,
    Bool,
    Float,
    Int,
    ListOf,
    Opaque,
    PathField,
    Str,
    Table,
    TableOf,
    Url,
    validate_mapping,
    validate_or_raise,
)
from runtime.errors import ConfigErrors


@dataclass(frozen=True)
class Point:
    x: int
    label: str


APP_CONFIG = {
    "archive": PathField(),
    "realtime_interval_s": Int(default=60, min=10, max=3600),
    "curve": Bool(default=True),
    "ratio": Float(default=1.0, gt=0),
    "ports": ListOf(Str(), default=()),
}


def test_an_app_config_validated_under_its_board_path() -> None:
    data = {"archive": "var/a.toml", "realtime_interval_s": 5, "curve": 1, "ratio": 0, "portz": []}
    values, errors = validate_mapping(data, APP_CONFIG, "apps.acquisition.config", source="board.toml")
    assert [(e.path, e.reason) for e in errors] == [
        ("apps.acquisition.config.portz", "unknown key; did you mean 'ports'?"),
        ("apps.acquisition.config.realtime_interval_s", "5 is below the minimum 10"),
        ("apps.acquisition.config.curve", "expected true or false, got an integer 1"),
        ("apps.acquisition.config.ratio", "0 must be greater than 0"),
    ]
    assert all(e.source == "board.toml" for e in errors)
    assert values["realtime_interval_s"] is INVALID
    assert values["archive"] == Path("var/a.toml")


def test_defaults_and_conversion() -> None:
    values, errors = validate_mapping(
        MappingProxyType({"archive": "a.toml", "ratio": 2, "ports": ("rs485-1",)}), APP_CONFIG
    )
    assert errors == []
    assert values == {
        "archive": Path("a.toml"),
        "realtime_interval_s": 60,
        "curve": True,
        "ratio": 2.0,
        "ports": ("rs485-1",),
    }
    assert isinstance(values["ratio"], float)


def test_nested_tables_lists_and_dataclasses() -> None:
    fields = {
        "points": ListOf(Table({"x": Int(), "label": Str(default="p")}, into=Point)),
        "named": TableOf(Int(min=0), key_pattern=r"[a-z]+", default=MappingProxyType({})),
        "extra": Table({"depth": Int(default=1)}, default=EMPTY),
    }
    values = validate_or_raise({"points": [{"x": 1}, {"x": 2, "label": "b"}], "named": {"a": 1}}, fields)
    assert values["points"] == (Point(1, "p"), Point(2, "b"))
    assert dict(values["named"]) == {"a": 1}
    assert dict(values["extra"]) == {"depth": 1}

    with pytest.raises(ConfigErrors) as info:
        validate_or_raise({"points": [{"x": 1}, {"x": "2"}, 3], "named": {"A": 1, "b": -1}}, fields, "top")
    assert [(e.path, e.reason) for e in info.value.errors] == [
        ("top.points[1].x", "expected an integer, got a string '2'"),
        ("top.points[2]", "expected a table, got an integer 3"),
        ("top.named.A", "'A' is not a valid name"),
        ("top.named.b", "-1 is below the minimum 0"),
    ]


def test_odd_keys_are_quoted_in_paths() -> None:
    _, errors = validate_mapping({"a b": 1}, {"ab": Int()}, "x")
    assert [(e.path, e.reason) for e in errors] == [
        ('x."a b"', "unknown key; did you mean 'ab'?"),
        ("x.ab", "missing required key"),
    ]


@pytest.mark.parametrize(
    ("spec", "value", "reason"),
    [
        (Int(choices=(1, 2), choices_label="a supported QoS"), 0, "0 is not a supported QoS (1, 2)"),
        (Int(max=10), 11, "11 is above the maximum 10"),
        (Float(max=1.5), 2, "2 is above the maximum 1.5"),
        (Float(), float("nan"), "nan is not a finite number"),
        (Float(), "1", "expected a number, got a string '1'"),
        (Str(), "", "must not be empty"),
        (Str(choices=("a", "b")), "c", "'c' is not one of 'a', 'b'"),
        (Str(pattern=r"[a-z]+", pattern_reason="is not lowercase"), "A", "'A' is not lowercase"),
        (Str(max_len=2), "abc", "longer than 2 characters"),
        (ListOf(Int(), min_len=1), [], "needs at least 1 item"),
        (ListOf(Int(), unique=True), [1, 1], "duplicate value 1"),
        (Url(schemes=("mqtt",)), "mqtt://", "'mqtt://' has no host"),
        (
            Url(schemes=("mqtt",)),
            "mqtt://h:99999",
            "'mqtt://h:99999' is not a valid URL: Port out of range 0-65535",
        ),
        (Opaque(), [1], "expected a table, got an array"),
        (Str(checks=(lambda v: "too loud" if v.isupper() else None,)), "HI", "too loud"),
    ],
)
def test_leaf_errors(spec: Any, value: object, reason: str) -> None:
    _, errors = validate_mapping({"k": value}, {"k": spec})
    assert [(e.path, e.reason) for e in errors] == [(errors[0].path, reason)]


def test_opaque_tables_are_deep_read_only() -> None:
    values = validate_or_raise({"c": {"a": [1, {"b": 2}]}}, {"c": Opaque()})
    assert values["c"]["a"][1]["b"] == 2
    assert isinstance(values["c"]["a"], tuple)
    with pytest.raises(TypeError):
        values["c"]["a"][1]["b"] = 3


def test_table_rules_run_only_when_keys_are_valid() -> None:
    def rule(values: Any) -> Any:
        if values["lo"] > values["hi"]:
            yield "lo", "must not exceed hi"

    fields = {"t": Table({"lo": Int(), "hi": Int()}, checks_table=(rule,))}
    _, errors = validate_mapping({"t": {"lo": 3, "hi": 1}}, fields)
    assert [(e.path, e.reason) for e in errors] == [("t.lo", "must not exceed hi")]
    _, errors = validate_mapping({"t": {"lo": "x", "hi": 1}}, fields)
    assert [e.path for e in errors] == ["t.lo"]
