"""The fitted model against known truth, with tolerances of 4 standard errors derived here."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

from forecaster.config import load_config
from forecaster import load as load_as_of
from forecaster.analysis.funnel import absorption, cell_exit_shares
from forecaster.calendar import to_day
from forecaster.crm import cut, load
from forecaster.errors import ModelError
from forecaster.model import PipelineModel, apply_stale, fit
from forecaster.model.store import FORMAT_VERSION
from forecaster.model.survival import risk_counts
from tests import chains
from tests.test_asof import BASE as ASOF_BASE
from tests.test_asof import exports, truncate, write

Z = 4.0


def fit_as_of(path, as_of_offset):
    cfg = load_config(path)
    data = load_as_of(cfg, None if as_of_offset is None else chains.day(as_of_offset))
    return cfg, data, fit(data, cfg)


def greenwood_se(dur, exited, day):
    """Greenwood standard error of the Kaplan-Meier S(day) for one cell's spells."""
    rc = risk_counts(dur, np.zeros(len(dur), int), exited, 1, max(int(dur[exited].max()) + 1, day + 1))
    n, e = rc.at_risk[: day + 1], rc.exits[: day + 1, 0]
    s = np.prod(1 - e / n)
    return s * np.sqrt(np.sum(e / (n * np.maximum(n - e, 1))))


def test_geometric_chain_shares_and_survival_match_truth(tmp_path):
    # Three stages; forward, skip, back and losses; constant daily hazards (geometric durations).
    p_exit = np.array([
        [0.0, 0.55, 0.10, 0.05, 0.30],
        [0.10, 0.0, 0.50, 0.05, 0.35],
        [0.0, 0.15, 0.0, 0.55, 0.30],
    ])
    hazard = np.array([0.08, 0.05, 0.10])
    path = chains.simulate(tmp_path, 4000, 500, 11, 3, *chains.geometric_chain(p_exit, hazard))
    _, data, model = fit_as_of(path, 500)  # deals created up to the as-of date: heavy censoring
    sp = data.spells
    for s in range(3):
        fitted = cell_exit_shares(model, s)
        n = model.cell_exits[s]
        se = np.sqrt(p_exit[s] * (1 - p_exit[s]) / n)
        assert np.all(np.abs(fitted - p_exit[s]) <= Z * se + 1e-12), (s, fitted, p_exit[s], se)
        in_s = sp.stage == s
        curve = model.stage.surv[model.stage.cell_off[s]:model.stage.cell_off[s + 1]]
        for q in (0.5, 0.9):
            d = int(np.ceil(np.log(1 - q) / np.log(1 - hazard[s]))) - 1  # true quantile day
            truth = (1 - hazard[s]) ** (d + 1)
            se = greenwood_se(sp.dur[in_s], sp.exited[in_s], d)
            assert abs(curve[d] - truth) <= Z * se, (s, q, curve[d], truth, se)
    # Win probability from each stage: the fundamental matrix of the true chain.
    true_b = absorption(p_exit)[1][:, 0]
    fitted_b = absorption(np.array([cell_exit_shares(model, s) for s in range(3)]))[1][:, 0]
    assert np.all(np.abs(fitted_b - true_b) < 0.05)


def late_loss_process():
    """One stage: days 0-19 hazard 0.05, all exits won; from day 20 hazard 0.02, all lost."""
    won, lost = np.array([0, 0, 1.0, 0]), np.array([0, 0, 0, 1.0])
    hazard = lambda s, d, g: 0.05 if d < 20 else 0.02  # noqa: E731
    dest = lambda s, d, g: won if d < 20 else lost  # noqa: E731
    return hazard, dest


P_WON = 1 - 0.95**20  # exact: probability of leaving within the first 20 days


def test_censoring_bias_naive_estimates_vs_ours(tmp_path):
    """Deals still open at as_of are mostly the slow, losing ones: dropping them biases the win share
    up and time in stage down. The censoring-aware estimate has no such bias."""
    path = chains.simulate(tmp_path, 3000, 150, 5, 2, *late_loss_process())
    _, data, model = fit_as_of(path, 150)
    sp = data.spells
    in0 = sp.stage == 0
    exited = sp.exited[in0]
    naive_won = np.mean(sp.dest[in0][exited] == 2)
    ours = cell_exit_shares(model, 0)[2]
    # F_won(inf) = F_won(19): it rests on the spells observed for 20 days (exited or old enough).
    n_info = int((exited | (sp.dur[in0] >= 20)).sum())
    se = np.sqrt(P_WON * (1 - P_WON) / n_info)
    assert abs(ours - P_WON) <= Z * se, (ours, P_WON, se)
    assert naive_won - P_WON > 10 * se, (naive_won, P_WON)  # the bias is large and visible
    # Time in stage: the true median is day 13 (S(13) = 0.95^14 < 0.5 <= S(12) = 0.95^13).
    curve = model.stage.surv[: model.stage.cell_off[1]]
    se = greenwood_se(sp.dur[in0], exited, 13)
    assert abs(curve[13] - 0.95**14) <= Z * se, (curve[13], 0.95**14, se)
    naive_median = np.median(sp.dur[in0][exited])
    assert naive_median <= 10, naive_median  # dropping open deals makes stays look short


def test_old_deals_get_the_destinations_of_late_exits_and_a_fitted_tail(tmp_path):
    path = chains.simulate(tmp_path, 3000, 400, 6, 2, *late_loss_process())
    _, data, model = fit_as_of(path, 400)
    st = model.stage
    lo = st.cell_off[0]
    early, late = st.bin_p[st.day_bin[lo + 5]], st.bin_p[st.day_bin[lo + 40]]
    assert early[2] > 0.9 and late[3] > 0.9  # won early, lost late: age-conditioned destinations
    tail = st.bin_p[st.tail_bin[0]]
    assert tail[3] > 0.99
    # Tail hazard: MLE of a constant 0.02 per day, relative SE 1/sqrt(exits in the window).
    sp = data.spells
    lam = -np.log1p(-st.tail_h[0])
    n_window = 0.25 * sp.exited[sp.stage == 0].sum()  # the window holds the last quarter of the exits
    assert abs(lam - 0.02) <= Z * 0.02 / np.sqrt(n_window)


def test_stale_after_days_makes_old_deals_lost(tmp_path):
    path = chains.simulate(tmp_path, 800, 300, 8, 2, *late_loss_process())
    _, _, model = fit_as_of(path, 300)
    for stale in (10, 400):
        st = apply_stale(model.stage, stale)
        for c in range(st.n_cells):
            s = st.surv[st.cell_off[c]:st.cell_off[c + 1]]
            assert len(s) <= stale + 1 and s[-1] == 0.0
            if len(s) == stale + 1:
                assert st.bin_p[st.day_bin[st.cell_off[c] + stale]][-1] == 1.0
            assert st.tail_h[c] == 1.0 and st.bin_p[st.tail_bin[c]][-1] == 1.0


def test_small_segment_is_shrunk_toward_pooled_and_big_ones_keep_their_own(tmp_path):
    # Segments 0 and 1: 2500 deals each, winning 60% and 30% (a real difference the empirical-Bayes
    # strength must see); segment 2: 6 deals winning 10%.
    segments = np.r_[np.zeros(2500, int), np.ones(2500, int), np.full(6, 2)]
    segments = segments[np.random.default_rng(3).permutation(len(segments))]
    p = {0: np.array([0, 0.6, 0.4]), 1: np.array([0, 0.3, 0.7]), 2: np.array([0, 0.1, 0.9])}
    hazard = lambda s, d, g: 0.1  # noqa: E731
    dest = lambda s, d, g: p[g]  # noqa: E731
    path = chains.simulate(tmp_path, len(segments), 600, 4, 1, hazard=hazard, dest=dest, segments=segments)
    _, data, model = fit_as_of(path, None)  # everything known: the day after the last event
    sp = data.spells
    seg = np.array(data.attrs["segment"].to_pylist())[sp.deal]
    raw = {g: np.mean(sp.dest[(seg == str(g)) & sp.exited] == 1) for g in (0, 1, 2)}
    pooled = np.mean(sp.dest[sp.exited] == 1)
    fitted = {g: cell_exit_shares(model, g)[1] for g in (0, 1, 2)}
    lo, hi = sorted((raw[2], pooled))
    assert lo < fitted[2] < hi, (raw[2], fitted[2], pooled)
    for g in (0, 1):
        n = int(((seg == str(g)) & sp.exited).sum())
        assert abs(fitted[g] - raw[g]) <= Z * np.sqrt(raw[g] * (1 - raw[g]) / n), (g, fitted[g], raw[g])
    # The difference is carried by the segments' lost-odds effects (common to all stages):
    # logit(0.7) - logit(0.4) = 1.25 between segments 1 and 0.
    effects = model.meta["segment_effects"]
    gap = effects["segment=1"]["lost_log_odds_shift"] - effects["segment=0"]["lost_log_odds_shift"]
    n = [int(((seg == str(g)) & sp.exited).sum()) for g in (0, 1)]
    se = np.sqrt(1 / (n[0] * 0.4 * 0.6) + 1 / (n[1] * 0.7 * 0.3))  # SE of a difference of two log-odds
    assert abs(gap - (np.log(0.7 / 0.3) - np.log(0.4 / 0.6))) <= Z * se, (gap, se)
    assert model.cell_weight[2] < model.cell_weight[0]


def test_model_round_trips_and_refuses_other_versions_and_data(tmp_path, sample_dir):
    cfg = load_config(sample_dir / "forecaster.yaml")
    data = load_as_of(cfg)
    model = fit(data, cfg)
    out = model.save(tmp_path / "m")
    back = PipelineModel.load(out, expect_fingerprint=data.fingerprint)
    for name in ("surv", "cell_off", "day_bin", "bin_p", "tail_h", "tail_bin"):
        assert np.array_equal(getattr(model.stage, name), getattr(back.stage, name)), name
    for name in ("rate", "weekday_factor", "moq_factor", "gamma_shape", "entry_p", "amount_pool", "amount_off"):
        assert np.array_equal(getattr(model.arrivals, name), getattr(back.arrivals, name)), name
    assert back.groups == model.groups and back.as_of == model.as_of
    with pytest.raises(ModelError, match="fitted on other data"):
        PipelineModel.load(out, expect_fingerprint="0" * 64)
    doc = json.loads((out / "model.json").read_text())
    doc["format_version"] = FORMAT_VERSION + 1
    (out / "model.json").write_text(json.dumps(doc))
    with pytest.raises(ModelError, match="model format version"):
        PipelineModel.load(out)
    with pytest.raises(ModelError, match="no model.json"):
        PipelineModel.load(tmp_path / "nothing")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(exports())
def test_fit_invariants_and_no_leakage(tmp_path_factory, export):
    deals, rows, as_of = export
    root = tmp_path_factory.mktemp("fit")
    cfg = load_config(write(root / "full", deals, rows))
    d = to_day(ASOF_BASE) + as_of
    t_deals, t_rows = truncate(deals, rows, as_of)
    if not t_deals:
        return
    full = fit(cut(load(cfg), d), cfg)
    st = full.stage
    st.check()  # shares sum to 1, survival non-increasing in [0, 1], no NaN
    assert np.all(np.isfinite(full.arrivals.rate)) and np.all(np.isfinite(full.cell_weight))
    tcfg = load_config(write(root / "cut", t_deals, t_rows))
    trunc = fit(cut(load(tcfg), d), tcfg)
    for name in ("surv", "cell_off", "day_bin", "bin_p", "tail_h", "tail_bin"):
        assert np.array_equal(getattr(st, name), getattr(trunc.stage, name)), name
    for name in ("rate", "weekday_factor", "moq_factor", "entry_p", "amount_pool"):
        assert np.array_equal(getattr(full.arrivals, name), getattr(trunc.arrivals, name)), name


def test_model_json_reports_effective_sample_size_per_segment_and_stage(tmp_path, sample_dir):
    cfg = load_config(sample_dir / "forecaster.yaml")
    model = fit(load_as_of(cfg), cfg)
    doc = json.loads((model.save(tmp_path) / "model.json").read_text())
    cells = doc["cells"]
    assert len(cells) == model.n_groups * model.n_stages
    for c in cells:
        assert c["effective_sample_size"] == c["exits"] + c["prior_strength"]
        assert 0 <= c["own_weight"] <= 1 and c["spells"] >= c["exits"]
