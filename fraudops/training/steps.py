"""Pipeline steps over files: what each kfp component (and `fraudops train`) runs.

Each step reads its inputs from directories and writes its outputs to directories, so the
same function runs in-process (CLI, retraining trigger) or inside a Kubeflow container.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from fraudops.schema import APPROVE
from fraudops.settings import ModelNames
from fraudops.training import lineage, reference
from fraudops.training.config import TrainingConfig
from fraudops.training.dataset import FeatureSet, featurize, load_frame
from fraudops.training.exceptions import TrainingDataError
from fraudops.training.splits import split_for

if TYPE_CHECKING:  # torch, MLflow and sklearn load on use: each pipeline step is a process
    from fraudops.training import registry
    from fraudops.training.evaluation import Evaluation
    from fraudops.training.settings import TrackingTarget

log = logging.getLogger(__name__)
DATA_META_FILE = "data_meta.json"
SCORES_FILE = "holdout_scores.npz"


def select_window(frame: pd.DataFrame, start: datetime | None, end: datetime | None
                  ) -> pd.DataFrame:
    """Rows with start <= timestamp < end (either bound optional)."""
    stamps = pd.to_datetime(frame["timestamp"], utc=True)
    keep = pd.Series(True, index=frame.index)
    if start is not None:
        keep &= stamps >= _utc(start)
    if end is not None:
        keep &= stamps < _utc(end)
    selected = frame[keep]
    if selected.empty:
        raise TrainingDataError(f"no rows between {start} and {end}")
    return selected


def _utc(moment: datetime | str) -> pd.Timestamp:
    stamp = pd.Timestamp(moment)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def featurize_step(data_path: str | Path, out_dir: str | Path, seq_len: int,
                   start: datetime | None = None, end: datetime | None = None) -> dict:
    """Read, window and featurize a data set; records its version for lineage."""
    frame = select_window(load_frame(data_path), start, end)
    data = featurize(frame, seq_len)
    data.save(out_dir)
    version = lineage.data_version(data_path)
    meta = {"data_path": str(data_path), "data_version": version["version"],
            "data_md5": version["md5"],
            "rows": len(data), "labelled_rows": int((data.labels >= 0).sum()),
            "fraud_rows": int((data.labels == 1).sum()), "feature_dim": data.spec.dim,
            "window_start": str(start) if start else None, "window_end": str(end) if end else None}
    (Path(out_dir) / DATA_META_FILE).write_text(json.dumps(meta, indent=2))
    return meta


def data_meta(features_dir: str | Path) -> dict:
    path = Path(features_dir) / DATA_META_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def train_step(kind: str, features_dir: str | Path, out_dir: str | Path,
               config: TrainingConfig) -> dict:
    """Train one model ('sequence', 'autoencoder' or 'reference'); save it and its summary."""
    from fraudops.models import save_checkpoint
    from fraudops.training import workflow

    data = FeatureSet.load(features_dir)
    if kind == "reference":
        return reference_step(data, out_dir, config)
    fit = {"sequence": workflow.fit_sequence, "autoencoder": workflow.fit_autoencoder}[kind]
    trained = fit(data, config)
    if config.export_onnx:
        trained.bundle.onnx = _onnx_graph(trained.bundle)
    out = save_checkpoint(trained.bundle, out_dir)
    (out / workflow.SUMMARY_FILE).write_text(json.dumps(trained.summary, indent=2))
    return {k: v for k, v in trained.summary.items() if k != "history"}


def _onnx_graph(bundle) -> bytes | None:
    """The model's checked ONNX graph; None (logged) when it cannot be exported faithfully."""
    from fraudops.models.onnx_graph import OnnxExportError, export_onnx

    try:
        return export_onnx(bundle)
    except OnnxExportError as error:
        log.error("%s; the model is saved without its ONNX graph", error)
        return None


def reference_step(data: FeatureSet, out_dir: str | Path, config: TrainingConfig) -> dict:
    """Train the gradient-boosted reference and save it (only a summary when it is off)."""
    if not config.reference.enabled:
        reference.save_disabled(out_dir)
        return {"enabled": False}
    model = reference.train_reference(data, split_for(data, config), config)
    reference.save_reference(model, out_dir)
    return dict(model.summary)


def evaluate_step(features_dir: str | Path, sequence_dir: str | Path,
                  autoencoder_dir: str | Path, models_out: str | Path, report_out: str | Path,
                  config: TrainingConfig, reference_dir: str | Path | None = None) -> dict:
    """Fit the policy on validation, evaluate on the holdout, write the final pair + report.

    With a trained reference in `reference_dir`, the metrics and the report also hold
    ``reference.*`` and the LSTM-CNN-minus-reference ``gap.*`` on the same holdout, and the
    reference is kept beside the pair (``reference/`` in `models_out`: logged, never served).
    """
    from fraudops.models import load_checkpoint
    from fraudops.training import comparison, workflow
    from fraudops.training.evaluation import evaluate

    data = FeatureSet.load(features_dir)
    sequence, autoencoder = load_checkpoint(sequence_dir), load_checkpoint(autoencoder_dir)
    scorer = workflow.assemble_scorer(sequence, autoencoder, data, config)
    workflow.save_models(sequence, autoencoder, models_out)
    holdout = workflow.holdout_rows(data, config)
    result = evaluate(scorer, data, holdout)
    if reference.has_reference(reference_dir):
        trained = reference.load_reference(reference_dir)
        comparison.add_reference(result, trained, data, holdout)
        reference.save_reference(trained, Path(models_out) / workflow.REFERENCE_DIR)
    files = workflow.write_report(result, scorer, report_out)
    _save_scores(result, Path(report_out) / SCORES_FILE)
    sources = {"sequence": sequence_dir, "autoencoder": autoencoder_dir,
               "reference": reference_dir}
    for name, source in ((n, Path(s)) for n, s in sources.items() if s is not None):
        if (source / workflow.SUMMARY_FILE).is_file():
            (Path(report_out) / f"{name}_{workflow.SUMMARY_FILE}").write_text(
                (source / workflow.SUMMARY_FILE).read_text())
    log.info("evaluation report in %s", files["metrics"].parent)
    return workflow.clean_metrics(result.metrics)


def _save_scores(result: Evaluation, path: Path) -> None:
    extra = {} if result.reference_probability is None else {
        "reference_probability": result.reference_probability}
    np.savez(path, labels=result.labels, fraud_probability=result.fraud_probability,
             anomaly_score=result.anomaly_score, decision=result.decision.astype(str), **extra)


def register_step(features_dir: str | Path, models_dir: str | Path, report_dir: str | Path,
                  config: TrainingConfig, target: TrackingTarget, names: ModelNames
                  ) -> registry.ModelVersions:
    """Log the run (params, metrics, plots, lineage, the models and the reference) and register
    the pair as challenger."""
    from fraudops.training import comparison, registry, tracking, workflow
    
    client, experiment_id = tracking.connect(target)
    models_dir, report_dir = Path(models_dir), Path(report_dir)
    bundles = workflow.load_models(models_dir)
    metrics = json.loads((report_dir / workflow.METRICS_FILE).read_text())
    meta = data_meta(features_dir)
    tags = {tracking.TAG_DATA_VERSION: meta.get("data_version"),
            tracking.TAG_GIT_COMMIT: lineage.git_commit(),
            "fraudops.data_md5": meta.get("data_md5"), "fraudops.data_path": meta.get("data_path")}
    stated = report_dir / comparison.REPORT_FILE
    if stated.is_file():  # the run page's description states the gap to the reference
        tags[tracking.TAG_NOTE] = stated.read_text()
    params = {"config": config.model_dump(), "data": {k: v for k, v in meta.items()
                                                      if k != "data_path"}}
    files = {p.name: p for p in sorted(report_dir.iterdir()) if p.is_file()}
    logged = tracking.log_training_run(experiment_id, bundles, models_dir, files, metrics,
                                       params, tags)
    return registry.register_pair(client, names, logged.sequence_uri, logged.autoencoder_uri,
                                  logged.run_id)


def champion_score(features_dir: str | Path, config: TrainingConfig, names: ModelNames
                   ) -> float | None:
    """The current champion pair's gate metric on this run's holdout (None if not comparable)."""
    from fraudops.models import load_scorer
    from fraudops.models.exceptions import ModelLoadError
    from fraudops.training import registry, workflow
    from fraudops.training.evaluation import evaluate
    
    data = FeatureSet.load(features_dir)
    try:
        scorer = load_scorer(registry.model_uri(names.sequence, names.champion_alias),
                             registry.model_uri(names.autoencoder, names.champion_alias),
                             device=config.device, expected_spec_version=data.spec.version)
    except ModelLoadError as error:
        log.info("champion not comparable: %s", error)
        return None
    if scorer.feature_spec.get("fingerprint") != data.spec.fingerprint \
            or scorer.seq_len != data.seq_len:
        log.info("champion uses other features or sequence length; not comparable")
        return None
    return evaluate(scorer, data, workflow.holdout_rows(data, config)).headline(config.gate_metric)


def gate_step(features_dir: str | Path, report_dir: str | Path, versions: registry.ModelVersions,
              config: TrainingConfig, target: TrackingTarget, names: ModelNames
              ) -> registry.GateDecision:
    """Compare challenger and champion on the same holdout; move `champion` if better."""
    from fraudops.training import registry, tracking, workflow
    
    client, _ = tracking.connect(target)
    metrics = json.loads((Path(report_dir) / workflow.METRICS_FILE).read_text())
    challenger = metrics.get(f"sequence.{config.gate_metric}")
    champion = None
    if registry.champion_versions(client, names) is not None:
        champion = champion_score(features_dir, config, names)
    decision = registry.decide_promotion(float("nan") if challenger is None else challenger,
                                         champion, config.gate_margin, config.gate_metric,
                                         metrics.get(f"reference.{config.gate_metric}"))
    registry.apply_decision(client, names, versions, decision)
    return decision


def validate_data_step(data_path: str | Path) -> dict:
    """Check a data set can be trained on; returns its version and a few figures.

    Raises `TrainingDataError` for an unreadable file, no labels, or a single class.
    """
    frame = load_frame(data_path)
    labels = frame["label"].to_numpy()
    known = labels[labels >= 0]
    if known.size == 0 or known.min() == known.max():
        raise TrainingDataError(f"{data_path}: training needs labelled fraud and legitimate "
                                f"rows ({known.size} labelled, {int((known == 1).sum())} fraud)")
    version = lineage.data_version(data_path)
    return {"data_version": version["version"], "data_md5": version["md5"],
            "rows": len(frame), "labelled_rows": int(known.size),
            "fraud_rate": float(known.mean()), "accounts": int(frame["account_id"].nunique())}


def config_from_json(text: str) -> TrainingConfig:
    """A `TrainingConfig` from a JSON object (empty: defaults); pipeline parameter format."""
    return TrainingConfig.model_validate_json(text.strip() or "{}")


def resolve_target(tracking_uri: str = "", experiment: str = "") -> TrackingTarget:
    """The MLflow target from explicit values, else from the environment (FRAUDOPS_MLFLOW__*)."""
    from fraudops.training.settings import TrackingTarget, TrainingSettings

    settings = TrainingSettings()
    target = settings.tracking_target()
    return TrackingTarget(tracking_uri or target.tracking_uri, target.artifact_location,
                          experiment or target.experiment)


def model_names() -> ModelNames:
    """Registered model names from the environment (FRAUDOPS_MLFLOW__MODELS__*)."""
    from fraudops.training.settings import TrainingSettings

    return TrainingSettings().mlflow.models


def holdout_curves(report_dir: str | Path) -> tuple[dict, list[list[int]]]:
    """ROC points of the sequence score and the flagged-vs-label confusion matrix."""
    from fraudops.training.plots import curve_points

    with np.load(Path(report_dir) / SCORES_FILE, allow_pickle=False) as scores:
        labels, probability = scores["labels"], scores["fraud_probability"]
        flagged = scores["decision"] != APPROVE
    matrix = [[int(((labels == truth) & (flagged == bool(pred))).sum()) for pred in (0, 1)]
              for truth in (0, 1)]
    return curve_points(labels, probability), matrix


def outcome_record(features_dir: str | Path, models_dir: str | Path, report_dir: str | Path,
                   versions: registry.ModelVersions, decision: registry.GateDecision) -> dict:
    """What a finished run reports (same keys as `TrainingOutcome.to_dict`)."""
    from fraudops.training import workflow
    
    metrics = json.loads((Path(report_dir) / workflow.METRICS_FILE).read_text())
    return {"promoted": decision.promote, "metrics": metrics, "data": data_meta(features_dir),
            "models_dir": str(models_dir), "report_dir": str(report_dir),
            "versions": versions.to_dict(), "decision": decision.to_dict(), "seconds": {}}
