"""Every import rule of ``shared/DESIGN.md``, checked on the source of every module (``ast``, so
imports inside functions and under ``TYPE_CHECKING`` count too).

    protocols -> protocols only; pure: no asyncio, serial, sockets, MQTT, sqlite, subprocesses
                 (the ground: codecs, the error roots, the station model, the package format)
    hal       -> protocols (hal also holds the Clock, keep_cancel and Stream: loop utilities
                 that runtime, apps and the simulator's devices all run on)
    runtime   -> hal, protocols; of protocols only what is not a grid/meter codec
                 (cloud scheme, errors, station model, ledger, package format),
                 protocols.inspect for `ttu frame`
    apps      -> runtime, protocols, hal; never another app, never sim
    sim       -> protocols, and of hal what the world shares with the terminal (the clock,
                 cancellation, interfaces and errors, the sim backend, the Modbus RTU codec);
                 runtime only to boot a terminal (sim/runner.py, sim/cli.py)

There is no package of ours outside the fixed layout (runtime/ apps/ protocols/ hal/ sim/).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OURS = {"protocols", "hal", "runtime", "apps", "sim"}
IO = {
    "asyncio",
    "serial",
    "serial_asyncio_fast",
    "socket",
    "sqlite3",
    "subprocess",
    "aiomqtt",
    "paho",
    "amqtt",
}


def imports(path: Path) -> Iterator[tuple[str, int]]:
    """(dotted module, line) of every absolute import in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module, node.lineno


def sources(layer: str) -> list[Path]:
    return sorted((REPO / layer).rglob("*.py"))


def top(module: str) -> str:
    return module.split(".")[0]


def within(module: str, *prefixes: str) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def offences(layer: str, allowed: set[str]) -> list[str]:
    """Imports of our packages outside ``allowed`` from files of ``layer`` (``file:line module``)."""
    out: list[str] = []
    for path in sources(layer):
        rel = path.relative_to(REPO)
        for module, line in imports(path):
            if top(module) in OURS and top(module) != layer and top(module) not in allowed:
                out.append(f"{rel}:{line} {module}")
    return out


def test_no_package_outside_the_fixed_layout() -> None:
    layout = OURS | {"tests", "bench"}
    packages = {p.parent.name for p in REPO.glob("*/__init__.py")}
    assert packages - layout == set()
    strays = [
        f"{p.relative_to(REPO)}:{line} {m}"
        for folder in sorted(layout)
        for p in sources(folder)
        for m, line in imports(p)
        if top(m) == "base"
    ]
    assert strays == []


def test_protocols_are_pure_codecs() -> None:
    assert offences("protocols", set()) == []
    io = [
        f"{p.relative_to(REPO)}:{line} {m}"
        for p in sources("protocols")
        for m, line in imports(p)
        if top(m) in IO
    ]
    assert io == []


def test_hal_knows_only_protocols() -> None:
    assert offences("hal", {"protocols"}) == []


RUNTIME_PROTOCOLS = (
    "protocols.cloud",
    "protocols.errors",
    "protocols.station",
    "protocols.ledger",
    "protocols.packages",
)


def test_runtime_knows_no_grid_or_meter_codec() -> None:
    assert offences("runtime", {"hal", "protocols"}) == []
    specific = [
        f"{p.relative_to(REPO)}:{line} {m}"
        for p in sources("runtime")
        for m, line in imports(p)
        if top(m) == "protocols"
        and not within(m, *RUNTIME_PROTOCOLS)
        and not (within(m, "protocols.inspect") and p == REPO / "runtime/cli/frame.py")
    ]
    assert specific == []


def test_apps_use_the_layers_below_and_never_each_other() -> None:
    assert offences("apps", {"runtime", "protocols", "hal"}) == []
    crossing = []
    for path in sources("apps"):
        own = path.relative_to(REPO / "apps").parts[0]
        for module, line in imports(path):
            parts = module.split(".")
            if parts[0] == "apps" and len(parts) > 1 and parts[1] != own:
                crossing.append(f"{path.relative_to(REPO)}:{line} {module}")
    assert crossing == []


SIM_HAL = ("hal.clock", "hal.cancellation", "hal.interfaces", "hal.errors", "hal.sim", "hal.modbus")
SIM_BOOTS = {REPO / "sim/runner.py", REPO / "sim/cli.py"}


def test_sim_talks_to_the_terminal_only_through_what_it_shares() -> None:
    assert offences("sim", {"protocols", "hal", "runtime"}) == []  # never apps
    wrong = []
    for path in sources("sim"):
        for module, line in imports(path):
            where = f"{path.relative_to(REPO)}:{line} {module}"
            if top(module) == "hal" and not within(module, *SIM_HAL):
                wrong.append(where)
            if top(module) == "runtime" and path not in SIM_BOOTS:
                wrong.append(where)
    assert wrong == []


@pytest.mark.parametrize(
    ("layer", "source", "allowed", "found"),
    [
        (
            "protocols",
            "import asyncio\nfrom hal.interfaces import SerialLink\nfrom . import sibling\n",
            set(),
            1,
        ),
        ("hal", "def f():\n    from runtime.bus import Bus\n", {"protocols"}, 1),
        (
            "apps",
            "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from sim.world import World\n",
            {"runtime", "protocols", "hal"},
            1,
        ),
        (
            "runtime",
            "from hal.rs485 import Rs485Port\nfrom hal.clock import Clock\n",
            {"hal", "protocols"},
            0,
        ),
    ],
)
def test_the_check_finds_imports_wherever_they_hide(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layer: str, source: str, allowed: set[str], found: int
) -> None:
    folder = tmp_path / layer
    folder.mkdir()
    (folder / "bad.py").write_text(source, encoding="utf-8")
    monkeypatch.setattr(sys.modules[__name__], "REPO", tmp_path)
    assert len(offences(layer, allowed)) == found
