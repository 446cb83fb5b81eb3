"""Small data and tiny models so the training tests run in seconds."""

from __future__ import annotations

import pandas as pd
import pytest

from fraudops.data.generate import GeneratorConfig, generate
from fraudops.training.config import (
    AutoencoderTrainConfig,
    ReferenceTrainConfig,
    SequenceTrainConfig,
    TrainingConfig,
)
from fraudops.training.dataset import FeatureSet, featurize


@pytest.fixture(scope="session")
def small_frame() -> pd.DataFrame:
    """3 000 synthetic transactions with 5% fraud (enough fraud in every time period)."""
    return generate(GeneratorConfig(rows=3000, seed=3, fraud_rate=0.05, days=20))


@pytest.fixture(scope="session")
def tiny_config() -> TrainingConfig:
    return TrainingConfig(
        seq_len=4, threads=1, device="cpu",
        sequence=SequenceTrainConfig(conv_channels=4, hidden_size=4, head_size=8, epochs=2,
                                     batch_size=256, negative_sampling=1.0),
        autoencoder=AutoencoderTrainConfig(hidden_size=8, bottleneck=2, epochs=2, max_rows=1000),
        reference=ReferenceTrainConfig(rounds=20, num_leaves=7, patience=5),
    )


@pytest.fixture(scope="session")
def small_features(small_frame, tiny_config) -> FeatureSet:
    return featurize(small_frame, tiny_config.seq_len)


@pytest.fixture(scope="session")
def small_data_path(small_frame, tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "transactions.parquet"
    small_frame.to_parquet(path)
    return path


@pytest.fixture(autouse=True)
def _mlflow_globals(mlflow_globals_restored: None) -> None:
    """Training logs to and registers in MLflow in-process: its URIs are reset after each
    test (tests/conftest.py)."""


@pytest.fixture(scope="module", autouse=True)
def _mlflow_globals_per_module(mlflow_globals_restored_per_module: None) -> None:
    """And after each module, what its module-scoped fixtures set."""
