"""The configs in configs/ on the real public datasets of ../shared/data."""

from __future__ import annotations

import datetime as dt


from forecaster.cli import main
from forecaster.config import load_config
from forecaster.calendar import to_day
from forecaster.crm import LOST, OPEN, WON, cut, load
from tests.conftest import REPO, config_data, shared_data


def test_maven_validates_and_matches_its_source_profile(runner):
    shared_data("maven_crm")
    result = runner.invoke(main, ["validate", str(REPO / "configs" / "maven.yaml")])
    assert result.exit_code == 0, result.output
    data = load(load_config(REPO / "configs" / "maven.yaml"))
    # SOURCE.md: 8,800 rows, 500 prospecting rows without dates; 4,238 won, 2,473 lost.
    assert data.n_deals == 8300
    assert (data.status == WON).sum() == 4238
    assert (data.status == LOST).sum() == 2473
    assert data.warning_counts()["dropped_missing_created"] == 500
    # open and lost deals take the list price; won deals keep close_value (total 10,005,534)
    assert data.amount[data.status == WON].sum() == 10_005_534
    assert (data.amount > 0).all()
    gtx = data.attrs["product"].to_numpy(zero_copy_only=False) == "GTX Pro"
    assert gtx.any() and (data.attrs["sales_price"].to_numpy(zero_copy_only=False)[gtx] == "4821").all()
    # SOURCE.md backtest table: at cutoff 2017-06-30 (as of 2017-07-01): 2,679 closed (1,785 won), 1,686 open
    snap = cut(data, to_day(dt.date(2017, 7, 1)))
    assert (snap.status == WON).sum() == 1785
    assert ((snap.status == WON) | (snap.status == LOST)).sum() == 2679
    assert (snap.status == OPEN).sum() == 1686


def test_every_config_validates(runner):
    for path in sorted((REPO / "configs").glob("*.yaml")):
        config_data(path)
        result = runner.invoke(main, ["validate", str(path)])
        assert result.exit_code == 0, (path, result.output)
