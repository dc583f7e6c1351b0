"""Pure codecs: bytes <-> frozen dataclasses. No I/O, no asyncio, no serial, no hal.

Layer: protocols. ``dlt645`` (DL/T 645-2007), ``cloud`` (MQTT topic scheme and JSON
payloads), ``checksums`` (every sum and CRC), ``quantities`` (normalized quantity names).
A test fails if anything here imports asyncio, serial, hal, runtime or apps.
"""
