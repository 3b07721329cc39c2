"""The njit Monte Carlo kernel (arrays in, arrays out): layout (the contract), units (scheduling), walk
(one parallel unit), chunk (a chunk of trials and its merge). Imported through forecaster.sim, which
points numba's cache at a directory keyed on these sources (sim.cache)."""

from forecaster.sim.kernels.chunk import simulate_chunk_nb
from forecaster.sim.kernels.layout import (
    KernelArrivals,
    KernelBuffers,
    KernelDeals,
    KernelTables,
    KernelWindow,
    n_deal_blocks,
    n_float_fields,
    n_int_fields,
)
from forecaster.sim.kernels.units import n_trial_blocks

__all__ = ["KernelArrivals", "KernelBuffers", "KernelDeals", "KernelTables", "KernelWindow", "n_deal_blocks",
           "n_float_fields", "n_int_fields", "n_trial_blocks", "simulate_chunk_nb"]
