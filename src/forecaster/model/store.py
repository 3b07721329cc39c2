"""A fitted model on disk: model.json (format version, package version, data fingerprint, as_of, figures)
and Parquet tables, each written atomically; loading refuses another format version or other data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from forecaster._version import __version__
from forecaster.calendar import to_date
from forecaster.config import identity_sha256
from forecaster.errors import ModelError
from forecaster.files import dumps, write_atomic
from forecaster.model.mix import MixEffects
from forecaster.model.tables import ArrivalTables, StageTables

if TYPE_CHECKING:
    from forecaster.model.pipeline import PipelineModel

FORMAT_VERSION = 3  # 2: the fit config is recorded (fit_config, fit_config_sha256); 3: observed_from, mix_effects
META_KEYS = ("version", "config_sha256", "fit_config", "fit_config_sha256", "data_fingerprint", "warnings", "fit",
             "n_deals", "n_spells", "arrival_window", "segment_effects", "pipelines", "observed_from", "mix_effects")


def save(model: PipelineModel, directory: str | Path) -> Path:
    """Write model.json and Parquet tables into ``directory`` (each file atomically)."""
    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    st, ar = model.stage, model.arrivals
    tables = {
        "days.parquet": pa.table({"surv": st.surv, "day_bin": st.day_bin}),
        "bins.parquet": pa.table({f"p{k}": st.bin_p[:, k] for k in range(st.bin_p.shape[1])}),
        "cells.parquet": pa.table({
            "cell_off": st.cell_off[:-1], "tail_h": st.tail_h, "tail_bin": st.tail_bin,
            "spells": model.cell_spells, "exits": model.cell_exits, "weight": model.cell_weight,
        }),
        "amounts.parquet": pa.table({"amount": ar.amount_pool}),
    }
    for name, table in tables.items():
        sink = pa.BufferOutputStream()
        pq.write_table(table, sink)
        write_atomic(out / name, sink.getvalue().to_pybytes())
    n_s = model.n_stages
    doc = {
        **model.meta,
        "format_version": FORMAT_VERSION,
        "stages": list(model.stages), "won": model.won, "lost": model.lost,
        "segment_by": list(model.segment_by), "groups": [list(g) for g in model.groups],
        "as_of": to_date(model.as_of).isoformat(), "as_of_day": model.as_of,
        # Per segment and stage: the data behind each table. effective_sample_size = own exits + the
        # prior's pseudo-exits (m); own_weight = own exits / that.
        "cells": [
            {"segment": model.group_name(g), "stage": model.stages[s],
             "spells": int(model.cell_spells[g * n_s + s]),
             "exits": int(model.cell_exits[g * n_s + s]),
             "prior_strength": float(model.prior_strength[s]),
             "effective_sample_size": float(model.cell_exits[g * n_s + s] + model.prior_strength[s]),
             "own_weight": float(model.cell_weight[g * n_s + s])}
            for g in range(model.n_groups) for s in range(n_s)
        ],
        "L_total": int(st.cell_off[-1]),
        "prior_strength": model.prior_strength, "entered": model.entered,
        "arrivals": {
            "rate": ar.rate, "weekday_factor": ar.weekday_factor, "moq_factor": ar.moq_factor,
            "gamma_shape": [None if np.isinf(x) else x for x in ar.gamma_shape],
            "entry_p": ar.entry_p, "amount_off": ar.amount_off,
        },
    }
    write_atomic(out / "model.json", dumps(doc))
    return out


def _plain(v: Any) -> str:
    if isinstance(v, list):
        return "[" + ", ".join(_plain(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_plain(x)}" for k, x in v.items()) + "}"
    return "none" if v is None else str(v)


def differences(fitted: Any, now: Any, key: str = "") -> list[str]:
    """'KEY was X, the config has Y' for each leaf where two fit configs differ."""
    if isinstance(fitted, dict) and isinstance(now, dict):
        out = []
        for k in dict.fromkeys([*fitted, *now]):
            out += differences(fitted.get(k), now.get(k), f"{key}.{k}" if key else str(k))
        return out
    if fitted == now:
        return []
    verb = "were" if isinstance(fitted, list) else "was"
    return [f"{key} {verb} {_plain(fitted)}, the config has {_plain(now)}"]


def _read_doc(d: Path, expect_fingerprint: str | None, expect_config: dict[str, Any] | None = None) -> dict:
    path = d / "model.json"
    if not path.is_file():
        raise ModelError(f"{d}: no model.json (write one with `forecaster fit CONFIG -o {d}`)")
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ModelError(f"{path}: not a valid model file: {e.msg} at line {e.lineno}") from None
    version = doc.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelError(
            f"{path}: model format version {version}, this forecaster {__version__} reads version "
            f"{FORMAT_VERSION}; refit with `forecaster fit`"
        )
    if expect_fingerprint is not None and doc.get("data_fingerprint") != expect_fingerprint:
        raise ModelError(
            f"{path}: the model was fitted on other data (fingerprint {str(doc.get('data_fingerprint'))[:12]}, "
            f"the config's data has {expect_fingerprint[:12]}); refit with `forecaster fit`"
        )
    if expect_config is not None and doc.get("fit_config_sha256") != identity_sha256(expect_config):
        diff = differences(doc.get("fit_config") or {}, json.loads(dumps(expect_config)))
        raise ModelError(f"{d}: the model was fitted with another config: {'; '.join(diff[:3]) or 'the fit options differ'}"
                         f"; refit with `forecaster fit`")
    return doc


def load(cls: type[PipelineModel], directory: str | Path, expect_fingerprint: str | None = None,
         expect_config: dict[str, Any] | None = None) -> PipelineModel:
    """Read a saved model; refuse another format version, data other than ``expect_fingerprint``, or a fit
    config other than ``expect_config``."""
    d = Path(directory)
    doc = _read_doc(d, expect_fingerprint, expect_config)
    try:
        days = pq.read_table(d / "days.parquet")
        bins = pq.read_table(d / "bins.parquet")
        cells = pq.read_table(d / "cells.parquet")
        amounts = pq.read_table(d / "amounts.parquet")
    except (OSError, pa.ArrowException) as e:
        raise ModelError(f"{d}: cannot read the model's tables: {str(e).splitlines()[0]}") from None
    a = doc["arrivals"]

    def arr(x, dtype=np.float64) -> np.ndarray:
        return np.asarray(x, dtype=dtype)

    stage = StageTables.of(
        surv=days["surv"].to_numpy(),
        cell_off=np.r_[cells["cell_off"].to_numpy(), doc["L_total"]],
        day_bin=days["day_bin"].to_numpy(),
        bin_p=np.column_stack([bins[c].to_numpy() for c in bins.column_names]),
        tail_h=cells["tail_h"].to_numpy(),
        tail_bin=cells["tail_bin"].to_numpy(),
    )
    arrivals = ArrivalTables(
        rate=arr(a["rate"]), weekday_factor=arr(a["weekday_factor"]), moq_factor=arr(a["moq_factor"]),
        gamma_shape=arr([np.inf if x is None else x for x in a["gamma_shape"]]),
        entry_p=arr(a["entry_p"]).reshape(len(a["rate"]), -1),
        amount_pool=amounts["amount"].to_numpy().astype(np.float64),
        amount_off=arr(a["amount_off"], np.int64),
    ).check(stage)
    return cls(
        stages=tuple(doc["stages"]), won=doc["won"], lost=doc["lost"],
        segment_by=tuple(doc["segment_by"]), groups=tuple(tuple(g) for g in doc["groups"]),
        as_of=int(doc["as_of_day"]), stage=stage, arrivals=arrivals,
        cell_spells=cells["spells"].to_numpy().astype(np.int64),
        cell_exits=cells["exits"].to_numpy().astype(np.int64),
        cell_weight=cells["weight"].to_numpy().astype(np.float64),
        prior_strength=arr(doc["prior_strength"]), entered=arr(doc["entered"], np.int64),
        meta={k: doc[k] for k in META_KEYS if k in doc},
        effects=_effects(doc),
    )


def _effects(doc: dict) -> MixEffects:
    m = doc.get("mix_effects")
    if not m:
        return MixEffects.none()
    return MixEffects(np.asarray(m["exit_rate_by_month_of_quarter"], np.float64),
                      np.asarray(m["lost_shift_by_month_of_quarter"], np.float64),
                      float(m["shared_shock_variance"]), int(m["fiscal_year_start"])).check()
