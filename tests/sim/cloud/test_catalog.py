"""The cloud app catalog: publish, list, verify, and tamper detection naming the bad entry."""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import pytest

from runtime.packages import build_archive, generate_keypair, key_id, pack
from sim.cloud.catalog import GENESIS, Catalog, CatalogCorrupt, CatalogEntry, CatalogError
from sim.cloud.catalog_cli import register_catalog
from tests.runtime.packages.helpers import app_files, make_app

KEY, PUB = generate_keypair()
TS = 1_700_000_000.0


def _package(tmp_path: Path, name: str, version: str) -> Path:
    out = tmp_path / f"{name}-{version}.ttuapp"
    out.write_bytes(build_archive(app_files(name, version), private_key=KEY, name=name, version=version))
    return out


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    cat = Catalog(tmp_path / "catalog")
    for i, (name, version) in enumerate([("demo", "1.0.0"), ("demo", "1.1.0"), ("meter_log", "0.1.0")]):
        cat.publish(_package(tmp_path, name, version), ts=TS + i)
    return cat


def test_publish_list_verify(catalog: Catalog, tmp_path: Path) -> None:
    entries = catalog.entries()
    assert [(e.seq, e.name, e.version) for e in entries] == [
        (1, "demo", "1.0.0"),
        (2, "demo", "1.1.0"),
        (3, "meter_log", "0.1.0"),
    ]
    assert entries[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.entry_hash for a, b in itertools.pairwise(entries))
    assert {e.key_id for e in entries} == {key_id(PUB)}
    assert catalog.verify() == 3
    assert catalog.find("demo").version == "1.1.0"
    assert catalog.package_path(entries[0]).read_bytes() == (tmp_path / "demo-1.0.0.ttuapp").read_bytes()


def test_republishing_is_idempotent_and_versions_are_immutable(catalog: Catalog, tmp_path: Path) -> None:
    again = catalog.publish(tmp_path / "demo-1.0.0.ttuapp", ts=TS + 100)
    assert again.seq == 1
    other, _ = generate_keypair()
    different = tmp_path / "other.ttuapp"
    different.write_bytes(
        build_archive(app_files("demo", "1.0.0"), private_key=other, name="demo", version="1.0.0")
    )
    with pytest.raises(CatalogError, match="already published"):
        catalog.publish(different, ts=TS + 100)
    assert len(catalog.entries()) == 3


def test_bad_package_is_refused(catalog: Catalog, tmp_path: Path) -> None:
    bad = tmp_path / "bad.ttuapp"
    bad.write_bytes(b"not a package")
    with pytest.raises(CatalogError, match="bad_archive"):
        catalog.publish(bad, ts=TS)
    assert catalog.verify() == 3


def test_edited_log_line_is_named(catalog: Catalog) -> None:
    lines = catalog.log_path.read_bytes().splitlines(keepends=True)
    doc = json.loads(lines[1])
    doc["version"] = "1.1.1"
    lines[1] = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode() + b"\n"
    catalog.log_path.write_bytes(b"".join(lines))
    with pytest.raises(CatalogCorrupt) as info:
        catalog.verify()
    assert info.value.seq == 2 and "edited" in info.value.reason


def test_rehashed_edit_breaks_the_next_link(catalog: Catalog) -> None:
    lines = catalog.log_path.read_bytes().splitlines(keepends=True)
    entry = CatalogEntry(**json.loads(lines[0]))
    body = {**entry.body(), "name": "evil"}
    forged = CatalogEntry(**body, entry_hash=CatalogEntry.hash_of(body))
    lines[0] = forged.to_line()
    catalog.log_path.write_bytes(b"".join(lines))
    with pytest.raises(CatalogCorrupt) as info:
        catalog.verify()
    assert info.value.seq == 2 and "prev_hash" in info.value.reason


def test_dropped_line_is_named(catalog: Catalog) -> None:
    lines = catalog.log_path.read_bytes().splitlines(keepends=True)
    catalog.log_path.write_bytes(lines[0] + lines[2])
    with pytest.raises(CatalogCorrupt) as info:
        catalog.verify()
    assert info.value.seq == 2


def test_replaced_package_is_named(catalog: Catalog, tmp_path: Path) -> None:
    victim = catalog.entries()[2]
    catalog.package_path(victim).write_bytes((tmp_path / "demo-1.0.0.ttuapp").read_bytes())
    with pytest.raises(CatalogCorrupt) as info:
        catalog.verify()
    assert info.value.seq == 3 and "meter_log 0.1.0" in info.value.reason
    catalog.package_path(victim).unlink()
    with pytest.raises(CatalogCorrupt, match="missing"):
        catalog.verify()


def test_publish_refuses_a_corrupt_log(catalog: Catalog, tmp_path: Path) -> None:
    with catalog.log_path.open("ab") as fh:
        fh.write(b'{"seq": 4')
    with pytest.raises(CatalogCorrupt, match="incomplete"):
        catalog.publish(_package(tmp_path, "late", "1.0.0"), ts=TS)


def _cloud(*argv: object) -> int:
    parser = argparse.ArgumentParser(prog="ttu cloud")
    register_catalog(parser.add_subparsers(dest="cloud_command"))
    args = parser.parse_args([str(a) for a in argv])
    code: int = args.handler(args)
    return code


def test_catalog_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "cat"
    pkg = pack(make_app(tmp_path / "src"), private_key=KEY, out=tmp_path / "demo-1.2.0.ttuapp")
    assert _cloud("catalog", "publish", pkg, "--catalog", root, "--ts", TS) == 0
    assert "demo 1.2.0" in capsys.readouterr().out
    assert _cloud("catalog", "list", "--catalog", root, "--json") == 0
    (row,) = json.loads(capsys.readouterr().out)
    assert (row["seq"], row["name"], row["ts"]) == (1, "demo", TS)
    assert _cloud("catalog", "list", "--catalog", root) == 0
    assert "demo" in capsys.readouterr().out
    assert _cloud("catalog", "verify", "--catalog", root) == 0
    assert "ok, 1 entries" in capsys.readouterr().out

    Catalog(root).package_path(Catalog(root).entries()[0]).write_bytes(b"swapped")
    assert _cloud("catalog", "verify", "--catalog", root) == 1
    assert "entry 1" in capsys.readouterr().err

    bad = tmp_path / "bad.ttuapp"
    bad.write_bytes(b"junk")
    assert _cloud("catalog", "publish", bad, "--catalog", root) == 2
    assert capsys.readouterr().err.startswith("ttu: error: ")


def test_publish_time_defaults_to_the_clock(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "cat"
    assert _cloud("catalog", "publish", _package(tmp_path, "demo", "1.0.0"), "--catalog", root) == 0
    assert Catalog(root).entries()[0].ts > TS
