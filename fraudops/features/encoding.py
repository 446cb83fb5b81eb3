"""Element-wise transforms shared by the batch and online paths (vectorised, numpy)."""

from __future__ import annotations

import numpy as np

from fraudops.features.spec import CATEGORIES, CHANNELS, MICROS

DAY_US = 86_400 * MICROS
# 1970-01-01 was a Thursday; with Monday = 0 that is day 3.
EPOCH_WEEKDAY = 3
CHANNEL_INDEX = {c: i for i, c in enumerate(CHANNELS)}
CATEGORY_INDEX = {c: i for i, c in enumerate(CATEGORIES)}
OTHER_CHANNEL = CHANNEL_INDEX["other"]
OTHER_CATEGORY = CATEGORY_INDEX["other"]


def cyclic_time(ts_us: np.ndarray) -> np.ndarray:
    """[N, 4]: sin/cos of the time of day and of the (fractional) day of the week, UTC."""
    ts_us = np.asarray(ts_us, dtype=np.int64)
    day_fraction = (ts_us % DAY_US) / DAY_US
    weekday = ((ts_us // DAY_US) + EPOCH_WEEKDAY) % 7
    week_fraction = (weekday + day_fraction) / 7.0
    return np.stack(
        [np.sin(2 * np.pi * day_fraction), np.cos(2 * np.pi * day_fraction),
         np.sin(2 * np.pi * week_fraction), np.cos(2 * np.pi * week_fraction)],
        axis=1,
    )


def to_cents(amount: np.ndarray) -> np.ndarray:
    """Amounts as integer cents: velocity sums then add up exactly in both execution modes."""
    return np.rint(np.asarray(amount, dtype=np.float64) * 100.0).astype(np.int64)


def cents_log(cents: np.ndarray) -> np.ndarray:
    return np.log1p(np.asarray(cents, dtype=np.float64) / 100.0)


def amount_z(log_amount, n_prev, sum_prev, sumsq_prev, floor: float, clip: float):
    """Amount (log) relative to the account's previous amounts: (z-score, difference to mean).

    Both are 0 without history; the z-score needs two previous amounts.
    """
    n = np.asarray(n_prev, dtype=np.float64)
    safe_n = np.maximum(n, 1.0)
    mean = np.asarray(sum_prev, dtype=np.float64) / safe_n
    var = np.maximum(np.asarray(sumsq_prev, dtype=np.float64) / safe_n - mean * mean, 0.0)
    diff = np.where(n >= 1, log_amount - mean, 0.0)
    z = np.where(n >= 2, diff / np.sqrt(var + floor), 0.0)
    return np.clip(z, -clip, clip), diff
