"""The config's ``engine`` section: where simulations run (sim.engines; docs/scale.md)."""

from __future__ import annotations

import re
from dataclasses import dataclass, fields
from typing import Any, Callable

from forecaster.config.reader import Reader
from forecaster.errors import Problems, suggest

ENGINES = ("local", "dask")
SCHEDULER_ADDRESS = re.compile(r"^(?:[a-z][a-z0-9+]*://)?[\w.\-\[\]:]+:\d+$")


@dataclass(frozen=True)
class EngineConfig:
    """Where simulations run: ``local`` (numba threads in this process) or ``dask`` (a Client on the
    scheduler at ``address``; without one, a LocalCluster of ``workers`` processes; with one, ``workers``
    is how many workers to wait for). Results are identical either way (sim.engines)."""

    kind: str = "local"
    address: str | None = None
    workers: int | None = None


ENGINE_KEYS = tuple(f.name for f in fields(EngineConfig))


def parse_engine(r: Reader, raw: Any) -> EngineConfig:
    e = r.section(raw, "engine", ENGINE_KEYS)
    kind = r.typed(e.get("kind", "local"), "engine.kind", (str,), "local or dask")
    address = r.typed(e.get("address"), "engine.address", (str,), "a scheduler address like tcp://10.0.0.5:8786")
    workers = r.typed(e.get("workers"), "engine.workers", (int,), "a whole number of worker processes")
    check_engine(engine := EngineConfig(kind or "local", address, workers), r.problems)
    return engine


def check_engine(engine: EngineConfig, problems: Problems, label: Callable[[str], str] = "config key 'engine.{}'".format):
    """A known kind, a well-formed address, workers >= 1, and address or workers only with dask; each
    problem named by ``label(field)`` (the YAML key, or the CLI flag that set it)."""
    if engine.kind not in ENGINES:
        problems.add(f"{label('kind')}: '{engine.kind}' is not one of {', '.join(ENGINES)}{suggest(engine.kind, ENGINES)}")
    if engine.address is not None and not SCHEDULER_ADDRESS.match(engine.address):
        problems.add(f"{label('address')}: expected a scheduler address like tcp://10.0.0.5:8786, got '{engine.address}'")
    if engine.workers is not None and engine.workers < 1:
        problems.add(f"{label('workers')}: must be >= 1, got {engine.workers}")
    for key in ("address", "workers"):
        if engine.kind == "local" and getattr(engine, key) is not None:
            problems.add(f"{label(key)}: applies to the dask engine only (engine.kind: dask, or --engine dask)")
