"""The carrier network as the module sees it: AFN10 F21 topology and AFN10 F31 phase info,
paged, through the CCO driver (hal.hplc) and the virtual CCO (sim.hplc), in virtual time."""

from __future__ import annotations

import pytest

from protocols import gdw1376_2 as q
from sim.hplc import meter_node
from sim.loads import HouseholdProfile
from sim.meters.model import VirtualMeter
from tests.hal._cco_harness import START, cco_pair, make_meters


def unlisted(address: str, phase: str) -> VirtualMeter:
    return VirtualMeter(address, profile=HouseholdProfile.for_customer(2, 1), start=START, phase=phase)  # type: ignore[arg-type]


@pytest.mark.looptime
async def test_network_lists_every_sta_that_joined_archived_or_not() -> None:
    meters = make_meters(20)  # more than one page of 16
    stray = unlisted("880000000007", "C")
    async with cco_pair(meters, extra_nodes=[meter_node(stray)]) as p:
        await p.cco.reset()
        await p.cco.sync_archive([m.address for m in meters])  # the stray is not in the archive
        nodes = await p.cco.network()
        addresses = {n.address for n in nodes}
        assert addresses == {m.address for m in meters} | {stray.address}
        assert p.cco.master_address not in addresses  # the CCO itself is left out
        assert all(n.level >= 1 and n.tei >= 2 for n in nodes)
        pages = [f for f in p.sim.received if (f.afn, f.fn) == (0x10, 21)]
        assert len(pages) == 2  # 22 rows (CCO + 21 STAs) in pages of 16


@pytest.mark.looptime
async def test_phase_info_gives_each_node_its_phase_and_marks_three_phase_meters() -> None:
    meters = make_meters(3)
    for m, phase in zip(meters, ("A", "B", "C"), strict=True):
        m.phase = phase  # type: ignore[assignment]
    big = unlisted("880000000009", "ABC")
    async with cco_pair(meters, extra_nodes=[meter_node(big)]) as p:
        await p.cco.reset()
        phases = {n.address: n for n in await p.cco.phases()}
        assert [phases[m.address].phases for m in meters] == ["A", "B", "C"]
        assert phases[big.address].three_phase and phases[big.address].phases == "ABC"
        assert phases[big.address].sequence == "ABC" and not phases[big.address].line_abnormal


def test_phase_node_bits_follow_the_firmware_layout() -> None:
    # low byte: D0..D2 phases, D3 three-phase, D4 line abnormal, D5..D7 sequence type (synthetic frames:
    # no public capture of AFN10 F31 with three-phase meters exists; layout from the HiSilicon CCO code)
    node = q.PhaseNode.of("000000000001", "ABC", three_phase=True, abnormal=True, sequence=3)
    assert node.info == 0b011_1_1_111
    assert (node.phases, node.three_phase, node.line_abnormal, q.PHASE_SEQUENCES[node.sequence]) == (
        "ABC",
        True,
        True,
        "BCA",
    )
    single = q.PhaseNode("000000000002", 0x0002)
    assert (single.phases, single.three_phase, single.line_abnormal) == ("B", False, False)
    info = q.PhaseInfo(2, 1, (node, single))
    frame = q.make_frame(0x10, 31, info, up=True, seq=9)
    back = q.parse_unit(q.decode(q.encode(frame)))
    assert back == info
