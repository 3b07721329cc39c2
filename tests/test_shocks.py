"""Issue 12's model components against known answers: delayed entry, the observation start, the tail, the
fiscal calendar, month-of-quarter shifts and the shared shock's variance, recency weights."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math

import numpy as np
import pytest

from forecaster.calendar import month_of_quarter, period_bounds, quarter_bounds, to_day
from forecaster.config import load_config
from forecaster.crm import cut, load
from forecaster.model import fit
from forecaster.model.shocks import ExitShares, fit_frailty, fit_lost_shifts
from forecaster.model.survival import risk_counts
from tests import chains


def test_delayed_entry_by_hand():
    """Three spells: A exits day 3 (seen from day 0), B exits day 4 seen from day 2, C censored at age 5
    seen from day 3. At risk: day 0-1: A; day 2: A, B; day 3: A, B, C; day 4: B, C."""
    r = risk_counts(np.array([3, 4, 5]), np.array([0, 0, -1]), np.array([True, True, False]), 1, 5,
                    entry=np.array([0, 2, 3]))
    assert r.at_risk.tolist() == [1, 1, 2, 3, 2]
    assert r.exits[:, 0].tolist() == [0, 0, 0, 1, 1]
    assert r.exposure_from(0) == 4 + 3 + 2  # A days 0-3, B days 2-4, C days 3-4
    w = risk_counts(np.array([3, 4, 5]), np.array([0, 0, -1]), np.array([True, True, False]), 1, 5,
                    entry=np.array([0, 2, 3]), weight=np.array([1.0, 0.5, 2.0]))
    assert w.at_risk.tolist() == [1, 1, 1.5, 3.5, 2.5]
    assert w.exits[:, 0].tolist() == [0, 0, 0, 1, 0.5]


@pytest.fixture(scope="module")
def truncated(tmp_path_factory):
    """A one-stage geometric process (daily hazard 3%, won 60%), deals created over 600 days; the CRM
    records no close before day 300 (those deals are gone, the others keep their creation date)."""
    root = tmp_path_factory.mktemp("trunc")
    p = np.array([[0.0, 0.6, 0.4]])
    haz, dest = chains.geometric_chain(p, np.array([0.03]))
    cfg_path = chains.simulate(root, 4000, 600, 3, 1, haz, dest)
    import pyarrow.parquet as pq
    import pyarrow.compute as pc

    deals = pq.read_table(root / "deals.parquet")
    t0 = chains.day(300)
    closed_early = pc.fill_null(pc.less(deals["closed_at"], t0), False)
    keep = pc.invert(closed_early)
    pq.write_table(deals.filter(keep), root / "deals.parquet")
    hist = pq.read_table(root / "history.parquet")
    pq.write_table(hist.filter(pc.is_in(hist["deal_id"], value_set=deals.filter(keep)["deal_id"])),
                   root / "history.parquet")
    return load_config(cfg_path), t0


def test_observation_start_is_detected_and_removes_the_bias(truncated):
    """With delayed entry the daily hazard is the true 3% within 4 standard errors; counting the unseen
    months as time at risk pulls it down by far more."""
    cfg, t0 = truncated
    full = load(cfg)
    snap = cut(full, to_day(chains.day(600)))
    assert snap.observed_from == to_day(t0)
    assert snap.warning_counts()["observed_from"] > 0

    def daily_hazard(s) -> tuple[float, float]:
        ex = s.spells.exited
        n_ex = float(ex.sum())
        exposure = float((np.where(ex, s.spells.dur + 1, s.spells.dur) - s.spells.entry_age).sum())
        return n_ex / exposure, math.sqrt(n_ex) / exposure

    h, se = daily_hazard(snap)
    assert abs(h - 0.03) < 4 * se, (h, se)
    naive = cut(full, to_day(chains.day(600)), None)
    h0, _ = daily_hazard(naive)
    assert 0.03 - h0 > 4 * se  # the bias the truncation removes
    model = fit(snap, cfg)
    assert model.meta["observed_from"] == t0.isoformat()
    assert model.meta["arrival_window"]["start"] >= t0.isoformat()


def test_observed_from_in_the_config_overrides_detection(truncated, tmp_path):
    cfg, t0 = truncated
    forced = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, observed_from=chains.day(350)))
    from forecaster.crm import snapshot

    snap = snapshot(load(forced), forced, chains.day(600))
    assert snap.observed_from == to_day(chains.day(350))
    assert "observed_from" not in snap.warning_counts()


def test_tail_comes_from_the_oldest_exits(tmp_path):
    """Fast young exits (20% a day for 10 days) then slow ones (0.5% a day): the tail hazard beyond the
    last exit is fitted on the last min_bin_exits exits, so it is the slow rate, not the fast one."""
    p = np.array([[0.0, 0.5, 0.5]])
    hazard = lambda s, d, g: 0.2 if d < 10 else 0.005  # noqa: E731
    cfg_path = chains.simulate(tmp_path, 3000, 400, 5, 1, hazard, lambda s, d, g: p[0])
    cfg = load_config(cfg_path)
    model = fit(cut(load(cfg), to_day(chains.day(400))), cfg)
    tail = model.meta["fit"]["tail_exit_probability_per_day"][0]
    assert 0.002 < tail < 0.012, tail


def test_fiscal_calendar():
    assert quarter_bounds(dt.date(2025, 1, 15), 2) == (dt.date(2024, 11, 1), dt.date(2025, 1, 31))
    assert quarter_bounds(dt.date(2025, 7, 1)) == (dt.date(2025, 7, 1), dt.date(2025, 9, 30))
    assert month_of_quarter(np.array([to_day(dt.date(2025, m, 1)) for m in (2, 3, 4, 5)]), 2).tolist() == [0, 1, 2, 0]
    assert period_bounds(dt.date(2025, 1, 15), dt.date(2025, 5, 2), "quarter", 2) == [
        (dt.date(2025, 1, 15), dt.date(2025, 1, 31)), (dt.date(2025, 2, 1), dt.date(2025, 4, 30)),
        (dt.date(2025, 5, 1), dt.date(2025, 5, 2))]


def test_default_window_is_the_rest_of_the_fiscal_quarter(runner, sample_dir, tmp_path):
    import json

    from forecaster.cli import main

    text = (sample_dir / "forecaster.yaml").read_text().replace("deals.parquet", str(sample_dir / "deals.parquet"))
    text = text.replace("stage_history.parquet", str(sample_dir / "stage_history.parquet"))
    path = tmp_path / "f.yaml"
    path.write_text(text + "calendar: {fiscal_year_start: 2}\n")
    out = json.loads(runner.invoke(main, ["forecast", str(path), "--trials", "50", "--format", "json"]).stdout)
    assert out["window"] == {"start": "2025-07-01", "end": "2025-07-31"}  # fiscal Q2 ends with July
    path.write_text(text + "calendar: {fiscal_year_start: 13}\n")
    bad = runner.invoke(main, ["forecast", str(path)])
    assert bad.exit_code == 2 and "calendar.fiscal_year_start': expected a month number 1-12, got 13" in bad.stderr


def _exits(rng, n: int, shift: np.ndarray, base_lost: float = 0.4, days=None) -> ExitShares:
    """n exits, none back, lost share ``base_lost`` by the tables, outcomes drawn with the month's shift."""
    day = rng.integers(to_day(dt.date(2023, 1, 1)), to_day(dt.date(2024, 12, 31)), n) if days is None else days
    q = month_of_quarter(day)
    odds = base_lost / (1 - base_lost) * np.exp(shift[q])
    lost = rng.random(n) < odds / (1 + odds)
    ell = np.full(n, base_lost)
    return ExitShares(day, ell, 1 - ell, np.where(lost, 1, 3))


def test_month_of_quarter_shifts_are_recovered():
    """Exits with known shifts (+0.3, 0, -0.6) of the lost odds: the raw estimates lie within 4 of their
    standard errors; the shrunk ones keep the order; with no shift the shrunk estimates stay near 0."""
    rng = np.random.default_rng(12)
    true = np.array([0.3, 0.0, -0.6])
    x = _exits(rng, 20000, true)
    lost, fig = fit_lost_shifts(x, 1)
    raw, se = np.array(fig["lost_raw"])[0], np.array(fig["lost_se"])[0]
    assert lost.shape == (1, 3)
    assert np.all(np.abs(raw - true) < 4 * se), (raw, se)
    assert lost[0, 0] > lost[0, 1] > lost[0, 2]
    none = _exits(rng, 20000, np.zeros(3))
    flat, fig0 = fit_lost_shifts(none, 1)
    assert np.all(np.abs(flat) < 4 * np.array(fig0["lost_se"]))


def test_month_of_quarter_shifts_are_per_stage():
    """Two open stages, the shifts (+0.5, 0, -0.8) on the exits of stage 1 only: stage 1's raw estimates lie
    within 4 standard errors of the truth and stage 0's within 4 of 0 (a push out of the last stage does not
    move the early ones)."""
    rng = np.random.default_rng(21)
    true = np.array([0.5, 0.0, -0.8])
    a, b = _exits(rng, 15000, np.zeros(3)), _exits(rng, 15000, true)
    x = ExitShares(np.r_[a.day, b.day], np.r_[a.l, b.l], np.r_[a.f, b.f], np.r_[a.outcome, b.outcome],
                   np.r_[np.zeros(15000, np.int64), np.ones(15000, np.int64)])
    lost, fig = fit_lost_shifts(x, 1, 2)
    raw, se = np.array(fig["lost_raw"]), np.array(fig["lost_se"])
    assert lost.shape == (2, 3)
    assert np.all(np.abs(raw[1] - true) < 4 * se[1]) and np.all(np.abs(raw[0]) < 4 * se[0]), (raw, se)
    assert lost[1, 0] > lost[1, 1] > lost[1, 2]


def _monthly_process(rng, rate: np.ndarray, n: int = 6000, h: float = 0.02):
    """One open stage (cell 0) with daily exit probability h rate[q] on days of month q of the quarter,
    every exit forward (won); deals enter uniformly over 2023-2024, followed to 2025-01-01. Returns the
    spells, their cells, the table of the base hazard h and (first day, as_of)."""
    from forecaster.crm import Spells
    from forecaster.model import StageTables

    first, as_of = to_day(dt.date(2023, 1, 1)), to_day(dt.date(2025, 1, 1))
    entered = np.sort(rng.integers(first, as_of - 30, n))
    day = entered.copy()
    alive = np.ones(n, bool)
    exit_day = np.full(n, -1)
    while alive.any() and day.min() < as_of:
        q = month_of_quarter(day, 1)
        go = alive & (day < as_of) & (rng.random(n) < h * rate[q])
        exit_day[go] = day[go]
        alive &= ~go & (day < as_of - 1)
        day = day + 1
    exited = exit_day >= 0
    dur = np.where(exited, exit_day - entered, as_of - entered)
    spells = Spells(np.arange(n), np.zeros(n, np.int64), entered, dur, np.where(exited, 1, -1), exited,
                    np.zeros(n, np.int64))
    L = 400
    stage = StageTables.of((1 - h) ** (np.arange(L) + 1), [0, L], np.zeros(L, np.int32), [[0.0, 1.0, 0.0]], [h], [0])
    return spells, np.zeros(n, np.int64), stage, first, as_of


def test_month_of_quarter_exit_rates_are_recovered():
    """Exits at a daily probability of 2% times (0.6, 1.0, 1.5) by month of the quarter, measured against
    the base table: the raw O / E lie within 4 standard errors (of the log rate, 1 / sqrt(O)) of the
    truth; with every rate 1 the shrunk rates stay within 4 standard errors of 1; under a full quarter of
    exits none is used."""
    from forecaster.model.shocks import fit_calendar, fit_exit_rates

    rng = np.random.default_rng(5)
    true = np.array([0.6, 1.0, 1.5])
    spells, cells, stage, first, as_of = _monthly_process(rng, true)
    rate, fig = fit_exit_rates(spells, cells, stage, 1, as_of, first)
    raw, se = np.array(fig["exit_rate_raw"])[0], np.array(fig["exit_rate_se"])[0]
    assert np.all(np.abs(np.log(raw) - np.log(true)) < 4 * se), (raw, se)
    assert rate[0, 0] < rate[0, 1] < rate[0, 2]
    spells, cells, stage, first, as_of = _monthly_process(rng, np.ones(3))
    flat, fig0 = fit_exit_rates(spells, cells, stage, 1, as_of, first)
    assert np.all(np.abs(np.log(flat)) < 4 * np.array(fig0["exit_rate_se"]))
    x = ExitShares(np.zeros(0, np.int64), np.zeros(0), np.zeros(0), np.zeros(0, np.int64))
    short_rate, short_lost, fig1 = fit_calendar(spells, cells, stage, x, 1, first + 60, first)
    assert not fig1["used"] and np.all(short_rate == 1) and np.all(short_lost == 0)


def test_shared_shock_variance_is_recovered():
    """Per 28-day period one Gamma(1/v, v) multiplier of the lost odds, v = 0.09: over 240 periods the
    moment estimate lies within 4 standard errors of v (the SE from 40 replications of the estimator)."""
    v = 0.09
    estimates = []
    for rep in range(40):
        rng = np.random.default_rng(100 + rep)
        periods, per = 240, 300
        start = to_day(dt.date(2000, 1, 1))
        z = rng.gamma(1 / v, v, periods)
        day = start + np.repeat(np.arange(periods) * 28, per) + rng.integers(0, 28, periods * per)
        odds = 0.4 / 0.6 * z[np.repeat(np.arange(periods), per)]
        lost = rng.random(periods * per) < odds / (1 + odds)
        n = periods * per
        x = ExitShares(day, np.full(n, 0.4), np.full(n, 0.6), np.where(lost, 1, 3))
        est, fig = fit_frailty(x, np.zeros(3), 1, start + periods * 28, start, 28)
        estimates.append(est)
    estimates = np.array(estimates)
    se = estimates.std(ddof=1) / math.sqrt(len(estimates))
    # A Gamma odds multiplier has Var(log Z) slightly above v (about v + v^2 / 2 for small v): the estimator
    # targets the variance of the log odds, the delta method's reading of v.
    target = float(np.var(np.log(np.random.default_rng(0).gamma(1 / v, v, 2_000_000))))
    assert abs(estimates.mean() - target) < 4 * se + 0.01 * target, (estimates.mean(), target, se)


def test_recency_weights_halve_per_half_life(sample_dir):
    from forecaster.model.pipeline import recency_weights

    cfg = load_config(sample_dir / "forecaster.yaml")
    snap = cut(load(cfg), to_day(dt.date(2025, 7, 1)))
    w = recency_weights(snap, 100)
    age = snap.as_of - snap.spells.entered
    assert np.allclose(w, 0.5 ** (age / 100))
    assert recency_weights(snap, None) is None
