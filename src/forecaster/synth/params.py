"""The synthetic CRM's parameters: stages, products, exit shares, durations, arrivals, attributes, and
the dense tables the sampler uses (see synth.generator for the process)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

FORMAT_VERSION = 1
STAGES = ("prospecting", "qualification", "discovery", "demo", "proposal", "negotiation")
WON, LOST = "won", "lost"
DESTINATIONS = STAGES + (WON, LOST)
EXIT_KINDS = ("forward", "back", "won", "lost")
PRODUCTS = ("Core", "Pro", "Enterprise")
HORIZON_DAYS = 90

# Where a spell goes next, before the per-product shift of the lost share. Skips and one-stage-back
# moves are a few percent; won comes mostly from negotiation.
BASE_P_EXIT: dict[str, dict[str, float]] = {
    "prospecting": {"qualification": 0.66, "discovery": 0.08, "demo": 0.02, "lost": 0.24},
    "qualification": {"prospecting": 0.04, "discovery": 0.65, "demo": 0.07, "lost": 0.24},
    "discovery": {"qualification": 0.04, "demo": 0.66, "proposal": 0.06, "lost": 0.24},
    "demo": {"discovery": 0.05, "proposal": 0.63, "negotiation": 0.04, "won": 0.04, "lost": 0.24},
    "proposal": {"demo": 0.06, "negotiation": 0.60, "won": 0.09, "lost": 0.25},
    "negotiation": {"proposal": 0.05, "won": 0.65, "lost": 0.30},
}
# Median days of a forward move per stage at a product's days factor of 1.
STAGE_MEDIAN_DAYS = {
    "prospecting": 6.0, "qualification": 9.0, "discovery": 12.0,
    "demo": 10.0, "proposal": 14.0, "negotiation": 18.0,
}
# Per exit kind: median multiplier, lognormal sigma, probability that the spell stalls.
KIND_MEDIAN_FACTOR = {"forward": 1.0, "back": 1.4, "won": 1.0, "lost": 1.7}
KIND_SIGMA = {"forward": 0.7, "back": 0.8, "won": 0.65, "lost": 0.9}
KIND_STALL_PROB = {"forward": 0.02, "back": 0.04, "won": 0.01, "lost": 0.14}
STALL_MEDIAN_DAYS = 100.0  # times the product's days factor
STALL_SIGMA = 0.5


@dataclass(frozen=True)
class Product:
    share: float  # of arrivals
    lost_odds: float  # multiplies the odds of a lost exit at every stage
    days: float  # multiplies every duration median
    amount_median: float
    amount_sigma: float


PRODUCT_PARAMS = {
    "Core": Product(share=0.6, lost_odds=0.8, days=0.8, amount_median=12_000.0, amount_sigma=0.55),
    "Pro": Product(share=0.3, lost_odds=1.0, days=1.15, amount_median=45_000.0, amount_sigma=0.6),
    "Enterprise": Product(share=0.1, lost_odds=1.35, days=1.9, amount_median=220_000.0, amount_sigma=0.75),
}
ARRIVALS_PER_DAY = 9.5  # all products, at scale 1, averaged over weekdays and months
WEEKDAY_RAW = (1.2, 1.3, 1.3, 1.25, 1.0, 0.12, 0.08)  # Monday first
MONTH_OF_QUARTER_RAW = (0.9, 0.95, 1.25)
MONTH_GAMMA_SHAPE = 50.0
REGIONS = {"NA": 0.5, "EMEA": 0.3, "APAC": 0.2}
OWNERS = {
    "NA": ("Avery Brooks", "Jordan Price", "Maya Chen", "Luis Ortega", "Sam Whitfield"),
    "EMEA": ("Hannah Vogel", "Pierre Laurent", "Sofia Rossi", "Oliver Grant"),
    "APAC": ("Kenji Sato", "Priya Nair", "Liam Walsh"),
}
SOURCES = {"inbound": 0.45, "outbound": 0.35, "partner": 0.20}
ENTRY_STAGE = {
    "inbound": {"prospecting": 0.8, "qualification": 0.2},
    "outbound": {"prospecting": 1.0},
    "partner": {"prospecting": 0.7, "qualification": 0.3},
}


# ---------------------------------------------------------------------------------------------
# Parameter tables


@dataclass(frozen=True)
class Tables:
    """Dense parameter arrays. G products, S open stages, K = S + 2 destinations, 4 exit kinds."""

    p_exit: np.ndarray  # (G, S, K) float64
    cum_exit: np.ndarray  # (G, S, K) cumulative p_exit, last column exactly 1
    kind: np.ndarray  # (S, K) int64 exit kind of stage -> destination
    mu: np.ndarray  # (G, S, 4) log-days of the regular component
    sigma: np.ndarray  # (G, S, 4)
    stall_p: np.ndarray  # (G, S, 4)
    stall_mu: np.ndarray  # (G,)
    stall_sigma: float
    arrival_rate: np.ndarray  # (G,) per day at the requested scale
    weekday: np.ndarray  # (7,) mean 1
    month_of_quarter: np.ndarray  # (3,) mean 1
    amount_mu: np.ndarray  # (G,)
    amount_sigma: np.ndarray  # (G,)


def exit_kind(i: int, k: int) -> int:
    if k == len(STAGES):
        return 2
    if k == len(STAGES) + 1:
        return 3
    return 0 if k > i else 1


def tables(scale: float) -> Tables:
    n_g, n_s, n_k = len(PRODUCTS), len(STAGES), len(DESTINATIONS)
    p = np.zeros((n_g, n_s, n_k))
    mu = np.zeros((n_g, n_s, 4))
    sigma = np.zeros((n_g, n_s, 4))
    stall_p = np.zeros((n_g, n_s, 4))
    kind = np.array([[exit_kind(i, k) for k in range(n_k)] for i in range(n_s)], dtype=np.int64)
    for g, name in enumerate(PRODUCTS):
        prod = PRODUCT_PARAMS[name]
        for i, stage in enumerate(STAGES):
            base = BASE_P_EXIT[stage]
            lost = base["lost"] * prod.lost_odds / (base["lost"] * prod.lost_odds + 1.0 - base["lost"])
            for dest, share in base.items():
                k = DESTINATIONS.index(dest)
                p[g, i, k] = lost if dest == LOST else share * (1.0 - lost) / (1.0 - base["lost"])
            for j, kname in enumerate(EXIT_KINDS):
                median = STAGE_MEDIAN_DAYS[stage] * KIND_MEDIAN_FACTOR[kname] * prod.days
                mu[g, i, j] = math.log(median)
                sigma[g, i, j] = KIND_SIGMA[kname]
                stall_p[g, i, j] = KIND_STALL_PROB[kname]
    p /= p.sum(axis=2, keepdims=True)
    cum = np.cumsum(p, axis=2)
    cum[:, :, -1] = 1.0
    weekday = np.array(WEEKDAY_RAW) / np.mean(WEEKDAY_RAW)
    moq = np.array(MONTH_OF_QUARTER_RAW) / np.mean(MONTH_OF_QUARTER_RAW)
    prods = [PRODUCT_PARAMS[n] for n in PRODUCTS]
    return Tables(
        p_exit=p,
        cum_exit=cum,
        kind=kind,
        mu=mu,
        sigma=sigma,
        stall_p=stall_p,
        stall_mu=np.log([STALL_MEDIAN_DAYS * q.days for q in prods]),
        stall_sigma=STALL_SIGMA,
        arrival_rate=np.array([ARRIVALS_PER_DAY * q.share * scale for q in prods]),
        weekday=weekday,
        month_of_quarter=moq,
        amount_mu=np.log([q.amount_median for q in prods]),
        amount_sigma=np.array([q.amount_sigma for q in prods]),
    )


def absorption(p: np.ndarray) -> np.ndarray:
    """(S, 2) P(won), P(lost) from each open stage: B = (I - Q)^-1 R for one product's p_exit (S, K)."""
    n_s = len(STAGES)
    q, r = p[:, :n_s], p[:, n_s:]
    return np.linalg.solve(np.eye(n_s) - q, r)
