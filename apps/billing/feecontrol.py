"""Prepaid fee control (费控): from a balance and the contract's thresholds to relay commands.

Layer: apps (billing). Pure decisions; ``relays`` carries them out and the ledger records them.

Levels of a balance ``b`` under thresholds alarm1 >= alarm2, overdraft (GRID.md §4):

=====  =========================  ==============================================
level  when                       the meter is told
=====  =========================  ==============================================
0      b > alarm1                 alarm release (2BH) if an alarm was on
1      alarm2 < b <= alarm1       alarm (2AH), once on entering the level
2      0 < b <= alarm2            alarm (2AH) again: pre-trip warning
3      -overdraft < b <= 0        alarm (2AH) again: running on overdraft
trip   b <= -overdraft            trip (1AH) -- never under 保电 (keep power)
=====  =========================  ==============================================

After a trip the relay stays open until ``b > close_allowed``; then close allowed (1BH, the
customer presses the meter's button) or direct close (1CH), as the contract says. 保电 (keep
power) comes from a signed utility order or from the station model's ``keep_power`` flag: the
meter is told first (3AH / 3BH, whatever its balance), trips are held back, and a tripped
customer is closed at once. A customer no contract covers any more, or not prepaid, is
released. Each decision is made against what the ledger says was last commanded, so a command
that failed is decided again at the next cycle (a 保电 command the meter refused is not sent
again until the wanted state changes: such a meter cannot keep power, our trips still can).
"""

from __future__ import annotations

from dataclasses import dataclass

from hal.meters import RelayCommand
from protocols.billing import FeeControl, yuan

from .book import Account


@dataclass(frozen=True, slots=True)
class Action:
    command: RelayCommand
    reason: str
    level: int = 0  # alarm level for an alarm


def level_of(balance: int, fee: FeeControl) -> int:
    if balance > fee.alarm1:
        return 0
    if balance > fee.alarm2:
        return 1
    if balance > 0:
        return 2
    return 3


def trips(balance: int, fee: FeeControl) -> bool:
    return balance <= -fee.overdraft


def keep_power_action(acc: Account, *, archived: bool = False) -> Action | None:
    """3AH / 3BH when what the meter was last told differs from the 保电 wanted (an order or the
    station model's flag ``archived``)."""
    wanted = acc.keep_power or archived
    if wanted == acc.meter_keep_power:
        return None
    if wanted:
        ordered = "保电 (keep power) ordered by the utility"
        return Action(
            RelayCommand.KEEP_POWER, ordered if acc.keep_power else "保电 flag in the station model"
        )
    return Action(RelayCommand.KEEP_POWER_RELEASE, "保电 (keep power) lifted")


def plan(
    acc: Account, fee: FeeControl | None, *, prepaid: bool = True, archived_keep_power: bool = False
) -> list[Action]:
    """The commands that bring the meter to where ``acc``'s balance says it should be (a 保电
    command first, see ``keep_power_action``)."""
    b = acc.balance
    keep_power = acc.keep_power or archived_keep_power
    first = keep_power_action(acc, archived=archived_keep_power)
    actions: list[Action] = [] if first is None else [first]
    if fee is None or not prepaid:
        if acc.tripped:
            actions.append(Action(RelayCommand.DIRECT_CLOSE, "no prepaid contract covers the customer"))
        if acc.alarm:
            actions.append(Action(RelayCommand.ALARM_RELEASE, "no prepaid contract covers the customer"))
        return actions
    level = level_of(b, fee)
    if level == 0 and acc.alarm:
        actions.append(
            Action(RelayCommand.ALARM_RELEASE, f"balance {yuan(b)} above alarm 1 {yuan(fee.alarm1)}")
        )
    elif level > acc.alarm:
        limit = {1: f"alarm 1 {yuan(fee.alarm1)}", 2: f"alarm 2 {yuan(fee.alarm2)}", 3: "zero"}[level]
        actions.append(Action(RelayCommand.ALARM, f"balance {yuan(b)} at or below {limit}", level))
    if acc.tripped:
        if keep_power:
            actions.append(Action(RelayCommand.DIRECT_CLOSE, "保电 (keep power) ordered"))
        elif b > fee.close_allowed:
            command = RelayCommand.DIRECT_CLOSE if fee.close == "direct" else RelayCommand.CLOSE_ALLOWED
            actions.append(
                Action(command, f"balance {yuan(b)} above close allowed {yuan(fee.close_allowed)}")
            )
    elif trips(b, fee) and not keep_power:
        actions.append(
            Action(RelayCommand.TRIP, f"balance {yuan(b)} at or below overdraft -{yuan(fee.overdraft)}")
        )
    return actions


def blocked(acc: Account, fee: FeeControl | None, *, archived_keep_power: bool = False) -> bool:
    """A trip the balance calls for that 保电 holds back."""
    keep_power = acc.keep_power or archived_keep_power
    return fee is not None and keep_power and trips(acc.balance, fee) and not acc.tripped


__all__ = ["Action", "blocked", "keep_power_action", "level_of", "plan", "trips"]
