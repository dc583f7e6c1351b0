"""Pack, verify and unpack: a good round trip, every refusal with its code, deterministic packing."""

from __future__ import annotations

import io
import os
import shutil
import stat
import zipfile
from pathlib import Path

import pytest

from protocols.packages.archive import inspect as format_inspect
from protocols.packages.format import MANIFEST_NAME, SIGNATURE_NAME
from runtime.config import load_board
from runtime.errors import ConfigErrors
from runtime.packages import (
    DEFAULT_LIMITS,
    BadArchive,
    BadDestination,
    BadManifest,
    BadSignature,
    IncompatibleApi,
    MissingCapability,
    Oversize,
    PackageError,
    PackageLimits,
    PathEscape,
    Tampered,
    TooManyFiles,
    UnknownKey,
    Unsigned,
    build_archive,
    generate_keypair,
    inspect,
    key_id,
    pack,
    unpack,
    verify,
)
from runtime.packages.verify import board_capabilities
from tests.runtime.packages.helpers import app_files, make_app, signed_zip, write_zip, zip_entry

REPO = Path(__file__).resolve().parents[3]
ALL_CAPS = frozenset({"rs485", "hplc", "metrology", "slots", "watchdog"})
KEY, PUB = generate_keypair()


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture
def dest_parent(tmp_path: Path) -> Path:
    parent = tmp_path / "installed"
    parent.mkdir()
    (parent / "other").mkdir()
    (parent / "other" / "keep.txt").write_text("untouched\n")
    return parent


def assert_refused(pkg: Path, parent: Path, exc: type[PackageError], **kw: object) -> PackageError:
    """verify+unpack must fail with ``exc`` and leave ``parent`` exactly as it was."""
    before = _snapshot(parent), sorted(os.listdir(parent))
    kwargs: dict[str, object] = {"trusted_keys": [PUB], "capabilities": ALL_CAPS}
    kwargs.update(kw)
    with pytest.raises(exc) as info:
        verified = verify(pkg, **kwargs)  # type: ignore[arg-type]
        unpack(verified, parent / "demo")
    assert info.value.code == exc.CODE
    assert (_snapshot(parent), sorted(os.listdir(parent))) == before
    return info.value


# -- good path ------------------------------------------------------------------------------------


def test_round_trip_fixture_app(tmp_path: Path, dest_parent: Path) -> None:
    folder = make_app(tmp_path / "src")
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"junk")
    (folder / ".hidden").write_text("not packed")
    pkg = pack(folder, private_key=KEY, out=tmp_path / "demo-1.2.0.ttuapp")

    verified = verify(pkg, trusted_keys=[PUB], capabilities={"rs485"})
    assert (verified.name, verified.version, verified.key_id) == ("demo", "1.2.0", key_id(PUB))
    assert sorted(verified.files) == ["__init__.py", "app.toml", "data/table.csv", "service.py"]
    assert verified.size == pkg.stat().st_size
    assert verified.manifest.hal == frozenset({"rs485"})

    out = unpack(verified, dest_parent / "demo")
    assert out == dest_parent / "demo"
    assert _snapshot(out) == app_files()
    assert stat.S_IMODE((out / "service.py").stat().st_mode) == 0o644
    assert stat.S_IMODE((out / "data").stat().st_mode) == 0o755
    assert sorted(os.listdir(dest_parent)) == ["demo", "other"]  # no temp folder left behind


def test_round_trip_acquisition(tmp_path: Path) -> None:
    pkg = pack(REPO / "apps" / "acquisition", private_key=KEY, out=tmp_path / "acq.ttuapp")
    board = load_board(REPO / "board.toml")  # the simulated board has every node acquisition uses
    verified = verify(pkg, trusted_keys=[PUB.public_bytes_raw()], capabilities=board_capabilities(board))
    assert verified.name == "acquisition"
    out = unpack(verified, tmp_path / "acquisition")
    for rel in verified.files:
        assert (out / rel).read_bytes() == (REPO / "apps" / "acquisition" / rel).read_bytes()


def test_packing_is_deterministic(tmp_path: Path) -> None:
    a = make_app(tmp_path / "a")
    b = make_app(tmp_path / "b")
    os.utime(b / "service.py", (1_000_000, 1_000_000))
    (b / "service.py").chmod(0o600)
    one = pack(a, private_key=KEY, out=tmp_path / "1.ttuapp").read_bytes()
    two = pack(a, private_key=KEY, out=tmp_path / "2.ttuapp").read_bytes()
    three = pack(b, private_key=KEY, out=tmp_path / "3.ttuapp").read_bytes()
    assert one == two == three
    with zipfile.ZipFile(tmp_path / "1.ttuapp") as zf:
        names = zf.namelist()
        assert names[:2] == [MANIFEST_NAME, SIGNATURE_NAME]
        assert names[2:] == sorted(names[2:])
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}


def test_inspect_needs_no_trust_but_a_valid_signature(tmp_path: Path) -> None:
    pkg = pack(make_app(tmp_path), private_key=KEY, out=tmp_path / "p.ttuapp")
    assert inspect(pkg).key_id == key_id(PUB)


def test_the_format_checks_bytes_the_caller_holds_without_opening_anything(tmp_path: Path) -> None:
    """protocols.packages reads only through the file object it is given (the cloud's catalog
    and the terminal open the file themselves): a package held in memory checks the same."""
    pkg = pack(make_app(tmp_path), private_key=KEY, out=tmp_path / "p.ttuapp")
    data = pkg.read_bytes()
    held = format_inspect(io.BytesIO(data), path=Path("held.ttuapp"))
    assert (held.key_id, held.sha256, held.size) == (key_id(PUB), inspect(pkg).sha256, len(data))
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        entry = next(i for i in zf.infolist() if i.filename not in (MANIFEST_NAME, SIGNATURE_NAME))
    at = entry.header_offset + 30 + len(entry.filename.encode()) + len(entry.extra) + entry.compress_size // 2
    changed = data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]
    with pytest.raises(Tampered):
        format_inspect(io.BytesIO(changed), path=Path("changed.ttuapp"))


# -- refusals -------------------------------------------------------------------------------------


def test_unsigned(tmp_path: Path, dest_parent: Path) -> None:
    pkg = write_zip(tmp_path / "p.ttuapp", list(app_files().items()))
    err = assert_refused(pkg, dest_parent, Unsigned)
    assert "SIGNATURE" in err.reason


def test_unknown_key(tmp_path: Path, dest_parent: Path) -> None:
    other, _ = generate_keypair()
    pkg = pack(make_app(tmp_path), private_key=other, out=tmp_path / "p.ttuapp")
    err = assert_refused(pkg, dest_parent, UnknownKey)
    assert key_id(other.public_key()) in err.reason


def test_bad_signature_when_manifest_is_edited(tmp_path: Path, dest_parent: Path) -> None:
    files = app_files()
    good = tmp_path / "good.ttuapp"
    good.write_bytes(build_archive(files, private_key=KEY, name="demo", version="1.2.0"))
    with zipfile.ZipFile(good) as zf:
        manifest = zf.read(MANIFEST_NAME)
        signature = zf.read(SIGNATURE_NAME)
    forged = tmp_path / "p.ttuapp"
    files["service.py"] = b"import os; os.system('evil')\n"
    import hashlib

    new_line = f"{hashlib.sha256(files['service.py']).hexdigest()}  service.py".encode()
    lines = [new_line if line.endswith(b"  service.py") else line for line in manifest.splitlines()]
    write_zip(
        forged, [(MANIFEST_NAME, b"\n".join(lines) + b"\n"), (SIGNATURE_NAME, signature), *files.items()]
    )
    assert_refused(forged, dest_parent, BadSignature)


def test_tampered_file_is_named(tmp_path: Path, dest_parent: Path) -> None:
    listed = app_files()
    held = {**listed, "service.py": b"VALUE = 666\n"}
    pkg = signed_zip(tmp_path / "p.ttuapp", held, KEY, listed=listed)
    err = assert_refused(pkg, dest_parent, Tampered)
    assert isinstance(err, Tampered) and err.path == "service.py"


def test_added_file_is_tampered(tmp_path: Path, dest_parent: Path) -> None:
    listed = app_files()
    pkg = signed_zip(tmp_path / "p.ttuapp", {**listed, "extra.py": b"x = 1\n"}, KEY, listed=listed)
    err = assert_refused(pkg, dest_parent, Tampered)
    assert isinstance(err, Tampered) and err.path == "extra.py"


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("../evil.py", "'..'"),
        ("data/../../evil.py", "'..'"),
        ("/etc/cron.d/evil", "absolute"),
        ("C:/evil.py", "':'"),
        ("data\\..\\evil.py", "backslash"),
    ],
)
def test_path_escape(tmp_path: Path, dest_parent: Path, name: str, why: str) -> None:
    files = {**app_files(), name: b"evil\n"}
    pkg = signed_zip(tmp_path / "p.ttuapp", files, KEY)
    err = assert_refused(pkg, dest_parent, PathEscape)
    assert isinstance(err, PathEscape) and err.entry == name and why in err.reason
    assert not (tmp_path / "evil.py").exists()


@pytest.mark.parametrize(
    ("mode", "what"),
    [
        (stat.S_IFLNK | 0o777, "symbolic link"),
        (stat.S_IFCHR | 0o644, "character device"),
        (stat.S_IFBLK | 0o644, "block device"),
        (stat.S_IFIFO | 0o644, "fifo"),
    ],
)
def test_links_and_devices_are_refused(tmp_path: Path, dest_parent: Path, mode: int, what: str) -> None:
    files = {**app_files(), "link": b"../../../etc/passwd"}
    pkg = signed_zip(tmp_path / "p.ttuapp", files, KEY, infos={"link": zip_entry("link", mode=mode)})
    err = assert_refused(pkg, dest_parent, PathEscape)
    assert isinstance(err, PathEscape) and err.entry == "link" and what in err.reason


def test_duplicate_entry_is_refused(tmp_path: Path, dest_parent: Path) -> None:
    files = app_files()
    pkg = signed_zip(tmp_path / "p.ttuapp", files, KEY)
    with (
        pytest.warns(UserWarning, match="Duplicate name"),
        zipfile.ZipFile(pkg, "a") as zf,
    ):
        zf.writestr(zip_entry("service.py"), b"VALUE = 666\n")
    err = assert_refused(pkg, dest_parent, PathEscape)
    assert "duplicate" in err.reason


def test_file_and_folder_conflict_is_refused(tmp_path: Path, dest_parent: Path) -> None:
    files = {**app_files(), "service.py/inner.py": b"x\n"}
    pkg = signed_zip(tmp_path / "p.ttuapp", files, KEY)
    assert_refused(pkg, dest_parent, PathEscape)


def test_oversize_file(tmp_path: Path, dest_parent: Path) -> None:
    folder = make_app(tmp_path)
    (folder / "data" / "big.bin").write_bytes(os.urandom(5000))
    pkg = pack(folder, private_key=KEY, out=tmp_path / "p.ttuapp")
    err = assert_refused(pkg, dest_parent, Oversize, limits=PackageLimits(max_file_bytes=2000))
    assert "data/big.bin: 5000 bytes" in err.reason


def test_oversize_package_and_total(tmp_path: Path, dest_parent: Path) -> None:
    pkg = pack(make_app(tmp_path), private_key=KEY, out=tmp_path / "p.ttuapp")
    assert_refused(pkg, dest_parent, Oversize, limits=PackageLimits(max_package_bytes=500))
    assert_refused(pkg, dest_parent, Oversize, limits=PackageLimits(max_total_bytes=300))


def test_zip_bomb_ratio(tmp_path: Path, dest_parent: Path) -> None:
    files = {**app_files(), "data/zeros.bin": bytes(4 << 20)}
    pkg = signed_zip(tmp_path / "p.ttuapp", files, KEY)
    err = assert_refused(pkg, dest_parent, Oversize)
    assert "zip bomb" in err.reason and "data/zeros.bin" in err.reason


def test_lying_declared_size_is_caught(tmp_path: Path, dest_parent: Path) -> None:
    pkg = signed_zip(tmp_path / "p.ttuapp", app_files(), KEY)
    data = bytearray(pkg.read_bytes())
    # Shrink service.py's declared size in the central directory (CRC then also fails).
    with zipfile.ZipFile(pkg) as zf:
        info = zf.getinfo("service.py")
    cd = data.rfind(b"PK\x01\x02", 0, data.rfind(b"service.py"))
    assert int.from_bytes(data[cd + 24 : cd + 28], "little") == info.file_size
    data[cd + 24 : cd + 28] = (2).to_bytes(4, "little")
    pkg.write_bytes(bytes(data))
    assert_refused(pkg, dest_parent, Tampered)


def test_too_many_files(tmp_path: Path, dest_parent: Path) -> None:
    pkg = pack(make_app(tmp_path), private_key=KEY, out=tmp_path / "p.ttuapp")
    err = assert_refused(pkg, dest_parent, TooManyFiles, limits=PackageLimits(max_files=3))
    assert "limit is 3" in err.reason


def test_incompatible_api(tmp_path: Path, dest_parent: Path) -> None:
    pkg = tmp_path / "p.ttuapp"
    pkg.write_bytes(build_archive(app_files(api=99), private_key=KEY, name="demo", version="1.2.0"))
    err = assert_refused(pkg, dest_parent, IncompatibleApi)
    assert "99" in err.reason


def test_missing_capability(tmp_path: Path, dest_parent: Path) -> None:
    pkg = pack(make_app(tmp_path, hal=("rs485", "hplc")), private_key=KEY, out=tmp_path / "p.ttuapp")
    err = assert_refused(pkg, dest_parent, MissingCapability, capabilities=frozenset({"rs485", "metrology"}))
    assert isinstance(err, MissingCapability) and err.missing == frozenset({"hplc"})


@pytest.mark.parametrize(
    ("files", "why"),
    [
        ({**app_files(), "app.toml": b"[app\nname="}, "not valid TOML"),
        ({**app_files(), "app.toml": app_files(version="1.3.0")["app.toml"]}, "SIGNATURE names demo 1.2.0"),
        ({k: v for k, v in app_files().items() if k != "__init__.py"}, "entry module"),
        ({k: v for k, v in app_files().items() if k != "app.toml"}, "no app.toml"),
        ({**app_files(), "app.toml": app_files()["app.toml"] + b"bogus = 1\n"}, "unknown key"),
        ({**app_files(), "wheels/numpy-2.0-cp311-cp311-linux_x86_64.whl": b"x"}, "pure-Python"),
    ],
)
def test_bad_manifest(tmp_path: Path, dest_parent: Path, files: dict[str, bytes], why: str) -> None:
    pkg = signed_zip(tmp_path / "p.ttuapp", files, KEY)
    err = assert_refused(pkg, dest_parent, BadManifest)
    assert why in err.reason


def test_not_a_zip(tmp_path: Path, dest_parent: Path) -> None:
    pkg = tmp_path / "p.ttuapp"
    pkg.write_bytes(b"PK\x03\x04 definitely not a zip archive")
    assert_refused(pkg, dest_parent, BadArchive)


# -- unpack safety --------------------------------------------------------------------------------


def test_unpack_refuses_existing_destination(tmp_path: Path, dest_parent: Path) -> None:
    pkg = pack(make_app(tmp_path), private_key=KEY, out=tmp_path / "p.ttuapp")
    verified = verify(pkg, trusted_keys=[PUB], capabilities=ALL_CAPS)
    before = _snapshot(dest_parent)
    with pytest.raises(BadDestination):
        unpack(verified, dest_parent / "other")
    with pytest.raises(BadDestination):
        unpack(verified, dest_parent / "missing" / "demo")
    assert _snapshot(dest_parent) == before


def test_package_swapped_after_verify_leaves_nothing(tmp_path: Path, dest_parent: Path) -> None:
    pkg = pack(make_app(tmp_path), private_key=KEY, out=tmp_path / "p.ttuapp")
    verified = verify(pkg, trusted_keys=[PUB], capabilities=ALL_CAPS)
    listed = app_files()
    signed_zip(pkg, {**listed, "service.py": b"VALUE = 666\n"}, KEY, listed=listed)
    with pytest.raises(Tampered):
        unpack(verified, dest_parent / "demo")
    assert sorted(os.listdir(dest_parent)) == ["other"]


def test_pack_refuses_symlinks_and_reserved_names(tmp_path: Path) -> None:
    folder = make_app(tmp_path)
    (folder / "link.py").symlink_to(folder / "service.py")
    with pytest.raises(PathEscape):
        pack(folder, private_key=KEY, out=tmp_path / "p.ttuapp")
    (folder / "link.py").unlink()
    (folder / "SIGNATURE").write_text("x")
    with pytest.raises(BadManifest):
        pack(folder, private_key=KEY, out=tmp_path / "p.ttuapp")
    assert not (tmp_path / "p.ttuapp").exists()


def test_pack_checks_the_manifest(tmp_path: Path) -> None:
    folder = make_app(tmp_path)
    (folder / "app.toml").write_text('[app]\nname = "demo"\nversion = "x"\napi = 1\n')
    with pytest.raises(ConfigErrors):
        pack(folder, private_key=KEY, out=tmp_path / "p.ttuapp")


def test_pack_includes_pure_wheels_only(tmp_path: Path, dest_parent: Path) -> None:
    folder = make_app(tmp_path / "src")
    wheel = tmp_path / "tiny-1.0-py3-none-any.whl"
    wheel.write_bytes(b"PK fake wheel")
    pkg = pack(folder, private_key=KEY, out=tmp_path / "p.ttuapp", wheels=[wheel])
    verified = verify(pkg, trusted_keys=[PUB], capabilities=ALL_CAPS)
    assert "wheels/tiny-1.0-py3-none-any.whl" in verified.files
    native = tmp_path / "fast-1.0-cp311-cp311-linux_x86_64.whl"
    native.write_bytes(b"x")
    with pytest.raises(BadManifest):
        pack(folder, private_key=KEY, out=tmp_path / "q.ttuapp", wheels=[native])


def test_default_limits_are_consistent() -> None:
    assert DEFAULT_LIMITS.max_file_bytes <= DEFAULT_LIMITS.max_total_bytes
    assert DEFAULT_LIMITS.max_package_bytes <= DEFAULT_LIMITS.max_total_bytes


def test_prepended_data_and_comments_are_refused(tmp_path: Path, dest_parent: Path) -> None:
    good = pack(make_app(tmp_path), private_key=KEY, out=tmp_path / "good.ttuapp")
    pkg = tmp_path / "p.ttuapp"
    pkg.write_bytes(b"#!/bin/sh\n" + good.read_bytes())
    assert_refused(pkg, dest_parent, BadArchive)
    shutil.copy(good, pkg)
    with zipfile.ZipFile(pkg, "a") as zf:
        zf.comment = b"hidden"
    assert_refused(pkg, dest_parent, BadArchive)
