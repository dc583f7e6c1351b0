"""PV output of prosumers: a clear-sky model times a seeded stochastic cloudiness.

Layer: sim (profiles). Synthetic by design (no licence-clean measured PV data ships offline);
must not read files or know about the network.

Clear sky: Haurwitz global horizontal irradiance GHI = 1098 cos(z) exp(-0.057 / cos z) W/m²,
z the solar zenith angle from a standard declination / equation-of-time approximation.
Cloudiness: a daily clearness index (Beta distributed, mean ~0.65) shared by the whole station
area, an AR(1) intra-day fluctuation, and a small independent term per prosumer.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

FArray = NDArray[np.float64]


def clear_sky_ghi(epoch: FArray, *, latitude: float, longitude: float) -> FArray:
    """Global horizontal irradiance under clear sky [W/m²] at UTC epoch seconds."""
    day = (epoch / 86400.0) % 365.25
    gamma = 2 * np.pi * day / 365.25
    decl = 0.006918 - 0.399912 * np.cos(gamma) + 0.070257 * np.sin(gamma) - 0.006758 * np.cos(2 * gamma)
    eot_min = 229.18 * (
        0.000075 + 0.001868 * np.cos(gamma) - 0.032077 * np.sin(gamma) - 0.014615 * np.cos(2 * gamma)
    )
    utc_min = (epoch % 86400.0) / 60.0
    solar_min = utc_min + 4.0 * longitude + eot_min
    hour_angle = np.deg2rad(solar_min / 4.0 - 180.0)
    lat = np.deg2rad(latitude)
    cos_z = np.sin(lat) * np.sin(decl) + np.cos(lat) * np.cos(decl) * np.cos(hour_angle)
    cz = np.clip(cos_z, 1e-6, None)
    return np.where(cos_z > 0.0, 1098.0 * cz * np.exp(-0.057 / cz), 0.0)  # type: ignore[no-any-return]


def pv_profiles(
    times: FArray,
    kwp: FArray,
    *,
    rng: np.random.Generator,
    latitude: float,
    longitude: float,
    step_s: float,
    derate: float = 0.85,
) -> FArray:
    """PV power [kW] per step (rows: ``times`` = step mid-points) and prosumer (columns: ``kwp``)."""
    ghi = clear_sky_ghi(times, latitude=latitude, longitude=longitude)
    day_index = np.floor((times - times[0]) / 86400.0).astype(np.int64)
    daily = rng.beta(4.0, 2.0, size=int(day_index.max()) + 1 if times.size else 1)
    phi = float(np.exp(-step_s / 3600.0))  # ~1 h correlation time of passing clouds
    noise = rng.normal(0.0, 0.15 * np.sqrt(1 - phi**2), size=times.size)
    ar = np.zeros(times.size)
    for k in range(1, times.size):  # cheap scalar recursion, one series for the whole area
        ar[k] = phi * ar[k - 1] + noise[k]
    sky = np.clip(daily[day_index] + ar, 0.05, 1.0)
    own = np.clip(1.0 + rng.normal(0.0, 0.05, size=(times.size, kwp.size)), 0.7, 1.2)
    return (ghi / 1000.0 * sky)[:, None] * own * kwp[None, :] * derate  # type: ignore[no-any-return]
