"""Configuration sections shared by the deployable units.

Every unit reads its configuration once, in its `main()`, into its own `BaseSettings` subclass
that composes the sections below; the environment prefix is always ``FRAUDOPS_`` and nested
fields use ``__`` (``FRAUDOPS_KAFKA__BOOTSTRAP_SERVERS``), so one ConfigMap can feed every unit.
The defaults describe the embedded local platform: everything under ``FRAUDOPS_HOME``
(``.fraudops/`` in the working directory).
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from fraudops import __version__

ENV_PREFIX = "FRAUDOPS_"


def settings_config(**overrides: object) -> SettingsConfigDict:
    """The `model_config` every unit's settings class uses."""
    config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",
        extra="ignore",
        frozen=True,
    )
    config.update(overrides)  # type: ignore[typeddict-item]
    return config


class TopicSettings(BaseModel):
    """Kafka topic names."""

    transactions: str = "transactions"
    decisions: str = "fraud-decisions"
    alerts: str = "fraud-alerts"
    labels: str = "labels"
    dead_letter: str = "transactions-dlq"
    # Internal topics of the entity stages (`consumers.stages`; FRAUDOPS_CONSUMER__ENTITY_STAGES):
    # transactions and labels keyed by merchant, then by device, then by account again with the
    # merchant's and the device's features attached. As many partitions as `transactions`.
    by_merchant: str = "transactions-by-merchant"
    by_device: str = "transactions-by-device"
    enriched: str = "transactions-enriched"


class KafkaSettings(BaseModel):
    """Kafka connection; the same client code talks to tansu locally and Strimzi in a cluster."""

    bootstrap_servers: str = "127.0.0.1:9092"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    # A broker may hold JoinGroup for half the session timeout (tansu does): keep it short.
    session_timeout_ms: int = Field(default=6000, ge=1000)
    heartbeat_interval_ms: int = Field(default=2000, ge=100)
    topics: TopicSettings = TopicSettings()

    def librdkafka_config(self) -> dict[str, str | int]:
        """The connection as librdkafka configuration (confluent-kafka: every client of the
        platform)."""
        config: dict[str, str | int] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            config["sasl.mechanism"] = self.sasl_mechanism
            if self.sasl_username is not None:
                config["sasl.username"] = self.sasl_username
            if self.sasl_password is not None:
                config["sasl.password"] = self.sasl_password.get_secret_value()
        return config


class ModelNames(BaseModel):
    """Registered model names and the aliases the promotion gate moves."""

    sequence: str = "fraud-lstm-cnn"
    autoencoder: str = "fraud-autoencoder"
    champion_alias: str = "champion"
    challenger_alias: str = "challenger"


class MLflowSettings(BaseModel):
    """Tracking and registry. Empty URIs mean the embedded SQLite store under FRAUDOPS_HOME."""

    tracking_uri: str = ""
    artifact_location: str = ""
    experiment: str = "fraudops"
    models: ModelNames = ModelNames()

    def resolved_tracking_uri(self, home: Path) -> str:
        return self.tracking_uri or f"sqlite:///{(home / 'mlflow.db').resolve()}"

    def resolved_artifact_location(self, home: Path) -> str:
        return self.artifact_location or (home / "mlartifacts").resolve().as_uri()


class DatabaseSettings(BaseModel):
    """SQL store of suspicious transactions (SQLAlchemy URL); empty means SQLite under home."""

    url: SecretStr = SecretStr("")

    def resolved_url(self, home: Path) -> str:
        return self.url.get_secret_value() or f"sqlite:///{(home / 'fraudops.db').resolve()}"


#: The training pipeline's name in Kubeflow Pipelines: the pipeline unit uploads it under this
#: name, the drift job's launcher starts runs of it.
PIPELINE_NAME = "fraudops-training"
#: Default image of the pipeline's components; `fraudops pipeline compile --image`
#: (FRAUDOPS_KFP__IMAGE) overrides.
PIPELINE_IMAGE = f"ghcr.io/fraudops/fraudops-pipeline:{__version__}"


class KfpSettings(BaseModel):
    """Kubeflow Pipelines (FRAUDOPS_KFP__*): the API endpoint and names, read by the pipeline
    unit (compile, upload, schedule, run) and the drift job (start a retraining run); the
    components' image and the deploy target matter to the pipeline unit only."""

    host: str = ""
    namespace: str = ""
    pipeline_name: str = PIPELINE_NAME
    experiment: str = "fraudops-retraining"
    image: str = PIPELINE_IMAGE
    cron: str = "0 0 3 * * 0"
    #: Where kfp.local keeps run outputs; empty means FRAUDOPS_HOME/kfp.
    pipeline_root: str = ""
    predictor_name: str = "fraudops-predictor"
    predictor_namespace: str = "fraudops"
    canary_percent: int = Field(default=10, ge=0, le=100)


class CommonSettings(BaseSettings):
    """Fields every unit shares; units subclass this and add their own sections."""

    model_config = settings_config()

    home: Path = Field(default=Path(".fraudops"), description="Local state and artifacts.")
    log_level: str = "INFO"
