"""Simulated field devices other than meters: the metrology unit and Modbus RTU devices.

Layer: sim. ``metrology`` serves DL/T 698.45 at logical address 1 on a pty; ``modbus``
holds register images of the ``protocols.modbus`` profiles and answers over a pty line
(alone, or shared with a DL/T 645 meter bus); ``station`` ties them to the world's
transformer and branches. Must not import the terminal or apps.
"""
