"""How an app's results look at the master station: stored messages, and the views apps contribute.

Layer: protocols (cloud). Pure types, no I/O: the master station (the cloud stub) stores every
message of an app's result stream as a ``StoredResult``; an app contributes

* a ``ttu cloud <name>`` subcommand: entry point group ``ttu.cloud``, a function
  ``register(subparsers, tools: CloudTools) -> None`` that adds its parser (and sets ``handler``);
* a dashboard panel: entry point group ``ttu.dashboard``, a ``Panel`` whose ``data(reader, query)``
  answers ``/api/panels/<name>`` and whose ``script`` (JavaScript defining ``render(element, data)``)
  draws it,

and reads what the master station stored through ``ResultReader``, never through the stub's
modules: apps must not import ``sim``. ``CloudTools`` is what the stub's CLI lends a subcommand
(the common options, the reader, signed commands, JSON output).
"""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class StoredResult:
    """One message of a stream as the master station stored it (``body`` is the app's JSON)."""

    terminal: str
    stream: str
    key: str
    seq: int
    ts: float
    received: float
    body: dict[str, Any]


class ResultReader(Protocol):
    """Read access to the results the master station stored, newest first."""

    def results(
        self,
        stream: str,
        *,
        terminal: str | None = None,
        since: float | None = None,
        limit: int = 100,
    ) -> list[StoredResult]: ...

    def latest(self, stream: str, *, terminal: str | None = None) -> StoredResult | None: ...


class CloudTools(Protocol):
    """What ``ttu cloud`` lends an app's subcommand."""

    def add_query_options(self, parser: argparse.ArgumentParser, *, terminal_required: bool = False) -> None:
        """``--db``, ``--json`` and ``--terminal`` (required or not)."""
        ...

    def add_command_options(self, parser: argparse.ArgumentParser) -> None:
        """``--broker``, ``--key-file``, ``--timeout`` and a required ``--terminal``, for ``command``."""
        ...

    def reader(self, args: argparse.Namespace) -> contextlib.AbstractContextManager[ResultReader]:
        """The stub's database (``--db``), read-only: ``with tools.reader(args) as results: ...``."""
        ...

    def command(self, args: argparse.Namespace, name: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
        """Send a signed command to ``args.terminal``; its result, or a one-line error (exit 2)."""
        ...

    def print_json(self, value: Any) -> None: ...

    def guard(self, handler: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
        """``handler`` with user mistakes (bad database, bad key file, refused command) turned into
        one line on stderr and exit status 2."""
        ...


Register = Callable[[Any, CloudTools], None]
"""An app's ``ttu cloud`` entry point: ``register(subparsers, tools)``."""


@dataclass(frozen=True, slots=True)
class Panel:
    """A dashboard panel an app contributes: ``data`` runs on the stub's database thread with the
    request's query parameters; ``script`` defines ``render(element, data)`` in the page."""

    name: str
    title: str
    data: Callable[[ResultReader, Mapping[str, Sequence[str]]], Any]
    script: str
    order: int = 100


__all__ = ["CloudTools", "Panel", "Register", "ResultReader", "StoredResult"]
