"""Modbus device profiles: every shipped profile loads; every bad profile names its file and key path."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocols import modbus
from protocols.modbus import ProfileError, load_profile, parse_profile

SOURCE = "site/profiles/good.toml"


def good() -> dict[str, Any]:
    """A small valid profile; each bad case below breaks exactly one thing of it."""
    return {
        "profile": {"name": "good", "kind": "breaker", "description": "test breaker"},
        "registers": {
            "switch_command": {"table": "coil", "address": 0, "writable": True},
            "switch_closed": {"table": "discrete", "address": 0, "quantity": "breaker.closed"},
            "current_a": {
                "table": "input", "address": 3, "scale": 0.01, "unit": "A", "quantity": "current.a",
            },
            "energy": {"table": "input", "address": 4, "type": "u32", "word_order": "little"},
            "setting": {"table": "holding", "address": 256, "writable": True, "min": 10, "max": 800},
            "alarm_word": {"table": "input", "address": 6, "bits": {"0": "overload"}},
        },
        "commands": {
            "open": {"register": "switch_command", "value": False, "verify": "switch_closed"},
        },
    }  # fmt: skip


def with_change(path: str, value: Any) -> dict[str, Any]:
    """``good()`` with the dotted key ``path`` set to ``value`` (``...`` deletes it)."""
    data = copy.deepcopy(good())
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node.setdefault(key, {})
    if value is ...:
        del node[last]
    else:
        node[last] = value
    return data


# (change, key path named in the error, words the reason must contain)
BAD: list[tuple[str, Any, str, str]] = [
    ("profile.kind", "toaster", "profile.kind", "not one of"),
    ("profile.name", "other", "profile.name", "differs from the file name"),
    ("profile.name", ..., "profile.name", "required"),
    ("profile.colour", "red", "profile.colour", "unknown key"),
    ("extra", {}, ".extra", "unknown key"),  # top-level keys are named from an empty parent path
    ("registers", {}, "registers", "at least one point"),
    ("registers.Current", {"table": "input", "address": 9}, "registers.Current", "lower_snake_case"),
    ("registers.current_a", 3, "registers.current_a", "expected a table"),
    ("registers.current_a.address", ..., "registers.current_a.address", "not an address"),
    ("registers.current_a.address", 70000, "registers.current_a.address", "0..65535"),
    ("registers.current_a.address", True, "registers.current_a.address", "not an address"),
    # overlaps name the later point and the one it collides with, 32-bit points cover two addresses
    ("registers.alarm_word.address", 3, "registers.alarm_word.address", "input 3 is also used by 'current_a"),
    ("registers.alarm_word.address", 5, "registers.alarm_word.address", "input 5 is also used by 'energy'"),
    ("registers.current_a.table", "eeprom", "registers.current_a.table", "not one of"),
    ("registers.current_a.table", ..., "registers.current_a.table", "required text"),
    ("registers.current_a.type", "u64", "registers.current_a.type", "not one of"),
    ("registers.current_a.type", "bool", "registers.current_a.type", "bool needs table coil or discrete"),
    ("registers.switch_closed.type", "u16", "registers.switch_closed.type", "discrete points are bool"),
    ("registers.current_a.scale", 0, "registers.current_a.scale", "must not be 0"),
    ("registers.current_a.scale", "0.01", "registers.current_a.scale", "not a number"),
    ("registers.current_a.scale", True, "registers.current_a.scale", "not a number"),
    ("registers.current_a.unit", "mA", "registers.current_a.unit", "current.a is in 'A'"),
    ("registers.current_a.quantity", "Current A", "registers.current_a.quantity", "dotted lower-case"),
    ("registers.current_a.writable", "yes", "registers.current_a.writable", "true or false"),
    ("registers.current_a.writable", True, "registers.current_a.writable", "input points are read-only"),
    ("registers.switch_closed.writable", True, "registers.switch_closed.writable", "read-only"),
    ("registers.energy.word_order", "middle", "registers.energy.word_order", "not big or little"),
    ("registers.current_a.colour", "red", "registers.current_a.colour", "unknown key"),
    ("registers.alarm_word.bits", {"16": "x"}, "registers.alarm_word.bits.16", "0..15"),
    ("registers.alarm_word.bits", {"one": "x"}, "registers.alarm_word.bits.one", "not an integer"),
    ("registers.alarm_word.bits", {"0": ""}, "registers.alarm_word.bits.0", "non-empty text"),
    ("registers.alarm_word.enum", [1, 2], "registers.alarm_word.enum", "expected a table"),
    ("registers.setting.min", "low", "registers.setting.min", "not a number"),
    ("commands.open", "now", "commands.open", "expected a table"),
    ("commands.open.register", ..., "commands.open.register", "required text"),
    ("commands.open.register", "nothing", "commands.open.register", "no point 'nothing'"),
    # a command must write a writable point (writing without a writable register)
    ("commands.open.register", "current_a", "commands.open.register", "not writable"),
    ("commands.open.verify", "nothing", "commands.open.verify", "no point 'nothing'"),
    ("commands.open.value", ..., "commands.open.value", "required number or boolean"),
    ("commands.open.value", "off", "commands.open.value", "required number or boolean"),
    ("commands.open.expect", "off", "commands.open.expect", "expected a number or boolean"),
    ("commands.open.when", "now", "commands.open.when", "unknown key"),
]


@pytest.mark.parametrize(("change", "value", "path", "reason"), BAD, ids=[f"{b[0]}={b[1]!r}" for b in BAD])
def test_bad_profile_names_file_and_key_path(change: str, value: Any, path: str, reason: str) -> None:
    with pytest.raises(ProfileError) as info:
        parse_profile(with_change(change, value), source=SOURCE, name="good")
    err = info.value
    assert err.source == SOURCE
    assert err.path == path
    assert f"{SOURCE}: {err.path}: " in str(err)
    assert reason in str(err)


def test_the_good_profile_and_its_valid_edges_load() -> None:
    profile = parse_profile(good(), source=SOURCE, name="good")
    assert profile.register("energy").words == 2
    assert profile.commands["open"].expect is False  # defaults to the written value
    assert [r.name for r in profile.readings] == ["switch_closed", "current_a"]
    edge = with_change("registers.setting.address", 65535)
    assert parse_profile(edge, source=SOURCE).register("setting").address == 65535
    with pytest.raises(ProfileError, match="runs past address 65535") as info:
        parse_profile(with_change("registers.energy.address", 65535), source=SOURCE)
    assert info.value.path == "registers.energy.address"


@pytest.mark.parametrize("name", modbus.builtin_names())
def test_every_shipped_profile_loads_from_its_file(name: str) -> None:
    path = Path(modbus.__file__).parent / "profiles" / f"{name}.toml"
    profile = load_profile(path)
    shipped = modbus.builtin_profile(name)
    assert profile.source == str(path)
    assert (profile.registers, profile.commands) == (shipped.registers, shipped.commands)
    assert profile.kind == tomllib.loads(path.read_text(encoding="utf-8"))["profile"]["kind"]
    for block in modbus.plan_blocks(profile.registers.values()):
        assert block.count <= (modbus.MAX_BITS if block.table in modbus.BIT_TABLES else modbus.MAX_REGISTERS)


def test_shipped_names_are_the_four_device_kinds() -> None:
    assert set(modbus.builtin_names()) >= {"breaker", "rcd", "capacitor", "environment"}
    with pytest.raises(ProfileError, match="no such profile; shipped: breaker") as info:
        modbus.builtin_profile("toaster")
    assert info.value.path == "toaster"


def test_load_profile_file_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ProfileError, match="cannot read") as info:
        load_profile(missing)
    assert info.value.source == str(missing)

    broken = tmp_path / "broken.toml"
    broken.write_text('[profile]\nname = "broken"\n[registers.x\n', encoding="utf-8")
    with pytest.raises(ProfileError, match="not valid TOML") as info:
        load_profile(broken)
    assert f"{broken}: not valid TOML" in str(info.value)

    renamed = tmp_path / "renamed.toml"
    renamed.write_text(
        '[profile]\nname = "breaker"\n[registers.a]\ntable = "input"\naddress = 0\n', encoding="utf-8"
    )
    with pytest.raises(ProfileError) as info:
        load_profile(renamed)
    assert info.value.source == str(renamed) and info.value.path == "profile.name"


_toml_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 70000) | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(
        [f"registers.{r}.{k}" for r in good()["registers"] for k in ("table", "address", "type", "scale")]
        + ["commands.open.register", "commands.open.value", "profile.kind", "registers.x"]
    ),
    _toml_values,
)
def test_any_mutation_is_a_profile_or_a_profile_error(change: str, value: Any) -> None:
    """Whatever a hostile file holds, the loader answers with a profile or a ProfileError, never a crash."""
    data = with_change(change, None if value is None else value)
    try:
        parse_profile(data, source=SOURCE)
    except ProfileError as err:
        assert err.source == SOURCE and f"{SOURCE}: " in str(err)


def test_a_shipped_profile_is_parsed_once_and_shared_by_every_device_of_its_kind() -> None:
    """Hundreds of breaker units share one immutable profile instead of a copy each."""
    from types import MappingProxyType

    first, again = modbus.builtin_profile("breaker"), modbus.builtin_profile("breaker")
    assert first is again
    assert isinstance(first.registers, MappingProxyType) and isinstance(first.commands, MappingProxyType)
    assert modbus.builtin_profile("rcd") is not first
