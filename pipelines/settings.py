"""Settings of the pipeline unit (`fraudops pipeline ...`): FRAUDOPS_KFP__*, FRAUDOPS_MLFLOW__*."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from fraudops.settings import settings_config
from fraudops.training.settings import TrainingSettings
from pipelines.pipeline import DEFAULT_IMAGE, PIPELINE_NAME


class KfpSettings(BaseModel):
    """Kubeflow Pipelines endpoint, names, image and the deploy target."""

    host: str = ""
    namespace: str = ""
    pipeline_name: str = PIPELINE_NAME
    experiment: str = "fraudops-retraining"
    image: str = DEFAULT_IMAGE
    cron: str = "0 0 3 * * 0"
    #: Where kfp.local keeps run outputs; empty means FRAUDOPS_HOME/kfp.
    pipeline_root: str = ""
    predictor_name: str = "fraudops-predictor"
    predictor_namespace: str = "fraudops"
    canary_percent: int = Field(default=10, ge=0, le=100)


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
