"""``ttu cloud billing ...``: the master station's billing commands (marketing, bank, finance).

Layer: apps (billing), cloud side; registered through the ``ttu.cloud`` entry point as
``register(subparsers, tools)`` (``tools``: ``protocols.cloud.CloudTools``). Everything it reads
or sends goes through ``tools`` -- the stored ``billing`` stream (and the master station's command
log, when it keeps one: the bank's own list of top-ups), signed commands; it never imports the
simulator.

    ttu cloud billing [--terminal T] [--date D] [--json] [--detail]   customer-days, ledger, reconciliation
    ttu cloud billing verify [--terminal T] [--terminal-key B64] [--json]
    ttu cloud billing view {marketing,bank,finance} [--terminal T] [--json]
    ttu cloud billing contract publish FILE --key KEY --terminal T   (the utility signs)
    ttu cloud billing topup --customer C --amount 50.00 [--refund] [--txn ID] --key KEY --terminal T
    ttu cloud billing keep-power {on,off} --customer C [--reason R] --key KEY --terminal T

``KEY`` is an Ed25519 private key (PEM); the terminal trusts the matching public key in its
board.toml (``[apps.billing.config] utility_keys / bank_keys``). A mistake (bad file, bad
contract, unreadable key, a command the terminal refused) is one line on stderr and exit status 2;
``verify`` exits 1 when it finds a problem.
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from protocols import billing
from protocols.cloud import CloudTools
from protocols.errors import ProtocolError

if TYPE_CHECKING:  # the reports and key loading are imported by the commands that use them:
    # `ttu --help` and `ttu cloud` build this parser without them (tests/cli/test_lazy.py)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


class UserError(Exception):
    """A mistake on the command line: one line on stderr, exit 2."""


def load_key(path: str) -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        key = serialization.load_pem_private_key(Path(path).read_bytes(), password=None)
    except FileNotFoundError as err:
        raise UserError(f"--key {path}: no such file") from err
    except (OSError, ValueError, TypeError) as err:
        raise UserError(f"--key {path}: not a PEM private key ({err})") from err
    if not isinstance(key, Ed25519PrivateKey):
        raise UserError(f"--key {path}: not an Ed25519 key")
    return key


def load_document(path: str) -> dict[str, Any]:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as err:
        raise UserError(f"{path}: cannot read ({err.strerror or err})") from err
    try:
        data = tomllib.loads(text) if p.suffix != ".json" else json.loads(text)
    except (tomllib.TOMLDecodeError, ValueError) as err:
        raise UserError(f"{path}: not valid {'JSON' if p.suffix == '.json' else 'TOML'}: {err}") from err
    if not isinstance(data, dict):
        raise UserError(f"{path}: a contract is a table")
    try:
        return billing.normalize(data)
    except ProtocolError as err:
        raise UserError(f"{path}: {err.reason}") from err


# ------------------------------------------------------------------ reading what the cloud holds


def _summary_table(out: dict[str, Any]) -> str:
    lines = [f"terminal {out['terminal']}"]
    lines.append(
        f"{'date':10}  {'customer':8}  {'meter':8}  {'kWh':>9}  {'charge':>9}  {'balance':>10}  relay"
    )
    for c in out["customers"]:
        kwh = sum(c["kwh"].values())
        lines.append(
            f"{c['date']:10}  {c['customer_id']:8}  {c['meter_id']:8}  {kwh:9.2f}  {c['charge_yuan']:>9}"
            f"  {c['balance_yuan']:>10}  {c['relay']}"
        )
    led = out["ledger"]
    lines.append(f"ledger: {led['length']} records, head {led['head'][:16]}..., verified {led['verified']}")
    for r in out["reconciliation"]:
        lines.append(
            f"reconciliation {r['date']}: {'ok' if r['ok'] else 'DIFFERENCE'} {r['difference_yuan']} 元"
        )
    return "\n".join(lines)


def _cmd_summary(tools: CloudTools, args: argparse.Namespace) -> int:
    from . import report
    from .report import bank_list, stored_bodies

    with tools.reader(args) as reader:
        outs = [
            report.summary(t, bodies, bank=bank_list(reader, t), date=args.date, detail=args.detail)
            for t, bodies in sorted(stored_bodies(reader, args.terminal).items())
        ]
    if args.terminal is not None and not outs:
        outs = [report.summary(args.terminal, [])]
    if args.json:
        tools.print_json(outs[0] if args.terminal is not None and len(outs) == 1 else outs)
    else:
        print("\n\n".join(_summary_table(o) for o in outs) or "no billing data")
    return 0


def _cmd_verify(tools: CloudTools, args: argparse.Namespace) -> int:
    from . import report
    from .report import bank_list, stored_bodies

    key = None
    if args.terminal_key:
        try:
            key = billing.parse_public_key(args.terminal_key)
        except ProtocolError as err:
            raise UserError(f"--terminal-key: {err.reason}") from err
    with tools.reader(args) as reader:
        results = [
            report.verify(t, bodies, bank=bank_list(reader, t), public_key=key)
            for t, bodies in sorted(stored_bodies(reader, args.terminal).items())
        ]
    if args.json:
        tools.print_json(results[0] if len(results) == 1 else results)
    else:
        for r in results:
            led = r["ledger"]
            verdict = "OK" if r["ok"] else "FAILED"
            charges = r["charges"]
            print(
                f"{r['terminal']}: {verdict}: {led['length']} records, {led['roots']} signed roots, "
                f"{len(led['problems'])} ledger problems, {charges['checked']} charges priced again, "
                f"{len(charges['mismatched'])} differ"
            )
            for p in led["problems"][:50]:
                print(f"  {p['kind']:12} seq {p['seq']}: {p['detail']}")
            for day in r["reconciliation"]:
                if not day["ok"]:
                    print(f"  reconciliation {day['date']}: difference {day['difference_yuan']} 元")
                    for d in day["differences"]:
                        where = f"seqs {d['seqs']}"
                        print(
                            f"    {d['kind']} {d['subject']} {d['difference_yuan']} 元 {where}: {d['detail']}"
                        )
    return 0 if results and all(r["ok"] for r in results) else 1


def _cmd_view(tools: CloudTools, args: argparse.Namespace) -> int:
    from . import report
    from .report import bank_list, stored_bodies

    with tools.reader(args) as reader:
        views: dict[str, Callable[[str, list[Any]], dict[str, Any]]] = {
            "marketing": report.marketing,
            "bank": lambda t, b: report.bank_view(t, b, bank_list(reader, t)),
            "finance": lambda t, b: report.finance(t, b, bank_list(reader, t)),
        }
        outs = [views[args.party](t, b) for t, b in sorted(stored_bodies(reader, args.terminal).items())]
    tools.print_json(outs[0] if len(outs) == 1 else outs)
    return 0


def _send(tools: CloudTools, args: argparse.Namespace, name: str, cmd_args: dict[str, Any]) -> int:
    tools.print_json(tools.command(args, name, cmd_args))  # a refusal: one line on stderr, exit 2
    return 0


def _cmd_contract(tools: CloudTools, args: argparse.Namespace) -> int:
    document = billing.sign("contract", load_document(args.file), load_key(args.key))
    return _send(tools, args, "billing.contract", {"document": document})


def _now_text() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _cmd_topup(tools: CloudTools, args: argparse.Namespace) -> int:
    body = {
        "txn_id": args.txn or f"BANK-{uuid.uuid4().hex[:12]}",
        "terminal": args.terminal,
        "customer_id": args.customer,
        "type": "refund" if args.refund else "topup",
        "amount_yuan": args.amount,
        "bank": args.bank,
        "issued_at": _now_text(),
    }
    try:
        billing.parse_topup(body)
    except ProtocolError as err:
        raise UserError(err.reason) from err
    return _send(tools, args, "billing.topup", {"document": billing.sign("topup", body, load_key(args.key))})


def _cmd_keep_power(tools: CloudTools, args: argparse.Namespace) -> int:
    body = {"terminal": args.terminal, "customer_id": args.customer, "on": args.state == "on",
            "reason": args.reason, "issued_at": _now_text()}  # fmt: skip
    return _send(
        tools, args, "billing.keep_power", {"document": billing.sign("keep_power", body, load_key(args.key))}
    )


def _guarded(
    tools: CloudTools, fn: Callable[[CloudTools, argparse.Namespace], int]
) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            return fn(tools, args)
        except UserError as err:
            print(f"ttu cloud billing: error: {err}", file=sys.stderr)
            return 2

    return tools.guard(run)


def register(sub: Any, tools: CloudTools) -> None:
    """Add ``ttu cloud billing`` and its subcommands."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "billing", help="local billing contract (本地费控): charges, balances, ledger, contracts, top-ups"
    )
    tools.add_query_options(parser)
    parser.add_argument("--date", help="only this local date (YYYY-MM-DD)")
    parser.add_argument(
        "--detail", action="store_true", help="also estimated intervals, contracts, reconciliation totals"
    )
    parser.set_defaults(handler=_guarded(tools, _cmd_summary))
    cmds = parser.add_subparsers(dest="billing_command")
    verify = cmds.add_parser("verify", help="audit the ledger, reconcile every day, price every charge again")
    tools.add_query_options(verify)
    verify.add_argument("--terminal-key", help="pin the terminal's root-signing public key (base64)")
    verify.set_defaults(handler=_guarded(tools, _cmd_verify))
    view = cmds.add_parser("view", help="what one party sees: marketing, bank or finance")
    view.add_argument("party", choices=("marketing", "bank", "finance"))
    tools.add_query_options(view)
    view.set_defaults(handler=_guarded(tools, _cmd_view))
    contract = cmds.add_parser("contract", help="publish a tariff contract (the utility signs it)")
    csub = contract.add_subparsers(dest="contract_command", required=True)
    publish = csub.add_parser("publish", help="sign FILE (TOML or JSON) with KEY and send it to a terminal")
    publish.add_argument("file")
    publish.add_argument("--key", required=True, help="the utility's Ed25519 private key (PEM)")
    tools.add_command_options(publish)
    publish.set_defaults(handler=_guarded(tools, _cmd_contract))
    topup = cmds.add_parser(
        "topup", help="credit (or refund) a customer's prepaid balance (the bank signs it)"
    )
    topup.add_argument("--customer", required=True)
    topup.add_argument("--amount", required=True, help='yuan, e.g. "50.00"')
    topup.add_argument("--refund", action="store_true")
    topup.add_argument("--txn", help="the bank's transaction id (idempotency key); default a new one")
    topup.add_argument("--bank", default="BANK")
    topup.add_argument("--key", required=True, help="the bank's Ed25519 private key (PEM)")
    tools.add_command_options(topup)
    topup.set_defaults(handler=_guarded(tools, _cmd_topup))
    keep = cmds.add_parser(
        "keep-power", help="order or lift 保电 (keep power) for a customer (the utility signs it)"
    )
    keep.add_argument("--customer", required=True)
    keep.add_argument("state", choices=("on", "off"))
    keep.add_argument("--reason", default="")
    keep.add_argument("--key", required=True, help="the utility's Ed25519 private key (PEM)")
    tools.add_command_options(keep)
    keep.set_defaults(handler=_guarded(tools, _cmd_keep_power))


__all__ = ["UserError", "load_document", "load_key", "register"]
