"""Settings of the serving unit, read once in each command's `main` and passed down.

Environment names follow the platform convention (prefix ``FRAUDOPS_``, nested ``__``), e.g.
``FRAUDOPS_PREDICTOR__SEQUENCE_MODEL_URI``, ``FRAUDOPS_GATEWAY__API_KEYS``.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr, field_validator

from fraudops import protocol
from fraudops.settings import CommonSettings, DatabaseSettings, KafkaSettings, MLflowSettings

_ALIAS_URI = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/@]+)$")


def parse_alias_uri(uri: str) -> tuple[str, str] | None:
    """(name, alias) of a ``models:/NAME@ALIAS`` URI, None for any other URI or path."""
    match = _ALIAS_URI.match(uri.strip())
    return (match["name"], match["alias"]) if match else None


class PredictorSettings(BaseModel):
    """The KServe predictor (`fraudops serve predictor`)."""

    model_name: str = protocol.MODEL_NAME
    #: MLflow model URI (``models:/NAME@ALIAS``, ``models:/NAME/3``, ``runs:/...``) or a local
    #: directory (KServe's storage initializer leaves the model under /mnt/models).
    sequence_model_uri: str = "models:/fraud-lstm-cnn@champion"
    autoencoder_model_uri: str = "models:/fraud-autoencoder@champion"
    http_port: int = Field(default=8080, ge=1, le=65535)
    grpc_port: int = Field(default=8081, ge=1, le=65535)
    enable_grpc: bool = False
    #: How often to look up the alias in the MLflow registry; 0 disables watching. Only
    #: alias URIs (``models:/NAME@ALIAS``) are watched.
    poll_interval_s: float = Field(default=30.0, ge=0.0)
    #: auto | cpu | cuda | cuda:N
    device: str = "auto"
    #: Largest number of sequences one request may carry (bigger requests get 400).
    max_request_batch: int = Field(default=8192, ge=1)
    #: Concurrent requests are merged into one forward pass up to this many sequences.
    max_merged_batch: int = Field(default=2048, ge=1)
    #: One log line per request (KServe's latency and timing lines, uvicorn's access log).
    #: Off by default: the Prometheus histograms carry the same figures at a fraction of the
    #: CPU cost.
    request_logging: bool = False
    #: torch intra-op threads; 0 keeps torch's default.
    torch_threads: int = Field(default=0, ge=0)
    #: Reason codes: at most this many features per transaction, each at least `reason_min_z`
    #: standard deviations away from the training mean.
    reason_codes: int = Field(default=3, ge=0, le=16)
    reason_min_z: float = Field(default=2.0, ge=0.0)


class PredictorServiceSettings(CommonSettings):
    """Everything `fraudops serve predictor` reads."""

    predictor: PredictorSettings = PredictorSettings()
    mlflow: MLflowSettings = MLflowSettings()


class GatewaySettings(BaseModel):
    """The HTTP gateway (`fraudops serve gateway`)."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    #: Comma-separated API keys accepted in the ``X-API-Key`` header (mount from a Secret).
    api_keys: SecretStr = SecretStr("")
    predictor_url: str = "http://127.0.0.1:8080"
    predictor_model: str = protocol.MODEL_NAME
    predictor_timeout_s: float = Field(default=5.0, gt=0)
    #: Seconds to wait for Kafka's acknowledgement of a produced transaction.
    produce_timeout_s: float = Field(default=10.0, gt=0)
    #: Stored transactions of the account replayed to rebuild its state for `/v1/score`.
    score_history_limit: int = Field(default=200, ge=0, le=10_000)
    #: Directory of drift reports (``<dir>/<report_id>/report.html`` + ``report.json``);
    #: empty means ``<home>/drift-reports``.
    reports_dir: str = ""
    #: Allowed CORS origins; empty disables CORS entirely.
    cors_origins: list[str] = Field(default_factory=list)
    #: uvicorn's access log (one line per request); the request histograms carry the same.
    access_log: bool = False
    #: Page size limits of list endpoints.
    max_page_size: int = Field(default=500, ge=1)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    def keys(self) -> list[bytes]:
        """The accepted API keys (bytes, for constant-time comparison)."""
        raw = self.api_keys.get_secret_value()
        return [key.strip().encode() for key in raw.split(",") if key.strip()]

    def resolved_reports_dir(self, home: Path) -> Path:
        return Path(self.reports_dir) if self.reports_dir else home / "drift-reports"


class GatewayServiceSettings(CommonSettings):
    """Everything `fraudops serve gateway` reads."""

    gateway: GatewaySettings = GatewaySettings()
    kafka: KafkaSettings = KafkaSettings()
    database: DatabaseSettings = DatabaseSettings()
