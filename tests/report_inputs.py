"""Small hand-made report inputs: every section's data present (including fields other issues add:
currency, report_by, the CRM's close date and probability, stale flags, sweeps, deal-level scores), or
only the headline. Deal and segment names carry markup, as CRM exports may."""

from __future__ import annotations

import copy
import datetime as dt
import json
from typing import Any

from forecaster.report.html import ReportData
from tests.conftest import REPO

GOLDEN = REPO / "tests" / "golden"
SCRIPT_DEAL = "<script>alert(1)</script>"
MARKUP_OWNER = "<b>Ann</b> & co"
DOLLAR_OWNER = "$1M+ club"


def golden(name: str) -> Any:
    return json.loads((GOLDEN / f"{name}.json").read_text())


def dist(mean: float, spread: float) -> dict[str, float]:
    return {"mean": mean, "std": spread, "p5": mean - 1.6 * spread, "p10": mean - 1.3 * spread,
            "p25": mean - 0.7 * spread, "p50": mean, "p75": mean + 0.7 * spread, "p90": mean + 1.3 * spread,
            "p95": mean + 1.6 * spread}


def minimal_summary() -> dict[str, Any]:
    """A summary.json as today's forecast writes it, without the keys other issues add."""
    return copy.deepcopy(golden("sample_forecast")["summary"])


def full_summary() -> dict[str, Any]:
    s = minimal_summary()
    s["currency"] = "EUR"
    s["won_to_date"] = {"since": "2025-04-01", "revenue": 1_250_000.0, "won_deals": 31}
    s["report_by"] = {"owner": {MARKUP_OWNER: {"revenue": dist(900_000, 200_000), "won_deals": dist(20, 4)},
                                DOLLAR_OWNER: {"revenue": dist(1_400_000, 300_000), "won_deals": dist(25, 5)},
                                "(none)": {"revenue": dist(300_000, 90_000), "won_deals": dist(6, 2)}}}
    return s


def cumulative(s: dict[str, Any]) -> dict[str, Any]:
    start = dt.date.fromisoformat(s["window"]["start"])
    weeks = [{"end": (start + dt.timedelta(days=6 + 7 * k)).isoformat(), **dist(300_000.0 * (k + 1), 40_000.0 * (k + 1))}
             for k in range(13)]
    actual = [{"end": f"2025-06-{d:02d}", "revenue": 100_000.0 * i, "won_deals": 3 * i}
              for i, d in enumerate((1, 8, 15, 22, 29), start=1)]
    return {"weeks": weeks, "actual": actual}


def deals(n: int = 30) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        rows.append({"deal_id": SCRIPT_DEAL if i == 0 else f"D{i:04d}", "stage": "proposal", "age_days": 10 + i,
                     "amount": 100_000.0 - 1000 * i, "product": "$1M+ <i>Pro</i>" if i == 1 else "Core",
                     "p_win": 0.5, "p_lost": 0.3, "p_open": 0.2, "expected_revenue": 50_000.0 - 500 * i,
                     "median_close_date": dt.date(2025, 8, 1) if i % 3 else None,
                     "crm_expected_close": dt.date(2025, 7, 15) if i % 2 else None,
                     "crm_probability": 0.4 if i % 2 else None, "stale": i % 5 == 0})
    return rows[:25]


def compare_with_sweep() -> dict[str, Any]:
    c = copy.deepcopy(golden("sample_compare")["compare"])
    template = c["scenarios"][0]
    for k, value in enumerate((1.1, 1.2, 1.3)):
        sw = copy.deepcopy(template)
        sw["name"] = f"more leads x{value}"
        sw["sweep"] = {"scenario": "lead volume", "lever": "new_deals.rate", "value": value}
        d = sw["delta"]["revenue"]
        d.update(mean=60_000.0 * (k + 1), lo95=50_000.0 * (k + 1), hi95=70_000.0 * (k + 1))
        c["scenarios"].append(sw)
    return c


def backtest_with_deal_scores() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    b = copy.deepcopy(golden("sample_backtest")["backtest"])
    b["deal_scores"] = {
        "forecaster": {"brier": 0.162, "log_loss": 0.49, "auc": 0.81,
                       "reliability": [{"lo": 0.0, "hi": 0.2, "n": 400, "mean_predicted": 0.08, "observed": 0.1},
                                       {"lo": 0.2, "hi": 0.5, "n": 250, "mean_predicted": 0.33, "observed": 0.3},
                                       {"lo": 0.5, "hi": 1.0, "n": 90, "mean_predicted": 0.7, "observed": 0.74}]},
        "crm_probability": {"brier": 0.21, "log_loss": 0.61, "auc": 0.7,
                            "reliability": [{"lo": 0.0, "hi": 0.5, "n": 500, "mean_predicted": 0.3, "observed": 0.18},
                                            {"lo": 0.5, "hi": 1.0, "n": 240, "mean_predicted": 0.7, "observed": 0.52}]},
    }
    rows = []
    for i, cutoff in enumerate(b["cutoff_dates"]):
        for method in ("forecaster", "weighted_pipeline"):
            q = None if method == "weighted_pipeline" else 1e6
            rows.append({"cutoff": dt.date.fromisoformat(cutoff), "method": method, "target": "revenue",
                         "actual": 1.1e6 + 1e5 * i, "p10": None if q is None else 0.8e6, "p50": 1.05e6,
                         "p90": None if q is None else 1.4e6})
    return b, rows


def full_report() -> ReportData:
    s = full_summary()
    b, rows = backtest_with_deal_scores()
    return ReportData(
        title="Forecast report: hand-made", summary=s, revenue_histogram={"edges": [3e6, 4e6, 5e6, 6e6],
                                                                          "counts": [10, 30, 20]},
        cumulative=cumulative(s), deals=deals(), open_deals=327, segment_by=("product",),
        funnel=golden("sample_funnel")["all"], change={"as_of": "2025-06-01", "window": None,
                                                       "revenue": {"mean": 1e5, "p50": -5e4}, "won_deals": {"p50": 3.0},
                                                       "p_quota": 0.04},
        compare=compare_with_sweep(), backtest=b, backtest_rows=rows,
        warnings=["warning: won/lost stage rows (closing taken from deals.closed_at) (2293)"],
        provenance={"config": "configs/x.yaml", "config_sha256": "ab" * 32, "data_fingerprint": "cd" * 32,
                    "seed": 42, "trials": 1500, "version": "0.1.0",
                    "command": "forecaster report configs/x.yaml -o report.html"},
        generated_at="2025-07-01 12:00:00 UTC")


def minimal_report() -> ReportData:
    return ReportData(title="Forecast report: minimal", summary=minimal_summary(), generated_at="2025-07-01 12:00:00 UTC")


def write_markup_crm(crm) -> Any:
    """The conftest CRM with an open deal named <script>alert(1)</script> and a segment value <b>B</b>."""
    from tests.conftest import DEALS, HISTORY

    deals = DEALS.replace("D3,", f"{SCRIPT_DEAL},").replace(",B\n", ",<b>B</b>\n")
    return crm.write(deals=deals, history=HISTORY.replace("D3,", f"{SCRIPT_DEAL},"))
