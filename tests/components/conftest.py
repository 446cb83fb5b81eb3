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


@pytest.fixture(autouse=True)
def _mlflow_globals(mlflow_globals_restored: None) -> None:
    """The component bodies log to MLflow in-process: its URIs are reset after each
    test (tests/conftest.py)."""


@pytest.fixture(scope="module", autouse=True)
def _mlflow_globals_per_module(mlflow_globals_restored_per_module: None) -> None:
    """And after each module, what its module-scoped fixtures set."""
