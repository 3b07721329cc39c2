"""The fitted pipeline model and ``fit``: snapshot as of D -> stage tables, arrivals, and the figures
that explain them. Rules and their reasons: docs/model.md; persistence: model.store."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc

from forecaster._version import __version__
from forecaster.calendar import to_date
from forecaster.config import Config, identity_sha256
from forecaster.crm import Snapshot
from forecaster.errors import ModelError
from forecaster.model import store
from forecaster.model.arrivals import fit_arrivals
from forecaster.model.stage import fit_stage_tables
from forecaster.model.shocks import fit_mix_effects
from forecaster.model.mix import MixEffects
from forecaster.model.tables import ArrivalTables, StageTables

GROUP_SEP = "\x1f"


@dataclass(frozen=True, eq=False)
class PipelineModel:
    """A fitted model: stage tables, arrivals and the figures that explain them.

    Per cell (c = g * S + s, g a segment combination, s an open stage): ``cell_spells``, ``cell_exits``
    (own data), ``cell_weight`` (share of the estimate resting on the segment's own exits: E / (E + m)).
    Per stage: ``prior_strength`` m, ``entered`` (spells that entered it). ``meta``: version, config and
    data fingerprints, fit options, segment effects, the arrival window (model.json).
    """

    stages: tuple[str, ...]
    won: str
    lost: str
    segment_by: tuple[str, ...]
    groups: tuple[tuple[str, ...], ...]
    as_of: int
    stage: StageTables
    arrivals: ArrivalTables
    cell_spells: np.ndarray
    cell_exits: np.ndarray
    cell_weight: np.ndarray
    prior_strength: np.ndarray
    entered: np.ndarray
    meta: dict[str, Any] = field(default_factory=dict)
    effects: MixEffects = field(default_factory=MixEffects.none)

    @property
    def n_stages(self) -> int:
        return len(self.stages)

    @property
    def n_groups(self) -> int:
        return len(self.groups)

    def group_name(self, g: int) -> str:
        """'col=value, ...' of segment combination g ('all' without segments)."""
        return group_names(self.segment_by, [self.groups[g]])[0]

    def save(self, directory: str | Path) -> Path:
        """Write model.json and Parquet tables into ``directory`` (each file atomically)."""
        return store.save(self, directory)

    @classmethod
    def load(cls, directory: str | Path, expect_fingerprint: str | None = None,
             expect_config: dict[str, Any] | None = None) -> PipelineModel:
        """Read a saved model; refuse another format version, data other than ``expect_fingerprint``, or a
        model fitted with a config other than ``expect_config`` (``Config.fit_identity()``)."""
        return store.load(cls, directory, expect_fingerprint, expect_config)


def group_index(snap: Snapshot, segment_by: tuple[str, ...]) -> tuple[np.ndarray, list[tuple[str, ...]]]:
    """Per deal its segment combination's index, and the combinations (sorted)."""
    if not segment_by:
        return np.zeros(snap.n_deals, np.int32), [()]
    cols = [snap.attrs[c].combine_chunks() for c in segment_by]
    key = cols[0] if len(cols) == 1 else pc.binary_join_element_wise(*cols, GROUP_SEP)
    uniq, inv = np.unique(np.asarray(key.to_pylist(), dtype=object).astype(str), return_inverse=True)
    return inv.astype(np.int32), [tuple(u.split(GROUP_SEP)) for u in uniq]


def group_names(segment_by: tuple[str, ...], groups: list[tuple[str, ...]]) -> list[str]:
    if not segment_by:
        return ["all"]
    return [", ".join(f"{c}={v}" for c, v in zip(segment_by, g)) for g in groups]


DEFAULT_WINDOW_DAYS = 91  # a quarter, when the model is fitted for no particular window


def window_blocks(window_days: int | None) -> int:
    """Days of the blocks that shared variation is measured on: the window's length in whole weeks."""
    return max(7, int(round((window_days or DEFAULT_WINDOW_DAYS) / 7)) * 7)


def recency_weights(snap: Snapshot, half_life_days: int | None) -> np.ndarray | None:
    """Per spell 2^(-(as_of - entered) / half_life): a spell-day on calendar day c weighs 2^(-(as_of - c) /
    half_life), which factors into this per-spell weight and a factor of the spell's age that cancels in
    every hazard (docs/model.md). None without a half-life."""
    if half_life_days is None:
        return None
    return np.exp2(-(snap.as_of - snap.spells.entered).astype(np.float64) / float(half_life_days))


def fit(snap: Snapshot, config: Config, groups: tuple[tuple[str, ...], ...] | None = None,
        window_days: int | None = None) -> PipelineModel:
    """Fit the pipeline model from a snapshot as of its date (``crm.snapshot``); returns the fitted model.

    ``config``: stages, won/lost, segment_by, the fit options and the business calendar. ``groups``: the
    segment combinations to fit (default: those in the data); a bootstrap resample passes the original's so
    that its tables line up with the original's cells. ``window_days``: the length of the forecast window
    the model is for (shared variation is measured over periods that long; default a quarter)."""
    if not isinstance(snap, Snapshot):
        raise ModelError("fit needs a snapshot cut at an as-of date (forecaster.crm.snapshot)")
    n_s = len(snap.stages)
    deal_group, found = group_index(snap, config.segment_by)
    if groups is None:
        groups = tuple(found)
    else:
        lookup = {g: i for i, g in enumerate(groups)}
        deal_group = np.array([lookup[g] for g in found], np.int32)[deal_group]
    opts = config.fit
    if opts.half_life_days == "auto":
        raise ModelError("fit.half_life_days: 'auto' is chosen by a forecast's inner backtest; fit a model with "
                         "a number of days or off")
    weight = recency_weights(snap, opts.half_life_days)
    stage, figures = fit_stage_tables(snap.spells, deal_group, len(groups), n_s, opts.min_bin_exits,
                                      opts.prior_strength, weight)
    arrivals, arrival_info = fit_arrivals(snap, deal_group, len(groups), opts.lookback_days, opts.prior_strength,
                                          config.calendar.fiscal_year_start, window_blocks(window_days))
    arrivals.check(stage)
    first_day = snap.observed_from if snap.observed_from is not None else int(snap.created.min())
    cells = deal_group[snap.spells.deal].astype(np.int64) * n_s + snap.spells.stage
    effects, effect_figures = fit_mix_effects(snap.spells, cells, stage, snap.as_of, first_day,
                                              config.calendar.fiscal_year_start, window_blocks(window_days))
    effects = effects.without(calendar=not opts.calendar_effects, frailty=not opts.shared_shocks)
    identity = config.fit_identity()
    meta = {
        "version": __version__,
        "config_sha256": config.sha256,
        "fit_config": identity,
        "fit_config_sha256": identity_sha256(identity),
        "data_fingerprint": snap.fingerprint,
        "warnings": snap.warning_counts(),
        "fit": {"lookback_days": opts.lookback_days, "min_bin_exits": opts.min_bin_exits,
                "prior_strength": opts.prior_strength, "stale_after_days": opts.stale_after_days,
                "half_life_days": opts.half_life_days, "calendar_effects": opts.calendar_effects,
                "shared_shocks": opts.shared_shocks,
                "tail_exit_probability_per_day": figures["tail_h"].tolist(),
                "tail_rate_per_day": figures["tail_h"].tolist()},  # the name before format 3: the same figure
        "segment_effects": {
            name: {"lost_log_odds_shift": float(figures["segment_lost_shift"][g]),
                   "time_scale": float(figures["segment_time_scale"][g])}
            for g, name in enumerate(group_names(config.segment_by, list(groups)))
        },
        "pipelines": {p.name: {"stages": list(p.model_stages), "won": p.won, "lost": p.lost}
                      for p in config.pipelines},
        "n_deals": snap.n_deals,
        "n_spells": int(len(snap.spells.deal)),
        "arrival_window": arrival_info,
        "observed_from": to_date(snap.observed_from).isoformat() if snap.observed_from is not None else None,
        "mix_effects": {"exit_rate_by_month_of_quarter": effects.exit_rate.tolist(),
                        "lost_shift_by_month_of_quarter": effects.lost_shift.tolist(),
                        "shared_shock_variance": effects.frailty_var,
                        "fiscal_year_start": effects.fiscal_year_start, **effect_figures},
    }
    return PipelineModel(
        stages=snap.stages, won=config.won, lost=config.lost, segment_by=tuple(config.segment_by),
        groups=tuple(tuple(g) for g in groups), as_of=int(snap.as_of), stage=stage, arrivals=arrivals,
        cell_spells=figures["cell_spells"], cell_exits=figures["cell_exits"], cell_weight=figures["cell_weight"],
        prior_strength=figures["prior_strength"], entered=figures["entered"], meta=meta, effects=effects,
    )


def model_groups(snap: Snapshot, model: PipelineModel) -> tuple[np.ndarray, list[tuple[str, ...]], np.ndarray]:
    """Per deal of ``snap`` the index of its segment combination in the model (-1: not in the model), plus
    the data's own combinations and each deal's index into them (for messages)."""
    deal_group, groups = group_index(snap, model.segment_by)
    lookup = {g: i for i, g in enumerate(model.groups)}
    remap = np.array([lookup.get(g, -1) for g in groups], np.int64)
    return remap[deal_group], groups, deal_group


def open_deal_cells(snap: Snapshot, model: PipelineModel) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """For the open deals of ``snap``: indices, cell, age in current stage (days), group.

    A deal whose segment the model has not seen is an error: refit on the same data."""
    mg, groups, deal_group = model_groups(snap, model)
    open_idx = snap.open_idx
    if (mg[open_idx] < 0).any():
        bad = groups[deal_group[open_idx[mg[open_idx] < 0][0]]]
        raise ModelError(f"segment {bad} is not in the model (fitted on other data); refit")
    cell = mg[open_idx] * model.n_stages + snap.stage_now[open_idx]
    age = snap.as_of - snap.entered_now[open_idx]
    return open_idx, cell.astype(np.int32), age.astype(np.int32), mg[open_idx].astype(np.int32)
