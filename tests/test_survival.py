"""Estimators against hand-computed answers, and their invariants."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from forecaster.model.survival import day_bins, dirichlet_precision, risk_counts, survival, tail_start
from tests.reference import cumulative_incidence, quantile_day

# Six spells (K = 2 destinations):
#   A exits day 1 to 0; B exits day 1 to 1; C censored at age 2 (at risk days 0, 1);
#   D exits day 3 to 0; E censored at age 5; F exits day 0 to 1.
DUR = np.array([1, 1, 2, 3, 5, 0])
DEST = np.array([0, 1, -1, 0, -1, 1])
EXITED = np.array([True, True, False, True, False, True])


def test_kaplan_meier_by_hand():
    rc = risk_counts(DUR, DEST, EXITED, n_dest=2, length=4)
    # n(0)=6, n(1)=5 (F gone), n(2)=2 (A, B exited; C censored after day 1), n(3)=2
    assert rc.at_risk.tolist() == [6, 5, 2, 2]
    assert rc.exits.tolist() == [[0, 1], [1, 1], [0, 0], [1, 0]]
    s = survival(rc.at_risk, rc.exits.sum(axis=1))
    # S(0) = 5/6, S(1) = 5/6 * 3/5 = 1/2, S(2) = 1/2, S(3) = 1/2 * 1/2 = 1/4
    np.testing.assert_allclose(s, [5 / 6, 1 / 2, 1 / 2, 1 / 4])


def test_aalen_johansen_by_hand():
    rc = risk_counts(DUR, DEST, EXITED, n_dest=2, length=4)
    f = cumulative_incidence(rc.at_risk, rc.exits)
    # F_0: day 1: S(0) * 1/5 = 1/6; day 3: S(2) * 1/2 = 1/4  ->  5/12
    # F_1: day 0: 1 * 1/6 = 1/6; day 1: S(0) * 1/5 = 1/6   ->  1/3
    np.testing.assert_allclose(f[-1], [5 / 12, 1 / 3])
    np.testing.assert_allclose(f.sum(axis=1), 1 - survival(rc.at_risk, rc.exits.sum(axis=1)))


def test_censored_spells_count_as_at_risk_not_as_exits():
    rc = risk_counts(DUR, DEST, EXITED, n_dest=2, length=4)
    assert rc.n_exits == 4 and rc.n_spells == 6
    # Tail exposure from day 2: D (days 2, 3) + E (days 2, 3, 4) = 5 spell-days; one exit (D).
    assert rc.exposure_from(2) == 5
    assert rc.exits_from(2).tolist() == [1, 0]


def test_quantile_uses_the_geometric_tail():
    s = np.array([0.9, 0.8])
    assert quantile_day(s, 0.5, 0.1) == 0
    assert quantile_day(s, 0.5, 0.2) == 1
    # beyond the table: S(1 + j) = 0.8 * 0.5^j <= 0.5 at j = 1
    assert quantile_day(s, 0.5, 0.5) == 2
    assert quantile_day(s, 0.5, 0.9) == 4  # 0.8 * 0.5^3 = 0.1


def test_day_bins_hold_enough_exits():
    exits = np.array([5, 0, 0, 30, 1, 1, 1, 25, 2])
    bins = day_bins(exits, 20)
    totals = np.bincount(bins, weights=exits)
    assert (totals >= 20).all()
    assert (np.diff(bins) >= 0).all()
    assert bins.tolist() == [0, 0, 0, 0, 1, 1, 1, 1, 1]  # the short last bin merged into the one before


def test_tail_window_covers_the_last_min_exits_exits():
    exits = np.array([40, 30, 20, 5, 3, 2], float)  # 100 exits; the last 10 from day 3 (5 + 3 + 2)
    assert tail_start(exits, 10) == 3
    assert tail_start(exits, 11) == 2  # 20 + 5 + 3 + 2 = 30 >= 11
    assert tail_start(exits, 100) == 0
    assert tail_start(exits, 10, share=0.25) == 2  # at least the last quarter: 25 -> from day 2


def test_dirichlet_precision_detects_real_differences():
    rng = np.random.default_rng(1)
    same = np.array([rng.multinomial(400, [0.5, 0.3, 0.2]) for _ in range(6)])
    assert dirichlet_precision(same) >= 100  # chance-level differences: strong pooling
    p = rng.dirichlet(np.full(3, 5.0) * [0.5, 0.3, 0.2] / 1.0, size=6)  # true precision 5
    differ = np.array([rng.multinomial(2000, pi) for pi in p])
    m = dirichlet_precision(differ)
    assert 1 <= m <= 30


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 60), st.integers(0, 3), st.booleans()), min_size=1, max_size=80))
def test_estimator_invariants(rows):
    dur = np.array([r[0] + (0 if r[2] else 1) for r in rows])
    dest = np.array([r[1] if r[2] else -1 for r in rows])
    ex = np.array([r[2] for r in rows])
    length = int(dur[ex].max()) + 1 if ex.any() else 1
    rc = risk_counts(dur, dest, ex, 4, length)
    s = survival(rc.at_risk, rc.exits.sum(axis=1))
    assert np.all(np.isfinite(s)) and np.all(np.diff(s) <= 1e-15) and s[0] <= 1 and s[-1] >= 0
    f = cumulative_incidence(rc.at_risk, rc.exits)
    assert np.all(np.isfinite(f))
    np.testing.assert_allclose(f[-1].sum(), 1 - s[-1], atol=1e-12)
