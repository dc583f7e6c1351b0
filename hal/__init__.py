"""Hardware abstraction layer: typed interfaces and their backends.

Layer: hal. Interfaces in ``hal.interfaces``; backends ``hal.linux`` (real ttys via
pyserial) and ``hal.sim`` (in-memory pairs and ptys). May use protocols/ codecs; must
not know apps, schedules, or grid logic.
"""
