"""Station-area physics: network + meter archive, vectorized unbalanced power flow, meter errors.

Layer: sim. Computes a whole horizon ahead of the event loop; must not import hal, runtime
internals beyond errors, or apps.

    net = load_network("ieee-eu-lv", seed=1)           # or a pandapower JSON path
    prof = build_profiles(net, start=t0, steps=672, seed=1, pv_share=0.2)
    hz = solve(net, prof)
    hz.customer_at(t).voltage_v; hz.customer_energy_kwh(3, t0, t1)
    hz = hz.with_customer_off(3, t_a, t_b)                 # relay trip, re-solves affected steps
"""

from sim.physics.horizon import CustomerSample, Horizon, solve
from sim.physics.measure import Metering
from sim.physics.network import DEFAULT_NETWORK, Customer, StationNetwork, load_network, network_with
from sim.physics.solver import PowerFlowNotConverged
from sim.profiles import Profiles, build_profiles

__all__ = [
    "DEFAULT_NETWORK",
    "Customer",
    "CustomerSample",
    "Horizon",
    "Metering",
    "PowerFlowNotConverged",
    "Profiles",
    "StationNetwork",
    "build_profiles",
    "load_network",
    "network_with",
    "solve",
]
