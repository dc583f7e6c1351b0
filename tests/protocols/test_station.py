"""The station model's format: TOML/JSON round trips, validation with key paths, patches and diffs."""

from __future__ import annotations

import json

import pytest

from protocols.station import (
    ARCHIVE,
    Change,
    Correction,
    PatchOp,
    Proposal,
    Provenance,
    StationError,
    StationModel,
    apply_ops,
    diff,
    dumps,
    loads,
    model_from_doc,
    model_to_doc,
)

ARCHIVE_TOML = """
[station]
id = "TA-0001"
name = "Test area"

[transformer]
id = "T1"
rating_kva = 400
ct_ratio = 200
meter = "transformer"

[[branches]]
id = "F1"
breaker = "brk-F1"
monitor = "bu-F1"

[[branches]]
id = "F1a"
parent = "F1"

[[boxes]]
id = "F1-X01"
branch = "F1"
terminal = "bt-F1-X01"

[[meters]]
id = "m-0001"
address = "010000000001"
port = "rs485-1"
phase = "A"
branch = "F1"
box = "F1-X01"
customer = "C0001"
tariff = "residential"
flags = ["prepaid"]

[[meters]]
id = "m-0002"
address = "010000000002"
protocol = "dlt698"
channel = "hplc"
phase = "ABC"
branch = "F1a"
[meters.provenance.branch]
source = "identified"
by = "topology"
confidence = 0.97
at = 1767225600.0
evidence = { corr = 0.93, days = 1 }

[[meters]]
id = "bu-F1"
address = "019900000001"
port = "rs485-4"
kind = "branch_unit"
phase = "ABC"

[[meters]]
id = "bt-F1-X01"
address = "019800000001"
port = "rs485-4"
kind = "box_terminal"
phase = "ABC"
box = "F1-X01"

[[devices]]
id = "brk-F1"
profile = "breaker"
port = "rs485-4"
unit_id = 1
branch = "F1"
"""


@pytest.fixture
def model() -> StationModel:
    return loads(ARCHIVE_TOML, source="archive.toml")


def test_file_parses_into_records_with_lookups(model: StationModel) -> None:
    assert model.id == "TA-0001" and model.transformer is not None
    assert model.transformer.ct_ratio == 200.0 and model.transformer.rating_kva == 400.0
    m1, m2 = model.meter("m-0001"), model.meter("m-0002")
    assert m1 is not None and m2 is not None
    assert (m1.channel, m1.port, m1.transport, m1.protocol) == ("rs485", "rs485-1", "rs485-1", "dlt645")
    assert (m2.channel, m2.port, m2.transport, m2.three_phase) == ("hplc", None, "hplc", True)
    assert m1.flags == ("prepaid",) and m1.kind == "customer"
    assert model._addresses is None  # the address index is made when first asked
    assert model.meter_by_address("010000000002") is m2
    assert model.meter_by_address("010000000001") is m1 and model.meter_by_address("nope") is None
    assert model._addresses is not None and len(model._addresses) == len(model.meters)
    assert [m.id for m in model.meters_of(branch="F1")] == ["m-0001"]
    assert [m.id for m in model.customers()] == ["m-0001", "m-0002"]
    assert model.box("F1-X01") is not None and model.branch("F1a") is not None
    assert model.device("brk-F1") is not None and model.meter("nope") is None


def test_provenance_defaults_to_archive_and_keeps_identified_facts(model: StationModel) -> None:
    m2 = model.meter("m-0002")
    assert m2 is not None
    assert m2.source_of("phase") is ARCHIVE
    branch = m2.source_of("branch")
    assert (branch.source, branch.by, branch.confidence, branch.at) == (
        "identified",
        "topology",
        0.97,
        1767225600.0,
    )
    assert dict(branch.evidence) == {"corr": 0.93, "days": 1}


def test_toml_and_json_round_trips_are_exact(model: StationModel) -> None:
    assert loads(dumps(model)) == model
    doc = json.loads(json.dumps(model_to_doc(model)))
    assert model_from_doc(doc) == model


def test_the_older_acquisition_archive_reads_as_the_hplc_channel() -> None:
    old = (
        '[[meters]]\nid = "m-1"\naddress = "000000000001"\nprotocol = "dlt645"\nport = "hplc"\nbaud = 2400\n'
    )
    (meter,) = loads(old).meters
    assert (meter.channel, meter.port, meter.baud) == ("hplc", None, 2400)


@pytest.mark.parametrize(
    ("text", "path", "reason"),
    [
        ('[[meters]]\nid = "m"\naddress = "12345"\nport = "p"', "meters[0].address", "not 12 BCD digits"),
        ('[[meters]]\nid = "m"\naddress = "000000000001"', "meters[0].port", "needs its board port"),
        (
            '[[meters]]\nid = "m"\naddress = "000000000001"\nport = "p"\nphase = "D"',
            "meters[0].phase",
            "not one of",
        ),
        (
            '[[meters]]\nid = "m"\naddress = "000000000001"\nport = "p"\nbox = "X"',
            "meters[0].box",
            "no box 'X'",
        ),
        (
            '[[meters]]\nid = "m"\naddress = "000000000001"\nport = "p"\ncolour = 1',
            "meters[0].colour",
            "unknown key",
        ),
        (
            '[[branches]]\nid = "a"\nparent = "b"\n[[branches]]\nid = "b"\nparent = "a"',
            "branches[0].parent",
            "ancestor",
        ),
        (
            '[[devices]]\nid = "d"\nprofile = "breaker"\nport = "p"\nunit_id = 300',
            "devices[0].unit_id",
            "1..247",
        ),
        ('[transformer]\nid = "T"\nct_ratio = -5', "transformer.ct_ratio", "not positive"),
        ("[station]\nversion = -1", "station.version", "whole number"),
        ("not toml [", "", "not valid TOML"),
    ],
)
def test_bad_documents_name_the_key_path(text: str, path: str, reason: str) -> None:
    with pytest.raises(StationError) as err:
        loads(text, source="x.toml")
    assert any(p == path and reason in r for p, r in err.value.problems), err.value.problems
    assert str(err.value).startswith("station: x.toml: ")


def test_every_problem_is_reported_at_once() -> None:
    good = '[[meters]]\nid = "a"\naddress = "000000000001"\nport = "p"\n'
    text = '[[meters]]\nid = "a"\naddress = "1"\nport = "p"\n' + good
    with pytest.raises(StationError) as err:
        loads(text)
    assert [p for p, _ in err.value.problems] == ["meters[0].address"]  # the duplicate id needs valid records
    text = good * 2
    with pytest.raises(StationError) as err:
        loads(text)
    assert {p for p, _ in err.value.problems} == {"meters[1].id", "meters[1].address"}


def test_set_carries_its_provenance_and_lists_the_change(model: StationModel) -> None:
    prov = Provenance("confirmed", by="cloud", at=100.0)
    new, changes = apply_ops(model, [PatchOp("set", "meter", "m-0001", "phase", "B")], prov)
    meter = new.meter("m-0001")
    assert meter is not None and meter.phase == "B" and meter.source_of("phase") == prov
    assert changes == [Change("meter", "m-0001", "phase", "A", "B", prov)]
    assert model.meter("m-0001").phase == "A"  # type: ignore[union-attr]  # the old model is untouched
    again, none = apply_ops(new, [PatchOp("set", "meter", "m-0001", "phase", "B")], prov)
    assert none == [] and again == new


def test_an_archive_set_clears_the_provenance(model: StationModel) -> None:
    new, _ = apply_ops(model, [PatchOp("set", "meter", "m-0002", "branch", "F1")], ARCHIVE)
    meter = new.meter("m-0002")
    assert meter is not None and meter.branch == "F1" and meter.source_of("branch") is ARCHIVE


def test_add_and_remove_records(model: StationModel) -> None:
    prov = Provenance("confirmed", by="cloud")
    record = {"id": "m-0003", "address": "010000000003", "channel": "hplc", "phase": "B", "box": "F1-X01"}
    new, changes = apply_ops(
        model, [PatchOp("add", "meter", "m-0003", None, record), PatchOp("remove", "meter", "m-0002")], prov
    )
    added = new.meter("m-0003")
    assert added is not None and added.source_of("phase") == prov and new.meter("m-0002") is None
    assert [(c.id, c.before is None, c.after is None) for c in changes] == [
        ("m-0003", True, False),
        ("m-0002", False, True),
    ]


@pytest.mark.parametrize(
    ("op", "reason"),
    [
        (PatchOp("set", "meter", "m-0001", "phase", "X"), "not one of"),
        (PatchOp("set", "meter", "m-0001", "box", "nowhere"), "no box 'nowhere'"),
        (PatchOp("set", "meter", "m-0001", "id", "m-9"), "cannot change"),
        (PatchOp("set", "meter", "ghost", "phase", "A"), "no meter 'ghost'"),
        (PatchOp("remove", "box", "F1-X01"), "no box 'F1-X01'"),  # its meters and terminal still point at it
        (PatchOp("add", "meter", "m-0001", None, {"id": "m-0001", "address": "1"}), "already exists"),
    ],
)
def test_a_bad_op_changes_nothing(model: StationModel, op: PatchOp, reason: str) -> None:
    ops = [PatchOp("set", "meter", "m-0002", "phase", "B"), op]
    with pytest.raises(StationError, match=reason):
        apply_ops(model, ops, ARCHIVE)


def test_diff_lists_attribute_and_record_changes(model: StationModel) -> None:
    prov = Provenance("identified", by="topology", confidence=0.9)
    record = {"id": "rcd-1", "profile": "rcd", "port": "rs485-4", "unit_id": 2}
    new, _ = apply_ops(
        model,
        [PatchOp("set", "meter", "m-0001", "phase", "C"), PatchOp("add", "device", "rcd-1", None, record)],
        prov,
    )
    changes = diff(model, new)
    assert [(c.kind, c.id, c.field, c.before, c.after) for c in changes] == [
        ("meter", "m-0001", "phase", "A", "C"),
        (
            "device",
            "rcd-1",
            None,
            None,
            {**record, "provenance": {k: prov.to_doc() for k in ("port", "profile", "unit_id")}},
        ),
    ]
    assert changes[0].provenance == prov
    assert {(c.id, c.after) for c in diff(new, model)} == {("rcd-1", None), ("m-0001", "A")}
    assert diff(model, model) == []


def test_patch_ops_and_corrections_cross_as_json() -> None:
    op = PatchOp("set", "meter", "m-1", "flags", ("prepaid", "pv"))
    assert PatchOp.from_doc(json.loads(json.dumps(op.to_doc()))) == PatchOp(
        "set", "meter", "m-1", "flags", ["prepaid", "pv"]
    )
    c = Correction("meter", "m-1", "phase", "B", confidence=0.8, evidence={"r": 0.9})
    back = Correction.from_doc(json.loads(json.dumps(c.to_doc())))
    assert back == c
    with pytest.raises(StationError, match="confidence"):
        Correction.from_doc({**c.to_doc(), "confidence": 1.5})
    with pytest.raises(StationError, match="not one of"):
        PatchOp.from_doc({"op": "rename", "kind": "meter", "id": "m"})
    p = Proposal("p-1", "topology", 5.0, (c,))
    assert Proposal.from_doc(json.loads(json.dumps(p.to_doc()))) == p


def test_evidence_must_be_small_json() -> None:
    assert Correction("meter", "m", "phase", "A", evidence={"x": "y" * 5000}).problem() is not None
    assert Correction("meter", "m", "phase", "A", evidence={"x": float("nan")}).problem() is not None
    assert Correction("meter", "m", "phase", "A", evidence={"x": [1, 2]}).problem() is None


def test_meters_naming_the_same_protocol_branch_box_and_phase_share_one_string_each() -> None:
    """A model of thousands of meters holds one copy of each repeated text, whichever way it was
    read (TOML or the JSON form the store keeps); values and equality unchanged."""
    rows = "".join(
        f'\n[[meters]]\nid = "m{i}"\naddress = "{i:012d}"\nprotocol = "dlt645"\nchannel = "hplc"\n'
        f'phase = "{"ABC"[i % 3]}"\nbranch = "F{i % 2}"\n'
        for i in range(6)
    )
    text = '[station]\nid = "TA-1"\nname = "t"\n\n[[branches]]\nid = "F0"\n\n[[branches]]\nid = "F1"\n' + rows
    for model in (loads(text), model_from_doc(json.loads(json.dumps(model_to_doc(loads(text)))))):
        meters = model.meters
        assert {m.protocol for m in meters} == {"dlt645"} and {m.branch for m in meters} == {"F0", "F1"}
        assert len({id(m.protocol) for m in meters}) == 1 and len({id(m.channel) for m in meters}) == 1
        assert len({id(m.branch) for m in meters}) == 2 and len({id(m.phase) for m in meters}) == 3


def test_records_without_provenance_share_one_empty_map(model: StationModel) -> None:
    """Most records carry no provenance: they share one read-only empty map (also after a patch
    clears a record's only entry); a record with entries keeps its own, read-only."""
    bare = [m for m in model.meters if not m.provenance] + [b for b in model.boxes if not b.provenance]
    assert len(bare) >= 2 and len({id(r.provenance) for r in bare}) == 1
    new, _ = apply_ops(model, [PatchOp("set", "meter", "m-0002", "branch", "F1")], ARCHIVE)
    cleared = new.meter("m-0002")
    assert cleared is not None and cleared.provenance is bare[0].provenance
    kept = model.meter("m-0002")
    assert kept is not None and set(kept.provenance) == {"branch"}
    with pytest.raises(TypeError):
        kept.provenance["phase"] = ARCHIVE  # type: ignore[index]
