"""The station model (台区档案) as the terminal owns it: versioned, persisted, published, changed by
the cloud and by apps' proposals. The format itself is ``protocols.station``.

Layer: runtime. ``StationService`` (one per terminal) and what an app sees of it
(``ctx.station``: ``runtime.station.view``).
"""

from runtime.station.service import CHANGED_TOPIC, MODEL_TOPIC, STREAM, StationService, StationStats

__all__ = ["CHANGED_TOPIC", "MODEL_TOPIC", "STREAM", "StationService", "StationStats"]
