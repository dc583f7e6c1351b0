"""Linux hal backend: real ttys (and pty slaves) through pyserial, ``/dev/watchdog``.

Layer: hal. Must not know apps, schedules or grid logic; every wait is driven from the
event loop (no blocking reads or sleeps). ``ttu.service`` beside this package is the box's
systemd unit that runs ``ttu run`` (with ``PYTHONOPTIMIZE=2``).
"""

from hal.linux.power import InputPowerMonitor
from hal.linux.serial import PySerialLink
from hal.linux.watchdog import DevWatchdog

__all__ = ["DevWatchdog", "InputPowerMonitor", "PySerialLink"]
