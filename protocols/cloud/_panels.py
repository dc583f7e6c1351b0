"""A dashboard panel an app contributes to the master station's page (entry point ``ttu.dashboard``).

Layer: protocols (plain data; no I/O). ``data(reader, query)`` is called by the dashboard with a
read-only view of what the cloud stored (``reader.results(stream, terminal=...)``, each result
with ``terminal`` and ``body``) and the request's query (``{"terminal": ...}``); it returns
JSON. ``script`` is JavaScript defining ``render(element, data)``, run in the page.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Panel:
    name: str
    title: str
    script: str
    data: Callable[[Any, Mapping[str, str]], Any]


__all__ = ["Panel"]
