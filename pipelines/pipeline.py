"""The training pipeline: validate -> featurize -> train x3 in parallel (LSTM-CNN, autoencoder,
gradient-boosted reference) -> evaluate -> register -> gate -> (if promoted) deploy. Only wiring
lives here; the steps are components/.

No ``from __future__ import annotations`` here or in components/: kfp reads the annotations.
"""


from kfp import dsl

from components.training import build_components
from fraudops.settings import PIPELINE_IMAGE, PIPELINE_NAME


def build_pipeline(image: str = PIPELINE_IMAGE, env: dict[str, str] | None = None):
    """The pipeline function with components bound to `image`; `env` is set on every task
    (e.g. FRAUDOPS_MLFLOW__TRACKING_URI for a cluster: compiled in, never a secret)."""
    c = build_components(image)

    def configure(task):
        task.set_caching_options(False)  # data at a path changes; register/deploy have effects
        for name, value in sorted((env or {}).items()):
            task.set_env_variable(name, value)
        return task

    @dsl.pipeline(name=PIPELINE_NAME,
                  description="Train, evaluate, register and promote the fraud models.")
    def training_pipeline(
        data_path: str,
        window_start: str = "",
        window_end: str = "",
        config_json: str = "{}",
        tracking_uri: str = "",
        experiment: str = "",
        deploy_mode: str = "local",
        predictor_name: str = "fraudops-predictor",
        predictor_namespace: str = "fraudops",
        canary_percent: int = 10,
        reload_url: str = "",
    ) -> dsl.Artifact:
        validated = configure(c.validate_data(data_path=data_path))
        features = configure(c.featurize(data_path=data_path, window_start=window_start,
                                         window_end=window_end, config_json=config_json))
        features.after(validated)
        data = features.outputs["features"]
        sequence = configure(c.train_sequence(features=data, config_json=config_json))
        autoencoder = configure(c.train_autoencoder(features=data, config_json=config_json))
        reference = configure(c.train_reference(features=data, config_json=config_json))
        evaluated = configure(c.evaluate(
            features=data, sequence=sequence.outputs["model"],
            autoencoder=autoencoder.outputs["model"], reference=reference.outputs["model"],
            config_json=config_json))
        registered = configure(c.register(
            features=data, models=evaluated.outputs["models"],
            report=evaluated.outputs["report"], config_json=config_json,
            tracking_uri=tracking_uri, experiment=experiment))
        gated = configure(c.gate(
            features=data, report=evaluated.outputs["report"],
            models=evaluated.outputs["models"],
            sequence_version=registered.outputs["sequence_version"],
            autoencoder_version=registered.outputs["autoencoder_version"],
            run_id=registered.outputs["run_id"], config_json=config_json,
            tracking_uri=tracking_uri, experiment=experiment))
        with dsl.If(gated.outputs["Output"] == True, name="promoted"):
            configure(c.deploy(
                sequence_version=registered.outputs["sequence_version"],
                autoencoder_version=registered.outputs["autoencoder_version"],
                mode=deploy_mode, predictor_name=predictor_name,
                predictor_namespace=predictor_namespace, canary_percent=canary_percent,
                reload_url=reload_url))
        return gated.outputs["outcome"]

    return training_pipeline
