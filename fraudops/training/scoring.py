"""Evaluate a registered (or local) model pair on any labelled data set in the platform layout."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from fraudops.features import FeatureSpec
from fraudops.models import load_scorer
from fraudops.settings import ModelNames
from fraudops.training import registry, tracking, workflow
from fraudops.training.dataset import featurize, load_frame
from fraudops.training.evaluation import evaluate
from fraudops.training.exceptions import RegistryError

#: Sub-directory of a training run's work dir holding the final pair (policy included).
TRAIN_MODELS_DIR = "models"
_VERSION_URI = re.compile(r"^models:/([^/@]+)/(\d+)$")


def resolve_pair(model: str, autoencoder: str | None, names: ModelNames) -> tuple[str, str]:
    """(sequence URI, autoencoder URI) from what the user typed.

    A local models dir -> its two subdirectories; an alias or version number -> registry URIs
    of the sequence model; the autoencoder follows the same alias, or the version registered
    together with that sequence version (tag ``fraudops.partner_version``).
    """
    local = Path(model)
    if (local / TRAIN_MODELS_DIR / workflow.SEQUENCE_DIR).is_dir():
        local = local / TRAIN_MODELS_DIR  # a `fraudops train --out` directory: final models
    if local.is_dir() and (local / workflow.SEQUENCE_DIR).is_dir():
        return str(local / workflow.SEQUENCE_DIR), str(local / workflow.AUTOENCODER_DIR)
    if not model.startswith("models:/") and "://" not in model and not local.exists():
        model = registry.model_uri(names.sequence, model)
    if autoencoder:
        return model, autoencoder
    if "@" in model:
        return model, registry.model_uri(names.autoencoder, model.rsplit("@", 1)[1])
    match = _VERSION_URI.match(model)
    if not match:
        raise RegistryError(f"cannot derive the autoencoder for {model}; pass --autoencoder")
    from mlflow import MlflowClient

    partner = MlflowClient().get_model_version(*match.groups()).tags.get(registry.TAG_PARTNER)
    if not partner:
        raise RegistryError(f"{model} has no partner autoencoder tag; pass --autoencoder")
    return model, registry.model_uri(names.autoencoder, partner)


def evaluate_dataset(settings, model: str, autoencoder: str | None, data_path: Path,
                     plots_out: Path | None = None) -> dict:
    """Metrics of the pair on every labelled row of `data_path` (features per the model's spec)."""
    tracking.connect(settings.tracking_target())
    sequence_uri, autoencoder_uri = resolve_pair(model, autoencoder, settings.mlflow.models)
    scorer = load_scorer(sequence_uri, autoencoder_uri)
    spec = FeatureSpec.from_dict(scorer.feature_spec)
    data = featurize(load_frame(data_path), scorer.seq_len, spec)
    result = evaluate(scorer, data, np.arange(len(data)))
    if plots_out is not None:
        workflow.write_report(result, scorer, plots_out)
    metrics = workflow.clean_metrics(result.metrics)
    metrics["model_versions"] = scorer.versions  # type: ignore[assignment]
    return metrics
