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


def diff_result() -> dict[str, Any]:
    """A diff.json: every component, one with a deal named like markup."""
    names = ("won", "lost", "created", "progressed", "moved_back", "aged", "amount", "pushed", "pulled_in", "model")
    values = (150_000.0, -80_000.0, -12_000.0, 90_000.0, -5_000.0, -120_000.0, 0.0, -30_000.0, 8_000.0, 4_000.0)
    comps = [{"name": n, "revenue": v, "won_deals": v / 50_000, "deals": 0 if v == 0 else 3,
              "largest": [] if v == 0 else [{"deal_id": SCRIPT_DEAL if n == "won" else f"D{k}", "revenue": v / 2,
                                             "won_deals": v / 100_000}]}
             for k, (n, v) in enumerate(zip(names, values))]
    totals = {"booked": {"revenue": 1e6, "won_deals": 30.0}, "open_deals": {"deals": 300, "revenue": 2e6, "won_deals": 40.0},
              "new_deals": {"revenue": 2e5, "won_deals": 5.0}}
    start = {"as_of": "2025-06-24", "revenue": 3.2e6, "won_deals": 75.0, **totals}
    end = {"as_of": "2025-07-01", "revenue": 3.2e6 + sum(values), "won_deals": 75.0 + sum(values) / 50_000, **totals}
    return {"from": "2025-06-24", "to": "2025-07-01", "window": {"start": "2025-07-01", "end": "2025-09-30"},
            "currency": "EUR", "trials": 1500, "seed": 42, "new_deals": True, "start": start, "end": end,
            "components": comps}


def spread_result() -> dict[str, Any]:
    """summary.json's spread: three deals alone (one named like markup), the rest, new deals, groups."""
    var = 4e11
    deals = [{"deal_id": SCRIPT_DEAL if i == 0 else f"D{i:04d}", "amount": 300_000.0 - 50_000 * i, "p_win": 0.4,
              "own_variance": var * (0.2 - 0.05 * i), "shared_covariance": var * 0.01, "covariance": var * (0.21 - 0.05 * i),
              "share": 0.21 - 0.05 * i} for i in range(3)]
    return {"variance": var, "sd": var ** 0.5, "trials": 1500, "deals_alone": 3, "deals": deals,
            "other_open_deals": {"deals": 200, "own_variance": var * 0.3, "shared_covariance": var * 0.02,
                                 "covariance": var * 0.32, "share": 0.32},
            "new_deals": {"covariance": var * 0.11, "share": 0.11},
            "segments": {"product=Core": {"covariance": var * 0.4, "share": 0.4},
                         "product=Pro": {"covariance": var * 0.6, "share": 0.6}},
            "report_by": {"owner": {MARKUP_OWNER: {"covariance": var * 0.7, "share": 0.7},
                                    "(new deals)": {"covariance": var * 0.3, "share": 0.3}}},
            "high_trials": {"at_least": 4.5e6, "trials": 150}, "low_trials": {"at_most": 2.5e6, "trials": 150},
            "separating": [{"deal_id": SCRIPT_DEAL, "amount": 300_000.0, "won_in_high": 0.8, "won_in_low": 0.1,
                            "separation": 0.7}]}


def inspect_result() -> dict[str, Any]:
    """summary.json's inspect: one deal of each reason, one named like markup."""
    def row(deal_id: str, reasons: list[str], why: str) -> dict[str, Any]:
        return {"deal_id": deal_id, "stage": "proposal", "age_days": 40, "amount": 250_000.0, "p_win": 0.1,
                "expected_revenue": 25_000.0, "crm_expected_close": "2025-08-01", "close_pushes": 4, "stale": True,
                "variance_share": None, "reasons": reasons, "why": why}
    return {"rules": {"slip_p_win_below": 0.25, "pushed_at_least": 3, "stale": "age in stage above the stage's P90",
                      "range_deals": 5, "per_reason": 10},
            "flagged": {"slip_risk": 12, "pushed": 4, "stale": 30, "range": 5},
            "deals": [row(SCRIPT_DEAL, ["slip_risk", "pushed"], "CRM close date 2025-08-01 is inside the window, but "
                          "the deal is won inside it in only 10.0% of trials; close date pushed 4 times (60 days in all)"),
                      row("D0002", ["stale"], "40 days in proposal, longer than 90% of stays there")]}


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
        compare=compare_with_sweep(), backtest=b, backtest_rows=rows, diff=diff_result(), spread=spread_result(),
        inspect=inspect_result(),
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
