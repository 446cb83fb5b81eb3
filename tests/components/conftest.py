"""A small synthetic data file for the component body tests."""

from __future__ import annotations

import pytest

from fraudops.data.generate import GeneratorConfig, generate


@pytest.fixture(scope="session")
def small_data_path(tmp_path_factory):
    """3 000 synthetic transactions (5% fraud) over 20 days, as Parquet."""
    path = tmp_path_factory.mktemp("data") / "transactions.parquet"
    generate(GeneratorConfig(rows=3000, seed=3, fraud_rate=0.05, days=20)).to_parquet(path)
    return path
