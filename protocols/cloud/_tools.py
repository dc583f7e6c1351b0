"""What an app's ``ttu cloud <name>`` subcommand may use of the master-station stub.

Layer: protocols. Protocols only: the stub (``sim.cloud``) implements them; an app registers
its subcommand through the entry point group ``ttu.cloud`` (``def register(sub, tools)``) and
reads what its stream delivered as ``StoredResult`` rows, so apps never import the simulator.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Protocol, Self


@dataclass(frozen=True, slots=True)
class StoredResult:
    """One message of a result stream as the cloud stored it (``body`` = what the app sent)."""

    terminal: str
    stream: str
    key: str
    seq: int
    ts: float
    received: float
    body: Mapping[str, Any]


class ResultReader(Protocol):
    """The stored messages of result streams, oldest first; close it (``with``) when done."""

    def results(
        self,
        stream: str,
        *,
        terminal: str | None = None,
        since: float | None = None,
        limit: int | None = None,
    ) -> list[StoredResult]: ...

    def latest(self, stream: str, *, terminal: str | None = None) -> StoredResult | None: ...

    def close(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class CloudTools(Protocol):
    """Given to each ``ttu.cloud`` entry point's ``register(sub, tools)``."""

    def add_query_options(self, parser: argparse.ArgumentParser) -> None:
        """``--db``, ``--json`` and ``--terminal`` on ``parser``."""
        ...

    def results(self, args: argparse.Namespace) -> ResultReader:
        """The stub's stored results, from the ``--db`` the user gave."""
        ...

    def print_json(self, obj: Any) -> None: ...

    def guard(self, fn: Any) -> Any:
        """Wrap a handler: a user mistake (a missing database, ...) is one line on stderr, exit 2."""
        ...


__all__ = ["CloudTools", "ResultReader", "StoredResult"]
