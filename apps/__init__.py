"""Plug-in apps, one folder each: ``app.toml`` + ``async def run(ctx, config)``.

Layer: apps. An app talks to other apps over the bus only and never imports them.
"""
