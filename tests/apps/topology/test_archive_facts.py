"""The identification's view of the archive: equal facts are one object."""

from __future__ import annotations

from apps.topology import archive as arch
from protocols.station import loads


def test_the_archive_view_shares_one_fact_object_per_distinct_fact() -> None:
    """Thousands of meters say "phase A, from the archive": one ``Fact`` for them all."""
    rows = "".join(
        f'\n[[meters]]\nid = "m{i}"\naddress = "{i:012d}"\nchannel = "hplc"\n'
        f'phase = "{"AB"[i % 2]}"\nbranch = "F1"\n'
        for i in range(6)
    )
    view = arch.from_model(loads('[station]\nid = "TA-1"\nname = "t"\n\n[[branches]]\nid = "F1"\n' + rows))
    assert len(view.meters) == 6
    assert len({id(m.phase) for m in view.meters}) == 2 and len({id(m.branch) for m in view.meters}) == 1
    assert len({id(m.box) for m in view.meters}) == 1 and not view.meters[0].box.known
    assert [m.phase.value for m in view.meters] == ["A", "B"] * 3
