"""Retraining entry point: train on a data version / time window, register, gate, report.

    outcome = run_training(TrainingJob(data_path=..., start=..., end=..., work_dir=...))
    outcome.promoted, outcome.versions, outcome.challenger_score, outcome.champion_score

This runs the pipeline's steps in-process (the local platform, the drift trigger, tests). The
same steps run as a Kubeflow pipeline from `pipelines/` (``fraudops pipeline run --local`` runs
them through kfp.local; ``fraudops pipeline submit`` on a cluster).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from fraudops.settings import ModelNames
from fraudops.training import steps
from fraudops.training.config import TrainingConfig
from fraudops.training.registry import GateDecision, ModelVersions
from fraudops.training.tracking import TrackingTarget

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrainingJob:
    """What to train on and where to record it."""

    data_path: Path
    work_dir: Path
    target: TrackingTarget | None = None  # None: train and evaluate only, no registry
    names: ModelNames = field(default_factory=ModelNames)
    config: TrainingConfig = field(default_factory=TrainingConfig)
    start: datetime | None = None
    end: datetime | None = None


@dataclass
class TrainingOutcome:
    """Result of a training run (what the drift trigger and the CLI report)."""

    metrics: dict
    data: dict
    models_dir: Path
    report_dir: Path
    versions: ModelVersions | None = None
    decision: GateDecision | None = None
    seconds: dict = field(default_factory=dict)

    @property
    def promoted(self) -> bool:
        return bool(self.decision and self.decision.promote)

    @property
    def run_id(self) -> str | None:
        return self.versions.run_id if self.versions else None

    @property
    def challenger_score(self) -> float | None:
        return self.decision.challenger_score if self.decision else None

    @property
    def champion_score(self) -> float | None:
        return self.decision.champion_score if self.decision else None

    def to_dict(self) -> dict:
        return {"promoted": self.promoted, "metrics": self.metrics, "data": self.data,
                "models_dir": str(self.models_dir), "report_dir": str(self.report_dir),
                "versions": self.versions.to_dict() if self.versions else None,
                "decision": self.decision.to_dict() if self.decision else None,
                "seconds": self.seconds}


def outcome_from_dict(data: dict) -> TrainingOutcome:
    """Rebuild an outcome from `TrainingOutcome.to_dict` output (e.g. a pipeline's result)."""
    versions = ModelVersions(**data["versions"]) if data.get("versions") else None
    decision = GateDecision(**data["decision"]) if data.get("decision") else None
    return TrainingOutcome(data.get("metrics", {}), data.get("data", {}),
                           Path(data["models_dir"]), Path(data["report_dir"]), versions,
                           decision, data.get("seconds", {}))


class _Timer:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def run(self, name: str, fn, *args, **kwargs):
        started = time.perf_counter()
        result = fn(*args, **kwargs)
        self.seconds[name] = round(time.perf_counter() - started, 3)
        log.info("step %s took %.1f s", name, self.seconds[name])
        return result


def run_training(job: TrainingJob, features_dir: Path | None = None) -> TrainingOutcome:
    """Featurize, train both models and the gradient-boosted reference, evaluate all three on
    the same holdout, and (with a tracking target) register + gate.

    `features_dir`: reuse featurized data (`fraudops features build`) instead of featurizing.
    """
    work, cfg, timer = Path(job.work_dir), job.config, _Timer()
    dirs = {n: work / n for n in ("features", "sequence", "autoencoder", "reference", "models",
                                  "report")}
    if features_dir is not None:
        dirs["features"] = Path(features_dir)
        data = steps.data_meta(features_dir)
    else:
        data = timer.run("featurize", steps.featurize_step, job.data_path, dirs["features"],
                         cfg.seq_len, job.start, job.end)
    timer.run("train_sequence", steps.train_step, "sequence", dirs["features"],
              dirs["sequence"], cfg)
    timer.run("train_autoencoder", steps.train_step, "autoencoder", dirs["features"],
              dirs["autoencoder"], cfg)
    timer.run("train_reference", steps.train_step, "reference", dirs["features"],
              dirs["reference"], cfg)
    metrics = timer.run("evaluate", steps.evaluate_step, dirs["features"], dirs["sequence"],
                        dirs["autoencoder"], dirs["models"], dirs["report"], cfg,
                        dirs["reference"])
    outcome = TrainingOutcome(metrics, data, dirs["models"], dirs["report"])
    if job.target is not None:
        outcome.versions = timer.run("register", steps.register_step, dirs["features"],
                                     dirs["models"], dirs["report"], cfg, job.target, job.names)
        outcome.decision = timer.run("gate", steps.gate_step, dirs["features"], dirs["report"],
                                     outcome.versions, cfg, job.target, job.names)
    outcome.seconds = timer.seconds
    return outcome


def retrain(data_path: str, window_start: str | None = None, window_end: str | None = None,
            work_dir: str | None = None, **_ignored: object) -> TrainingOutcome:
    """Entry point for the drift trigger: ``fraudops.training.retrain:retrain`` with the
    request's parameters as keyword arguments (unknown ones are ignored).

    Reads the settings (MLflow store, home) from the environment, trains on the window
    [window_start, window_end) of `data_path`, registers and gates.
    """
    import tempfile

    from fraudops.training.settings import TrainingSettings

    settings = TrainingSettings()
    settings.home.mkdir(parents=True, exist_ok=True)
    work = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="retrain-",
                                                                 dir=settings.home))
    return run_training(TrainingJob(
        Path(data_path), work, settings.tracking_target(), settings.mlflow.models,
        start=datetime.fromisoformat(window_start) if window_start else None,
        end=datetime.fromisoformat(window_end) if window_end else None))
