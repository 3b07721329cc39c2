"""The backtest's rows -> backtest.json: per target and method its scores over the cutoffs, the
forecaster's CRPS skill against every other method (on the cutoffs both scored), and the deal-level scores.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from forecaster.analysis import scores
from forecaster.analysis.deal_scores import deal_scores
from forecaster.analysis.summary import with_currency

# The order methods are listed in (backtest.json, tables); a method with no scored cutoff is left out.
METHODS = ("forecaster", "forecaster_no_calendar", "forecaster_no_shock", "forecaster_no_new_deals", "forecaster_no_age",
           "weighted_pipeline", "weighted_pipeline_all", "crm_forecast", "crm_commit", "crm_best_case", "seasonal_naive", "run_rate",
           "ets")
DEAL_METHODS = ("forecaster", "stage_win_rate", "crm_probability")
TARGETS = ("revenue", "won_deals")


def method_block(rs: list[dict[str, Any]]) -> dict[str, Any]:
    """Scores of one method and target over its scored cutoffs: CRPS, pinball, bias, WAPE, MAPE; for a
    distribution also coverage of P10-P90 and P5-P95 with Wilson intervals, and the PIT histogram."""
    scored = [r for r in rs if r["crps"] is not None]
    out: dict[str, Any] = {"cutoffs": len(scored), "kind": "distribution" if scored and scored[0]["p10"] is not None
                           else "point"}
    if not scored:
        return {**out, "coverage_80": None, "coverage_90": None, "crps": None, "pinball_50": None, "bias": None,
                "wape": None, "mape": None}
    ys = np.array([r["actual"] for r in scored], float)
    med = np.array([r["p50"] for r in scored], float)
    out.update(crps=float(np.mean([r["crps"] for r in scored])),
               pinball_50=float(np.mean([r["pinball_50"] for r in scored])),
               bias=scores.bias(med, ys), wape=scores.wape(med, ys), mape=scores.mape(med, ys))
    if out["kind"] == "distribution":
        for key, lo, hi, nominal in (("coverage_80", "p10", "p90", 0.8), ("coverage_90", "p5", "p95", 0.9)):
            c = scores.coverage(np.array([r[lo] for r in scored]), np.array([r[hi] for r in scored]), ys, nominal)
            out[key] = c["coverage"]
            out[key + "_interval"] = c
        pits = np.array([r["pit"] for r in scored], float)
        out["pit_histogram"] = scores.pit_histogram(pits)
        out["pit_values"] = pits.tolist()
    else:
        out["coverage_80"] = out["coverage_90"] = None
    return out


def paired_skill(rows: list[dict[str, Any]], method: str) -> tuple[float | None, int]:
    """1 - mean CRPS(forecaster) / mean CRPS(method) over the cutoffs where both were scored, and how many."""
    f = {r["cutoff"]: r["crps"] for r in rows if r["method"] == "forecaster" and r["crps"] is not None}
    m = {r["cutoff"]: r["crps"] for r in rows if r["method"] == method and r["crps"] is not None}
    common = sorted(set(f) & set(m))
    if not common:
        return None, 0
    return scores.skill(float(np.mean([f[c] for c in common])), float(np.mean([m[c] for c in common]))), len(common)


def pooled_deal_scores(won: np.ndarray, predictions: dict[str, np.ndarray]) -> dict[str, Any]:
    """deal_scores per method over the deal-cutoffs where it has a prediction."""
    out = {}
    for name in DEAL_METHODS:
        p = predictions.get(name)
        if p is None:
            continue
        ok = np.isfinite(p)
        if ok.any():
            out[name] = deal_scores(p[ok], won[ok])
    return out


def summarize_backtest(rows: list[dict[str, Any]], window: str, won: np.ndarray | None = None,
                       predictions: dict[str, np.ndarray] | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"window": window}
    for target in TARGETS:
        trows = [r for r in rows if r["target"] == target]
        methods, skill, skill_cutoffs = {}, {}, {}
        for m in METHODS:
            rs = [r for r in trows if r["method"] == m]
            if rs and any(r["crps"] is not None for r in rs):
                methods[m] = method_block(rs)
                if m != "forecaster":
                    skill[m], skill_cutoffs[m] = paired_skill(trows, m)
        block = {"methods": methods, "skill": skill, "skill_cutoffs": skill_cutoffs}
        if target == "revenue":
            out.update(cutoffs=methods["forecaster"]["cutoffs"], target="revenue", **block)
        else:
            out["won_deals"] = block
    if won is not None and predictions is not None:
        out["deal_scores"] = pooled_deal_scores(won, predictions)
    return out


def rows_table(rows: list[dict[str, Any]], currency: str | None = None) -> pa.Table:
    """One row per cutoff, method and target (backtest.parquet), the currency in its schema metadata."""
    cols = list(rows[0].keys())
    return with_currency(pa.table({c: pa.array([r[c] for r in rows], pa.date32() if c == "cutoff" else None)
                                   for c in cols}), currency)
