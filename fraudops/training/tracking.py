"""MLflow tracking: where runs go, what a training run logs, how models are logged.

The store comes from `fraudops.settings.MLflowSettings`: SQLite plus a local artifact directory
by default, PostgreSQL plus S3 (or any MLflow store) in a cluster. Models are logged as pyfunc
models wrapping our checkpoint directory (see `fraudops.models.pyfunc` for why).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import torch
from mlflow import MlflowClient
from mlflow.models import infer_signature

from fraudops.models import ModelBundle
from fraudops.training.exceptions import RegistryError
from fraudops.training.lineage import data_version, file_md5, git_commit  # noqa: F401 (re-export)
from fraudops.training.settings import TrackingTarget

log = logging.getLogger(__name__)
SEQUENCE_ARTIFACT, AUTOENCODER_ARTIFACT = "sequence_model", "autoencoder_model"
#: The gradient-boosted reference, logged beside the pair (compared with, never registered).
REFERENCE_ARTIFACT = "reference_model"
#: Tags every training run carries (the lineage an auditor asks for).
TAG_DATA_VERSION = "fraudops.data_version"
TAG_FEATURE_SPEC = "fraudops.feature_spec_version"
TAG_FEATURE_FINGERPRINT = "fraudops.feature_spec_fingerprint"
TAG_GIT_COMMIT = "fraudops.git_commit"
#: MLflow's run description (markdown on the run page): the comparison with the reference.
TAG_NOTE = "mlflow.note.content"


def connect(target: TrackingTarget) -> tuple[MlflowClient, str]:
    """Point MLflow at the store; create the experiment if needed. Returns (client, exp id)."""
    if target.tracking_uri.startswith("sqlite:///"):
        Path(target.tracking_uri[len("sqlite:///"):]).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(target.tracking_uri)
    mlflow.set_registry_uri(target.tracking_uri)
    client = MlflowClient(target.tracking_uri, target.tracking_uri)
    try:
        experiment = client.get_experiment_by_name(target.experiment)
        exp_id = experiment.experiment_id if experiment else client.create_experiment(
            target.experiment, artifact_location=target.artifact_location)
    except mlflow.exceptions.MlflowException as error:
        raise RegistryError(f"cannot use MLflow store {target.tracking_uri}: {error.message}") \
            from error
    return client, exp_id


def _requirements() -> list[str]:
    # Explicit requirements: MLflow's inference would import the model in a subprocess (slow)
    # and cannot see that fraudops itself must be installed where the model is served.
    return ["fraudops", f"torch=={torch.__version__.split('+')[0]}", f"mlflow=={mlflow.__version__}"]


def _example(bundle: ModelBundle) -> object:
    dim, steps = bundle.module.config.input_dim, bundle.seq_len
    if bundle.kind == "lstm_cnn":
        mask = np.ones((2, steps), dtype=bool)
        mask[0, : steps - 1] = False
        return {"sequences": np.zeros((2, steps, dim), dtype=np.float32), "mask": mask}
    return np.zeros((2, dim), dtype=np.float32)


def log_model(bundle: ModelBundle, checkpoint_dir: Path, name: str):
    """Log one checkpoint directory as a pyfunc model in the active run; returns ModelInfo."""
    from fraudops.models.pyfunc import CHECKPOINT_ARTIFACT, AutoencoderPyfunc, SequencePyfunc

    python_model = SequencePyfunc() if bundle.kind == "lstm_cnn" else AutoencoderPyfunc()
    example = _example(bundle)
    output = np.zeros(2, dtype=np.float32)
    return mlflow.pyfunc.log_model(
        name=name, python_model=python_model,
        artifacts={CHECKPOINT_ARTIFACT: str(checkpoint_dir)},
        signature=infer_signature(example, output), input_example=example,
        pip_requirements=_requirements(),
    )


def log_reference(directory: Path) -> str | None:
    """Log the reference (when `directory` holds one) as an MLflow LightGBM model in the active
    run; returns its model URI. It sits beside the pair for comparison and is never registered."""
    from fraudops.training.reference import has_reference, load_reference

    if not has_reference(directory):
        return None
    import lightgbm

    booster = load_reference(directory).booster
    example = np.zeros((2, booster.num_feature()), dtype=np.float32)
    info = mlflow.lightgbm.log_model(
        booster, name=REFERENCE_ARTIFACT, signature=infer_signature(example, np.zeros(2)),
        pip_requirements=[f"lightgbm=={lightgbm.__version__}"])
    return info.model_uri


@dataclass(frozen=True)
class LoggedRun:
    """A finished MLflow run and the URIs of the models logged in it."""

    run_id: str
    sequence_uri: str
    autoencoder_uri: str
    reference_uri: str | None = None  # the gradient-boosted reference, when one was trained


def flatten(prefix: str, value: object) -> dict[str, object]:
    """Nested dicts as dotted keys (MLflow params and metrics are flat)."""
    if isinstance(value, dict):
        out: dict[str, object] = {}
        for key, item in value.items():
            out.update(flatten(f"{prefix}.{key}" if prefix else str(key), item))
        return out
    return {prefix: value}


def log_training_run(experiment_id: str, bundles: tuple[ModelBundle, ModelBundle],
                     models_dir: Path, report_files: dict[str, Path], metrics: dict,
                     params: dict, tags: dict[str, str]) -> LoggedRun:
    """One run: params, metrics (NaN skipped), plots, lineage tags, both models and the
    gradient-boosted reference (when `models_dir` holds one)."""
    sequence, autoencoder = bundles
    with mlflow.start_run(experiment_id=experiment_id) as run:
        mlflow.log_params({k: str(v)[:500] for k, v in flatten("", params).items()})
        mlflow.log_metrics({k: float(v) for k, v in metrics.items()
                            if v is not None and np.isfinite(v)})
        mlflow.set_tags({TAG_FEATURE_SPEC: sequence.feature_spec_version,
                         TAG_FEATURE_FINGERPRINT: str(sequence.feature_spec.get("fingerprint")),
                         **{k: v for k, v in tags.items() if v is not None}})
        for path in report_files.values():
            mlflow.log_artifact(str(path), artifact_path="evaluation")
        seq_info = log_model(sequence, models_dir / "sequence", SEQUENCE_ARTIFACT)
        ae_info = log_model(autoencoder, models_dir / "autoencoder", AUTOENCODER_ARTIFACT)
        reference_uri = log_reference(models_dir / "reference")
    return LoggedRun(run.info.run_id, seq_info.model_uri, ae_info.model_uri, reference_uri)
