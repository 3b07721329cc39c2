"""Fitted model + snapshot -> simulated trials (the third step of the flow).

rng (counter-based streams), kernels (njit: arrays in, arrays out), compact (tables -> the kernel's
compact form), engine (``simulate``, ``open_deals``), results (``SimResult``). The kernel modules are
imported here, inside ``cache.kernel_cache()``, so that numba caches them in a directory keyed on their
sources. Nothing here imports analysis, report or cli.
"""

from forecaster.sim.cache import kernel_cache

with kernel_cache():
    from forecaster.sim import rng  # noqa: F401  (njit: cached under the kernels' directory)
    from forecaster.sim import kernels  # noqa: F401

from forecaster.sim.engine import kernels_compiled, open_deals, simulate, stream_ids  # noqa: E402
from forecaster.sim.results import SimResult, merge_results  # noqa: E402

__all__ = ["SimResult", "kernels_compiled", "merge_results", "open_deals", "simulate", "stream_ids"]
