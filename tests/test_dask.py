"""The Dask engine (sim.engines, sim.cluster): the same bytes as the local engine for forecast, compare,
plan and backtest, with 1, 2 or 3 worker processes and after a worker is killed mid-run; workers run one
numba thread and compile the kernel once; every engine problem is one line and exit 2, before any work."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import sys
import threading
import time
from pathlib import Path

import distributed  # noqa: F401 - the tests need the dev extra's engine installed, not skipped
import numpy as np
import pytest

import forecaster
from forecaster.analysis.forecast import prepare
from forecaster.cli import main
from forecaster.errors import EngineError
from forecaster.sim import cluster, merge_results
from forecaster.sim.cache import cache_dir, writable
from forecaster.sim.engines import SimSpec, trial_blocks
from tests.conftest import CONFIG, REPO

SAMPLE_DIR = REPO / "src" / "forecaster" / "sample"
SAMPLE = SAMPLE_DIR / "forecaster.yaml"
SCENARIOS = REPO / "configs" / "scenarios.yaml"
FORECAST_FILES = ("summary.json", "trials.parquet", "deals.parquet")
FORECAST_ARGS = ["--trials", "3001", "--seed", "7", "--quiet"]


def sample_config(tmp_path: Path, extra: str = "") -> Path:
    """The bundled sample's config with absolute data paths and ``extra`` YAML appended."""
    text = SAMPLE.read_text().replace("deals: deals.parquet", f"deals: {SAMPLE_DIR / 'deals.parquet'}")
    text = text.replace("stage_history: stage_history.parquet", f"stage_history: {SAMPLE_DIR / 'stage_history.parquet'}")
    path = tmp_path / "forecaster.yaml"
    path.write_text(text + extra)
    return path


def run_cli(runner, args: list[str]):
    r = runner.invoke(main, [str(a) for a in args])
    assert r.exit_code == 0, r.output
    return r


def forecast_files(runner, config: Path, out: Path, *flags: str) -> dict[str, bytes]:
    run_cli(runner, ["forecast", config, *FORECAST_ARGS, "-o", out, *flags])
    return {name: (out / name).read_bytes() for name in FORECAST_FILES}


def assert_same_forecast(got: dict[str, bytes], want: dict[str, bytes]) -> None:
    """trials.parquet and deals.parquet byte for byte; summary.json byte for byte up to its timing part
    (the last key: wall-clock figures and the engine that ran)."""
    for name in ("trials.parquet", "deals.parquet"):
        assert got[name] == want[name], name
    head_got, timing_got = got["summary.json"].split(b'\n  "timing": ')
    head_want, _ = want["summary.json"].split(b'\n  "timing": ')
    assert head_got == head_want
    assert b'"kind": "dask"' in timing_got


def one_error_line(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.stderr
    assert "Traceback" not in result.output
    return lines[0]


@pytest.fixture(scope="module")
def shared_cluster():
    """A LocalCluster of 2 worker processes, as DaskEngine starts its own."""
    with cluster.local_cluster(2) as c:
        yield c


@pytest.fixture(scope="module")
def local_forecast(tmp_path_factory) -> dict[str, bytes]:
    from click.testing import CliRunner

    return forecast_files(CliRunner(), SAMPLE, tmp_path_factory.mktemp("local") / "out")


# ------------------------------------------------------------------------------------------------
# Blocks of trials


def test_trial_blocks_cover_the_run_in_order():
    for n, k in ((10, 3), (3, 10), (1, 1), (4096, 8), (4097, 8)):
        blocks = trial_blocks(n, k)
        assert [f for f, _ in blocks] == list(np.cumsum([0] + [c for _, c in blocks[:-1]]))
        assert sum(c for _, c in blocks) == n and len(blocks) == min(n, k)
        assert max(c for _, c in blocks) - min(c for _, c in blocks) <= 1


def test_block_count_fills_every_worker_and_keeps_blocks_large():
    cases = {(20_000, 1): 4, (20_000, 4): 16, (20_000, 16): 32, (20_000, 32): 32, (20_000, 64): 40,
             (4000, 2): 8, (3001, 3): 6, (100, 4): 1, (499, 1): 1}
    for (n_trials, workers), blocks in cases.items():
        assert cluster.block_count(n_trials, workers) == blocks, (n_trials, workers)
        sizes = [count for _, count in trial_blocks(n_trials, blocks)]
        assert min(sizes) >= min(n_trials, cluster.MIN_BLOCK_TRIALS)


def test_blocks_of_a_run_merge_into_the_run_bit_for_bit():
    base = prepare(forecaster.load_config(SAMPLE).with_forecast(trials=1000, seed=11))
    spec = SimSpec(base.stage, base.deals, n_trials=1000, seed=11, start_off=base.start_off, end_off=base.end_off,
                   period_start=base.period_start, arrivals=base.arrivals, day_weekday=base.weekday,
                   day_moq=base.moq)
    whole = spec.run()
    parts = merge_results([spec.run(first, count) for first, count in ((0, 1), (1, 400), (401, 599))])
    for f in dataclasses.fields(whole):
        a, b = getattr(whole, f.name), getattr(parts, f.name)
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b), f.name
        else:
            assert a == b, f.name


# ------------------------------------------------------------------------------------------------
# The same bytes as the local engine


@pytest.mark.parametrize("workers", [1, 2, pytest.param(3, marks=pytest.mark.slow)])
def test_forecast_on_a_local_cluster_writes_the_local_bytes(runner, tmp_path, local_forecast, workers):
    got = forecast_files(runner, SAMPLE, tmp_path / "out", "--engine", "dask", "--workers", str(workers))
    assert_same_forecast(got, local_forecast)
    timing = json.loads(got["summary.json"])["timing"]["engine"]
    assert timing["workers"] == workers and timing["tasks"] >= workers


def test_engine_key_in_the_config_and_bootstrap_blocks_on_workers(runner, tmp_path, shared_cluster):
    """engine: in the YAML selects Dask (--engine local overrides it: same config text, same bytes);
    with parameter uncertainty the bootstrap blocks are the units."""
    config = sample_config(tmp_path, f"  parameter_uncertainty: true\nengine: {{kind: dask, address: "
                                     f"'{shared_cluster.scheduler_address}'}}\n")
    local = forecast_files(runner, config, tmp_path / "local", "--engine", "local")
    assert b'"kind": "local"' in local["summary.json"]
    assert_same_forecast(forecast_files(runner, config, tmp_path / "dask"), local)


def without(obj, key: str):
    return {k: v for k, v in obj.items() if k != key}


def test_compare_plan_and_backtest_on_workers_match_local(runner, tmp_path, shared_cluster):
    dask = ["--engine", "dask", "--scheduler", shared_cluster.scheduler_address]
    outputs = {}
    for engine, flags in (("local", []), ("dask", dask)):
        out = tmp_path / engine
        compare = json.loads(run_cli(runner, ["compare", SCENARIOS, "--trials", "800", "-o", out / "cmp",
                                              "--format", "json", *flags]).stdout)
        plans = [json.loads(run_cli(runner, ["plan", SCENARIOS, "--target", "4500000", "--lever", lever,
                                             "--trials", "300", "--format", "json", *stage, *flags]).stdout)
                 for lever, stage in (("new_deals", []), ("conversion", ["--stage", "proposal"]))]
        backtest = json.loads(run_cli(runner, ["backtest", SCENARIOS, "--from", "2025-03-01", "--to", "2025-05-01",
                                               "--window", "month", "--trials", "300", "--parameter-uncertainty",
                                               "-o", out / "bt", "--format", "json", *flags]).stdout)
        outputs[engine] = {"compare": compare, "plans": plans, "backtest": without(backtest, "elapsed_s"),
                           "compare_trials": (out / "cmp" / "compare_trials.parquet").read_bytes(),
                           "backtest_rows": (out / "bt" / "backtest.parquet").read_bytes()}
    assert outputs["dask"] == outputs["local"]
    assert len(outputs["local"]["backtest"]["cutoff_dates"]) == 3


# ------------------------------------------------------------------------------------------------
# Workers: one numba thread, a writable cache, the kernel compiled once; a killed worker


def test_workers_run_one_thread_and_compile_the_kernel_once():
    with cluster.DaskEngine.start(workers=2) as engine:
        before = engine.check_workers()
        assert all(s["kernel_signatures"] == 0 for s in before.values())  # fresh processes
        cfg = forecaster.load_config(SAMPLE).with_forecast(trials=4000)
        forecaster.forecast(cfg, engine=engine)
        forecaster.forecast(cfg.with_forecast(seed=1), engine=engine)
        after = engine.check_workers()
        assert engine.tasks == 2 * (8 + 7)  # two runs of 8 blocks of 500 trials and 7 merges
    assert after.keys() == before.keys()
    for state in after.values():
        assert state["numba_threads"] == 1 and set(state["env"].values()) == {"1"}
        assert state["cache_writable"] and "forecaster" in state["cache_dir"]
        assert state["kernel_signatures"] == 1  # loaded or compiled in its first task, never again


def test_cache_moves_to_a_writable_directory(tmp_path, monkeypatch):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker / "cache"))
    monkeypatch.setattr("numba.config.CACHE_DIR", "")
    assert not writable(blocker / "cache" / "forecaster")
    path = cache_dir()
    assert writable(path) and not str(path).startswith(str(blocker)) and path.name.startswith("numba-")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    assert cache_dir() == tmp_path / "cache" / "forecaster" / path.name


@pytest.mark.slow
def test_a_worker_killed_mid_run_leaves_the_result_unchanged():
    cfg = forecaster.load_config(SAMPLE).with_forecast(trials=60_000, seed=5)
    local = forecaster.forecast(cfg).sim
    with cluster.local_cluster(2) as c:
        engine = cluster.DaskEngine.start(c.scheduler_address)
        pids = engine.client.run(os.getpid)
        victim = sorted(pids)[0]
        first_block_done, finished = threading.Event(), threading.Event()

        def kill_when_busy() -> None:
            first_block_done.wait(60)
            while not finished.is_set():
                if engine.client.processing().get(victim):
                    os.kill(pids[victim], signal.SIGKILL)
                    return
                time.sleep(0.005)

        killer = threading.Thread(target=kill_when_busy)
        killer.start()
        with engine:
            sim = forecaster.forecast(cfg, engine=engine, progress=lambda done, total: first_block_done.set()).sim
            finished.set()
            # The scheduler's own log (it runs in this process): which worker left, holding what.
            events = [e for _, e in c.scheduler.get_events("all") if e.get("action") == "remove-worker"]
        killer.join()
    assert [e["worker"] for e in events] == [victim] and not events[0]["expected"]
    interrupted = {k for k in events[0]["processing-tasks"] | events[0]["lost-computed-tasks"]
                   if str(k).startswith("forecaster-")}
    assert interrupted, "the victim held no block when it died"
    for f in dataclasses.fields(local):
        a, b = getattr(local, f.name), getattr(sim, f.name)
        assert np.array_equal(a, b) if isinstance(a, np.ndarray) else a == b, f.name


# ------------------------------------------------------------------------------------------------
# Problems: one line, exit 2, nothing written, before any work


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_scheduler_is_one_line_before_any_work(runner, crm, tmp_path, monkeypatch):
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 1.0)
    # Loading these deals would fail (no amount column): the engine's error comes first.
    config = str(crm.write(deals="deal_id,created_at\nD1,2024-01-01\n",
                           config=CONFIG + "scenarios:\n  - {name: more, new_deals: {rate: 1.2}}\n"))
    address = f"tcp://127.0.0.1:{free_port()}"
    out = str(tmp_path / "out")
    dask = ["--engine", "dask", "--scheduler", address]
    for args in (["forecast", config, "-o", out, *dask], ["compare", config, "-o", out, *dask],
                 ["plan", config, "--target", "1000", *dask],
                 ["backtest", config, "--from", "2024-02-01", "--to", "2024-03-01", "-o", out, *dask]):
        line = one_error_line(runner.invoke(main, args))
        assert line.startswith(f"Error: cannot reach the Dask scheduler at {address}: "), line
    assert not Path(out).exists()


def test_scheduler_without_workers_is_one_line(monkeypatch):
    monkeypatch.setattr(cluster, "CONNECT_TIMEOUT_S", 1.0)
    with cluster.local_cluster(0) as c:
        with pytest.raises(EngineError) as e:
            cluster.DaskEngine.start(c.scheduler_address, workers=2)
    assert e.value.problems == [f"the Dask scheduler at {c.scheduler_address} has 0 workers after 1 s, 2 needed"]


def test_workers_running_another_forecaster_are_refused(shared_cluster, monkeypatch):
    monkeypatch.setattr(cluster, "__version__", "0.0.0+other")
    with pytest.raises(EngineError) as e:
        cluster.DaskEngine.start(shared_cluster.scheduler_address)
    (line,) = e.value.problems
    assert f"runs forecaster {forecaster.__version__}" in line and "this process 0.0.0+other" in line


def test_dask_engine_without_dask_installed_says_how_to_install(runner, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    out = tmp_path / "out"
    line = one_error_line(runner.invoke(main, ["forecast", str(SAMPLE), "--engine", "dask", "-o", str(out)]))
    assert line == 'Error: the dask engine needs dask.distributed, which is not installed: pip install "forecaster[dask]"'
    assert not out.exists()


@pytest.mark.parametrize("engine, message", [
    ("{kind: spark}", "config key 'engine.kind': 'spark' is not one of local, dask"),
    ("{kind: dask, workers: 0}", "config key 'engine.workers': must be >= 1, got 0"),
    ("{kind: dask, workers: two}", "config key 'engine.workers': expected a whole number of worker processes, got 'two'"),
    ("{kind: dask, address: my laptop}", "config key 'engine.address': expected a scheduler address like "
                                         "tcp://10.0.0.5:8786, got 'my laptop'"),
    ("{workers: 4}", "config key 'engine.workers': applies to the dask engine only (engine.kind: dask, or --engine dask)"),
    ("{kind: dask, nodes: 4}", "config key 'engine.nodes': unknown key (did you mean 'workers'?)"),
    ("dask", "config key 'engine': expected a mapping, got a string"),
])
def test_engine_config_errors(runner, tmp_path, engine, message):
    config = sample_config(tmp_path, f"engine: {engine}\n")
    out = tmp_path / "out"
    assert one_error_line(runner.invoke(main, ["forecast", str(config), "-o", str(out)])) == f"Error: {message}"
    assert not out.exists()


@pytest.mark.parametrize("flags, message", [
    (["--scheduler", "tcp://10.0.0.5:8786"], "--scheduler: applies to the dask engine only"),
    (["--workers", "2"], "--workers: applies to the dask engine only"),
    (["--engine", "dask", "--scheduler", "nowhere"], "--scheduler: expected a scheduler address like "
                                                      "tcp://10.0.0.5:8786, got 'nowhere'"),
])
@pytest.mark.parametrize("command", [["forecast"], ["compare"], ["plan", "--target", "1000"],
                                     ["backtest", "--from", "2025-03-01", "--to", "2025-04-01"]])
def test_engine_flag_errors(runner, tmp_path, command, flags, message):
    out = tmp_path / "out"
    args = [command[0], str(SAMPLE), *command[1:], *flags] + (["-o", str(out)] if command[0] != "plan" else [])
    assert one_error_line(runner.invoke(main, args)).startswith(f"Error: {message}")
    assert not out.exists()


def test_workers_flag_must_be_positive(runner):
    r = runner.invoke(main, ["forecast", str(SAMPLE), "--engine", "dask", "--workers", "0"])
    assert r.exit_code == 2 and "--workers" in r.stderr and "Traceback" not in r.output
