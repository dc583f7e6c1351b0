"""Meter clients: protocol masters on top of a transport (an RS-485 port today, HPLC later).

Layer: hal. Turns "read DI x from meter y" into frames, transactions and decoded
results; abnormal replies become ``DeviceError``. Must not know schedules, archives
or what apps do with the values.
"""

from hal.meters.dlt645 import Dlt645Master, WireTally

__all__ = ["Dlt645Master", "WireTally"]
