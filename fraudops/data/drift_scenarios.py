"""Named drift scenarios for the monitoring loop, switched on from a point in time.

Each drift rewrites only rows at or after the drift point, drawing from its own random stream,
so a drifted data set and an undrifted one with the same seed agree on every earlier row:

- ``none``: nothing changes.
- ``new_fraud_pattern``: a modus operandi absent from training appears (``bust_out``: a trusted
  account, on its own device and at its usual shops, suddenly maxes out), on top of the usual
  fraud; it replaces an equal number of legitimate rows so the row count stays as asked.
- ``spending_shift``: legitimate amounts rise (~1.6x) and a third of in-store spend moves online.
- ``merchant_mix``: new merchants open with a different category mix (digital goods,
  entertainment, travel, electronics) and take ~45% of legitimate purchases.
- ``bust_out_wave``: both at once, a data drift and a concept drift: legitimate spending shifts
  (as ``spending_shift``) while a wave of bust-out fraud doubles the fraud rate (the pattern of
  ``new_fraud_pattern``, adding the whole configured rate). The drift job sees the shift in the
  data; a champion trained before the wave misses most of it, a model retrained on the new
  regime does not.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from fraudops.data.population import (
    AMOUNT_MULT,
    COUNTRIES,
    COUNTRY_SHARE,
    Merchants,
    Population,
    Rows,
    concat_rows,
    make_rows,
    take_rows,
)
from fraudops.data.scenarios import Context, scenario_rows
from fraudops.features.encoding import CATEGORY_INDEX, CHANNEL_INDEX
from fraudops.schema import Channel, MerchantCategory

DRIFTS = ("none", "new_fraud_pattern", "spending_shift", "merchant_mix", "bust_out_wave")
#: Share of the configured fraud rate that the new pattern adds after the drift point.
NEW_PATTERN_SHARE = 0.6
#: ... and what the `bust_out_wave` adds.
WAVE_SHARE = 1.0
SPEND_FACTOR = 1.6
ONLINE_SHIFT = 0.35
NEW_MERCHANT_SHARE = 0.45
NEW_FAVOURITES = 4
#: Category mix of merchants opening after a `merchant_mix` drift.
NEW_CATEGORY_MIX = {MerchantCategory.DIGITAL_GOODS: 0.3, MerchantCategory.ENTERTAINMENT: 0.25,
                    MerchantCategory.TRAVEL: 0.15, MerchantCategory.ELECTRONICS: 0.2,
                    MerchantCategory.RESTAURANT: 0.1}

DriftFn = Callable[[np.random.Generator, Population, Rows, float, float], tuple[Rows, Population]]


def apply_drift(name: str, rng: np.random.Generator, pop: Population, rows: Rows,
                start: float, fraud_rate: float) -> tuple[Rows, Population]:
    """Apply drift `name` to rows at or after `start` (seconds into the span)."""
    if name not in _DRIFT_FUNCS:
        raise ValueError(f"unknown drift {name!r}; choose one of {', '.join(DRIFTS)}")
    return _DRIFT_FUNCS[name](rng, pop, rows, start, fraud_rate)


def _post_legit(rows: Rows, start: float) -> np.ndarray:
    return (rows["ts"] >= start) & (rows["label"] == 0)


def _no_drift(rng, pop, rows, start, fraud_rate):
    return rows, pop


def bust_out(ctx: Context, rng: np.random.Generator) -> Rows:
    """A long-trusted account maxes out at its usual shops, on its own device, within hours."""
    acc, m = ctx.population.accounts, ctx.population.merchants
    a = int(rng.integers(len(acc)))
    n = int(rng.integers(4, 11))
    merchant = acc.usual[a, rng.integers(0, acc.usual.shape[1], n)]
    channel = m.channel[merchant]
    present = channel == CHANNEL_INDEX[Channel.CARD_PRESENT]
    t0 = ctx.incident_time(rng)
    return make_rows(np.full(n, a), ts=t0 + np.cumsum(rng.exponential(1200.0, n)),
                     amount=acc.spend[a] * rng.uniform(6, 18, n), merchant=merchant,
                     channel=channel, country=np.where(present, m.country[merchant], acc.home[a]),
                     device=np.where(present, 0, acc.devices[a, 0]))


DRIFT_INCIDENTS = {"bust_out": bust_out}


def _new_fraud_pattern(rng, pop, rows, start, fraud_rate, share=NEW_PATTERN_SHARE):
    candidates = np.flatnonzero(_post_legit(rows, start))
    budget = min(len(candidates), round(len(candidates) * fraud_rate * share))
    if budget == 0:
        return rows, pop
    earliest = min(start, pop.span_seconds - 4 * 3600.0)
    ctx = Context(population=pop, legit=rows, earliest=earliest)
    fraud = scenario_rows("bust_out", ctx, rng, budget, incident=bust_out)
    keep = np.ones(len(rows["ts"]), dtype=bool)
    keep[rng.choice(candidates, budget, replace=False)] = False
    return concat_rows([take_rows(rows, np.flatnonzero(keep)), fraud]), pop


def _spending_shift(rng, pop, rows, start, fraud_rate):
    rows = {k: v.copy() for k, v in rows.items()}
    after = np.flatnonzero(_post_legit(rows, start))
    rows["amount"][after] = np.round(
        rows["amount"][after] * np.exp(rng.normal(np.log(SPEND_FACTOR), 0.15, len(after))), 2)
    in_store = after[rows["channel"][after] == CHANNEL_INDEX[Channel.CARD_PRESENT]]
    moved = in_store[rng.random(len(in_store)) < ONLINE_SHIFT]
    m = pop.merchants
    idx, p = m.pool(m.channel == CHANNEL_INDEX[Channel.ONLINE])
    rows["merchant"][moved] = idx[rng.choice(len(idx), len(moved), p=p)]
    _go_online(pop, rows, moved)
    return rows, pop


def _bust_out_wave(rng, pop, rows, start, fraud_rate):
    rows, pop = _spending_shift(rng, pop, rows, start, fraud_rate)
    return _new_fraud_pattern(rng, pop, rows, start, fraud_rate, WAVE_SHARE)


def _go_online(pop: Population, rows: Rows, moved: np.ndarray) -> None:
    """Rows in `moved` become online purchases from the account's home, on its own phone."""
    acc = pop.accounts
    account = rows["account"][moved]
    rows["channel"][moved] = CHANNEL_INDEX[Channel.ONLINE]
    rows["country"][moved] = acc.home[account]
    switched = (rows["ts"][moved] >= acc.device_switch[account]).astype(np.int64)
    rows["device"][moved] = acc.devices[account, switched]


def _merchant_mix(rng, pop, rows, start, fraud_rate):
    rows = {k: v.copy() for k, v in rows.items()}
    pop, first_new = _open_merchants(rng, pop)
    favourites = _new_favourites(rng, pop, first_new)
    m = pop.merchants
    shops = m.channel[rows["merchant"]] <= CHANNEL_INDEX[Channel.ONLINE]
    after = np.flatnonzero(_post_legit(rows, start) & shops)
    moved = after[rng.random(len(after)) < NEW_MERCHANT_SHARE]
    old = rows["merchant"][moved]
    new = favourites[rows["account"][moved], rng.integers(0, NEW_FAVOURITES, len(moved))]
    rows["merchant"][moved] = new
    ratio = AMOUNT_MULT[m.category[new]] / AMOUNT_MULT[m.category[old]]
    rows["amount"][moved] = np.round(np.maximum(rows["amount"][moved] * ratio, 0.25), 2)
    online = m.channel[new] == CHANNEL_INDEX[Channel.ONLINE]
    _go_online(pop, rows, moved[online])
    in_store = moved[~online]
    rows["channel"][in_store] = CHANNEL_INDEX[Channel.CARD_PRESENT]
    rows["country"][in_store] = m.country[new[~online]]
    rows["device"][in_store] = 0
    return rows, pop


def _open_merchants(rng: np.random.Generator, pop: Population) -> tuple[Population, int]:
    """Append new merchants (ids after the existing ones) with the drifted category mix."""
    m = pop.merchants
    n = max(30, int(0.3 * len(m)))
    cats = np.array([CATEGORY_INDEX[c] for c in NEW_CATEGORY_MIX])
    share = np.array(list(NEW_CATEGORY_MIX.values()))
    channel = np.where(rng.random(n) < 0.7, CHANNEL_INDEX[Channel.ONLINE], CHANNEL_INDEX[Channel.CARD_PRESENT])
    # At least one in-store shop per country, so every account has a local new favourite.
    country = rng.choice(len(COUNTRIES), n, p=COUNTRY_SHARE)
    country[: len(COUNTRIES)] = np.arange(len(COUNTRIES))
    merchants = Merchants(
        category=np.concatenate([m.category, cats[rng.choice(len(cats), n, p=share)]]),
        channel=np.concatenate([m.channel, channel.astype(m.channel.dtype)]),
        country=np.concatenate([m.country, country.astype(m.country.dtype)]),
        popularity=np.concatenate([m.popularity, rng.lognormal(0.0, 1.0, n)]),
    )
    return dataclasses.replace(pop, merchants=merchants), len(m)


def _new_favourites(rng: np.random.Generator, pop: Population, first_new: int) -> np.ndarray:
    acc, m = pop.accounts, pop.merchants
    is_new = np.arange(len(m)) >= first_new
    favourites = np.empty((len(acc), NEW_FAVOURITES), dtype=np.int64)
    for country in np.unique(acc.home):
        who = np.flatnonzero(acc.home == country)
        idx, p = m.pool(is_new & ((m.country == country) | (m.channel == CHANNEL_INDEX[Channel.ONLINE])))
        favourites[who] = idx[rng.choice(len(idx), (len(who), NEW_FAVOURITES), p=p)]
    return favourites


_DRIFT_FUNCS: dict[str, DriftFn] = {
    "none": _no_drift,
    "new_fraud_pattern": _new_fraud_pattern,
    "spending_shift": _spending_shift,
    "merchant_mix": _merchant_mix,
    "bust_out_wave": _bust_out_wave,
}
