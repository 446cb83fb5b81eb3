"""A small random stream with the awkward cases: ties in time, unknown merchants/devices/countries,
bursts inside one hour, gaps longer than a week, passthrough columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fraudops.data import frame as tabular
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
