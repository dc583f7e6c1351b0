"""The virtual HPLC carrier module (CCO) and its network of STAs, served on a pty.

Layer: sim. Speaks Q/GDW 1376.2 to the terminal; see ``sim.hplc.cco``.
"""

from sim.hplc.cco import MAX_POWER_ADDRESSES, CcoCounters, SentReport, VirtualCco
from sim.hplc.nodes import Answer, SimNode, answer645, meter_node
from sim.hplc.outage import POWER_OFF, POWER_ON, LastGaspTiming, OutageModel, OutageReport

__all__ = [
    "MAX_POWER_ADDRESSES",
    "POWER_OFF",
    "POWER_ON",
    "Answer",
    "CcoCounters",
    "LastGaspTiming",
    "OutageModel",
    "OutageReport",
    "SentReport",
    "SimNode",
    "VirtualCco",
    "answer645",
    "meter_node",
]
