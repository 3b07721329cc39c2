"""What the CRM said about each deal as of a date: the expected close date, the probability and the
forecast category of the latest history row before it, and the close-date pushes known by then.

Where the stage history holds a field (a Salesforce OpportunityHistory row per stage change and per
amount or close-date edit), its value as of D comes from the history rows before D only; where it does
not, the deals table's current value is the only one known and is used as it is (docs/crm.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from forecaster.calendar import NO_DATE
from forecaster.crm.export import FieldHistory


@dataclass(frozen=True)
class DealFields:
    """Per deal: expected_close int32 days, probability float64 [0, 1], category object, close_pushes and
    close_push_days int32."""

    expected_close: np.ndarray
    probability: np.ndarray
    category: np.ndarray
    close_pushes: np.ndarray
    close_push_days: np.ndarray

    def take(self, idx: np.ndarray) -> DealFields:
        return DealFields(self.expected_close[idx], self.probability[idx], self.category[idx],
                          self.close_pushes[idx], self.close_push_days[idx])


def unknown_fields(n: int) -> DealFields:
    """n deals of which the CRM's fields are not known: no date, NaN, no category, no pushes."""
    return DealFields(np.full(n, NO_DATE, np.int32), np.full(n, np.nan), np.full(n, None, dtype=object),
                      np.zeros(n, np.int32), np.zeros(n, np.int32))


def _last_given(deal: np.ndarray, values: np.ndarray, given: np.ndarray, fill, n: int) -> np.ndarray:
    """Per deal the value of its last row where ``given``; ``fill`` for deals without one."""
    out = np.full(n, fill, dtype=values.dtype)
    d, v = deal[given], values[given]
    if len(d):
        last = np.r_[d[1:] != d[:-1], True]
        out[d[last]] = v[last]
    return out


def pushes(deal: np.ndarray, expected_close: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(count, total days) per deal of the moves of its expected close date to a later day, row by row."""
    given = expected_close != NO_DATE
    d, e = deal[given], expected_close[given].astype(np.int64)
    step = np.zeros(len(d), np.int64)
    if len(d) > 1:
        same = d[1:] == d[:-1]
        step[1:] = np.where(same, e[1:] - e[:-1], 0)
    later = step > 0
    return (np.bincount(d[later], minlength=n).astype(np.int32),
            np.bincount(d[later], weights=step[later], minlength=n).astype(np.int32))


def fields_as_of(fields: FieldHistory | None, current: DealFields, as_of: int | None = None) -> DealFields:
    """The per-deal fields known before day ``as_of`` (None: the whole history), from the history rows
    where it holds the field, else ``current`` (the deals table)."""
    n = len(current.expected_close)
    if fields is None:
        return current
    rows = fields.day < as_of if as_of is not None else np.ones(len(fields.day), bool)
    deal = fields.deal[rows]
    expected = fields.expected_close[rows]
    out = current
    if fields.has_expected_close:
        count, days = pushes(deal, expected, n)
        out = DealFields(_last_given(deal, expected, expected != NO_DATE, NO_DATE, n), out.probability,
                         out.category, count, days)
    if fields.has_probability:
        prob = fields.probability[rows]
        out = DealFields(out.expected_close, _last_given(deal, prob, ~np.isnan(prob), np.nan, n), out.category,
                         out.close_pushes, out.close_push_days)
    if fields.has_category:
        cat = fields.category[rows]
        out = DealFields(out.expected_close, out.probability,
                         _last_given(deal, cat, np.array([c is not None for c in cat], bool), None, n),
                         out.close_pushes, out.close_push_days)
    return out
