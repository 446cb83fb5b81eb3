"""Pipeline steps over files: what each kfp component (and `fraudops train`) runs.

Each step reads its inputs from directories and writes its outputs to directories, so the
same function runs in-process (CLI, retraining trigger) or inside a Kubeflow container.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from pathlib import Path

import pandas as pd

from fraudops.models import load_checkpoint, load_scorer, save_checkpoint
from fraudops.models.exceptions import ModelLoadError
from fraudops.settings import ModelNames
from fraudops.training import registry, tracking, workflow
from fraudops.training.config import TrainingConfig
from fraudops.training.dataset import FeatureSet, featurize, load_frame
from fraudops.training.evaluation import evaluate
from fraudops.training.exceptions import TrainingDataError
from fraudops.training.tracking import TrackingTarget

log = logging.getLogger(__name__)
DATA_META_FILE = "data_meta.json"


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
    version = tracking.data_version(data_path)
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
    """Train one model ('sequence' or 'autoencoder') and save its checkpoint + summary."""
    data = FeatureSet.load(features_dir)
    fit = {"sequence": workflow.fit_sequence, "autoencoder": workflow.fit_autoencoder}[kind]
    trained = fit(data, config)
    out = save_checkpoint(trained.bundle, out_dir)
    (out / workflow.SUMMARY_FILE).write_text(json.dumps(trained.summary, indent=2))
    return {k: v for k, v in trained.summary.items() if k != "history"}


def evaluate_step(features_dir: str | Path, sequence_dir: str | Path,
                  autoencoder_dir: str | Path, models_out: str | Path, report_out: str | Path,
                  config: TrainingConfig) -> dict:
    """Fit the policy on validation, evaluate on the holdout, write the final pair + report."""
    data = FeatureSet.load(features_dir)
    sequence, autoencoder = load_checkpoint(sequence_dir), load_checkpoint(autoencoder_dir)
    scorer = workflow.assemble_scorer(sequence, autoencoder, data, config)
    workflow.save_models(sequence, autoencoder, models_out)
    result = evaluate(scorer, data, workflow.holdout_rows(data, config))
    files = workflow.write_report(result, scorer, report_out)
    for name, source in (("sequence", sequence_dir), ("autoencoder", autoencoder_dir)):
        summary = Path(source) / workflow.SUMMARY_FILE
        if summary.is_file():
            (Path(report_out) / f"{name}_{workflow.SUMMARY_FILE}").write_text(summary.read_text())
    log.info("evaluation report in %s", files["metrics"].parent)
    return workflow.clean_metrics(result.metrics)


def register_step(features_dir: str | Path, models_dir: str | Path, report_dir: str | Path,
                  config: TrainingConfig, target: TrackingTarget, names: ModelNames
                  ) -> registry.ModelVersions:
    """Log the run (params, metrics, plots, lineage, models) and register the pair as challenger."""
    client, experiment_id = tracking.connect(target)
    models_dir, report_dir = Path(models_dir), Path(report_dir)
    bundles = workflow.load_models(models_dir)
    metrics = json.loads((report_dir / workflow.METRICS_FILE).read_text())
    meta = data_meta(features_dir)
    tags = {tracking.TAG_DATA_VERSION: meta.get("data_version"),
            tracking.TAG_GIT_COMMIT: tracking.git_commit(),
            "fraudops.data_md5": meta.get("data_md5"), "fraudops.data_path": meta.get("data_path")}
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
    client, _ = tracking.connect(target)
    metrics = json.loads((Path(report_dir) / workflow.METRICS_FILE).read_text())
    challenger = metrics.get(f"sequence.{config.gate_metric}")
    champion = None
    if registry.champion_versions(client, names) is not None:
        champion = champion_score(features_dir, config, names)
    decision = registry.decide_promotion(float("nan") if challenger is None else challenger,
                                         champion, config.gate_margin, config.gate_metric)
    registry.apply_decision(client, names, versions, decision)
    return decision
