"""Settings of the serving unit, read once in each command's `main` and passed down.

Environment names follow the platform convention (prefix ``FRAUDOPS_``, nested ``__``), e.g.
``FRAUDOPS_PREDICTOR__SEQUENCE_MODEL_URI``, ``FRAUDOPS_GATEWAY__API_KEYS``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import NoDecode

from fraudops import protocol
from fraudops.settings import CommonSettings, DatabaseSettings, KafkaSettings, MLflowSettings

#: A list given in the environment as comma-separated text (not JSON).
CommaList = Annotated[list[str], NoDecode]
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
    #: A request of at most this many rows, alone in its forward pass (none merged with it), is
    #: scored on the server's event loop, not on the scoring thread, when the models run in one
    #: unpadded ONNX Runtime pass (a GPU or torch's padded passes always use the thread). The
    #: hand-off cost more than such a pass: a single transaction's p50 0.97-1.08 ms against
    #: 1.11-1.62 ms on the 2-core machine (README, "Predictor tuning"). 0 turns it off.
    inline_rows: int = Field(default=16, ge=0)
    #: The server's asyncio event loop: ``auto`` takes uvloop when it is installed (KServe
    #: requires ``uvicorn[standard]``, which installs it), ``asyncio`` the standard library's.
    #: KServe's own ``--event_loop auto`` promises the same, but `ModelServer.start` runs
    #: uvicorn inside ``asyncio.run`` with the default policy, so its choice never applies
    #: (KServe 0.21).
    event_loop: Literal["auto", "asyncio", "uvloop"] = "auto"
    #: One log line per request (KServe's latency and timing lines, uvicorn's access log).
    #: Off by default: the Prometheus histograms carry the same figures at a fraction of the
    #: CPU cost.
    request_logging: bool = False
    #: torch intra-op threads; 0 keeps torch's default (one per core the host has, not per
    #: core the pod may use). 1 measured best on a 2-core machine shared with the consumer and
    #: the broker: a second thread sped a lone 1,024-row pass up but made single requests and
    #: every figure under load worse (README, "Predictor tuning").
    torch_threads: int = Field(default=1, ge=0)
    #: Forward-pass precision. Either way a transaction scores bit for bit the same whatever
    #: else shares its batch (a batch redone after a crash gives the same decisions;
    #: `fraudops.models.Scorer`): float64 in one torch pass; float32 in one ONNX Runtime pass
    #: (its rows' bits, checked at load, do not depend on the batch), or in torch passes of
    #: exactly `block_rows` rows. float64 runs on torch only.
    precision: Literal["float64", "float32"] = "float32"
    #: Rows per torch float32 forward pass (the last pass padded), and per ONNX Runtime pass
    #: where the load-time check finds its scores batch-dependent. With 64, batches of 500 and
    #: 1,024 took 16.2 and 31.9 ms on one thread (32: 27.3 and 58.1; 128: 14.2 and 26.5, but
    #: 3.4-4.0 ms for up to 64 rows against 2.3-3.0).
    block_rows: int = Field(default=64, ge=1, le=8192)
    #: What runs the float32 passes: ``auto`` (the default) picks ONNX Runtime, over the graphs
    #: training logs with the models, on the CPU when the package is installed, and torch on a
    #: GPU, for float64, or when the models cannot be run by ONNX Runtime (with a warning).
    #: On the 2-core machine ONNX Runtime took a single transaction's p50 from 4.5 to 1.6 ms and
    #: batches of 1,024 from 14,094 to 25,081 sequences/s (README, "Predictor tuning").
    #: ``torch`` or ``onnxruntime`` force one (``onnxruntime`` fails rather than fall back).
    backend: Literal["auto", "torch", "onnxruntime"] = "auto"
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
    #: Comma-separated principals accepted in the ``X-API-Key`` header (mount from a Secret),
    #: each ``NAME:ROLE[+ROLE...]:KEY`` with roles ingest, analyst, admin, viewer (e.g.
    #: ``ana:analyst:k1,payments:ingest:k2``). A bare ``KEY`` gets `bare_key_roles` and the
    #: name ``key-<its position in the list>``.
    api_keys: SecretStr = SecretStr("")
    #: Roles of a bare key (one without ``NAME:ROLES:``), for local use.
    bare_key_roles: CommaList = Field(default_factory=lambda: ["ingest", "analyst"])
    #: Header carrying the user a trusted authenticating proxy (oauth2-proxy's
    #: ``X-Auth-Request-User``, ...) vouches for; empty trusts no header. It is honoured only
    #: on requests authenticated with the key of a principal in `trusted_proxy_principals`,
    #: which then act as that user with the proxy principal's roles.
    trusted_identity_header: str = ""
    #: Names of the principals (API keys) held by the authenticating proxy.
    trusted_proxy_principals: CommaList = Field(default_factory=list)
    #: Largest request body in bytes (counted as it streams, chunked or not); larger: 413.
    max_body_bytes: int = Field(default=65_536, ge=1024, le=16 * 1024 * 1024)
    #: Seconds a client may take to send the whole body (slow senders get 408).
    body_timeout_s: float = Field(default=10.0, gt=0)
    #: Seconds a request may take from its body to the start of the answer (then 504).
    request_timeout_s: float = Field(default=30.0, gt=0)
    #: Seconds an idle keep-alive connection stays open (uvicorn's timeout_keep_alive).
    keep_alive_timeout_s: int = Field(default=5, ge=1, le=300)
    #: Failed authentications allowed per client address (`limits` notation: "20/minute");
    #: beyond it every /v1 request from that address gets 429 until the window has moved on.
    auth_failure_limit: str = "20/minute"
    #: Proxies whose X-Forwarded-For names the client (uvicorn's forwarded_allow_ips): the
    #: client address the failure limit counts by.
    forwarded_allow_ips: str = "127.0.0.1"
    #: Host headers accepted (TrustedHost, e.g. ``fraudops.example.com,*.svc``); empty: any.
    allowed_hosts: CommaList = Field(default_factory=list)
    #: Serve ``/docs`` (Swagger UI from the gateway itself, no CDN) and ``/openapi.json``;
    #: off in production.
    docs_enabled: bool = False
    predictor_url: str = "http://127.0.0.1:8080"
    predictor_model: str = protocol.MODEL_NAME
    predictor_timeout_s: float = Field(default=5.0, gt=0)
    #: Seconds to wait for Kafka's acknowledgement of a produced transaction.
    produce_timeout_s: float = Field(default=10.0, gt=0)
    #: Stored transactions of the account replayed to rebuild its state for `/v1/score`.
    score_history_limit: int = Field(default=200, ge=0, le=10_000)
    #: The rule set `/v1/score` applies beside the model (the consumer's, fraudops.rules; ""
    #: = none). Re-read when the file changes and the lists reloaded when their revision moves,
    #: every `rules_refresh_s` at most (an invalid new version is refused; the running one stays).
    rules_path: str = ""
    rules_refresh_s: float = Field(default=2.0, gt=0, le=3600)
    #: Directory of drift reports (``<dir>/<report_id>/report.html`` + ``report.json``);
    #: empty means ``<home>/drift-reports``.
    reports_dir: str = ""
    #: Allowed CORS origins; empty disables CORS entirely.
    cors_origins: CommaList = Field(default_factory=list)
    #: uvicorn's access log (one line per request); the request histograms carry the same.
    access_log: bool = False
    #: Page size limits of list endpoints.
    max_page_size: int = Field(default=500, ge=1)
    #: Serve the analyst console under ``/console`` (login with an API key, then a session).
    console_enabled: bool = True
    #: Key signing the console's session cookies (mount from a Secret; every replica the same).
    #: Empty: a random key per process, so sessions end when the gateway restarts and do not
    #: carry over between replicas (fine locally).
    console_session_secret: SecretStr = SecretStr("")
    #: Seconds a console session lasts after login.
    console_session_max_age_s: int = Field(default=8 * 3600, ge=60, le=7 * 24 * 3600)
    #: The session cookie's ``Secure`` flag (browsers then send it over HTTPS only; they also
    #: send it to http://localhost). Turn off only for plain HTTP on another host, in tests.
    console_cookie_secure: bool = True
    #: Alerts per console queue page.
    console_page_size: int = Field(default=50, ge=1, le=500)

    @field_validator("cors_origins", "allowed_hosts", "bare_key_roles",
                     "trusted_proxy_principals", mode="before")
    @classmethod
    def _split_lists(cls, value: object) -> object:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value

    @field_validator("auth_failure_limit")
    @classmethod
    def _check_limit(cls, value: str) -> str:
        from limits import parse  # the serving extra's; settings import nothing heavy

        parse(value)  # raises ValueError for a malformed limit
        return value

    def resolved_reports_dir(self, home: Path) -> Path:
        return Path(self.reports_dir) if self.reports_dir else home / "drift-reports"


class GatewayServiceSettings(CommonSettings):
    """Everything `fraudops serve gateway` reads."""

    gateway: GatewaySettings = GatewaySettings()
    kafka: KafkaSettings = KafkaSettings()
    database: DatabaseSettings = DatabaseSettings()
