"""A small random stream with the awkward cases: ties in time, unknown merchants/devices/countries,
bursts inside one hour, gaps longer than a week, passthrough columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraudops.data import tabular
from fraudops.schema import Channel, MerchantCategory


def random_stream(rows: int = 3000, seed: int = 7, passthrough: int = 2) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    start = pd.Timestamp("2026-01-01", tz="UTC")
    # Gaps from sub-second to days; 10% exact ties; one 9-day hole to empty every window.
    gaps = rng.exponential(600, rows)
    gaps[rng.random(rows) < 0.1] = 0.0
    gaps[rows // 2] = 9 * 86_400
    seconds = np.cumsum(gaps)
    micros = np.floor(seconds * 1e6).astype("int64")
    def maybe_none(values, share):
        values = values.astype(object)
        values[rng.random(rows) < share] = None
        return values
    frame = pd.DataFrame({
        "transaction_id": [f"tx-{i}" for i in range(rows)],
        "account_id": [f"acc-{i}" for i in rng.integers(0, 40, rows)],
        "timestamp": start + pd.to_timedelta(micros, unit="us"),
        "amount": np.round(rng.lognormal(3, 1.5, rows), 2),
        "merchant_id": maybe_none(np.array([f"m-{i}" for i in rng.integers(0, 25, rows)]), 0.1),
        "merchant_category": rng.choice([c.value for c in MerchantCategory], rows),
        "channel": rng.choice([c.value for c in Channel], rows),
        "country": maybe_none(rng.choice(["US", "GB", "FR", "NG"], rows), 0.1),
        "device_id": maybe_none(np.array([f"d-{i}" for i in rng.integers(0, 60, rows)]), 0.2),
        "label": rng.integers(0, 2, rows),
    })
    frame.loc[::97, "amount"] = 0.0
    for j in range(passthrough):
        frame[f"{tabular.EXTRA_PREFIX}v{j}"] = rng.normal(size=rows)
    return tabular.sort_by_time(tabular.normalize(frame))


@pytest.fixture(scope="session")
def stream() -> pd.DataFrame:
    return random_stream()


def random_labels(stream: pd.DataFrame, seed: int = 3, share: float = 0.4) -> pd.DataFrame:
    """A label stream over `stream` with every awkward case: verdicts known minutes to weeks
    after their transaction (and a few before it), repeats, flips (also at the same time),
    redeliveries, and labels for transactions not in the stream (without entity keys, as a
    sender that does not know the transaction sends them)."""
    rng = np.random.default_rng(seed)
    judged = stream.sample(frac=share, random_state=seed).reset_index(drop=True)
    n = len(judged)
    delay_s = np.exp(rng.uniform(np.log(60), np.log(30 * 86_400), n))
    delay_s[rng.random(n) < 0.03] *= -0.01  # known (just) before the transaction happened
    labels = pd.DataFrame({
        "transaction_id": judged["transaction_id"],
        "label": judged["label"].to_numpy(),
        "labelled_at": judged["timestamp"] + pd.to_timedelta(np.round(delay_s * 1e6), "us"),
        "source": "analyst",
        "account_id": judged["account_id"], "merchant_id": judged["merchant_id"],
        "device_id": judged["device_id"]})
    again = labels.sample(frac=0.1, random_state=seed)  # the same label twice
    later = labels.sample(frac=0.1, random_state=seed + 1)  # a repeat or a flip, days later
    later = later.assign(label=rng.integers(0, 2, len(later)),
                         labelled_at=later["labelled_at"] + pd.to_timedelta(
                             rng.uniform(0, 20, len(later)), "D"))
    same_time = labels.sample(frac=0.02, random_state=seed + 2).assign(
        label=lambda f: 1 - f["label"])  # two verdicts at one moment
    unknown = labels.sample(n=20, random_state=seed + 3).drop(
        columns=["account_id", "merchant_id", "device_id"]).assign(
        transaction_id=[f"nowhere-{i}" for i in range(20)])
    return pd.concat([labels, again, later, same_time, unknown], ignore_index=True)
