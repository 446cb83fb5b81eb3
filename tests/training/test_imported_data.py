"""Training on imported data: no account id, anonymous numeric columns (Kaggle credit-card
layout) -> every transaction is its own history (sequences of length one) + passthrough."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from fraudops.data.importer import import_dataset
from fraudops.training.dataset import featurize, load_frame
from fraudops.training.retrain import TrainingJob, run_training

MAPPING = Path(__file__).resolve().parents[2] / "examples" / "mappings" / "kaggle_creditcard.yaml"


def _creditcard_csv(path: Path, rows: int = 3000) -> Path:
    rng = np.random.default_rng(4)
    label = (rng.random(rows) < 0.05).astype(int)
    table = {"Time": np.sort(rng.uniform(0, 2 * 86400, rows))}
    for i in range(1, 29):
        table[f"V{i}"] = rng.normal(size=rows) + (2.5 * label if i in (3, 14) else 0.0)
    table["Amount"] = rng.gamma(2.0, 40.0, rows)
    table["Class"] = label
    pd.DataFrame(table).to_csv(path, index=False)
    return path


def test_anonymous_columns_train_with_length_one_sequences(tmp_path, tiny_config):
    source = _creditcard_csv(tmp_path / "creditcard.csv")
    data_path = tmp_path / "imported.parquet"
    import_dataset(source, MAPPING, data_path)

    data = featurize(load_frame(data_path), tiny_config.seq_len)
    assert data.spec.passthrough == tuple(f"V{i}" for i in range(1, 29))
    _, mask = data.sequences(np.arange(len(data)))
    assert mask.sum(axis=1).max() == 1 and mask[:, -1].all()  # only the row itself

    config = tiny_config.model_copy(update={"sequence": tiny_config.sequence.model_copy(
        update={"epochs": 6, "batch_size": 64, "learning_rate": 0.01})})
    outcome = run_training(TrainingJob(data_path, tmp_path / "work", None, config=config))
    # V3 and V14 carry the label: even one epoch of a tiny model must find it.
    assert outcome.metrics["sequence.roc_auc"] > 0.8
    assert outcome.versions is None  # no tracking target: nothing registered
