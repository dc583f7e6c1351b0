"""App manifests: parsing, static checks with exact error paths, config resolution."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from runtime.container.manifest import check_manifests, load_manifest, resolve_config
from runtime.errors import ConfigErrors

GOOD = """
[app]
name = "acquisition"
version = "1.2.0"
api = 1
description = "meter reading"

[capabilities]
hal = ["rs485", "hplc"]

[topics]
publish = ["meter/#"]
subscribe = ["acquisition/+/cmd"]

[config.realtime_interval_s]
type = "int"
default = 60
min = 10
max = 3600

[config.mode]
type = "str"
default = "fast"
choices = ["fast", "slow"]

[config.ratio]
type = "float"
default = 1

[config.ports]
type = "list"

[limits]
ready_timeout_s = 30
[limits.restart]
max_crashes = 3
"""


def write_app(
    root: Path, name: str, toml: str, code: str | None = "async def run(ctx, config):\n    pass\n"
) -> Path:
    folder = root / name
    folder.mkdir(parents=True)
    (folder / "app.toml").write_text(textwrap.dedent(toml))
    if code is not None:
        (folder / "__init__.py").write_text(code)
    return folder / "app.toml"


def test_good_manifest(tmp_path: Path) -> None:
    m = load_manifest(write_app(tmp_path, "acquisition", GOOD))
    assert (m.name, m.version, m.api, m.entry) == ("acquisition", "1.2.0", 1, "apps.acquisition:run")
    assert m.hal == {"rs485", "hplc"}
    assert m.publish == ("meter/#",)
    assert m.limits.ready_timeout_s == 30
    assert m.limits.restart.max_crashes == 3
    assert m.limits.restart.backoff(1) == 1 and m.limits.restart.backoff(20) == 300
    assert check_manifests(tmp_path) == []


def test_errors_carry_file_and_key_path(tmp_path: Path) -> None:
    bad = GOOD.replace('version = "1.2.0"', 'version = "1.2"').replace("api = 1", "api = 7")
    bad = bad.replace("default = 60", "default = 5").replace(
        'hal = ["rs485", "hplc"]', 'hal = ["rs485", "gpio"]'
    )
    bad = bad.replace('subscribe = ["acquisition/+/cmd"]', 'subscribe = ["acquisition/#/cmd"]')
    bad = bad.replace("max_crashes = 3", "max_crashes = 0\nretries = 2")
    path = write_app(tmp_path, "acquisition", bad)
    with pytest.raises(ConfigErrors) as info:
        load_manifest(path)
    got = {e.path: e.reason for e in info.value.errors}
    assert set(got) == {
        "app.version",
        "app.api",
        "capabilities.hal[1]",
        "topics.subscribe[0]",
        "config.realtime_interval_s.default",
        "limits.restart.retries",
        "limits.restart.max_crashes",
    }
    assert got["config.realtime_interval_s.default"] == "5 is below the minimum 10"
    assert got["app.api"] == "needs runtime API 7, this runtime provides 1"
    first = str(info.value).splitlines()
    assert f"{path}: config.realtime_interval_s.default: 5 is below the minimum 10" in first


def test_name_must_equal_folder_and_types_checked(tmp_path: Path) -> None:
    text = GOOD.replace('name = "acquisition"', 'name = "billing"').replace('type = "list"', 'type = "array"')
    text = text.replace('choices = ["fast", "slow"]', 'choices = ["fast", 2]').replace(
        "min = 10", 'min = "10"'
    )
    with pytest.raises(ConfigErrors) as info:
        load_manifest(write_app(tmp_path, "acquisition", text))
    got = {e.path: e.reason for e in info.value.errors}
    assert got["app.name"] == "'billing' must equal the app's folder name 'acquisition'"
    assert got["config.ports.type"].startswith("must be one of int, float, bool, str, list, table")
    assert got["config.mode.choices[1]"] == "expected str, not 2"
    assert got["config.realtime_interval_s.min"] == "must be a number, not '10'"


def test_check_manifests_checks_entry_without_importing(tmp_path: Path) -> None:
    write_app(tmp_path, "acquisition", GOOD)
    write_app(
        tmp_path,
        "sync_app",
        '[app]\nname = "sync_app"\nversion = "1.0.0"\napi = 1\n',
        "def run(ctx, config):\n    pass\n",
    )
    write_app(tmp_path, "nocode", '[app]\nname = "nocode"\nversion = "1.0.0"\napi = 1\n', None)
    write_app(
        tmp_path,
        "bomb",
        '[app]\nname = "bomb"\nversion = "1.0.0"\napi = 1\n',
        "raise SystemExit('imported!')\nasync def run(ctx, config):\n    pass\n",
    )
    write_app(tmp_path, "broken", "[app\nname=", None)
    errors = {(Path(e.source or "").parent.name, e.path): e.reason for e in check_manifests(tmp_path)}
    assert set(errors) == {("sync_app", "app.entry"), ("nocode", "app.entry"), ("broken", "")}
    assert "must be 'async def'" in errors[("sync_app", "app.entry")]
    assert "not found inside the app folder" in errors[("nocode", "app.entry")]
    assert errors[("broken", "")].startswith("not valid TOML")


def test_resolve_config_defaults_types_and_unknown_keys(tmp_path: Path) -> None:
    m = load_manifest(write_app(tmp_path, "acquisition", GOOD))
    cfg = resolve_config(m, {"ports": ["rs485-1"], "realtime_interval_s": 120})
    assert cfg == {"realtime_interval_s": 120, "mode": "fast", "ratio": 1.0, "ports": ["rs485-1"]}
    with pytest.raises(ConfigErrors) as info:
        resolve_config(m, {"realtime_interval_s": True, "mode": "turbo", "colour": 1}, source="board.toml")
    got = {e.path: e.reason for e in info.value.errors}
    assert got == {
        "apps.acquisition.config.colour": "unknown key (known: mode, ports, ratio, realtime_interval_s)",
        "apps.acquisition.config.realtime_interval_s": "expected int, not bool True",
        "apps.acquisition.config.mode": "'turbo' is not one of ['fast', 'slow']",
        "apps.acquisition.config.ports": "required (no default)",
    }
    assert str(info.value).startswith("board.toml: apps.acquisition.config.")


def test_repo_fixture_apps_pass_the_static_check() -> None:
    assert check_manifests(Path(__file__).parent / "fixture_apps") == []


def test_result_streams_and_station_access_are_declared(tmp_path: Path) -> None:
    declared = 'station = "propose"\n\n[uplink]\nstreams = ["readings", "topology"]'
    text = GOOD.replace('hal = ["rs485", "hplc"]', f'hal = ["rs485", "hplc"]\n{declared}')
    m = load_manifest(write_app(tmp_path, "acquisition", text))
    assert m.streams == ("readings", "topology") and m.station == "propose"
    plain = load_manifest(write_app(tmp_path / "b", "acquisition", GOOD))
    assert plain.streams == () and plain.station == "read"


@pytest.mark.parametrize(
    ("uplink", "path", "reason"),
    [
        ('streams = ["Topology"]', "uplink.streams[0]", "not a stream name"),
        ('streams = ["reply"]', "uplink.streams[0]", "the runtime's own stream"),
        ('streams = ["station"]', "uplink.streams[0]", "the runtime's own stream"),
        ('streams = ["x", "x"]', "uplink.streams[1]", "listed twice"),
        ('streams = "topology"', "uplink.streams", "must be a list"),
        ("colour = 1", "uplink.colour", "unknown key"),
        ('streams = ["o"]\npriority = {o = "asap"}', "uplink.priority.o", "urgent, normal, bulk"),
        ('streams = ["o"]\npriority = {alarm = "urgent"}', "uplink.priority.alarm", "not one of the streams"),
        ('streams = ["outage"]\npriority = "urgent"', "uplink.priority", "must be a table"),
    ],
)
def test_bad_streams_name_the_key(tmp_path: Path, uplink: str, path: str, reason: str) -> None:
    text = GOOD + f"\n[uplink]\n{uplink}\n"
    with pytest.raises(ConfigErrors) as err:
        load_manifest(write_app(tmp_path, "acquisition", text))
    assert any(e.path == path and reason in e.reason for e in err.value.errors), err.value.errors


def test_stream_priorities_are_declared_with_the_streams(tmp_path: Path) -> None:
    text = GOOD + '\n[uplink]\nstreams = ["outage", "lineloss"]\npriority = {outage = "urgent"}\n'
    m = load_manifest(write_app(tmp_path, "acquisition", text))
    assert dict(m.priorities) == {"outage": "urgent"}


def test_station_access_is_read_or_propose(tmp_path: Path) -> None:
    text = GOOD.replace('hal = ["rs485", "hplc"]', 'hal = ["rs485", "hplc"]\nstation = "write"')
    with pytest.raises(ConfigErrors) as err:
        load_manifest(write_app(tmp_path, "acquisition", text))
    assert [e.path for e in err.value.errors] == ["capabilities.station"]


def test_outage_reports_overtake_a_readings_backlog() -> None:
    """Issue 9 section 3: an outage report must not wait behind an hour of readings."""
    outage = load_manifest(Path(__file__).resolve().parents[3] / "apps" / "outage" / "app.toml")
    assert dict(outage.priorities) == {"outage": "urgent"}
