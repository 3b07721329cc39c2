"""Engines: where a job's simulations run, with the same results everywhere.

A ``SimSpec`` is one call of ``simulate`` (every argument but the progress callback). An engine runs
specs and returns their ``SimResult``:

- ``LocalEngine``: in this process, one ``simulate`` call per spec (numba threads inside it);
- ``sim.cluster.DaskEngine``: on dask.distributed workers, each spec cut into blocks of trials
  (``trial_blocks``), one task per block, the blocks merged in order by ``results.merge_results``.

Every random number is keyed by (seed, trial, stream) and every sum has an order fixed by the trial
and the deal count (sim.kernels), so a block of trials run anywhere is the same rows of the same run:
the merged result is the local one bit for bit, whatever the number of workers, of blocks, or of
retries after a lost worker. A block's seed is its spec's (the run's) and its first trial comes from
its index; nothing random is decided on a worker.

``Engine.map(fn, items, shared)`` runs other independent units of a job (cutoffs of a backtest,
bootstrap blocks of a forecast): ``fn(shared, item)`` per item, results in the items' order, ``shared``
sent to each worker once. ``fn`` is a module-level function (workers import it by name) that draws
nothing but what its item's seed says.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterable

import numba
import numpy as np

from forecaster.config import EngineConfig
from forecaster.model import ArrivalTables, MixEffects, OpenDeals, StageTables
from forecaster.sim.engine import simulate
from forecaster.sim.results import SimResult


@dataclass(frozen=True, eq=False)
class SimSpec:
    """The arguments of one ``simulate`` call (see there for shapes and units)."""

    stage: StageTables
    deals: OpenDeals
    n_trials: int
    seed: int
    start_off: int
    end_off: int
    period_start: np.ndarray
    arrivals: ArrivalTables | None = None
    day_weekday: np.ndarray | None = None
    day_moq: np.ndarray | None = None
    amount_multiplier_new: float = 1.0
    effects: MixEffects | None = None

    def run(self, first_trial: int = 0, n_trials: int | None = None,
            progress: Callable[[int, int], None] | None = None) -> SimResult:
        """Trials ``first_trial .. first_trial + n_trials - 1`` of the spec's run (default: all of them),
        in this process."""
        return simulate(self.stage, self.deals, n_trials=self.n_trials if n_trials is None else n_trials,
                        seed=self.seed, start_off=self.start_off, end_off=self.end_off,
                        period_start=self.period_start, arrivals=self.arrivals, day_weekday=self.day_weekday,
                        day_moq=self.day_moq, amount_multiplier_new=self.amount_multiplier_new,
                        effects=self.effects, progress=progress, first_trial=first_trial)


def trial_blocks(n_trials: int, n_blocks: int) -> list[tuple[int, int]]:
    """(first trial, trial count) of at most ``n_blocks`` contiguous blocks covering trials
    0 .. n_trials - 1, their sizes within one of each other."""
    n_blocks = max(1, min(int(n_blocks), int(n_trials)))
    sizes = [n_trials // n_blocks + (b < n_trials % n_blocks) for b in range(n_blocks)]
    firsts = np.concatenate([[0], np.cumsum(sizes[:-1])]).astype(int)
    return [(int(f), int(s)) for f, s in zip(firsts, sizes)]


class Engine:
    """Runs a job's simulations (``simulate_many``) and its other independent units (``map``); a
    context manager that releases what it started (a Dask client, a local cluster)."""

    kind = "local"
    workers = 1

    def simulate_many(self, specs: list[SimSpec], progress: Callable[[int, int], None] | None = None
                      ) -> list[SimResult]:
        """Each spec's result, in order; ``progress(done, total)`` counts trials over all specs."""
        raise NotImplementedError

    def simulate(self, spec: SimSpec, progress: Callable[[int, int], None] | None = None) -> SimResult:
        return self.simulate_many([spec], progress)[0]

    def map(self, fn: Callable[[Any, Any], Any], items: Iterable[Any], shared: Any,
            progress: Callable[[int], None] | None = None) -> list[Any]:
        """``[fn(shared, item) for item in items]``; ``progress(i)`` after item i is done."""
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """How the job ran (summary.json's timing.engine)."""
        return {"kind": self.kind, "workers": self.workers}

    def close(self) -> None:
        """Release what the engine started."""

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class LocalEngine(Engine):
    """This process: each spec in one ``simulate`` call, on numba's threads."""

    kind = "local"

    def simulate_many(self, specs: list[SimSpec], progress: Callable[[int, int], None] | None = None
                      ) -> list[SimResult]:
        total = sum(s.n_trials for s in specs)
        out: list[SimResult] = []
        for spec in specs:
            done = sum(r.n_trials for r in out)
            step = None if progress is None else (lambda d, _t, done=done: progress(done + d, total))
            out.append(spec.run(progress=step))
        return out

    def map(self, fn: Callable[[Any, Any], Any], items: Iterable[Any], shared: Any,
            progress: Callable[[int], None] | None = None) -> list[Any]:
        out = []
        for i, item in enumerate(items):  # items may be a generator: one unit's data at a time
            out.append(fn(shared, item))
            if progress is not None:
                progress(i)
        return out

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "threads": numba.get_num_threads()}


LOCAL = LocalEngine()


def open_engine(engine: EngineConfig | None = None) -> Engine:
    """The engine a config asks for (``config.engine``; None: local). ``dask`` connects (or starts a
    LocalCluster) now, before any work, and raises an ``EngineError`` with one line when it cannot."""
    if engine is None or engine.kind == "local":
        return LocalEngine()
    from forecaster.sim.cluster import DaskEngine  # imports dask.distributed, an optional dependency

    return DaskEngine.start(engine.address, engine.workers)


__all__ = ["Engine", "LOCAL", "LocalEngine", "SimSpec", "open_engine", "trial_blocks"]
