"""Who is billed: the customers of the station model (``apps.billing.directory.from_model``)."""

from __future__ import annotations

from apps.billing.book import Customer
from apps.billing.directory import from_model, reach
from protocols.station import Meter, StationModel


def test_customers_and_meter_places_come_from_the_station_model() -> None:
    model = StationModel(
        version=3,
        meters=(
            Meter("m-1", "000000000001", port="rs485-1", customer="C1", tariff="residential-tou"),
            Meter(
                "m-2",
                "000000000002",
                protocol="dlt698",
                channel="hplc",
                customer="C2",
                phase="ABC",
                flags=("keep_power",),
            ),
            Meter("m-3", "000000000003", port="rs485-2", customer="C3", flags=("postpaid",)),
            Meter("bu-1", "019900000001", port="rs485-4", kind="branch_unit", customer="BU"),
            Meter(
                "ass", "019900000009", port="rs485-4", kind="assessment", customer="T", tariff="assessment"
            ),
            Meter("m-9", "000000000009", port="rs485-1"),  # no customer on record: not billed
        ),
    )
    customers, places = from_model(model)
    assert customers == [
        Customer("C1", "m-1", "residential-tou"),
        Customer("C2", "m-2", None, keep_power=True),
        Customer("C3", "m-3", None, prepaid=False),
    ]
    assert [p.id for p in places] == ["m-1", "m-2", "m-3"]
    assert all(p is next(m for m in model.meters if m.id == p.id) for p in places)  # the model's own
    assert [reach(p) for p in places] == [
        ("000000000001", "dlt645", "rs485-1", False),
        ("000000000002", "dlt698", "hplc", True),
        ("000000000003", "dlt645", "rs485-2", False),
    ]
