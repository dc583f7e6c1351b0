"""``MemorySlot``: an expansion-module slot whose DI/DO points live in memory.

Layer: hal (sim backend). The simulator (or a test) sets inputs with ``set_input``;
apps read them through the ``Slot`` interface and write outputs, which are recorded.
Must not know what a point means (breaker, door contact, ...).
"""

from __future__ import annotations

from collections.abc import Mapping

from hal.errors import CapabilityMissing, DeviceError

Value = float | bool


class MemorySlot:
    """A slot with named input and output points. Unknown points raise ``CapabilityMissing``."""

    def __init__(
        self,
        name: str,
        *,
        kind: str = "dio",
        inputs: Mapping[str, Value] | None = None,
        outputs: Mapping[str, Value] | None = None,
    ) -> None:
        self._name = name
        self._kind = kind
        self._inputs: dict[str, Value] = dict(inputs or {})
        self._outputs: dict[str, Value] = dict(outputs or {})
        self.writes: list[tuple[str, Value]] = []

    @property
    def name(self) -> str:
        return self._name

    @property
    def kind(self) -> str:
        return self._kind

    @property
    def outputs(self) -> dict[str, Value]:
        return dict(self._outputs)

    async def read_inputs(self) -> dict[str, Value]:
        """Inputs plus the read-back of every output (as a DI/DO module reports them)."""
        return {**self._inputs, **self._outputs}

    async def write_output(self, point: str, value: Value) -> None:
        if point not in self._outputs:
            known = ", ".join(sorted(self._outputs)) or "none"
            raise CapabilityMissing(f"slot {self._name}: no output point {point!r} (outputs: {known})")
        digital = isinstance(self._outputs[point], bool)
        if isinstance(value, bool) != digital:
            wanted = "a bool (DO)" if digital else "a number (AO)"
            raise DeviceError(self._name, 0, f"output {point!r} takes {wanted}, not {value!r}")
        self._outputs[point] = value
        self.writes.append((point, value))

    def set_input(self, point: str, value: Value) -> None:
        """Simulator side: change an input (declared or new)."""
        self._inputs[point] = value


__all__ = ["MemorySlot"]
