"""``RouteTransport``: meter frames handed to a carrier module that leads the reading.

A scripted module (the test) asks about nodes, carries the frames it is given and brings
replies back in the order a real module does, including the cases where the job's next frame
is ready before the module asks again, where the module gives up on a frame, and where nothing
is due at a node.
"""

from __future__ import annotations

import asyncio

import pytest

from hal.clock import LoopClock
from hal.errors import TransportTimeout
from hal.interfaces import Priority, RouteAsk
from hal.meters.route import RouteTransport


class _Raw:
    """A decoder that yields the reply bytes as they are."""

    def feed(self, data: bytes) -> list[bytes]:
        return [bytes(data)]


async def _exchange(transport: RouteTransport, address: str, frame: bytes) -> bytes:
    return await transport.transact(
        frame, decoder=_Raw(), match=lambda _: True, device=address, priority=Priority.CURVE, timeout=20.0
    )


@pytest.mark.asyncio
async def test_a_job_of_several_frames_is_carried_frame_by_frame() -> None:
    replies: list[bytes] = []

    async def job() -> bool:
        replies.append(await _exchange(transport, "A1", b"curve?"))
        replies.append(await _exchange(transport, "A1", b"freeze?"))  # ready before the next ask
        return True

    transport = RouteTransport(clock=LoopClock(), jobs=lambda address: job if address == "A1" else None)
    answer = await transport.ask(RouteAsk("A1", 1))
    assert answer.frame == b"curve?"
    transport.data("A1", b"curve!", duration_s=1.0)
    await asyncio.sleep(0)  # the job takes the reply and hands its next frame out
    answer = await transport.ask(RouteAsk("A1", 1))
    assert answer.frame == b"freeze?"  # not mistaken for a frame the module gave up on
    transport.data("A1", b"freeze!", duration_s=1.0)
    answer = await transport.ask(RouteAsk("A1", 1))
    assert answer.frame == b"" and answer.ok
    assert replies == [b"curve!", b"freeze!"]
    assert transport.statistics()["unanswered"] == 0
    assert transport.jobs_ok == 1


@pytest.mark.asyncio
async def test_a_frame_the_module_gave_up_on_fails_the_job_and_the_node() -> None:
    seen: list[BaseException] = []

    async def job() -> bool:
        try:
            await _exchange(transport, "B2", b"curve?")
        except TransportTimeout as err:
            seen.append(err)
            return False
        return True

    transport = RouteTransport(clock=LoopClock(), jobs=lambda address: job)
    assert (await transport.ask(RouteAsk("B2", 2))).frame == b"curve?"
    answer = await transport.ask(RouteAsk("B2", 2))  # asked again: no reply came back
    assert answer.frame == b"" and not answer.ok
    assert len(seen) == 1 and transport.unanswered == 1 and transport.jobs_failed == 1


@pytest.mark.asyncio
async def test_nothing_due_ends_the_node_at_once_and_reads_outside_a_visit_are_refused() -> None:
    transport = RouteTransport(clock=LoopClock(), jobs=lambda address: None)
    answer = await transport.ask(RouteAsk("C3", 3))
    assert answer.frame == b"" and answer.ok and transport.idle_asks == 1
    with pytest.raises(Exception, match="not being led"):
        await _exchange(transport, "C3", b"curve?")
