"""The synthetic world the generator draws from: accounts, merchants, countries, devices.

Everything here is arrays (one entry per account or merchant) so that a million transactions can
be drawn with a handful of vectorised numpy operations. Rows under construction are kept as
`Rows`: a dict of equally long arrays holding integer codes (merchant index, channel index,
country index, device number); they become strings only once, when the frame is assembled.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fraudops.features.encoding import CATEGORY_INDEX, CHANNEL_INDEX
from fraudops.features.spec import CATEGORIES
from fraudops.schema import Channel, MerchantCategory

#: (ISO-2 code, region, share of account holders). Far countries are those in another region.
COUNTRY_TABLE = (
    ("US", "americas", 0.62), ("CA", "americas", 0.06), ("MX", "americas", 0.03),
    ("BR", "americas", 0.02), ("GB", "europe", 0.07), ("DE", "europe", 0.05),
    ("FR", "europe", 0.04), ("ES", "europe", 0.03), ("IT", "europe", 0.02),
    ("NL", "europe", 0.02), ("PL", "europe", 0.01), ("RO", "europe", 0.005),
    ("IN", "asia", 0.01), ("SG", "asia", 0.005), ("TH", "asia", 0.003), ("VN", "asia", 0.002),
    ("PH", "asia", 0.002), ("ID", "asia", 0.002), ("CN", "asia", 0.003), ("NG", "africa", 0.002),
    ("ZA", "africa", 0.002), ("AU", "oceania", 0.01), ("RU", "europe_east", 0.002),
    ("UA", "europe_east", 0.002),
)
COUNTRIES = tuple(c for c, _, _ in COUNTRY_TABLE)
REGIONS = np.array([r for _, r, _ in COUNTRY_TABLE])
COUNTRY_SHARE = np.array([s for _, _, s in COUNTRY_TABLE]) / sum(s for _, _, s in COUNTRY_TABLE)
#: Where account-takeover and card-testing traffic tends to come from (proxies, fraud farms).
RISKY_COUNTRIES = np.array([COUNTRIES.index(c) for c in ("NG", "RO", "RU", "UA", "VN", "ID",
                                                         "PH", "BR", "CN")])

#: Category -> (share of merchants, probability the merchant is online, amount multiplier).
CATEGORY_PROFILE = {
    MerchantCategory.GROCERY: (0.20, 0.08, 1.0),
    MerchantCategory.RESTAURANT: (0.18, 0.10, 0.8),
    MerchantCategory.FUEL: (0.08, 0.0, 1.2),
    MerchantCategory.RETAIL: (0.14, 0.35, 1.4),
    MerchantCategory.ELECTRONICS: (0.05, 0.55, 3.0),
    MerchantCategory.TRAVEL: (0.04, 0.7, 5.0),
    MerchantCategory.ENTERTAINMENT: (0.07, 0.5, 0.9),
    MerchantCategory.UTILITIES: (0.04, 0.9, 2.2),
    MerchantCategory.HEALTH: (0.06, 0.15, 1.6),
    MerchantCategory.JEWELRY: (0.02, 0.3, 4.0),
    MerchantCategory.DIGITAL_GOODS: (0.06, 1.0, 0.4),
    MerchantCategory.OTHER: (0.06, 0.3, 1.0),
}
AMOUNT_MULT = np.array([CATEGORY_PROFILE.get(c, (0, 0, 3.0))[2] for c in CATEGORIES])
#: How many usual merchants an account has, and how often it uses each (Zipf-like).
USUAL_SLOTS = 10
USUAL_WEIGHTS = 1.0 / np.arange(1, USUAL_SLOTS + 1) ** 1.1
USUAL_WEIGHTS /= USUAL_WEIGHTS.sum()

FIELDS = ("account", "ts", "amount", "merchant", "channel", "country", "device", "label",
          "scenario")
Rows = dict[str, np.ndarray]


@dataclass(frozen=True)
class Merchants:
    """Merchant table; index i is merchant id ``m-{i:05d}``."""

    category: np.ndarray
    channel: np.ndarray
    country: np.ndarray
    popularity: np.ndarray

    def __len__(self) -> int:
        return len(self.category)

    def pool(self, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Indices of merchants matching `mask` and their normalised popularity."""
        idx = np.flatnonzero(mask)
        weights = self.popularity[idx]
        return idx, weights / weights.sum()


@dataclass(frozen=True)
class Accounts:
    """Per-account behaviour; index i is account id ``acc-{i:06d}``."""

    home: np.ndarray  # country index
    spend: np.ndarray  # typical purchase amount (USD)
    activity: np.ndarray  # relative transaction rate
    peak_hour: np.ndarray
    hour_spread: np.ndarray
    usual: np.ndarray  # (n, USUAL_SLOTS) merchant indices
    bank: np.ndarray  # usual transfer counterparty (merchant index)
    devices: np.ndarray  # (n, 2) device numbers; column 1 is a later replacement phone
    device_switch: np.ndarray  # seconds from start when the replacement appears (inf: never)
    travel_start: np.ndarray  # seconds from start (inf: no trip)
    travel_end: np.ndarray
    travel_country: np.ndarray

    def __len__(self) -> int:
        return len(self.home)


@dataclass(frozen=True)
class Population:
    """Accounts and merchants of one synthetic data set."""

    accounts: Accounts
    merchants: Merchants
    span_seconds: float


def new_devices(rng: np.random.Generator, n: int) -> np.ndarray:
    """Fresh random device numbers (0 is reserved for "no device")."""
    return rng.integers(1, 2**48, size=n, dtype=np.int64)


def empty_rows() -> Rows:
    return make_rows(account=np.zeros(0, np.int64))


def make_rows(account: np.ndarray, **columns: object) -> Rows:
    """Rows for `account` (an array); missing columns get neutral defaults, scalars broadcast."""
    n = len(account)
    defaults = {"ts": 0.0, "amount": 0.0, "merchant": -1, "channel": CHANNEL_INDEX[Channel.OTHER],
                "country": 0, "device": 0, "label": 0, "scenario": -1}
    dtypes = {"ts": np.float64, "amount": np.float64, "merchant": np.int64, "channel": np.int8,
              "country": np.int16, "device": np.int64, "label": np.int8, "scenario": np.int16}
    rows: Rows = {"account": np.asarray(account, dtype=np.int64)}
    for name, default in defaults.items():
        column = np.empty(n, dtype=dtypes[name])
        column[...] = columns.get(name, default)  # broadcasts scalars, copies arrays
        rows[name] = column
    return rows


def concat_rows(parts: list[Rows]) -> Rows:
    parts = [p for p in parts if len(p["account"])] or [empty_rows()]
    return {name: np.concatenate([p[name] for p in parts]) for name in FIELDS}


def take_rows(rows: Rows, index: np.ndarray) -> Rows:
    return {name: values[index] for name, values in rows.items()}


def build_population(rng: np.random.Generator, rows: int, span_seconds: float) -> Population:
    """Draw merchants and accounts sized for `rows` transactions over the span."""
    merchants = _build_merchants(rng, max(400, rows // 200))
    accounts = _build_accounts(rng, max(60, rows // 55), merchants, span_seconds)
    return Population(accounts=accounts, merchants=merchants, span_seconds=span_seconds)


def _build_merchants(rng: np.random.Generator, n: int) -> Merchants:
    cats = list(CATEGORY_PROFILE)
    share = np.array([CATEGORY_PROFILE[c][0] for c in cats])
    category = np.array([CATEGORY_INDEX[c] for c in cats])[rng.choice(len(cats), n, p=share / share.sum())]
    online_p = np.array([CATEGORY_PROFILE.get(c, (0, 0.3, 0))[1] for c in CATEGORIES])[category]
    channel = np.where(rng.random(n) < online_p, CHANNEL_INDEX[Channel.ONLINE], CHANNEL_INDEX[Channel.CARD_PRESENT])
    # Every country gets its own cash machines and money-transfer agents.
    n_special = 4 * len(COUNTRIES)
    country = np.concatenate([rng.choice(len(COUNTRIES), n, p=COUNTRY_SHARE),
                              np.tile(np.arange(len(COUNTRIES)), 4)])
    # Guarantee card-present merchants in every country (legit travel and impossible travel).
    country[: 2 * len(COUNTRIES)] = np.tile(np.arange(len(COUNTRIES)), 2)
    channel[: 2 * len(COUNTRIES)] = CHANNEL_INDEX[Channel.CARD_PRESENT]
    special_channel = np.repeat([CHANNEL_INDEX[Channel.ATM], CHANNEL_INDEX[Channel.ATM], CHANNEL_INDEX[Channel.TRANSFER],
                                 CHANNEL_INDEX[Channel.TRANSFER]], len(COUNTRIES))
    return Merchants(
        category=np.concatenate([category, np.full(n_special, CATEGORY_INDEX[MerchantCategory.MONEY_TRANSFER])]),
        channel=np.concatenate([channel, special_channel]).astype(np.int8),
        country=country.astype(np.int16),
        popularity=np.concatenate([rng.lognormal(0.0, 1.0, n), np.ones(n_special)]),
    )


def _build_accounts(
    rng: np.random.Generator, n: int, merchants: Merchants, span: float
) -> Accounts:
    home = rng.choice(len(COUNTRIES), n, p=COUNTRY_SHARE).astype(np.int16)
    travelling = rng.random(n) < 0.15
    travel_start = np.where(travelling, rng.uniform(0, span, n), np.inf)
    switching = rng.random(n) < 0.25
    return Accounts(
        home=home,
        spend=np.exp(rng.normal(np.log(32.0), 0.55, n)),
        activity=rng.gamma(2.5, 1.0, n),
        peak_hour=np.clip(rng.normal(14.5, 2.5, n), 8, 21),
        hour_spread=rng.uniform(1.5, 4.0, n),
        usual=_usual_merchants(rng, home, merchants),
        bank=_transfer_merchant(rng, home, merchants),
        devices=new_devices(rng, 2 * n).reshape(n, 2),
        device_switch=np.where(switching, rng.uniform(0, span, n), np.inf),
        travel_start=travel_start,
        travel_end=travel_start + rng.uniform(2, 10, n) * 86400,
        travel_country=_other_country(rng, home),
    )


def _usual_merchants(rng: np.random.Generator, home: np.ndarray, m: Merchants) -> np.ndarray:
    usual = np.empty((len(home), USUAL_SLOTS), dtype=np.int64)
    regular = m.category != CATEGORY_INDEX[MerchantCategory.MONEY_TRANSFER]
    for country in np.unique(home):
        who = np.flatnonzero(home == country)
        idx, p = m.pool(regular & ((m.country == country) | (m.channel == CHANNEL_INDEX[Channel.ONLINE])))
        usual[who] = idx[rng.choice(len(idx), (len(who), USUAL_SLOTS), p=p)]
    return usual


def _transfer_merchant(rng: np.random.Generator, home: np.ndarray, m: Merchants) -> np.ndarray:
    idx = np.flatnonzero(m.channel == CHANNEL_INDEX[Channel.TRANSFER])
    by_country = {int(m.country[i]): [] for i in idx}
    for i in idx:
        by_country[int(m.country[i])].append(i)
    table = np.array([by_country[c] for c in range(len(COUNTRIES))])
    return table[home, rng.integers(0, table.shape[1], len(home))]


def _other_country(rng: np.random.Generator, home: np.ndarray) -> np.ndarray:
    """A travel destination different from home (uniform over the other countries)."""
    shift = rng.integers(1, len(COUNTRIES), len(home))
    return ((home + shift) % len(COUNTRIES)).astype(np.int16)


def far_country(rng: np.random.Generator, home: int) -> int:
    """A country in another region than `home` (somewhere a card cannot be minutes later)."""
    options = np.flatnonzero(REGIONS != REGIONS[home])
    return int(rng.choice(options))


def merchants_in(m: Merchants, country: int, channel: int, categories: list[int] | None = None
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Merchants of a country and channel (optionally only some categories), with popularity."""
    mask = (m.country == country) & (m.channel == channel)
    if categories is not None:
        mask &= np.isin(m.category, categories)
    if not mask.any():
        mask = (m.country == country) & (m.channel == channel)
    return m.pool(mask)
