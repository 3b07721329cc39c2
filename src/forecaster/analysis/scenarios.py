"""Scenarios: the four pipeline levers, campaigns, hygiene and slices, parsed and resolved.

A scenario in YAML (``scenarios:`` list) has ``name``, optional ``description`` and ``base`` (a scenario
whose changes it inherits), and any of the levers below. ``parse_scenarios`` validates the shapes and
the stage names against the config; ``Scenario.check`` validates segment values and dates against the
model and window. Levers never change kernel code, only its input tables (``levers.py``).

| lever | YAML | meaning |
|---|---|---|
| more deals | ``new_deals: {rate: 1.2}`` or ``{rate: {Enterprise: 1.5}}`` | arrival rate x (a segment value, of any segment column) |
| bigger deals | ``amount: {multiplier: 1.1, applies_to: new, open or all}`` | amounts x |
| conversion | ``conversion: {Proposal: 1.15}`` or ``{all: 1.05}`` | odds of leaving forward (later stage or won) vs lost x |
| cycle | ``duration: {multiplier: 0.85}`` or ``{multiplier: {Proposal: 0.8}}`` | time in stage x |
| campaign | ``campaign: [{date, deals, stage, segment, amount}]`` (or ``spread: {start, end}``) | extra deals |
| hygiene | ``prune_stale: {older_than_days: 180}`` or ``{beyond: p90}`` | old open deals lost now |
| slice | ``filter: {segment: {region: EMEA}}`` | forecast only that slice |

A ``sweep: {LEVER: {...: [v1, v2, ...]}}`` puts a list where one lever's number goes; the scenario
then stands for one row per value, named ``<name> x<value>``, each with the scenario's other levers
(and its base's) and carrying ``Scenario.sweep = {"scenario", "lever", "value"}``.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Mapping

from forecaster.calendar import as_date
from forecaster.config import Config
from forecaster.errors import ConfigError, Problems, suggest

LEVERS = ("new_deals", "amount", "conversion", "duration", "campaign", "prune_stale", "filter")
SCENARIO_KEYS = ("name", "description", "base", "sweep") + LEVERS
APPLIES_TO = ("new", "open", "all")


@dataclass(frozen=True)
class Campaign:
    """``deals`` extra deals entering ``stage`` on ``start`` (or spread evenly over [start, end])."""

    deals: int
    stage: str
    start: dt.date
    end: dt.date
    segment: Mapping[str, str] = field(default_factory=dict)
    amount_median: float | None = None  # None: bootstrap from the segment's recent deals ("from_history")


@dataclass(frozen=True)
class Scenario:
    name: str
    description: str = ""
    rate: float = 1.0
    rate_by_segment: Mapping[str, float] = field(default_factory=dict)
    amount_multiplier: float = 1.0
    amount_applies_to: str = "all"
    conversion: Mapping[str, float] = field(default_factory=dict)  # stage or "all" -> odds multiplier
    duration: Mapping[str, float] = field(default_factory=dict)  # stage or "all" -> time multiplier
    campaigns: tuple[Campaign, ...] = ()
    prune_older_than_days: int | None = None
    prune_beyond_p90: bool = False
    filter_segment: Mapping[str, str] = field(default_factory=dict)
    sweep: Mapping[str, Any] | None = None  # {"scenario", "lever" (key path), "value"} of a sweep row

    def check(self, segments: Mapping[str, set[str]], start: dt.date, end: dt.date) -> None:
        """Segment values and campaign dates against the model's segments and the forecast window."""
        p = Problems(ConfigError)
        key = f"scenario '{self.name}'"
        all_values = {v for vals in segments.values() for v in vals}
        for value in self.rate_by_segment:
            if value not in all_values:
                p.add(f"{key}: new_deals.rate: unknown segment value '{value}'{suggest(value, sorted(all_values))}")
        for what, seg in [("filter.segment", self.filter_segment)] + [
                (f"campaign[{i}].segment", c.segment) for i, c in enumerate(self.campaigns)]:
            for col, value in seg.items():
                if col not in segments:
                    known = ", ".join(segments) or "none (no segment_by in the config)"
                    p.add(f"{key}: {what}: '{col}' is not a segment column; segment_by: {known}")
                elif value not in segments[col]:
                    p.add(f"{key}: {what}: unknown {col} '{value}'{suggest(value, sorted(segments[col]))}")
        for i, c in enumerate(self.campaigns):
            if c.start < start or c.end > end:
                p.add(f"{key}: campaign[{i}]: dates {c.start} .. {c.end} are outside the forecast window {start} .. {end}")
        p.raise_if_any()


# ---------------------------------------------------------------------------------------------
# Parsing


class _Parser:
    def __init__(self, problems: Problems, stages: tuple[str, ...], name: str, index: int):
        self.p = problems
        self.stages = stages
        self.key = f"scenarios[{index}]" + (f" ('{name}')" if name else "")

    def err(self, where: str, msg: str) -> None:
        self.p.add(f"config key '{self.key}.{where}': {msg}")

    def mapping(self, value: Any, where: str, allowed: tuple[str, ...] | None = None) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            self.err(where, f"expected a mapping, got {value!r}")
            return {}
        if allowed is not None:
            for k in value:
                if k not in allowed:
                    self.err(f"{where}.{k}", f"unknown key{suggest(str(k), allowed)}")
        return dict(value)

    def multiplier(self, value: Any, where: str) -> float | None:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.err(where, f"expected a number, got {value!r}")
            return None
        if not value > 0:
            self.err(where, f"a multiplier must be > 0, got {value}")
            return None
        return float(value)

    def per_stage(self, value: Any, where: str) -> dict[str, float]:
        """A multiplier for all stages, or a mapping stage (or 'all') -> multiplier."""
        if not isinstance(value, Mapping):
            m = self.multiplier(value, where)
            return {"all": m} if m is not None else {}
        out = {}
        for stage, v in value.items():
            stage = str(stage)
            if stage != "all" and stage not in self.stages:
                self.err(f"{where}.{stage}", f"unknown stage{suggest(stage, list(self.stages) + ['all'])}; "
                                             f"stages: {', '.join(self.stages)}")
                continue
            m = self.multiplier(v, f"{where}.{stage}")
            if m is not None:
                out[stage] = m
        return out

    def date(self, value: Any, where: str) -> dt.date | None:
        d = as_date(value)
        if d is None:
            self.err(where, f"expected a date YYYY-MM-DD, got {value!r}")
        return d

    def segment(self, value: Any, where: str) -> dict[str, str]:
        return {str(k): str(v) for k, v in self.mapping(value, where).items()}


def _parse_one(raw: Mapping[str, Any], stages: tuple[str, ...], problems: Problems, index: int,
               label: str | None = None) -> dict[str, Any]:
    """The levers one scenario sets itself (not inherited), as Scenario field values; problems name
    ``label`` (a sweep row: its scenario's name), default the scenario's name."""
    name = str(raw.get("name", "")) if label is None else label
    ps = _Parser(problems, stages, name, index)
    out: dict[str, Any] = {}
    for k in raw:
        if k not in SCENARIO_KEYS:
            ps.err(str(k), f"unknown lever{suggest(str(k), SCENARIO_KEYS)}; levers: {', '.join(LEVERS)}")
    if "description" in raw:
        out["description"] = str(raw["description"])
    if "new_deals" in raw:
        nd = ps.mapping(raw["new_deals"], "new_deals", ("rate",))
        rate = nd.get("rate")
        if isinstance(rate, Mapping):
            out["rate_by_segment"] = {str(k): m for k, v in rate.items()
                                      if (m := ps.multiplier(v, f"new_deals.rate.{k}")) is not None}
        elif rate is not None:
            if (m := ps.multiplier(rate, "new_deals.rate")) is not None:
                out["rate"] = m
        else:
            ps.err("new_deals", "needs 'rate': a multiplier or a mapping segment value -> multiplier")
    if "amount" in raw:
        am = ps.mapping(raw["amount"], "amount", ("multiplier", "applies_to"))
        if "multiplier" not in am:
            ps.err("amount", "needs 'multiplier'")
        elif (m := ps.multiplier(am["multiplier"], "amount.multiplier")) is not None:
            out["amount_multiplier"] = m
        applies = am.get("applies_to", "all")
        if applies not in APPLIES_TO:
            ps.err("amount.applies_to", f"'{applies}' is not one of new, open, all")
        else:
            out["amount_applies_to"] = applies
    if "conversion" in raw:
        if isinstance(raw["conversion"], Mapping):
            out["conversion"] = ps.per_stage(raw["conversion"], "conversion")
        else:
            ps.err("conversion", f"expected a mapping stage (or all) -> multiplier, got {raw['conversion']!r}")
    if "duration" in raw:
        du = ps.mapping(raw["duration"], "duration", ("multiplier",))
        if "multiplier" not in du:
            ps.err("duration", "needs 'multiplier': a number or a mapping stage -> number")
        else:
            out["duration"] = ps.per_stage(du["multiplier"], "duration.multiplier")
    if "campaign" in raw:
        items = raw["campaign"] if isinstance(raw["campaign"], list) else [raw["campaign"]]
        campaigns = []
        for i, item in enumerate(items):
            where = f"campaign[{i}]"
            c = ps.mapping(item, where, ("date", "spread", "deals", "stage", "segment", "amount"))
            if not c:
                continue
            deals = c.get("deals")
            if isinstance(deals, bool) or not isinstance(deals, int) or deals < 1:
                ps.err(f"{where}.deals", f"expected a whole number of deals >= 1, got {deals!r}")
                continue
            stage = c.get("stage", stages[0])
            if stage not in stages:
                ps.err(f"{where}.stage", f"unknown stage '{stage}'{suggest(str(stage), stages)}")
                continue
            if ("date" in c) == ("spread" in c):
                ps.err(where, "needs either 'date' or 'spread: {start, end}'")
                continue
            if "date" in c:
                start = end = ps.date(c["date"], f"{where}.date")
            else:
                spread = ps.mapping(c["spread"], f"{where}.spread", ("start", "end"))
                start, end = ps.date(spread.get("start"), f"{where}.spread.start"), ps.date(spread.get("end"), f"{where}.spread.end")
                if start and end and end < start:
                    ps.err(f"{where}.spread", f"end {end} is before start {start}")
                    continue
            if start is None or end is None:
                continue
            amount = c.get("amount", "from_history")
            median = None
            if amount != "from_history":
                am = ps.mapping(amount, f"{where}.amount", ("median",))
                median = ps.multiplier(am.get("median"), f"{where}.amount.median") if "median" in am else None
                if median is None:
                    ps.err(f"{where}.amount", "expected {median: NUMBER} or from_history")
                    continue
            campaigns.append(Campaign(deals, str(stage), start, end, ps.segment(c.get("segment", {}), f"{where}.segment"),
                                      median))
        out["campaigns"] = tuple(campaigns)
    if "prune_stale" in raw:
        pr = ps.mapping(raw["prune_stale"], "prune_stale", ("older_than_days", "beyond"))
        if ("older_than_days" in pr) == ("beyond" in pr):
            ps.err("prune_stale", "needs either 'older_than_days: N' or 'beyond: p90'")
        elif "older_than_days" in pr:
            n = pr["older_than_days"]
            if isinstance(n, bool) or not isinstance(n, int) or n < 1:
                ps.err("prune_stale.older_than_days", f"expected a whole number of days >= 1, got {n!r}")
            else:
                out["prune_older_than_days"] = n
        elif pr["beyond"] != "p90":
            ps.err("prune_stale.beyond", f"only 'p90' is supported, got {pr['beyond']!r}")
        else:
            out["prune_beyond_p90"] = True
    if "filter" in raw:
        fl = ps.mapping(raw["filter"], "filter", ("segment",))
        if "segment" in fl:
            out["filter_segment"] = ps.segment(fl["segment"], "filter.segment")
    return out


def _sweep_leaf(spec: Any, path: tuple[str, ...]) -> list[tuple[tuple[str, ...], Any]]:
    """Every list of scalars inside ``spec`` (mappings walked; a campaign may be a one-item list),
    with its key path."""
    if isinstance(spec, Mapping):
        return [hit for k, v in spec.items() for hit in _sweep_leaf(v, path + (str(k),))]
    if isinstance(spec, list):
        if len(spec) == 1 and isinstance(spec[0], Mapping):
            return _sweep_leaf(spec[0], path)
        return [(path, spec)]
    return []


def _with_value(spec: Any, path: tuple[str, ...], value: Any) -> Any:
    """``spec`` with the list at ``path`` replaced by ``value``."""
    if not path:
        return value
    if isinstance(spec, list):
        return [_with_value(spec[0], path, value)]
    return {**spec, path[0]: _with_value(spec[path[0]], path[1:], value)}


def _merge_lever(own: Any, swept: Any) -> Any:
    """The scenario's own setting of a lever with the swept one over it, key by key."""
    if isinstance(own, Mapping) and isinstance(swept, Mapping):
        return {**own, **{k: _merge_lever(own.get(k), v) for k, v in swept.items()}}
    return swept


def expand_sweep(raw: Mapping[str, Any], index: int, problems: Problems) -> list[tuple[dict[str, Any], Any]]:
    """A scenario with ``sweep:`` -> one raw scenario per value (its name ``<name> x<value>``) with the
    sweep's metadata; a scenario without: itself. Problems name the sweep's key."""
    name = str(raw.get("name", ""))
    if "sweep" not in raw:
        return [(dict(raw), None)]
    key = f"config key 'scenarios[{index}] ('{name}').sweep"
    sweep = raw["sweep"]
    if not isinstance(sweep, Mapping) or len(sweep) != 1:
        problems.add(f"{key}': expected one lever with a list of values, e.g. {{conversion: {{proposal: [0.9, 1.1]}}}}")
        return []
    lever, spec = next(iter(sweep.items()))
    if lever not in LEVERS:
        problems.add(f"{key}.{lever}': unknown lever{suggest(str(lever), LEVERS)}; levers: {', '.join(LEVERS)}")
        return []
    leaves = _sweep_leaf(spec, ())
    if len(leaves) != 1:
        problems.add(f"{key}.{lever}': expected exactly one list of values, found {len(leaves)}")
        return []
    path, values = leaves[0]
    where = ".".join((str(lever),) + path)
    if not values or any(isinstance(v, bool) or not isinstance(v, (int, float)) for v in values):
        problems.add(f"{key}.{where}': expected a list of numbers, got {values!r}")
        return []
    if len(set(values)) != len(values):
        problems.add(f"{key}.{where}': values repeat: {values!r}")
        return []
    out = []
    for value in values:
        swept = _with_value(spec, path, value)
        row = {k: v for k, v in raw.items() if k != "sweep"}
        if lever == "campaign":  # campaigns add up: the swept one joins the scenario's own
            own = raw.get("campaign", [])
            row["campaign"] = (own if isinstance(own, list) else [own]) + (swept if isinstance(swept, list) else [swept])
        else:
            row[lever] = _merge_lever(raw.get(lever), swept)
        row["name"] = f"{name} x{value}"
        out.append((row, {"scenario": name, "lever": where, "value": value}))
    return out


def _merge(base: dict[str, Any], own: dict[str, Any]) -> dict[str, Any]:
    """A child's levers over its base's: mappings merge key by key, campaigns add up, the rest override."""
    out = dict(base)
    for k, v in own.items():
        if k in ("rate_by_segment", "conversion", "duration", "filter_segment") and k in out:
            out[k] = {**out[k], **v}
        elif k == "campaigns" and k in out:
            out[k] = tuple(out[k]) + tuple(v)
        else:
            out[k] = v
    out.pop("description", None)
    return out


def parse_scenarios(config: Config) -> list[Scenario]:
    """Validate ``config.scenarios``, expand sweeps and resolve inheritance; raise one ConfigError listing
    every problem."""
    problems = Problems(ConfigError)
    entries = [(i, row, meta) for i, r in enumerate(config.scenarios) for row, meta in expand_sweep(r, i, problems)]
    own = [_parse_one(row, config.stages, problems, i, meta and meta["scenario"]) for i, row, meta in entries]
    by_name: dict[str, int] = {}
    for j, (i, row, _) in enumerate(entries):
        if str(row.get("name")) in by_name:
            problems.add(f"config key 'scenarios[{i}].sweep': the row '{row['name']}' has the name of another scenario")
        by_name[str(row.get("name"))] = j
    swept = {str(r.get("name")) for r in config.scenarios if "sweep" in r}
    resolved: dict[int, dict[str, Any]] = {}

    def resolve(j: int, chain: tuple[str, ...]) -> dict[str, Any]:
        if j in resolved:
            return resolved[j]
        i, row, _ = entries[j]
        name = str(row.get("name"))
        base = row.get("base")
        levers: dict[str, Any] = {}
        if base is not None:
            if base in swept:
                problems.add(f"config key 'scenarios[{i}].base': '{base}' is a sweep (one row per value), not a base")
            elif base not in by_name:
                problems.add(f"config key 'scenarios[{i}].base': no scenario named '{base}'{suggest(str(base), list(by_name))}")
            elif base in chain:
                problems.add(f"config key 'scenarios[{i}].base': '{base}' inherits from '{name}' (a cycle)")
            else:
                levers = resolve(by_name[base], chain + (name,))
        resolved[j] = _merge(levers, own[j])
        return resolved[j]

    out = []
    for j, (_, row, meta) in enumerate(entries):
        fields = resolve(j, ())
        desc = str(row.get("description", ""))
        out.append(Scenario(name=str(row.get("name")), description=desc, sweep=meta, **fields))
    problems.raise_if_any()
    return out


__all__ = ["Campaign", "Scenario", "parse_scenarios", "LEVERS"]
