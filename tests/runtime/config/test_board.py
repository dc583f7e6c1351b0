"""board.toml: the repo's simulated board loads; bad boards give exact key paths and reasons."""

from __future__ import annotations

import base64
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from hal.interfaces import SerialSettings
from runtime.config import Board, StationConfig, load_board, parse_board
from runtime.errors import ConfigErrors

from .conftest import MINIMAL, REPO

RS485 = """
[[rs485]]
name = "{name}"
device = "{device}"
baud = {baud}
"""


def port(name: str = "rs485-1", device: str = "sim:rs485-1", baud: int = 2400) -> str:
    return RS485.format(name=name, device=device, baud=baud)


def errors_of(text: str, *, apps_dir: Path, root: Path = REPO) -> list[tuple[str, str]]:
    with pytest.raises(ConfigErrors) as info:
        parse_board(text, source="board.toml", root=root, apps_dir=apps_dir)
    return [(e.path, e.reason) for e in info.value.errors]


# --- the repo's board ------------------------------------------------------------------------


def test_repo_board_loads(apps_dir: Path) -> None:
    board = load_board(REPO / "board.toml", apps_dir=apps_dir)

    assert board.root == REPO
    assert board.terminal.id == "TTU-SIM-0001"
    assert board.terminal.tz.key == "Asia/Shanghai"
    assert board.hal.backend == "sim"
    assert board.metrology is not None
    assert (board.metrology.device, board.metrology.ct_ratio, board.metrology.pt_ratio) == (
        "sim:metrology",
        200.0,
        1.0,
    )
    assert list(board.rs485_by_name) == ["rs485-1", "rs485-2", "rs485-3", "rs485-4"]
    for i, p in enumerate(board.rs485, start=1):
        assert p.device == f"sim:rs485-{i}"
        assert p.settings == SerialSettings(baud=2400, parity="E", bytesize=8, stopbits=1)
    assert board.hplc is not None
    assert (board.hplc.device, board.hplc.settings) == ("sim:hplc", SerialSettings(9600, "E", 8, 1))
    assert [(s.name, s.module) for s in board.slots] == [("slot-1", "di-do"), ("slot-2", "modbus-rtu")]
    assert board.uplink is not None
    assert board.uplink.broker == "mqtt://127.0.0.1:18830"
    assert board.uplink.client_id == "TTU-SIM-0001"
    assert board.uplink.credentials_file == REPO / "sim" / "credentials.toml"
    assert board.store.path == REPO / "var" / "ttu.sqlite"
    assert (board.store.max_mb, board.store.retention_days) == (512, 90)
    assert list(board.enabled_apps) == ["acquisition", "billing", "outage", "topology", "lineloss"]
    assert board.station == StationConfig(REPO / "var" / "station.toml", "auto", 0.9)
    assert dict(board.enabled_apps["acquisition"].config) == {
        "realtime_interval_s": 60,
        "curve": True,
        "daily_freeze": True,
        "event_poll_interval_s": 300,
        "time_sync": True,
    }
    topology = dict(board.enabled_apps["topology"].config)
    assert topology == {"daily_at": "06:00", "signature_window": "01:00-05:00"}
    assert board.sim is not None
    assert (board.sim.meters_per_bus, board.sim.hplc_meters, board.sim.speed, board.sim.seed) == (
        50,
        30,  # `make sim`: 30 of the 220 customers read over HPLC
        10.0,
        1,
    )


def test_repo_credentials_are_a_usable_dev_key() -> None:
    from runtime.config import load_credentials

    creds = load_credentials(REPO / "sim" / "credentials.toml")
    assert len(creds.command_key) >= 16
    assert creds.command_key.hex() not in repr(creds)


def test_board_is_frozen_and_app_config_read_only(apps_dir: Path) -> None:
    board = load_board(REPO / "board.toml", apps_dir=apps_dir)
    with pytest.raises(AttributeError):
        board.terminal.id = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        board.apps["acquisition"].config["curve"] = False  # type: ignore[index]


def test_defaults_aliases_and_roles(tmp_path: Path, apps_dir: Path) -> None:
    text = (
        MINIMAL
        + port("rs485-1", "sim:a")
        + 'roles = ["meters"]\n'
        + port("rs485-2", "sim:b")
        + "enabled = false\n"
        + 'roles = ["meters"]\n'
        + '\n[aliases]\nmain-bus = "rs485-1"\n'
    )
    board = parse_board(text, source="b.toml", root=tmp_path, apps_dir=apps_dir)
    assert board.rs485[0].timeout_ms == 1000
    assert board.rs485[0].response_delay_max_ms == 500
    assert board.rs485_with_role("meters") == (board.rs485[0],)
    assert board.node("main-bus") is board.rs485[0]
    assert board.store.path == tmp_path / "var" / "ttu.sqlite"
    assert board.store.curve_retention_days == board.store.retention_days == 90
    assert board.store.fsync is True  # every commit on the flash unless a board says otherwise
    assert board.packages.apps_dir == tmp_path / "apps"
    assert board.uplink is None and board.hplc is None and board.apps == {}


def test_trusted_keys_base64_and_pem(tmp_path: Path, apps_dir: Path) -> None:
    public = Ed25519PrivateKey.generate().public_key()
    raw = public.public_bytes(Encoding.Raw, PublicFormat.Raw)
    (tmp_path / "vendor.pem").write_bytes(
        public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    text = MINIMAL + f'\n[packages]\ntrusted_keys = ["{base64.b64encode(raw).decode()}", "vendor.pem"]\n'
    board = parse_board(text, root=tmp_path, apps_dir=apps_dir)
    assert [k.raw for k in board.packages.trusted_keys] == [raw, raw]


def test_a_bad_pem_trusted_key_is_refused_at_load_naming_the_file(tmp_path: Path, apps_dir: Path) -> None:
    (tmp_path / "garbage.pem").write_text("-----BEGIN PUBLIC KEY-----\nnot a key\n-----END PUBLIC KEY-----\n")
    other = ec.generate_private_key(ec.SECP256R1()).public_key()  # a PEM public key, not Ed25519
    (tmp_path / "ec.pem").write_bytes(other.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo))
    text = MINIMAL + '\n[packages]\ntrusted_keys = ["garbage.pem", "ec.pem"]\n'
    assert errors_of(text, apps_dir=apps_dir, root=tmp_path) == [
        ("packages.trusted_keys[0]", f"{tmp_path}/garbage.pem is not a PEM public key"),
        ("packages.trusted_keys[1]", f"{tmp_path}/ec.pem is not an Ed25519 public key"),
    ]


# --- bad boards: exact paths and messages ----------------------------------------------------

CREDS_OK = '\n[uplink]\nbroker = "mqtt://h:1883"\ncredentials_file = "credentials.toml"\n'

BAD_BOARDS: list[tuple[str, str, list[tuple[str, str]]]] = [
    (
        "bad baud",
        MINIMAL + port("rs485-1", "sim:a") + port("rs485-2", "sim:b") + port("rs485-3", "sim:c", baud=2401),
        [("rs485[2].baud", "2401 is not a standard rate (1200, 2400, 4800, 9600, 19200)")],
    ),
    (
        "unknown key with suggestion",
        MINIMAL + port() + "baudrate = 9600\n",
        [("rs485[0].baudrate", "unknown key; did you mean 'baud'?")],
    ),
    (
        "unknown section without suggestion",
        MINIMAL + "\n[zzz]\nx = 1\n",
        [("zzz", "unknown key")],
    ),
    (
        "duplicate port names",
        MINIMAL + port("rs485-1", "sim:a") + port("rs485-1", "sim:b"),
        [("rs485[1].name", "duplicate node name 'rs485-1' (already used by rs485[0])")],
    ),
    (
        "port named like a fixed node",
        MINIMAL + port("hplc", "sim:a"),
        [("rs485[0].name", "duplicate node name 'hplc' (already used by hplc)")],
    ),
    (
        "rs485 and hplc share a device",
        MINIMAL + port("rs485-1", "sim:x") + '\n[hplc]\ndevice = "sim:x"\n',
        [("hplc.device", "'sim:x' is already used by rs485[0]")],
    ),
    (
        "sim device with the linux backend",
        MINIMAL.replace('"sim"', '"linux"') + port("rs485-1", "sim:rs485-1"),
        [("rs485[0].device", "'sim:rs485-1' is a simulated device, but hal.backend is \"linux\"")],
    ),
    (
        "relative device path with the linux backend",
        MINIMAL.replace('"sim"', '"linux"') + port("rs485-1", "ttyS1"),
        [("rs485[0].device", "'ttyS1' is not an absolute device path such as /dev/ttyS1")],
    ),
    (
        "disabled nodes may share a device",
        MINIMAL + port("rs485-1", "sim:x") + "enabled = false\n" + '\n[hplc]\ndevice = "sim:x"\n'
        "\n[apps.nope]\n",
        [("apps.nope", "no such app: {apps}/nope/app.toml does not exist")],
    ),
    (
        "bad timezone",
        MINIMAL.replace("Asia/Shanghai", "Mars/Olympus"),
        [
            (
                "terminal.timezone",
                "unknown time zone 'Mars/Olympus' (use an IANA name such as 'Asia/Shanghai')",
            )
        ],
    ),
    (
        "terminal id with a topic wildcard",
        MINIMAL.replace('"T1"', '"T/1#"'),
        [("terminal.id", "'T/1#' must not contain '#' '/' (it is part of MQTT topics)")],
    ),
    (
        "mqtts without tls",
        MINIMAL + '\n[uplink]\nbroker = "mqtts://cloud.example:8883"\n',
        [("uplink.tls", "required for an mqtts:// broker (give at least tls.ca)")],
    ),
    (
        "tls with plain mqtt",
        MINIMAL + '\n[uplink]\nbroker = "mqtt://h"\n[uplink.tls]\nca = "ca.pem"\n',
        [("uplink.tls", "given, but the broker is mqtt:// (use mqtts:// for TLS)")],
    ),
    (
        "tls file missing",
        MINIMAL + '\n[uplink]\nbroker = "mqtts://h"\n[uplink.tls]\nca = "ca.pem"\n',
        [("uplink.tls.ca", "file not found: {root}/ca.pem")],
    ),
    (
        "tls cert without key",
        MINIMAL + '\n[uplink]\nbroker = "mqtts://h"\n[uplink.tls]\nca = "ca.pem"\ncert = "c.pem"\n',
        [("uplink.tls.key", "cert and key go together: give both or neither")],
    ),
    (
        "broker is not mqtt",
        MINIMAL + '\n[uplink]\nbroker = "http://h"\n',
        [("uplink.broker", "'http://h' must start with mqtt:// or mqtts://")],
    ),
    (
        "missing credentials file",
        MINIMAL + '\n[uplink]\nbroker = "mqtt://h"\ncredentials_file = "nope.toml"\n',
        [("uplink.credentials_file", "file not found: {root}/nope.toml")],
    ),
    (
        "curve retention longer than retention",
        MINIMAL + "\n[store]\nretention_days = 30\ncurve_retention_days = 60\n",
        [("store.curve_retention_days", "60 exceeds store.retention_days (30)")],
    ),
    (
        "store fsync not a boolean",
        MINIMAL + '\n[store]\nfsync = "no"\n',
        [("store.fsync", "expected true or false, got a string 'no'")],
    ),
    (
        "store too small",
        MINIMAL + "\n[store]\nmax_mb = 1\n",
        [("store.max_mb", "1 is below the minimum 16")],
    ),
    (
        "alias to a missing node",
        MINIMAL + port() + '\n[aliases]\nmeters = "rs485-9"\n',
        [("aliases.meters", "'rs485-9' is not a node of this board (nodes: rs485-1)")],
    ),
    (
        "modbus slot without device",
        MINIMAL + '\n[[slots]]\nname = "slot-1"\nmodule = "modbus-rtu"\nunit_ids = [1]\n',
        [("slots[0].device", "required for a modbus-rtu module")],
    ),
    (
        "sim table with the linux backend",
        MINIMAL.replace('"sim"', '"linux"') + "\n[sim]\nseed = 3\n",
        [("sim", 'only meaningful with hal.backend = "sim"')],
    ),
    (
        "app without a manifest",
        MINIMAL + "\n[apps.acquisition]\n[apps.ghost]\nenabled = false\n",
        [("apps.ghost", "no such app: {apps}/ghost/app.toml does not exist")],
    ),
    (
        "app config must be a table, enabled a bool",
        MINIMAL + '\n[apps.acquisition]\nenabled = "yes"\nconfig = 3\n',
        [
            ("apps.acquisition.enabled", "expected true or false, got a string 'yes'"),
            ("apps.acquisition.config", "expected a table, got an integer 3"),
        ],
    ),
    (
        "bad trusted key",
        MINIMAL + '\n[packages]\ntrusted_keys = ["AAAA", "missing.pem"]\n',
        [
            ("packages.trusted_keys[0]", "decodes to 3 bytes; an Ed25519 public key is 32"),
            (
                "packages.trusted_keys[1]",
                "cannot read key file {root}/missing.pem: No such file or directory",
            ),
        ],
    ),
    (
        "missing required sections and keys",
        '[terminal]\nid = "T1"\n',
        [("terminal.timezone", "missing required key"), ("hal", "missing required key")],
    ),
    (
        "several errors reported together",
        MINIMAL.replace("Asia/Shanghai", "Nowhere")
        + port("rs485-1", "sim:a", baud=2401)
        + "parity = 'X'\nspeed = 1\n"
        + "\n[store]\nmax_mb = true\n",
        [
            ("terminal.timezone", "unknown time zone 'Nowhere' (use an IANA name such as 'Asia/Shanghai')"),
            ("rs485[0].speed", "unknown key"),
            ("rs485[0].baud", "2401 is not a standard rate (1200, 2400, 4800, 9600, 19200)"),
            ("rs485[0].parity", "'X' is not one of 'N', 'E', 'O'"),
            ("store.max_mb", "expected an integer, got a boolean"),
        ],
    ),
]


@pytest.mark.parametrize(("text", "expected"), [c[1:] for c in BAD_BOARDS], ids=[c[0] for c in BAD_BOARDS])
def test_bad_board(text: str, expected: list[tuple[str, str]], tmp_path: Path, apps_dir: Path) -> None:
    got = errors_of(text, apps_dir=apps_dir, root=tmp_path)
    want = [(p, r.format(root=tmp_path, apps=apps_dir)) for p, r in expected]
    assert got == want


def test_errors_name_the_file(tmp_path: Path, apps_dir: Path) -> None:
    with pytest.raises(ConfigErrors) as info:
        parse_board(MINIMAL + port(baud=1), source="site/board.toml", root=tmp_path, apps_dir=apps_dir)
    assert str(info.value) == (
        "site/board.toml: rs485[0].baud: 1 is not a standard rate (1200, 2400, 4800, 9600, 19200)"
    )


def test_malformed_toml_names_line_and_column(tmp_path: Path, apps_dir: Path) -> None:
    text = MINIMAL + "\n[[rs485]]\nname = rs485-1\n"
    with pytest.raises(ConfigErrors) as info:
        parse_board(text, source="board.toml", root=tmp_path, apps_dir=apps_dir)
    [error] = info.value.errors
    assert (error.source, error.path) == ("board.toml", "")
    assert error.reason == "line 9, column 8: invalid TOML: invalid value"


# --- credentials -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('command_key = "not-hex"\n', [("command_key", "is not a hex string")]),
        ('command_key = "00112233"\n', [("command_key", "is 4 bytes, at least 16 are required")]),
        ("command_key = 12345\n", [("command_key", "expected a string, got an integer")]),
        ('username = "u"\n', [("command_key", "missing required key")]),
        ('command_key = "00112233445566778899aabbccddeeff"\ntoken = 1\n', [("token", "unknown key")]),
    ],
    ids=["not hex", "too short", "not a string", "missing", "unknown key"],
)
def test_bad_credentials_file(
    content: str,
    expected: list[tuple[str, str]],
    write_board: Callable[..., Path],
    apps_dir: Path,
) -> None:
    board_file = write_board(MINIMAL + CREDS_OK)
    (board_file.parent / "credentials.toml").write_text(content, encoding="utf-8")
    with pytest.raises(ConfigErrors) as info:
        load_board(board_file, apps_dir=apps_dir)
    got = [(e.source, e.path, e.reason) for e in info.value.errors]
    assert got == [(str(board_file.parent / "credentials.toml"), p, r) for p, r in expected]
    assert all("'" not in e.reason for e in info.value.errors), "a secret value was echoed"


def test_good_credentials_file(write_board: Callable[..., Path], apps_dir: Path) -> None:
    from runtime.config import load_credentials

    board = load_board(write_board(MINIMAL + CREDS_OK), apps_dir=apps_dir)
    assert isinstance(board, Board)
    assert board.uplink is not None and board.uplink.credentials_file is not None
    creds = load_credentials(board.uplink.credentials_file)
    assert creds.command_key == bytes(range(0, 256, 17))
    assert creds.username is None


def test_missing_board_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigErrors) as info:
        load_board(tmp_path / "absent.toml")
    assert str(info.value) == f"{tmp_path / 'absent.toml'}: file not found"
