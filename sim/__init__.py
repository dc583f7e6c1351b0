"""Everything outside the terminal: virtual meters, virtual CCO, grid physics, cloud stub.

Layer: sim. Talks to the terminal only over ttys, MQTT and the hal sim backend; may
use runtime only to boot a terminal.
"""
