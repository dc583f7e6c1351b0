"""Signature current (特征电流) frames: DL/T 698.45 OI 4E08 data and DL/T 645 0308 05nn records.

The layouts follow the public Wasion meter firmware (see protocols.signature); no captured frame
of either is public, so the frames here are synthetic, built from those layouts by hand."""

from __future__ import annotations

from datetime import datetime

import pytest

from protocols import dlt645, dlt698
from protocols.errors import ProtocolError
from protocols.signature import DEFAULT_CODE, FRAME_S, Detection, SignalInfo, attribute

HEARD = Detection(datetime(2024, 6, 1, 2, 15, 9), 2, 0.412, 0.388, 0.021, DEFAULT_CODE, b"\x01\x02")


def test_698_identification_info_round_trips_through_a_get_response() -> None:
    data = dlt698.topology.results_data([HEARD])
    apdu = dlt698.GetResponseNormal(5, dlt698.ResultNormal(dlt698.topology.RESULTS, data))
    back = dlt698.decode_apdu(apdu.encode())
    assert isinstance(back, dlt698.GetResponseNormal)
    assert back.result.data is not None
    (d,) = dlt698.topology.parse_results(back.result.data)
    assert (d.at, d.phase, d.code, d.ext) == (HEARD.at, 2, DEFAULT_CODE, b"\x01\x02")
    assert (d.s1_a, d.s2_a, d.noise_a) == (0.412, 0.388, 0.021)  # carried in mA


def test_698_encoding_is_the_firmwares_byte_for_byte() -> None:
    # structure(7): date_time_s, enum, 3 x double-long (mA), bit-string(16), octet-string
    raw = dlt698.topology.detection_data(HEARD).encode()
    assert raw.hex().upper() == (
        "0207"  # structure of 7
        "1C07E80601020F09"  # date_time_s 2024-06-01 02:15:09
        "1602"  # enum phase B
        "050000019C"
        "0500000184"
        "0500000015"  # S1 412 mA, S2 388 mA, noise 21 mA
        "0410E9AA"  # bit-string of 16 bits: the code E9 AA
        "09020102"  # octet-string extension
    )


def test_698_start_and_signal_info() -> None:
    at = datetime(2024, 6, 2, 1, 30, 0)
    apdu = dlt698.ActionRequestNormal(9, dlt698.topology.START_SENDING, dlt698.topology.start_sending(at))
    back = dlt698.decode_apdu(apdu.encode())
    assert isinstance(back, dlt698.ActionRequestNormal)
    assert str(back.omd) == str(dlt698.topology.START_SENDING)
    assert dlt698.topology.parse_start_sending(back.data) == at
    info = SignalInfo()
    assert dlt698.topology.parse_signal_info(dlt698.topology.signal_info_data(info)) == info


def test_698_malformed_identification_info_is_refused() -> None:
    bad = dlt698.Data(dlt698.DataType.STRUCTURE, (dlt698.Data(dlt698.DataType.ENUM, 1),))
    with pytest.raises(ProtocolError, match="structure of 7"):
        dlt698.topology.parse_detection(bad)


def test_645_result_record_round_trips() -> None:
    di = dlt645.topology.signature_result_di(1)
    values = dlt645.topology.values_from_detections([HEARD, HEARD])
    frame = dlt645.read_response("000000000123", di, values)
    result = dlt645.parse_read_response(dlt645.decode(dlt645.encode(frame)))
    got = dlt645.topology.detections_from_values(result.values)
    assert [(d.at, d.phase, d.code) for d in got] == [(HEARD.at, 2, DEFAULT_CODE)] * 2
    assert abs(got[0].s1_a - 0.412) < 1e-4
    # layout: N, code length, then 6 + 1 + 12 + 2 + 12 = 33 bytes per detection
    assert len(frame.data) == 4 + 2 + 2 * 33


def test_645_empty_record_is_no_detection_and_start_is_a_write() -> None:
    result = dlt645.decode_payload(0x03080501, b"\xff" * 35)
    assert result.values == ()
    at = datetime(2024, 6, 2, 1, 30, 0)
    req = dlt645.parse_write_request(dlt645.topology.signature_start_request("000000000123", at))
    assert req.di == 0x04080001
    assert dlt645.decode_payload(req.di, req.payload).values == ("2024-06-02 01:30:00",)


def test_detections_are_attributed_by_time() -> None:
    sent = datetime(2024, 6, 1, 2, 15, 0)
    late = Detection(datetime(2024, 6, 1, 2, 25, 0), 1, 0.3, 0.3, 0.0)
    assert attribute([HEARD, late], sent) == [HEARD]
    assert FRAME_S == 9.6
