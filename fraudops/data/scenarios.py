"""Labelled fraud scenarios mixed into the synthetic traffic.

Each scenario draws one *incident* at a time (a burst of rows sharing a victim account, or for a
compromised merchant a burst sharing the merchant) until its row budget is spent. The signal each
one leaves lives in behaviour the feature pipeline sees: devices, countries and merchants new to
the account, bursts (velocity), unusual amounts, merchant spikes. Incidents number in the
thousands at most, so a Python loop over incidents is cheap; rows are built with numpy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from fraudops.data.population import (
    AMOUNT_MULT,
    RISKY_COUNTRIES,
    Population,
    Rows,
    concat_rows,
    far_country,
    make_rows,
    merchants_in,
    new_devices,
    take_rows,
)
from fraudops.features.encoding import CATEGORY_INDEX, CHANNEL_INDEX
from fraudops.schema import Channel, MerchantCategory

#: Fraud scenarios in the training data (order fixes the codes in `Rows["scenario"]`).
SCENARIOS = ("account_takeover", "card_testing", "mule_cash_out", "compromised_merchant",
             "impossible_travel", "stealth_terminal", "common_point_of_compromise")
#: Scenarios that only appear through drift (`new_fraud_pattern`), never in training data.
DRIFT_SCENARIOS = ("bust_out",)
ALL_SCENARIOS = SCENARIOS + DRIFT_SCENARIOS
DEFAULT_WEIGHTS = {"account_takeover": 0.25, "card_testing": 0.22, "mule_cash_out": 0.15,
                   "compromised_merchant": 0.2, "impossible_travel": 0.18,
                   "stealth_terminal": 0.15, "common_point_of_compromise": 0.15}
HOUR = 3600.0
MINUTE = 60.0

_HIGH_VALUE = [CATEGORY_INDEX[c] for c in (MerchantCategory.ELECTRONICS, MerchantCategory.JEWELRY,
                                MerchantCategory.DIGITAL_GOODS, MerchantCategory.RETAIL,
                                MerchantCategory.TRAVEL)]
_TESTING = [CATEGORY_INDEX[c] for c in (MerchantCategory.DIGITAL_GOODS, MerchantCategory.OTHER,
                             MerchantCategory.ENTERTAINMENT)]
_STORE = [CATEGORY_INDEX[c] for c in (MerchantCategory.ELECTRONICS, MerchantCategory.JEWELRY,
                           MerchantCategory.RETAIL, MerchantCategory.RESTAURANT)]


@dataclass
class Context:
    """What incidents draw from: the population and the legitimate rows (for anchors)."""

    population: Population
    legit: Rows
    online_pools: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    anchors: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    #: Incidents start no earlier than this (seconds into the span); drift uses it.
    earliest: float = 0.0
    store_pools: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    @classmethod
    def build(cls, population: Population, legit: Rows) -> Context:
        m = population.merchants
        online = m.channel == CHANNEL_INDEX[Channel.ONLINE]
        pools = {"high_value": m.pool(online & np.isin(m.category, _HIGH_VALUE)),
                 "testing": m.pool(online & np.isin(m.category, _TESTING)),
                 "transfer": m.pool(m.channel == CHANNEL_INDEX[Channel.TRANSFER])}
        home = population.accounts.home[legit["account"]]
        anchors = np.flatnonzero((legit["channel"] == CHANNEL_INDEX[Channel.CARD_PRESENT])
                                 & (legit["country"] == home)
                                 & (legit["ts"] < population.span_seconds - 3 * HOUR))
        return cls(population=population, legit=legit, online_pools=pools, anchors=anchors)

    def pick(self, rng: np.random.Generator, pool: str, n: int, spread: bool = False
             ) -> np.ndarray:
        """`n` merchants from a pool: by popularity, or `spread` over distinct ones uniformly."""
        idx, p = self.online_pools[pool]
        if spread:
            return rng.choice(idx, n, replace=n > len(idx))
        return idx[rng.choice(len(idx), n, p=p)]

    def incident_time(self, rng: np.random.Generator) -> float:
        """A start time leaving room for account history before and the burst after."""
        span = self.population.span_seconds
        low = max(self.earliest, min(2 * 86400.0, 0.1 * span))
        return float(rng.uniform(low, max(low, span - 3 * HOUR)))


def _burst(rng: np.random.Generator, t0: float, n: int, mean_gap: float) -> np.ndarray:
    return t0 + np.cumsum(rng.exponential(mean_gap, n))


def account_takeover(ctx: Context, rng: np.random.Generator) -> Rows:
    """A fraudster on a new device (often abroad) spends fast and big at online shops."""
    acc = ctx.population.accounts
    a = int(rng.integers(len(acc)))
    n = int(rng.integers(3, 9))
    country = rng.choice(RISKY_COUNTRIES) if rng.random() < 0.7 else acc.home[a]
    merchant = ctx.pick(rng, "high_value", n)
    amount = np.maximum(acc.spend[a] * rng.uniform(4, 14, n), rng.uniform(120, 600, n))
    channel = np.full(n, CHANNEL_INDEX[Channel.ONLINE])
    if rng.random() < 0.35:  # finish by wiring money out
        merchant[-1] = ctx.pick(rng, "transfer", 1)[0]
        channel[-1] = CHANNEL_INDEX[Channel.TRANSFER]
        amount[-1] = acc.spend[a] * rng.uniform(15, 40)
    return make_rows(np.full(n, a), ts=_burst(rng, ctx.incident_time(rng), n, 150.0),
                     amount=amount, merchant=merchant, channel=channel, country=country,
                     device=new_devices(rng, 1)[0])


def card_testing(ctx: Context, rng: np.random.Generator) -> Rows:
    """Many tiny charges at new online merchants check that stolen card details work."""
    acc = ctx.population.accounts
    a = int(rng.integers(len(acc)))
    n = int(rng.integers(6, 21))
    amount = np.where(rng.random(n) < 0.3, 1.0, rng.uniform(0.3, 3.0, n))
    merchant = ctx.pick(rng, "testing", n, spread=True)
    if rng.random() < 0.5:  # the card works: cash in with one real purchase
        amount[-1] = acc.spend[a] * rng.uniform(4, 10)
        merchant[-1] = ctx.pick(rng, "high_value", 1)[0]
    device = new_devices(rng, 1)[0] if rng.random() < 0.75 else acc.devices[a, 0]
    country = rng.choice(RISKY_COUNTRIES) if rng.random() < 0.6 else acc.home[a]
    return make_rows(np.full(n, a), ts=_burst(rng, ctx.incident_time(rng), n, 45.0),
                     amount=amount, merchant=merchant, channel=CHANNEL_INDEX[Channel.ONLINE],
                     country=country, device=device)


def mule_cash_out(ctx: Context, rng: np.random.Generator) -> Rows:
    """A large transfer, then cash-outs within the hour that drain what arrived."""
    acc = ctx.population.accounts
    a = int(rng.integers(len(acc)))
    k = int(rng.integers(1, 4))
    total = acc.spend[a] * rng.uniform(25, 90)
    drained = total * rng.uniform(0.92, 1.0) * rng.dirichlet(np.full(k, 3.0))
    t0 = ctx.incident_time(rng)
    cash_times = t0 + rng.uniform(3, 45) * MINUTE + np.cumsum(rng.exponential(8 * MINUTE, k))
    device = new_devices(rng, 1)[0] if rng.random() < 0.6 else acc.devices[a, 0]
    channel = np.r_[CHANNEL_INDEX[Channel.TRANSFER], np.full(k, CHANNEL_INDEX[Channel.CASH_OUT])]
    return make_rows(np.full(k + 1, a), ts=np.r_[t0, cash_times], amount=np.r_[total, drained],
                     merchant=ctx.pick(rng, "transfer", k + 1), channel=channel,
                     country=acc.home[a], device=device)


def compromised_merchant(ctx: Context, rng: np.random.Generator) -> Rows:
    """A breached merchant or terminal charges many accounts within a few hours."""
    acc, m = ctx.population.accounts, ctx.population.merchants
    country = acc.home[int(rng.integers(len(acc)))]
    locals_ = np.flatnonzero(acc.home == country)
    quiet = m.popularity < np.median(m.popularity)
    candidates = np.flatnonzero(quiet & (m.country == country)
                                & np.isin(m.channel, [CHANNEL_INDEX[Channel.CARD_PRESENT], CHANNEL_INDEX[Channel.ONLINE]]))
    if len(candidates) == 0 or len(locals_) < 5:
        return make_rows(np.zeros(0, np.int64))
    merchant = int(rng.choice(candidates))
    victims = rng.choice(locals_, min(len(locals_), int(rng.integers(12, 36))), replace=False)
    account = np.repeat(victims, np.where(rng.random(len(victims)) < 0.3, 2, 1))
    n = len(account)
    ts = ctx.incident_time(rng) + np.sort(rng.uniform(0, rng.uniform(0.5, 3.0) * HOUR, n))
    online = m.channel[merchant] == CHANNEL_INDEX[Channel.ONLINE]
    return make_rows(account, ts=ts, amount=acc.spend[account] * rng.uniform(2.5, 8, n),
                     merchant=merchant, channel=m.channel[merchant],
                     country=acc.home[account] if online else m.country[merchant],
                     device=acc.devices[account, 0] if online else 0)


def impossible_travel(ctx: Context, rng: np.random.Generator) -> Rows:
    """Card-present spend in a far country minutes after the card was used at home."""
    acc, m = ctx.population.accounts, ctx.population.merchants
    anchor = int(rng.choice(ctx.anchors))
    a = int(ctx.legit["account"][anchor])
    n = int(rng.integers(1, 5))
    country = far_country(rng, int(acc.home[a]))
    if country not in ctx.store_pools:
        ctx.store_pools[country] = merchants_in(m, country, CHANNEL_INDEX[Channel.CARD_PRESENT], _STORE)
    idx, p = ctx.store_pools[country]
    t1 = ctx.legit["ts"][anchor] + rng.uniform(10, 90) * MINUTE
    ts = t1 + np.r_[0.0, np.cumsum(rng.exponential(12 * MINUTE, n - 1))]
    return make_rows(np.full(n, a), ts=ts, amount=acc.spend[a] * rng.uniform(2, 8, n),
                     merchant=idx[rng.choice(len(idx), n, p=p)],
                     channel=CHANNEL_INDEX[Channel.CARD_PRESENT], country=country, device=0)


DAY = 86400.0


def stealth_terminal(ctx: Context, rng: np.random.Generator) -> Rows:
    """A compromised terminal or merchant whose fraud looks like its normal traffic (its own
    customers, their usual amounts, hours and channel) for days to weeks: only the confirmed
    fraud it has seen lately gives it away (the label-informed features)."""
    acc, m = ctx.population.accounts, ctx.population.merchants
    # a small shop's terminal (a skimmer, a breached POS): its fraud is a visible share of it
    quiet = m.popularity < np.median(m.popularity)
    shops = np.flatnonzero(quiet & np.isin(m.channel, [CHANNEL_INDEX[Channel.CARD_PRESENT],
                                                       CHANNEL_INDEX[Channel.ONLINE]]))
    merchant = int(rng.choice(shops))
    regulars = np.flatnonzero((acc.usual == merchant).any(axis=1))
    if len(regulars) < 3:
        return make_rows(np.zeros(0, np.int64))
    n = int(rng.integers(25, 80))
    days = rng.uniform(7, 28)
    t0 = min(ctx.incident_time(rng), max(0.0, ctx.population.span_seconds - days * DAY))
    account = rng.choice(regulars, n)
    day = np.floor(rng.uniform(0, days, n))
    hour = rng.normal(acc.peak_hour[account], acc.hour_spread[account]) % 24
    ts = np.sort(t0 + day * DAY + hour * HOUR)
    online = m.channel[merchant] == CHANNEL_INDEX[Channel.ONLINE]
    amount = (acc.spend[account] * AMOUNT_MULT[m.category[merchant]]
              * np.exp(rng.normal(0, 0.65, n)))
    return make_rows(account, ts=ts, amount=amount, merchant=merchant,
                     channel=m.channel[merchant],
                     country=acc.home[account] if online else m.country[merchant],
                     device=acc.devices[account, 0] if online else 0)


def common_point_of_compromise(ctx: Context, rng: np.random.Generator) -> Rows:
    """A breached merchant leaks the cards used there for a few days; days to two weeks later
    the cards are spent elsewhere (online, on a fraudster's device or the card's own details)."""
    legit, span = ctx.legit, ctx.population.span_seconds
    anchor = int(rng.choice(ctx.anchors))
    merchant, start = int(legit["merchant"][anchor]), float(legit["ts"][anchor])
    breach = (legit["merchant"] == merchant) & (legit["ts"] >= start) & (
        legit["ts"] < start + rng.uniform(1, 4) * DAY)
    visits = np.flatnonzero(breach)
    if len(visits) == 0:
        return make_rows(np.zeros(0, np.int64))
    victims, first = np.unique(legit["account"][visits], return_index=True)
    victims, seen = victims[:40], legit["ts"][visits][first][:40]
    k = rng.integers(1, 5, len(victims))
    account = np.repeat(victims, k)
    ts = np.repeat(seen + rng.uniform(2, 14, len(victims)) * DAY, k)
    ts = ts + rng.uniform(0, 48, len(account)) * HOUR  # a card is spent over a day or two
    acc = ctx.population.accounts
    keep = ts < span
    own = rng.random(len(victims)) < 0.5
    device = np.where(np.repeat(own, k), acc.devices[account, 0],
                      np.repeat(new_devices(rng, len(victims)), k))
    rows = make_rows(account, ts=ts, amount=acc.spend[account] * rng.uniform(2, 6, len(account)),
                     merchant=ctx.pick(rng, "high_value", len(account)),
                     channel=CHANNEL_INDEX[Channel.ONLINE], country=acc.home[account], device=device)
    return take_rows(rows, np.flatnonzero(keep))


INCIDENTS: dict[str, Callable[[Context, np.random.Generator], Rows]] = {
    "account_takeover": account_takeover,
    "card_testing": card_testing,
    "mule_cash_out": mule_cash_out,
    "compromised_merchant": compromised_merchant,
    "impossible_travel": impossible_travel,
    "stealth_terminal": stealth_terminal,
    "common_point_of_compromise": common_point_of_compromise,
}


Incident = Callable[[Context, np.random.Generator], Rows]


def scenario_rows(name: str, ctx: Context, rng: np.random.Generator, budget: int,
                  incident: Incident | None = None) -> Rows:
    """Incidents of scenario `name` until exactly `budget` rows exist (the last one truncated).

    `incident` draws one incident; by default the training scenario of that name.
    """
    rows = _incident_rows(incident or INCIDENTS[name], ctx, rng, budget)
    rows["label"][:] = 1
    rows["scenario"][:] = ALL_SCENARIOS.index(name)
    return rows


def _incident_rows(incident: Incident, ctx: Context, rng: np.random.Generator,
                   budget: int) -> Rows:
    parts, total, misses = [], 0, 0
    while total < budget and misses < 50:
        rows = incident(ctx, rng)
        misses += len(rows["account"]) == 0
        parts.append(rows)
        total += len(rows["account"])
    rows = concat_rows(parts)
    rows = take_rows(rows, np.arange(min(budget, len(rows["account"]))))
    rows["amount"] = np.round(np.maximum(rows["amount"], 0.01), 2)
    return rows


def shopping_spree(ctx: Context, rng: np.random.Generator) -> Rows:
    """Legitimate: a burst of bigger purchases at new shops (sales day), on the own phone."""
    acc = ctx.population.accounts
    a = int(rng.integers(len(acc)))
    n = int(rng.integers(3, 8))
    return make_rows(np.full(n, a), ts=_burst(rng, ctx.incident_time(rng), n, 900.0),
                     amount=acc.spend[a] * rng.uniform(1.5, 6, n),
                     merchant=ctx.pick(rng, "high_value", n), channel=CHANNEL_INDEX[Channel.ONLINE],
                     country=acc.home[a], device=acc.devices[a, 0])


def new_phone(ctx: Context, rng: np.random.Generator) -> Rows:
    """Legitimate: first purchases from a new phone or laptop, some at new shops."""
    acc = ctx.population.accounts
    a = int(rng.integers(len(acc)))
    n = int(rng.integers(1, 4))
    return make_rows(np.full(n, a), ts=_burst(rng, ctx.incident_time(rng), n, 1800.0),
                     amount=acc.spend[a] * np.exp(rng.normal(0.5, 0.7, n)),
                     merchant=ctx.pick(rng, "high_value", n), channel=CHANNEL_INDEX[Channel.ONLINE],
                     country=acc.home[a], device=new_devices(rng, 1)[0])


def micro_purchases(ctx: Context, rng: np.random.Generator) -> Rows:
    """Legitimate: several tiny in-app purchases at one digital shop within the hour."""
    acc = ctx.population.accounts
    a = int(rng.integers(len(acc)))
    n = int(rng.integers(3, 9))
    return make_rows(np.full(n, a), ts=_burst(rng, ctx.incident_time(rng), n, 300.0),
                     amount=rng.choice([0.99, 1.99, 2.99, 4.99], n),
                     merchant=ctx.pick(rng, "testing", 1)[0], channel=CHANNEL_INDEX[Channel.ONLINE],
                     country=acc.home[a], device=acc.devices[a, 0])


#: Legitimate behaviour that looks a bit like fraud, so no single signal separates the classes.
LOOKALIKES = (shopping_spree, new_phone, micro_purchases)


def lookalike_rows(ctx: Context, rng: np.random.Generator, total: int) -> Rows:
    """`total` legitimate rows from fraud-like but innocent episodes (label 0)."""
    budgets = np.full(len(LOOKALIKES), total // len(LOOKALIKES))
    budgets[: total - budgets.sum()] += 1
    return concat_rows([_incident_rows(f, ctx, rng, int(b)) for f, b in zip(LOOKALIKES, budgets)])


def fraud_rows(ctx: Context, rng: np.random.Generator, total: int,
               weights: dict[str, float]) -> Rows:
    """`total` fraud rows split over the scenarios in proportion to `weights`."""
    names = [n for n in SCENARIOS if weights.get(n, 0) > 0]
    share = np.array([weights[n] for n in names]) / sum(weights[n] for n in names)
    budgets = np.floor(share * total).astype(int)
    budgets[: total - budgets.sum()] += 1
    # A scenario may find no incident to stage in a small population (no small shop, no
    # victims): its shortfall passes to the next ones, so the data set has exactly its rows.
    parts, missing = [], 0
    # The planned budgets first, then one more round that only makes up a shortfall.
    plan = [*zip(names, budgets.tolist()), *((name, 0) for name in names)]
    for name, budget in plan:
        if budget + missing <= 0:
            continue
        parts.append(scenario_rows(name, ctx, rng, budget + missing))
        missing = budget + missing - len(parts[-1]["account"])
    return concat_rows(parts)
