"""Settings of the training commands (`fraudops train`, `fraudops evaluate`, retraining)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

from fraudops.settings import CommonSettings, MLflowSettings, settings_config
from fraudops.training.config import TrainingConfig
from fraudops.training.exceptions import TrainingError


@dataclass(frozen=True)
class TrackingTarget:
    """Resolved tracking URI, artifact location and experiment name."""

    tracking_uri: str
    artifact_location: str
    experiment: str

    @classmethod
    def from_settings(cls, settings: MLflowSettings, home: Path) -> TrackingTarget:
        return cls(settings.resolved_tracking_uri(home), settings.resolved_artifact_location(home),
                   settings.experiment)


class TrainingSettings(CommonSettings):
    """FRAUDOPS_HOME, FRAUDOPS_MLFLOW__TRACKING_URI, FRAUDOPS_MLFLOW__ARTIFACT_LOCATION, ..."""

    model_config = settings_config()

    mlflow: MLflowSettings = MLflowSettings()

    def tracking_target(self) -> TrackingTarget:
        return TrackingTarget.from_settings(self.mlflow, self.home)


def load_training_config(params_file: Path | None, section: str = "train",
                         **overrides: object) -> TrainingConfig:
    """A `TrainingConfig` from a params file's `section` (DVC params.yaml) plus overrides."""
    values: dict = {}
    if params_file is not None:
        try:
            document = yaml.safe_load(Path(params_file).read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise TrainingError(f"cannot read params file {params_file}: {error}") from error
        values = dict(document.get(section, document) or {})
    values.update({k: v for k, v in overrides.items() if v is not None})
    return TrainingConfig.model_validate(values)
