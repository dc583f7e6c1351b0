"""The billing contract codec: examples, schema errors with key paths, canonical form, signatures,
top-up and 保电 documents."""

from __future__ import annotations

import copy
import tomllib
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from protocols import billing
from protocols.billing import ContractError, DocumentError, SignatureError

EXAMPLES = Path(billing.__file__).parent / "examples"


def example(name: str) -> dict[str, Any]:
    return tomllib.loads((EXAMPLES / f"{name}.toml").read_text(encoding="utf-8"))


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.toml")), ids=lambda p: p.stem)
def test_every_example_is_valid_and_canonical_form_round_trips(path: Path) -> None:
    doc = billing.normalize(tomllib.loads(path.read_text(encoding="utf-8")))
    contract = billing.parse_contract(doc)
    assert contract.to_json() == doc
    assert billing.normalize(doc) == doc
    for tariff in contract.tariffs.values():
        assert all(len(s.slot_periods) == billing.SLOTS_PER_DAY for s in tariff.seasons)
        assert {m for s in tariff.seasons for m in s.months} == set(range(1, 13))


def test_prices_are_exact_units() -> None:
    c = billing.parse_contract(billing.normalize(example("zhejiang-residential")))
    season = c.tariffs["residential"].season(7)
    assert season.prices == {"peak": 5680, "valley": 2880}
    assert season.slot_periods[31] == "valley" and season.slot_periods[32] == "peak"  # 07:45 / 08:00
    assert season.slot_periods[87] == "peak" and season.slot_periods[88] == "valley"  # 21:45 / 22:00
    tiers = c.tariffs["residential"].tiers
    assert tiers is not None and tiers.bounds == (27_600_000, 48_000_000) and tiers.adders == (500, 3000)
    assert c.fee_control == billing.FeeControl(2000, 1000, 1000, 200000, 200, "allowed")


def problems(doc: dict[str, Any]) -> tuple[str, ...]:
    with pytest.raises(ContractError) as info:
        billing.parse_contract(doc)
    return info.value.problems


def canonical(name: str = "zhejiang-residential") -> dict[str, Any]:
    return copy.deepcopy(billing.normalize(example(name)))


def test_schema_errors_name_their_key_path_all_at_once() -> None:
    doc = canonical()
    doc["version"] = 0
    doc["effective_from"] = "2026-01-01T00:10"
    season = doc["tariffs"][0]["seasons"][0]
    season["months"] = [1, 2, 3, 13]
    season["periods"][2]["from"] = "22:05"
    season["prices"]["peak"] = "0.56801"
    doc["fee_control"]["alarm2_yuan"] = "30.00"
    doc["coverage"][0]["tariff"] = "nope"
    doc["surprise"] = 1
    found = problems(doc)
    for expected in (
        "version: expected an integer >= 1",
        "effective_from: '2026-01-01T00:10' is not on a 15-minute boundary",
        "tariffs[0].seasons[0].months[3]: 13 is not a month 1..12",
        "tariffs[0].seasons[0].periods[2].from: '22:05' is not on a 15-minute boundary",
        "tariffs[0].seasons[0].prices.peak: '0.56801' has more than 4 decimals",
        "fee_control.alarm2_yuan: must not exceed alarm1_yuan",
        "coverage[0].tariff: 'nope' is not a tariff of this contract",
        "surprise: unknown key",
    ):
        assert any(p.startswith(expected) for p in found), (expected, found)


def test_season_gaps_and_overlaps_are_refused() -> None:
    doc = canonical("beijing-tou-monthly")
    doc["tariffs"][0]["seasons"][1]["months"] = [1, 2, 3, 4, 5, 6, 7, 9, 10, 11]
    found = problems(doc)
    assert any("month 7 is already in season 'summer'" in p for p in found)
    assert any("months [12] are in no season" in p for p in found)


def test_periods_must_start_at_midnight_and_prices_match_periods() -> None:
    doc = canonical()
    season = doc["tariffs"][0]["seasons"][0]
    season["periods"][0]["from"] = "01:00"
    season["prices"]["sharp"] = "1.0"
    found = problems(doc)
    assert any("periods[0].from: the first period must start at 00:00" in p for p in found)
    assert any("prices.sharp: price of a period this season does not use" in p for p in found)


def test_money_must_be_exact_text_not_a_float() -> None:
    doc = canonical()
    doc["fee_control"]["alarm1_yuan"] = 20.0
    assert any(p.startswith("fee_control.alarm1_yuan: expected a decimal string") for p in problems(doc))
    assert (
        billing.normalize(
            {**canonical(), "fee_control": {**canonical()["fee_control"], "alarm1_yuan": 20.5}}
        )["fee_control"]["alarm1_yuan"]
        == "20.50"
    )  # a hand-written TOML float is turned into its exact text by normalize


def test_not_a_table() -> None:
    with pytest.raises(ContractError, match="expected a table"):
        billing.parse_contract([1, 2])


# --------------------------------------------------------------------------------- signatures


def test_signed_contract_verifies_only_with_a_trusted_key_and_untouched_body() -> None:
    utility, other = Ed25519PrivateKey.generate(), Ed25519PrivateKey.generate()
    doc = billing.sign("contract", canonical(), utility)
    contract, verified = billing.verify_contract(doc, [other.public_key(), utility.public_key()])
    assert contract.key == "ZJ-RES@1" and verified.key_id == billing.key_id(utility.public_key())
    with pytest.raises(SignatureError, match="does not verify with any trusted key"):
        billing.verify_contract(doc, [other.public_key()])
    tampered = copy.deepcopy(doc)
    tampered["body"]["fee_control"]["overdraft_yuan"] = "500.00"
    with pytest.raises(SignatureError, match="does not verify"):
        billing.verify_contract(tampered, [utility.public_key()])
    unsigned = {"kind": "contract", "body": canonical()}
    with pytest.raises(SignatureError, match="not signed"):
        billing.verify_contract(unsigned, [utility.public_key()])
    with pytest.raises(SignatureError, match="no trusted key"):
        billing.verify_contract(doc, [])


def test_a_signature_of_another_kind_never_passes() -> None:
    bank = Ed25519PrivateKey.generate()
    doc = billing.sign("topup", canonical(), bank)
    doc["kind"] = "contract"
    with pytest.raises(SignatureError):
        billing.verify(doc, [bank.public_key()], kind="contract")
    with pytest.raises(DocumentError, match="expected 'contract'"):
        billing.verify(billing.sign("topup", {}, bank), [bank.public_key()], kind="contract")


def test_signed_but_not_canonical_body_is_refused() -> None:
    key = Ed25519PrivateKey.generate()
    body = canonical()
    body["tariffs"][0]["seasons"][0]["prices"]["peak"] = "0.56800"  # same value, not the canonical text
    with pytest.raises(ContractError, match="canonical form"):
        billing.verify_contract(billing.sign("contract", body, key), [key.public_key()])


def test_public_key_text_round_trip_and_errors() -> None:
    key = Ed25519PrivateKey.generate().public_key()
    text = billing.public_key_text(key)
    assert billing.key_id(billing.parse_public_key(text)) == billing.key_id(key)
    with pytest.raises(SignatureError, match="not base64"):
        billing.parse_public_key("not base64!")
    with pytest.raises(SignatureError, match="32"):
        billing.parse_public_key("AAAA")


TOPUP = {
    "txn_id": "ICBC-20260701-000123",
    "terminal": "TTU-1",
    "customer_id": "C0001",
    "type": "topup",
    "amount_yuan": "100.00",
    "bank": "ICBC",
    "issued_at": "2026-07-01T10:00:00+08:00",
}


def test_topup_document() -> None:
    t = billing.parse_topup(TOPUP)
    assert (t.amount, t.signed_amount) == (10000, 10000)
    assert billing.parse_topup({**TOPUP, "type": "refund"}).signed_amount == -10000
    for change, message in (
        ({"amount_yuan": "0.00"}, "above 0.00"),
        ({"amount_yuan": "1.005"}, "more than 2 decimals"),
        ({"amount_yuan": "-5.00"}, "must not be negative"),
        ({"txn_id": "has space"}, "not a transaction id"),
        ({"type": "gift"}, 'not "topup" or "refund"'),
        ({"extra": 1}, "unknown fields"),
    ):
        with pytest.raises(DocumentError, match=message):
            billing.parse_topup({**TOPUP, **change})


def test_keep_power_document() -> None:
    k = billing.parse_keep_power({"terminal": "T", "customer_id": "C1", "on": True, "issued_at": "x"})
    assert k.on and k.reason == ""
    with pytest.raises(DocumentError, match="true or false"):
        billing.parse_keep_power({"terminal": "T", "customer_id": "C1", "on": "yes", "issued_at": "x"})
