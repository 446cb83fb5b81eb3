"""The gradient-boosted reference: LightGBM on the current transaction's features, same split.

Every training run trains it beside the deep models, so each run answers "do the deep models
earn their keep on this data?" with figures. It sees exactly the per-row feature vector the
autoencoder sees (which already holds velocity aggregates), not the history. Saved in LightGBM's
own text format plus a small JSON summary; logged to MLflow, never registered or served.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fraudops.training.config import TrainingConfig
from fraudops.training.dataset import FeatureSet
from fraudops.training.exceptions import TrainingDataError
from fraudops.training.splits import TimeSplit, labelled_parts

#: The summary has the name the deep models' summaries have (`workflow.SUMMARY_FILE`).
MODEL_FILE, SUMMARY_FILE = "model.txt", "training_summary.json"
KIND = "lightgbm"


@dataclass
class ReferenceModel:
    """A trained LightGBM booster and how its training went."""

    booster: object  # lightgbm.Booster (imported on use)
    summary: dict

    @property
    def best_iteration(self) -> int:
        return int(self.summary["best_iteration"])

    def predict(self, features: np.ndarray) -> np.ndarray:
        """Fraud probability per row of a [N, F] feature matrix."""
        return np.asarray(self.booster.predict(features, num_iteration=self.best_iteration))


def booster_params(config: TrainingConfig) -> dict:
    """LightGBM parameters of a run: seeded and deterministic, like the deep models."""
    cfg = config.reference
    return {
        "objective": "binary", "learning_rate": cfg.learning_rate, "num_leaves": cfg.num_leaves,
        "bagging_fraction": cfg.subsample, "bagging_freq": 1, "feature_fraction": cfg.colsample,
        "scale_pos_weight": cfg.positive_weight, "metric": "average_precision",
        "seed": config.seed, "deterministic": True, "force_row_wise": True,
        # threads=0 is torch's "all cores"; LightGBM reads 0 the same way (OpenMP default).
        "num_threads": config.threads, "verbose": -1,
    }


def feature_names(data: FeatureSet) -> list[str]:
    """The spec's names, safe for LightGBM (it refuses JSON punctuation in names)."""
    return [re.sub(r"[^\w.\-]", "_", str(name)) for name in data.spec.names]


def train_reference(data: FeatureSet, split: TimeSplit, config: TrainingConfig
                    ) -> ReferenceModel:
    """Train on the training period; stop early on validation AUPRC."""
    import lightgbm as lgb

    started = time.perf_counter()
    train, validation = labelled_parts(data, split)
    train_set = lgb.Dataset(data.features[train], data.labels[train],
                            feature_name=feature_names(data))
    valid_set = train_set.create_valid(data.features[validation], data.labels[validation])
    history: dict = {}
    booster = lgb.train(booster_params(config), train_set,
                        num_boost_round=config.reference.rounds, valid_sets=[valid_set],
                        callbacks=[lgb.early_stopping(config.reference.patience, verbose=False),
                                   lgb.record_evaluation(history)])
    # lgb.train keeps only the trees up to the best round: count the rounds from the history.
    scores = history["valid_0"]["average_precision"]
    best = booster.best_iteration or len(scores)
    summary = {"kind": KIND, "enabled": True, "best_iteration": int(best),
               "rounds_run": len(scores), "best_validation_auprc": float(scores[best - 1]),
               "train_seconds": time.perf_counter() - started}
    return ReferenceModel(booster, summary)


def save_reference(model: ReferenceModel, directory: str | Path) -> Path:
    """LightGBM's text model (best iteration) plus the summary as JSON, in `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    model.booster.save_model(str(directory / MODEL_FILE), num_iteration=model.best_iteration)
    (directory / SUMMARY_FILE).write_text(json.dumps(model.summary, indent=2))
    return directory


def save_disabled(directory: str | Path) -> Path:
    """Only a summary saying no reference was trained (a pipeline output must still exist)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / SUMMARY_FILE).write_text(json.dumps({"kind": KIND, "enabled": False}))
    return directory


def has_reference(directory: str | Path | None) -> bool:
    """Whether `directory` holds a trained reference."""
    return directory is not None and (Path(directory) / MODEL_FILE).is_file()


def load_reference(directory: str | Path) -> ReferenceModel:
    """Read what `save_reference` wrote."""
    import lightgbm as lgb

    directory = Path(directory)
    if not has_reference(directory):
        raise TrainingDataError(f"no reference model in {directory} ({MODEL_FILE} missing)")
    summary = json.loads((directory / SUMMARY_FILE).read_text())
    return ReferenceModel(lgb.Booster(model_file=str(directory / MODEL_FILE)), summary)
