"""Synthetic transaction data: accounts with habits, seasonality, labelled fraud, optional drift.

`generate(GeneratorConfig(...))` returns a normalized, time-sorted frame in the layout of
`fraudops.data.tabular`. The same configuration always yields the same frame: the population,
the legitimate traffic, the fraud incidents and the drift each draw from their own random stream
spawned from the seed, so switching drift on leaves every row before the drift point unchanged.

Legitimate traffic is noisy on purpose (trips abroad, new merchants, replacement phones,
occasional big purchases, tiny digital purchases, legitimate transfers and cash-outs) so that
fraud is learnable from behaviour but not from any single column.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from fraudops.data import tabular
from fraudops.data.drift_scenarios import DRIFTS, apply_drift
from fraudops.data.labels import LabelStreamConfig
from fraudops.data.population import (
    AMOUNT_MULT,
    COUNTRIES,
    USUAL_SLOTS,
    USUAL_WEIGHTS,
    Merchants,
    Population,
    Rows,
    build_population,
    concat_rows,
    make_rows,
    new_devices,
)
from fraudops.data.scenarios import (
    ALL_SCENARIOS,
    DEFAULT_WEIGHTS,
    SCENARIOS,
    Context,
    fraud_rows,
    lookalike_rows,
)
from fraudops.features.encoding import CHANNEL_INDEX
from fraudops.features.spec import CATEGORIES, CHANNELS
from fraudops.schema import Channel

__all__ = ["ALL_SCENARIOS", "DRIFTS", "SCENARIOS", "GeneratorConfig", "generate"]

DAY = 86400.0
#: Relative volume Monday..Sunday (Friday/Saturday shopping peaks, quiet Sunday).
WEEKDAY_WEIGHTS = np.array([0.95, 0.97, 1.0, 1.03, 1.18, 1.12, 0.8])
#: Relative volume per hour of day for the "anytime" part of an account's activity.
HOUR_PROFILE = np.array([0.5, 0.3, 0.2, 0.2, 0.25, 0.5, 1.2, 2.5, 4, 5, 5.5, 6, 6.5, 6, 5.5,
                         5.5, 6, 6.5, 6.5, 6, 5, 3.8, 2.4, 1.1])
#: Legitimate row kinds: purchase, transfer, ATM withdrawal, cash-out.
KIND_SHARE = np.array([0.935, 0.035, 0.024, 0.006])
PURCHASE, TRANSFER, ATM, CASH_OUT = range(4)
#: Share of legitimate rows from fraud-like episodes (sprees, new phones, in-app purchases).
LOOKALIKE_SHARE = 0.015
DIGITAL = np.isin(np.arange(len(CHANNELS)),
                  [CHANNEL_INDEX[Channel.ONLINE], CHANNEL_INDEX[Channel.TRANSFER], CHANNEL_INDEX[Channel.CASH_OUT]])

Progress = Callable[[str], None]


class GeneratorConfig(BaseModel):
    """What to generate. `drift_start` is a UTC datetime or a fraction (0-1) of the span."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    rows: int = Field(default=100_000, ge=1_000, le=100_000_000)
    seed: int = Field(default=0, ge=0, le=2**63 - 1)
    fraud_rate: float = Field(default=0.015, ge=0.0, le=0.3)
    start: date = date(2026, 1, 1)
    days: int = Field(default=75, ge=7, le=3650)
    drift: str = "none"
    drift_start: datetime | float = 0.5
    scenario_weights: dict[str, float] = Field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    #: How verdicts arrive in the label stream (`fraudops.data.labels.generate_labels`); it
    #: never changes the transactions.
    labels: LabelStreamConfig = Field(default_factory=LabelStreamConfig)

    @field_validator("drift")
    @classmethod
    def _known_drift(cls, value: str) -> str:
        if value not in DRIFTS:
            raise ValueError(f"unknown drift {value!r}; choose one of {', '.join(DRIFTS)}")
        return value

    @field_validator("scenario_weights")
    @classmethod
    def _known_scenarios(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(SCENARIOS))
        if unknown:
            raise ValueError(f"unknown scenario(s) {unknown}; known: {', '.join(SCENARIOS)}")
        if any(w < 0 for w in value.values()) or sum(value.values()) <= 0:
            raise ValueError("scenario weights must be >= 0 and not all zero")
        return value

    @model_validator(mode="after")
    def _drift_start_in_span(self) -> GeneratorConfig:
        offset = self.drift_start_seconds()
        if not 0 <= offset <= self.days * DAY:
            raise ValueError(f"drift_start {self.drift_start} lies outside the generated span "
                             f"({self.start_datetime().isoformat()} + {self.days} days)")
        return self

    def start_datetime(self) -> datetime:
        return datetime(self.start.year, self.start.month, self.start.day, tzinfo=UTC)

    def drift_start_seconds(self) -> float:
        """The drift point as seconds after the start of the span."""
        if isinstance(self.drift_start, datetime):
            moment = self.drift_start
            moment = moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
            return (moment - self.start_datetime()).total_seconds()
        return float(self.drift_start) * self.days * DAY

    def drift_start_datetime(self) -> datetime:
        return pd.Timestamp(self.start_datetime()) + pd.Timedelta(
            seconds=self.drift_start_seconds())


def generate(config: GeneratorConfig, progress: Progress | None = None) -> pd.DataFrame:
    """Generate the data set described by `config` as a normalized, time-sorted frame."""
    report = progress or (lambda _stage: None)
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(config.seed).spawn(4)]
    span = config.days * DAY
    report("population")
    population = build_population(streams[0], config.rows, span)
    n_fraud = round(config.rows * config.fraud_rate)
    report("legitimate traffic")
    n_lookalike = round((config.rows - n_fraud) * LOOKALIKE_SHARE)
    legit = legit_rows(streams[1], population, config.rows - n_fraud - n_lookalike,
                       config.start.weekday())
    legit = concat_rows([legit, lookalike_rows(Context.build(population, legit), streams[1],
                                               n_lookalike)])
    report("fraud incidents")
    fraud = fraud_rows(Context.build(population, legit), streams[2], n_fraud,
                       config.scenario_weights)
    rows = concat_rows([legit, fraud])
    report("drift")
    rows, population = apply_drift(config.drift, streams[3], population, rows,
                                   config.drift_start_seconds(), config.fraud_rate)
    report("assembling frame")
    return assemble(rows, population, config)


def legit_rows(rng: np.random.Generator, pop: Population, n: int, weekday0: int) -> Rows:
    """`n` legitimate transactions following each account's habits."""
    acc = pop.accounts
    counts = rng.multinomial(n, acc.activity / acc.activity.sum())
    account = np.repeat(np.arange(len(acc)), counts)
    ts = _timestamps(rng, pop, account, weekday0)
    kind = rng.choice(len(KIND_SHARE), n, p=KIND_SHARE)
    travelling = (ts >= acc.travel_start[account]) & (ts < acc.travel_end[account])
    where = np.where(travelling, acc.travel_country[account], acc.home[account])
    merchant = _merchants(rng, pop, account, kind, where)
    channel = pop.merchants.channel[merchant].copy()
    channel[kind == CASH_OUT] = CHANNEL_INDEX[Channel.CASH_OUT]
    at_merchant = np.isin(channel, [CHANNEL_INDEX[Channel.CARD_PRESENT], CHANNEL_INDEX[Channel.ATM]])
    country = np.where(at_merchant, pop.merchants.country[merchant], where)
    # Some online sessions come through a VPN or a roaming phone: a foreign IP country.
    vpn = (channel == CHANNEL_INDEX[Channel.ONLINE]) & (rng.random(n) < 0.004)
    country[vpn] = rng.integers(0, len(COUNTRIES), int(vpn.sum()))
    return make_rows(account, ts=ts, amount=_amounts(rng, pop, account, kind, merchant),
                     merchant=merchant, channel=channel, country=country,
                     device=_devices(rng, pop, account, ts, channel))


def _timestamps(rng: np.random.Generator, pop: Population, account: np.ndarray,
                weekday0: int) -> np.ndarray:
    n, days = len(account), round(pop.span_seconds / DAY)
    day_weights = WEEKDAY_WEIGHTS[(weekday0 + np.arange(days)) % 7]
    day = rng.choice(days, n, p=day_weights / day_weights.sum())
    acc = pop.accounts
    habitual = rng.normal(acc.peak_hour[account], acc.hour_spread[account])
    anytime = rng.choice(24, n, p=HOUR_PROFILE / HOUR_PROFILE.sum()) + rng.random(n)
    hour = np.where(rng.random(n) < 0.6, habitual, anytime) % 24
    return day * DAY + hour * 3600.0


def _merchants(rng: np.random.Generator, pop: Population, account: np.ndarray,
               kind: np.ndarray, where: np.ndarray) -> np.ndarray:
    acc, m = pop.accounts, pop.merchants
    n = len(account)
    merchant = acc.usual[account, rng.choice(USUAL_SLOTS, n, p=USUAL_WEIGHTS)]
    # Occasionally somewhere new; abroad, shops are necessarily new.
    abroad = where != acc.home[account]
    explore = (kind == PURCHASE) & ((rng.random(n) < 0.06)
                                    | (abroad & (m.channel[merchant] != CHANNEL_INDEX[Channel.ONLINE])))
    regular = m.channel <= CHANNEL_INDEX[Channel.ONLINE]  # card-present or online shops
    _draw_local(rng, m, merchant, explore, where, regular)
    _draw_local(rng, m, merchant, kind == ATM, where, m.channel == CHANNEL_INDEX[Channel.ATM])
    bank = np.isin(kind, [TRANSFER, CASH_OUT])
    merchant[bank] = acc.bank[account[bank]]
    other_bank = (kind == TRANSFER) & (rng.random(n) < 0.15)
    _draw_local(rng, m, merchant, other_bank, where, m.channel == CHANNEL_INDEX[Channel.TRANSFER])
    return merchant


def _draw_local(rng: np.random.Generator, m: Merchants, merchant: np.ndarray, rows: np.ndarray,
                where: np.ndarray, allowed: np.ndarray) -> None:
    """Replace `merchant[rows]` by merchants of the row's country (or online ones) in place."""
    online = m.channel == CHANNEL_INDEX[Channel.ONLINE]
    for country in np.unique(where[rows]):
        sel = np.flatnonzero(rows & (where == country))
        idx, p = m.pool(allowed & ((m.country == country) | online))
        merchant[sel] = idx[rng.choice(len(idx), len(sel), p=p)]


def _amounts(rng: np.random.Generator, pop: Population, account: np.ndarray, kind: np.ndarray,
             merchant: np.ndarray) -> np.ndarray:
    n = len(account)
    spend = pop.accounts.spend[account]
    scale = np.array([1.0, 6.0, 2.5, 4.0])[kind]
    sigma = np.array([0.65, 0.9, 0.5, 0.7])[kind]
    mult = np.where(kind == PURCHASE, AMOUNT_MULT[pop.merchants.category[merchant]], 1.0)
    amount = spend * scale * mult * np.exp(rng.normal(0, sigma))
    splurge = (kind == PURCHASE) & (rng.random(n) < 0.005)
    amount[splurge] *= rng.uniform(4, 15, splurge.sum())
    cash = kind == ATM
    amount[cash] = np.maximum(20.0, np.round(amount[cash] / 20.0) * 20.0)
    return np.round(np.maximum(amount, 0.25), 2)


def _devices(rng: np.random.Generator, pop: Population, account: np.ndarray, ts: np.ndarray,
             channel: np.ndarray) -> np.ndarray:
    acc = pop.accounts
    n = len(account)
    replaced = (ts >= acc.device_switch[account]) & (rng.random(n) < 0.85)
    device = acc.devices[account, replaced.astype(np.int64)]
    borrowed = rng.random(n) < 0.004  # a friend's laptop, a new browser
    device[borrowed] = new_devices(rng, int(borrowed.sum()))
    return np.where(DIGITAL[channel], device, 0)


def assemble(rows: Rows, pop: Population, config: GeneratorConfig) -> pd.DataFrame:
    """Turn coded rows into the normalized, time-sorted transaction frame."""
    order = np.argsort(rows["ts"], kind="stable")
    rows = {k: v[order] for k, v in rows.items()}
    n = len(order)
    start_ms = int(config.start_datetime().timestamp() * 1000)
    millis = start_ms + np.round(rows["ts"] * 1000).astype(np.int64)
    scenario = np.array(list(ALL_SCENARIOS) + [None], dtype=object)
    frame = pd.DataFrame({
        "transaction_id": _strings([f"tx-{config.seed}-{i:09d}" for i in range(n)]),
        "account_id": _strings(_labels("acc-{:06d}", len(pop.accounts))[rows["account"]]),
        "timestamp": pd.to_datetime(millis, unit="ms", utc=True),
        "amount": rows["amount"],
        "currency": "USD",
        "merchant_id": _strings(_labels("m-{:05d}", len(pop.merchants))[rows["merchant"]]),
        "merchant_category": _strings(np.array(CATEGORIES, dtype=object)[
            pop.merchants.category[rows["merchant"]]]),
        "channel": _strings(np.array(CHANNELS, dtype=object)[rows["channel"]]),
        "country": _strings(np.array(COUNTRIES, dtype=object)[rows["country"]]),
        "device_id": _strings(_device_labels(rows["device"])),
        "label": rows["label"],
        "fraud_scenario": _strings(scenario[rows["scenario"]]),
    })
    return tabular.normalize(frame)


def _strings(values: object) -> pd.arrays.StringArray:
    # Extension arrays skip pandas' block consolidation of object columns (seconds at 1M rows).
    return pd.array(values, dtype="string")


def _labels(pattern: str, n: int) -> np.ndarray:
    return np.array([pattern.format(i) for i in range(n)], dtype=object)


def _device_labels(device: np.ndarray) -> np.ndarray:
    unique, inverse = np.unique(device, return_inverse=True)
    names = np.array([None if d == 0 else f"dev-{d:012x}" for d in unique.tolist()], dtype=object)
    return names[inverse]
