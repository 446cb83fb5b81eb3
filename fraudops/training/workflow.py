"""The training steps as plain functions: split, train the models, fit the policy, evaluate.

The kfp components, `fraudops train`, the DVC stages and the retraining trigger all call these,
so every path trains exactly the same way.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from fraudops.models import ModelBundle, Scorer, load_checkpoint, pick_device, save_checkpoint
from fraudops.models.checkpoint import AUTOENCODER_KIND, SEQUENCE_KIND
from fraudops.training import comparison, plots
from fraudops.training.calibration import fit_calibration
from fraudops.training.config import TrainingConfig
from fraudops.training.dataset import FeatureSet
from fraudops.training.evaluation import Evaluation, evaluate
from fraudops.training.loops import TrainResult, train_autoencoder, train_sequence_model
from fraudops.training.policy import fit_policy
from fraudops.training.splits import split_for

log = logging.getLogger(__name__)
SEQUENCE_DIR, AUTOENCODER_DIR, REFERENCE_DIR = "sequence", "autoencoder", "reference"
METRICS_FILE, SUMMARY_FILE = "metrics.json", "training_summary.json"


@dataclass
class TrainedModel:
    """A trained model with its training summary (epochs, best validation AUPRC, seconds)."""

    bundle: ModelBundle
    summary: dict


def setup_torch(config: TrainingConfig) -> torch.device:
    """Thread count and device for a run (threads=0 keeps torch's default: all cores)."""
    if config.threads:
        torch.set_num_threads(config.threads)
    return pick_device(config.device)


def _summary(result: TrainResult) -> dict:
    return {"best_epoch": result.best_epoch, "epochs_run": len(result.history),
            "best_validation_auprc": result.best_validation_auprc,
            "train_seconds": result.seconds, "history": result.history}


def fit_sequence(data: FeatureSet, config: TrainingConfig,
                 progress: Callable[[dict], None] | None = None) -> TrainedModel:
    """Train the LSTM-CNN on the training period."""
    device = setup_torch(config)
    result = train_sequence_model(data, split_for(data, config), config, device, progress)
    bundle = ModelBundle(result.module.cpu(), SEQUENCE_KIND, data.spec_dict(), data.seq_len)
    return TrainedModel(bundle, _summary(result))


def fit_autoencoder(data: FeatureSet, config: TrainingConfig,
                    progress: Callable[[dict], None] | None = None) -> TrainedModel:
    """Train and calibrate the autoencoder."""
    device = setup_torch(config)
    result = train_autoencoder(data, split_for(data, config), config, device, progress)
    bundle = ModelBundle(result.module.cpu(), AUTOENCODER_KIND, data.spec_dict(), data.seq_len,
                         {"target_fpr": config.autoencoder.target_fpr})
    return TrainedModel(bundle, _summary(result))


def assemble_scorer(sequence: ModelBundle, autoencoder: ModelBundle, data: FeatureSet,
                    config: TrainingConfig) -> Scorer:
    """Fit the calibration and then the decision policy on the validation period; return the
    finished scorer.

    Both are stored in the sequence bundle's metadata, so saving the bundle keeps them; the
    policy's thresholds apply to the calibrated probability.
    """
    device = setup_torch(config)
    # float32 here: the whole period is scored at once (no batch-composition noise to avoid),
    # and the trained modules are converted in place, so they stay float32 for saving.
    scorer = Scorer(sequence, autoencoder, device=device, exact=False)
    rows = data.labelled(split_for(data, config).validation)
    raw = evaluate(scorer, data, rows)  # no calibration stored yet: raw probabilities
    calibration = fit_calibration(raw.labels, raw.fraud_probability, raw.anomaly_score,
                                  config.calibration)
    probability = calibration.apply(raw.fraud_probability, raw.anomaly_score)
    policy = fit_policy(raw.labels, probability, raw.anomaly_score, config.policy,
                        raw.amounts, data.timestamps[rows])
    sequence.extra["calibration"] = calibration.to_dict()
    sequence.extra["policy"] = policy.to_dict()
    scorer.calibration, scorer.policy = calibration, policy
    return scorer


def holdout_rows(data: FeatureSet, config: TrainingConfig) -> np.ndarray:
    """The rows models are compared on: the test period (validation when there is none)."""
    split = split_for(data, config)
    return split.test if len(data.labelled(split.test)) else split.validation


def save_models(sequence: ModelBundle, autoencoder: ModelBundle, directory: str | Path) -> Path:
    """Write both checkpoints under `directory` (sequence/, autoencoder/)."""
    directory = Path(directory)
    save_checkpoint(sequence, directory / SEQUENCE_DIR)
    save_checkpoint(autoencoder, directory / AUTOENCODER_DIR)
    return directory


def load_models(directory: str | Path) -> tuple[ModelBundle, ModelBundle]:
    """Read the pair written by `save_models`."""
    directory = Path(directory)
    return load_checkpoint(directory / SEQUENCE_DIR), load_checkpoint(directory / AUTOENCODER_DIR)


def write_report(evaluation: Evaluation, scorer: Scorer, directory: str | Path) -> dict[str, Path]:
    """metrics.json and the plots of an evaluation; returns their paths by name.

    With the reference's scores, also its curve and score plot, and the comparison stating
    the gap (`comparison.REPORT_FILE`).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    metrics_path = directory / METRICS_FILE
    metrics_path.write_text(json.dumps(clean_metrics(evaluation.metrics), indent=2,
                                       sort_keys=True))
    labels, reference = evaluation.labels, evaluation.reference_probability
    curves = {"LSTM-CNN": evaluation.fraud_probability, "autoencoder": evaluation.anomaly_score}
    if reference is not None:
        curves["LightGBM reference"] = reference
    files = {
        "metrics": metrics_path,
        "pr_curve": plots.pr_curve_plot(labels, curves, directory / "pr_curve.png"),
        "fraud_probability": plots.score_distribution_plot(
            labels, evaluation.fraud_probability, "fraud probability",
            scorer.policy.review_probability, directory / "fraud_probability.png"),
        "anomaly_score": plots.score_distribution_plot(
            labels, evaluation.anomaly_score, "anomaly score", scorer.policy.review_anomaly,
            directory / "anomaly_score.png"),
    }
    calibrated = {"LSTM-CNN (calibrated)": evaluation.fraud_probability}
    if reference is not None:
        calibrated["LightGBM reference"] = reference
    files["reliability"] = plots.reliability_plot(labels, calibrated,
                                                  directory / "reliability.png")
    if reference is not None:
        files["reference_probability"] = plots.score_distribution_plot(
            labels, reference, "reference probability", None,
            directory / "reference_probability.png")
        files["comparison"] = directory / comparison.REPORT_FILE
        files["comparison"].write_text(comparison.comparison_report(evaluation.metrics))
    return files


def clean_metrics(metrics: dict[str, float]) -> dict[str, float | None]:
    """JSON-safe metrics (NaN -> null)."""
    return {k: (None if v is None or not np.isfinite(v) else float(v)) for k, v in metrics.items()}
