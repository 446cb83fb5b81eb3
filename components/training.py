"""The training pipeline's components: thin typed interfaces over `fraudops.training.steps`.

Each function body only converts kfp artifacts to paths and calls the shared, unit-tested step
functions, so the logic runs the same in-process (`fraudops train`), under kfp.local and on a
cluster. Bodies import inside the function because kfp ships each one as its own program.
`build_components(image)` binds the functions to a container image (configurable).
"""


from dataclasses import dataclass
from typing import NamedTuple

from kfp import dsl
from kfp.dsl import Artifact, ClassificationMetrics, Dataset, Input, Metrics, Model, Output


def validate_data(data_path: str, metrics: Output[Metrics]) -> str:
    """Check the data set and return its version (DVC hash, md5 fallback)."""
    from fraudops.training import steps

    summary = steps.validate_data_step(data_path)
    for key in ("rows", "labelled_rows", "fraud_rate", "accounts"):
        metrics.log_metric(key, summary[key])
    return summary["data_version"]


def featurize(data_path: str, window_start: str, window_end: str, config_json: str,
              features: Output[Dataset]) -> int:
    """Featurize [window_start, window_end) of the data set; returns the feature dimension."""
    from datetime import datetime

    from fraudops.training import steps

    config = steps.config_from_json(config_json)
    meta = steps.featurize_step(
        data_path, features.path, config.seq_len,
        datetime.fromisoformat(window_start) if window_start else None,
        datetime.fromisoformat(window_end) if window_end else None)
    features.metadata.update({k: v for k, v in meta.items() if v is not None})
    return int(meta["feature_dim"])


def train_sequence(features: Input[Dataset], config_json: str, model: Output[Model],
                   metrics: Output[Metrics]) -> float:
    """Train the LSTM-CNN; returns its best validation AUPRC."""
    from fraudops.training import steps

    summary = steps.train_step("sequence", features.path, model.path,
                               steps.config_from_json(config_json))
    for key, value in summary.items():
        metrics.log_metric(key, float(value))
    model.metadata["kind"] = "lstm_cnn"
    return float(summary["best_validation_auprc"])


def train_autoencoder(features: Input[Dataset], config_json: str, model: Output[Model],
                      metrics: Output[Metrics]) -> float:
    """Train and calibrate the autoencoder; returns its best validation AUPRC."""
    from fraudops.training import steps

    summary = steps.train_step("autoencoder", features.path, model.path,
                               steps.config_from_json(config_json))
    for key, value in summary.items():
        metrics.log_metric(key, float(value))
    model.metadata["kind"] = "autoencoder"
    return float(summary["best_validation_auprc"])


def train_reference(features: Input[Dataset], config_json: str, model: Output[Model],
                    metrics: Output[Metrics]) -> float:
    """Train the gradient-boosted reference (LightGBM, same features and split); returns its
    best validation AUPRC (0 when `reference.enabled` is off: then `model` holds no model)."""
    from fraudops.training import steps

    summary = steps.train_step("reference", features.path, model.path,
                               steps.config_from_json(config_json))
    for key, value in summary.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            metrics.log_metric(key, float(value))
    model.metadata["kind"] = "lightgbm"
    return float(summary.get("best_validation_auprc", 0.0))


def evaluate(features: Input[Dataset], sequence: Input[Model], autoencoder: Input[Model],
             reference: Input[Model], config_json: str, models: Output[Model],
             report: Output[Artifact], metrics: Output[Metrics],
             curves: Output[ClassificationMetrics]) -> float:
    """Fit the decision policy, evaluate on the test period beside the reference (metrics
    ``reference.*`` and ``gap.*``); the UI draws ROC and confusion."""
    from fraudops.training import steps

    config = steps.config_from_json(config_json)
    values = steps.evaluate_step(features.path, sequence.path, autoencoder.path, models.path,
                                 report.path, config, reference.path)
    for key, value in values.items():
        if value is not None:
            metrics.log_metric(key, value)
    roc, matrix = steps.holdout_curves(report.path)
    curves.log_roc_curve(roc["fpr"], roc["tpr"], roc["threshold"])
    curves.log_confusion_matrix(["legitimate", "fraud"], matrix)
    return float(values.get(f"sequence.{config.gate_metric}") or 0.0)


def register(features: Input[Dataset], models: Input[Model], report: Input[Artifact],
             config_json: str, tracking_uri: str, experiment: str
             ) -> NamedTuple("Registered", sequence_version=str, autoencoder_version=str,
                             run_id=str):
    """Log the MLflow run and register both models as `challenger`."""
    from collections import namedtuple

    from fraudops.training import steps

    versions = steps.register_step(features.path, models.path, report.path,
                                   steps.config_from_json(config_json),
                                   steps.resolve_target(tracking_uri, experiment),
                                   steps.model_names())
    registered = namedtuple("Registered", ["sequence_version", "autoencoder_version", "run_id"])
    return registered(versions.sequence, versions.autoencoder, versions.run_id or "")


def gate(features: Input[Dataset], report: Input[Artifact], models: Input[Model],
         sequence_version: str, autoencoder_version: str, run_id: str, config_json: str,
         tracking_uri: str, experiment: str, outcome: Output[Artifact]) -> bool:
    """Promotion gate: champion vs challenger on the same holdout; moves `champion` if better.

    Returns whether it promoted (a single output: kfp.local resolves conditions on it) and
    writes the run's outcome as JSON.
    """
    import json

    from fraudops.training import steps
    from fraudops.training.registry import ModelVersions

    versions = ModelVersions(sequence_version, autoencoder_version, run_id or None)
    decision = steps.gate_step(features.path, report.path, versions,
                               steps.config_from_json(config_json),
                               steps.resolve_target(tracking_uri, experiment),
                               steps.model_names())
    record = steps.outcome_record(features.path, models.path, report.path, versions, decision)
    with open(outcome.path, "w") as handle:
        json.dump(record, handle, default=str)
    outcome.metadata.update({"promoted": decision.promote, "reason": decision.reason})
    return decision.promote


def deploy(sequence_version: str, autoencoder_version: str, mode: str, predictor_name: str,
           predictor_namespace: str, canary_percent: int, reload_url: str) -> str:
    """Roll the new champion out: patch the KServe InferenceService, or tell the local server."""
    from fraudops.training import deploy as rollout
    from fraudops.training import steps
    from fraudops.training.registry import ModelVersions

    versions = ModelVersions(sequence_version, autoencoder_version)
    if mode == "kserve":
        target = rollout.DeployTarget(predictor_name, predictor_namespace,
                                      canary_percent if canary_percent > 0 else None)
        rollout.deploy_to_kserve(rollout.kubernetes_api(), versions, steps.model_names(), target)
        return f"kserve: {predictor_namespace}/{predictor_name} canary {canary_percent}%"
    if mode == "local":
        return rollout.notify_local(versions, reload_url or None)
    return "deploy skipped"


@dataclass(frozen=True)
class TrainingComponents:
    """The pipeline's components bound to one container image."""

    validate_data: object
    featurize: object
    train_sequence: object
    train_autoencoder: object
    train_reference: object
    evaluate: object
    register: object
    gate: object
    deploy: object


def build_components(image: str) -> TrainingComponents:
    """kfp components running in `image` (which has fraudops[training] installed)."""
    def make(func):
        # The image already has kfp and fraudops: installing anything would need the network.
        return dsl.component(func, base_image=image, install_kfp_package=False)

    return TrainingComponents(*(make(f) for f in (
        validate_data, featurize, train_sequence, train_autoencoder, train_reference, evaluate,
        register, gate, deploy)))
