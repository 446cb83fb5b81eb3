"""Settings of the pipeline unit (`fraudops pipeline ...`): FRAUDOPS_KFP__*, FRAUDOPS_MLFLOW__*."""

from __future__ import annotations

from pathlib import Path

from fraudops.settings import KfpSettings, settings_config
from fraudops.training.settings import TrainingSettings


class PipelineSettings(TrainingSettings):
    """Everything `fraudops pipeline` reads."""

    model_config = settings_config()

    kfp: KfpSettings = KfpSettings()

    def resolved_pipeline_root(self) -> Path:
        return Path(self.kfp.pipeline_root) if self.kfp.pipeline_root else self.home / "kfp"

    def task_env(self) -> dict[str, str]:
        """Non-secret settings compiled into every task of a cluster pipeline."""
        env = {}
        if self.mlflow.tracking_uri:
            env["FRAUDOPS_MLFLOW__TRACKING_URI"] = self.mlflow.tracking_uri
        if self.mlflow.artifact_location:
            env["FRAUDOPS_MLFLOW__ARTIFACT_LOCATION"] = self.mlflow.artifact_location
        return env
