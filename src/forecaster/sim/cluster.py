"""The Dask engine: a job's simulations as blocks of trials on dask.distributed workers (sim.engines).

Connecting, before any work (``DaskEngine.start``): a Client on the scheduler at ``address`` (waiting up
to CONNECT_TIMEOUT_S for it and for ``workers`` workers), or a LocalCluster of ``workers`` processes
(default: the cores this process may use). Every worker is then asked what it runs: the same
forecaster version and kernel sources as this process (else results could differ), and where its
kernel cache is (sim.cache picks a directory the worker can write, so each worker compiles or loads the
kernel once, in its first task, and never again).

Threads: one numba thread per task. A LocalCluster's worker processes start with NUMBA_NUM_THREADS and
the BLAS thread variables at 1 (WORKER_ENV, set before numba or BLAS load); on workers started
elsewhere each task sets numba's threads to 1 itself, and where numba's threading layer cannot run two
kernels at once in a process (workqueue) the tasks of a multi-threaded worker take turns.

Data: each spec (its tables and deal arrays) is scattered to every worker once, and each block task
names it, with its first trial and trial count; shared data of ``map`` likewise. Blocks are merged on
the workers, adjacent pairs level by level (``merge_pair``, the order of merge_results), so this
process receives one result per spec rather than every block's per-deal arrays (deals x window days
each). Every block and merge is a pure task of its inputs: the tasks of a lost worker, rerun by Dask
elsewhere, leave the result unchanged.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import uuid
from typing import Any, Callable, Iterable, Iterator

import numba

from forecaster._version import __version__
from forecaster.errors import EngineError
from forecaster.sim import cache
from forecaster.sim import kernels as K
from forecaster.sim.engines import Engine, SimSpec, trial_blocks
from forecaster.sim.results import SimResult, merge_results

CONNECT_TIMEOUT_S = 10.0
# Blocks per worker and spec: enough to balance uneven workers and to lose little to a dead one. Each has
# at least MIN_BLOCK_TRIALS trials: a block's fixed cost grows with the deals (the kernel prepares each
# open deal's first-spell tables once per call, about 0.9 us a deal against about 17 ns a deal-trial,
# benchmarks/bench_dask.py), so 500 trials keep it near a tenth of the block's work at any deal count.
BLOCKS_PER_WORKER = 4
MIN_BLOCK_TRIALS = 500
THREAD_VARIABLES = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")
WORKER_ENV = {name: "1" for name in THREAD_VARIABLES}
INSTALL = 'pip install "forecaster[dask]"'

_KERNEL_TURNS = threading.Lock()


def block_count(n_trials: int, workers: int) -> int:
    """Blocks of a run of ``n_trials`` on ``workers``: BLOCKS_PER_WORKER each, fewer (a whole number per
    worker, so no round runs half empty) where blocks would fall under MIN_BLOCK_TRIALS trials."""
    most = max(1, n_trials // MIN_BLOCK_TRIALS)
    per_worker = min(BLOCKS_PER_WORKER, most // max(workers, 1))
    return workers * per_worker if per_worker else most


def import_distributed() -> Any:
    """dask.distributed, or an EngineError saying how to install it."""
    try:
        import distributed
    except ImportError:
        raise EngineError(f"the dask engine needs dask.distributed, which is not installed: {INSTALL}") from None
    return distributed


def local_cluster(workers: int | None = None, silence_logs: int = logging.CRITICAL) -> Any:
    """A LocalCluster of ``workers`` processes (default: one per core), one thread each, WORKER_ENV set
    in each before it imports numba; no dashboard, and its HTTP endpoints on a free port (never a
    clash with another cluster on 8787). Its logs are silenced: a worker's death reaches the caller as
    an EngineError line, and heartbeats cut short while the cluster closes are no news."""
    distributed = import_distributed()
    return distributed.LocalCluster(n_workers=default_workers() if workers is None else workers,
                                    threads_per_worker=1, processes=True, env=WORKER_ENV, silence_logs=silence_logs,
                                    scheduler_kwargs={"dashboard": False, "dashboard_address": ":0"})


def default_workers() -> int:
    """Worker processes of a LocalCluster without --workers: the cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


@contextlib.contextmanager
def one_kernel_thread() -> Iterator[None]:
    """One numba thread for this task's kernels (numba's setting is per calling thread); turns with the
    worker's other task threads while numba's threading layer is not known to be thread-safe."""
    numba.set_num_threads(1)
    try:
        layer = numba.threading_layer()
    except ValueError:  # no parallel kernel has run in this process yet
        layer = None
    with _KERNEL_TURNS if layer in (None, "workqueue") else contextlib.nullcontext():
        yield


def run_block(spec: SimSpec, first_trial: int, n_trials: int) -> SimResult:
    """A task: trials ``first_trial ..`` of a spec's run, on one numba thread."""
    with one_kernel_thread():
        return spec.run(first_trial, n_trials)


def run_unit(fn: Callable[[Any, Any], Any], shared: Any, item: Any) -> Any:
    """A task of ``Engine.map``: ``fn(shared, item)`` on one numba thread."""
    with one_kernel_thread():
        return fn(shared, item)


def merge_pair(first: SimResult, second: SimResult) -> SimResult:
    """A task: two adjacent blocks of trials as one (``first``'s trials come first)."""
    return merge_results([first, second])


def worker_state() -> dict[str, Any]:
    """What a worker process runs: versions, its kernel cache, its threads and how often the kernel was
    compiled or loaded in it (numba's dispatcher signatures: one per argument types, never per task)."""
    return {
        "version": __version__, "kernels": cache.source_hash(), "pid": os.getpid(),
        "cache_dir": str(cache.KERNEL_CACHE), "cache_writable": cache.writable(cache.KERNEL_CACHE),
        "numba_threads": numba.config.NUMBA_NUM_THREADS, "kernel_signatures": len(K.simulate_chunk_nb.signatures),
        "env": {name: os.environ.get(name) for name in THREAD_VARIABLES},
    }


class DaskEngine(Engine):
    """Simulations on the workers of a dask.distributed cluster (module docstring)."""

    kind = "dask"

    def __init__(self, client: Any, cluster: Any = None, address: str | None = None):
        self.client = client
        self.cluster = cluster
        self.address = address
        self.workers = len(client.scheduler_info()["workers"])
        self.tasks = 0

    @classmethod
    def start(cls, address: str | None = None, workers: int | None = None) -> "DaskEngine":
        """Connect to the scheduler at ``address`` (or start a LocalCluster of ``workers`` processes)
        and check the workers; an EngineError with one line when that fails."""
        distributed = import_distributed()
        cluster = None
        if address is None:
            cluster = local_cluster(workers)
            client = distributed.Client(cluster, set_as_default=False)
        else:
            try:
                client = distributed.Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
            except (OSError, TimeoutError) as e:
                reason = str(e).splitlines()[0] if str(e) else type(e).__name__
                raise EngineError(f"cannot reach the Dask scheduler at {address}: {reason}") from None
            try:
                client.wait_for_workers(workers or 1, timeout=CONNECT_TIMEOUT_S)
            except (OSError, TimeoutError):
                n = len(client.scheduler_info()["workers"])
                client.close()
                raise EngineError(f"the Dask scheduler at {address} has {n} workers after {CONNECT_TIMEOUT_S:g} s, "
                                  f"{workers or 1} needed") from None
        engine = cls(client, cluster, address)
        try:
            engine.check_workers()
        except BaseException:
            engine.close()
            raise
        return engine

    def check_workers(self) -> dict[str, dict[str, Any]]:
        """Every worker's ``worker_state``; an EngineError when one runs other code than this process."""
        try:
            states = self.client.run(worker_state)
        except Exception as e:  # noqa: BLE001 - whatever a worker raised, it cannot run forecaster
            raise EngineError(f"the Dask workers cannot run forecaster ({type(e).__name__}: {e}); install "
                              f"forecaster {__version__} on every worker") from None
        mine = (__version__, cache.source_hash())
        for worker, state in sorted(states.items()):
            if (state["version"], state["kernels"]) != mine:
                raise EngineError(f"Dask worker {worker} runs forecaster {state['version']} (kernels "
                                  f"{state['kernels']}), this process {mine[0]} (kernels {mine[1]}): results would "
                                  f"differ; install the same forecaster on every worker")
        return states

    def blocks(self, n_trials: int) -> list[tuple[int, int]]:
        return trial_blocks(n_trials, block_count(n_trials, self.workers))

    def _scatter(self, value: Any) -> Any:
        # A list of one: scatter() would send a tuple's or a dict's items one by one.
        return self.client.scatter([value], broadcast=True, hash=False)[0]

    @contextlib.contextmanager
    def _running(self, futures: list[Any]) -> Iterator[None]:
        """Dead workers or a lost scheduler as one EngineError line; on any failure the futures that
        have not finished are cancelled."""
        distributed = import_distributed()
        self.tasks += len(futures)
        try:
            yield
        except distributed.KilledWorker as e:
            raise EngineError(f"Dask workers died running {e.task!r} each time it was tried; see the workers' "
                              f"logs (out of memory?)") from None
        except distributed.comm.CommClosedError as e:
            raise EngineError(f"lost the connection to the Dask scheduler: {str(e).splitlines()[0]}") from None
        finally:
            self.client.cancel([f for f in futures if not f.done()])

    def _each_done(self, futures: list[Any], on_done: Callable[[int, Any], None]) -> None:
        """``on_done(index, future)`` for each future as it finishes (a task's error is raised here)."""
        distributed = import_distributed()
        index = {f.key: i for i, f in enumerate(futures)}
        for future in distributed.as_completed(futures, loop=self.client.loop):
            if future.status == "error":
                future.result()
            on_done(index[future.key], future)

    def _merge_tree(self, parts: list[Any], key: str) -> list[Any]:
        """Merge tasks, adjacent blocks in pairs, level by level (on the workers, so that this process
        receives one result per spec, not every block's per-deal arrays); the last is the root."""
        merges, level = [], 0
        while len(parts) > 1:
            pairs = [parts[j:j + 2] for j in range(0, len(parts), 2)]
            parts = [self.client.submit(merge_pair, *pair, key=f"{key}-merge-{level}-{j}") if len(pair) == 2
                     else pair[0] for j, pair in enumerate(pairs)]
            merges += [f for f, pair in zip(parts, pairs) if len(pair) == 2]
            level += 1
        return merges

    def simulate_many(self, specs: list[SimSpec], progress: Callable[[int, int], None] | None = None
                      ) -> list[SimResult]:
        run = uuid.uuid4().hex[:8]
        self.workers = len(self.client.scheduler_info()["workers"]) or self.workers  # the cluster may scale
        blocks, sizes, roots, merges = [], [], [], []
        for i, spec in enumerate(specs):
            data = self._scatter(spec)
            split = self.blocks(spec.n_trials)
            mine = [self.client.submit(run_block, data, first, count, key=f"forecaster-{run}-{i}-block-{b}")
                    for b, (first, count) in enumerate(split)]
            blocks += mine
            sizes += [count for _, count in split]
            merges += self._merge_tree(mine, f"forecaster-{run}-{i}")
            roots.append(merges[-1] if len(mine) > 1 else mine[0])
        total, done, root_keys = sum(s.n_trials for s in specs), 0, {f.key for f in roots}

        def on_done(k: int, future: Any) -> None:
            nonlocal done
            done += sizes[k]
            if progress is not None:
                progress(done, total)
            if future.key not in root_keys:
                future.release()  # the scheduler keeps it for its merge task

        with self._running(blocks + merges):
            self._each_done(blocks, on_done)
            return self.client.gather(roots)

    def map(self, fn: Callable[[Any, Any], Any], items: Iterable[Any], shared: Any,
            progress: Callable[[int], None] | None = None) -> list[Any]:
        run = uuid.uuid4().hex[:8]
        data = self._scatter(shared)
        futures = [self.client.submit(run_unit, fn, data, item, key=f"forecaster-{fn.__name__}-{run}-{k}")
                   for k, item in enumerate(items)]
        out: list[Any] = [None] * len(futures)

        def on_done(k: int, future: Any) -> None:
            out[k] = future.result()
            future.release()
            if progress is not None:
                progress(k)

        with self._running(futures):
            self._each_done(futures, on_done)
        return out

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "workers": self.workers, "tasks": self.tasks,
                "scheduler": self.address or "local cluster"}

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()
        if self.cluster is not None:
            with contextlib.suppress(Exception):
                self.cluster.close()


__all__ = ["CONNECT_TIMEOUT_S", "DaskEngine", "WORKER_ENV", "import_distributed", "run_block", "worker_state"]
