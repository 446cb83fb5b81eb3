"""Configuration of the consumer unit (read once in `main()`, then frozen and passed down).

Environment names: ``FRAUDOPS_CONSUMER__PREDICTOR_URL``, ``FRAUDOPS_CONSUMER__BATCH_SIZE``,
``FRAUDOPS_NOTIFY__SMTP_HOST``, ``FRAUDOPS_KAFKA__BOOTSTRAP_SERVERS``, ``FRAUDOPS_DATABASE__URL``...
"""

from __future__ import annotations

from pydantic import BaseModel, Field, SecretStr

from fraudops.features.policy import DEFAULT_ALLOWED_LATENESS_S
from fraudops.schema import ALERT_DECISIONS
from fraudops.settings import CommonSettings, DatabaseSettings, KafkaSettings, settings_config


class ConsumerSection(BaseModel):
    """The stream processor."""

    predictor_url: str = "http://127.0.0.1:8080"
    group_id: str = "fraud-consumer"
    batch_size: int = Field(default=500, ge=1, le=10_000)
    # 0: a batch is whatever the fetcher holds when the loop comes round (it grows with the
    # load on its own); > 0 waits that long after the first record for more (fewer, larger
    # predictor calls at the cost of latency).
    batch_max_wait_ms: int = Field(default=0, ge=0, le=60_000)
    # True: poll and ingest the next batch while the previous one is scored and written (worth
    # it when the consumer has cores to spare or the predictor is far away); False: one batch
    # at a time, which costs the least CPU (the GIL serialises the threads' Python work).
    pipelined: bool = False
    # True (with pipelined off): poll and ingest the next batch while the predictor scores
    # one, and write that one while the predictor scores the next. The writes stay on the
    # polling thread, so ingest and persist, both CPU-bound Python, never contend for the GIL
    # (what kept `pipelined` on par with one batch at a time); only the predictor's wait
    # overlaps. Measured on 2 cores with Apache Kafka: 7,624-7,741 tx/s against 6,274-6,316
    # one batch at a time, p50 / p99 at 1,000 tx/s 14.2 / 30.4 ms against 12.7 / 29.0 (README).
    overlap_scoring: bool = True
    metrics_port: int = Field(default=9102, ge=0, le=65535, description="0 = no metrics server.")
    max_message_bytes: int = Field(default=64 * 1024, ge=256)
    # Snapshots of the per-partition feature state: the entries changed since the previous one
    # (accounts, merchants, devices seen since) are taken on the polling thread and written
    # with a batch (with overlap_scoring on the writing thread, while scoring goes on: see
    # consumers.pipeline); a restart replays the events since the last one, without re-scoring.
    snapshot_interval_s: float = Field(default=30.0, gt=0)
    predictor_timeout_s: float = Field(default=5.0, gt=0)
    backoff_initial_s: float = Field(default=0.1, gt=0)
    backoff_max_s: float = Field(default=5.0, gt=0)
    # Client tuning: records per poll at most, fetch size per partition, fetch wait (librdkafka).
    max_poll_records: int = Field(default=2000, ge=1)
    max_partition_fetch_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    fetch_max_wait_ms: int = Field(default=5, ge=0)
    max_poll_interval_ms: int = Field(default=300_000, ge=1000)
    # How long the producer gathers a batch's outgoing records into one request while the
    # batch's database work runs; the wait for their acks (before the commit) sends whatever
    # still lingers at once, so this adds no latency. 0: every record leaves at once, in many
    # small requests (on Apache Kafka the broker's CPU per transaction was 3x higher).
    producer_linger_ms: int = Field(default=5, ge=0)
    consume_labels: bool = True
    # True: merchant- and device-wide features come from the entity stages (`consumers.stages`,
    # `fraudops consume --stage router|merchant|device`), right whatever the partitions and
    # replicas; the consumer reads their `enriched` topic (transactions and labels). False: it
    # computes them from its own partitions' traffic, right only when one consumer owns every
    # partition (a one-partition topic, the local demo on tansu).
    entity_stages: bool = False
    # Event-time policy (fraudops.features.policy, the same in training's batch features): a
    # late transaction is applied in arrival order with its times clamped to its account's,
    # merchant's and device's latest; more than this behind its account's latest event, it is
    # dead-lettered as too_late instead. inf: score every late transaction under the clamp.
    allowed_lateness_s: float = Field(default=DEFAULT_ALLOWED_LATENESS_S, ge=0)
    # Circuit breaker: stop (exit 1, batch not committed) when more than this share of the last
    # `dead_letter_breaker_window` messages went to the dead-letter topic: a broken producer,
    # not a poison message. Window 0: never stop.
    dead_letter_breaker_window: int = Field(default=1000, ge=0)
    dead_letter_breaker_share: float = Field(default=0.5, gt=0, le=1)
    # Rules and lists (fraudops.rules): the rule-set YAML file ("" = decisions by the model
    # alone). Every `rules_refresh_s` the consumer re-reads the file if it changed (a version
    # that does not validate is refused and logged; the running one stays) and reloads the
    # lists whose revision moved in the store: a list change is in force within that time.
    rules_path: str = ""
    rules_refresh_s: float = Field(default=2.0, gt=0, le=3600)


class NotifySection(BaseModel):
    """Alert notifications: email (SMTP) and a webhook, each on when configured."""

    smtp_host: str = ""
    smtp_port: int = 25
    smtp_starttls: bool = False
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    email_from: str = "fraudops@localhost"
    email_to: list[str] = Field(default_factory=list)
    webhook_url: str = ""
    webhook_token: SecretStr | None = None
    decisions: list[str] = Field(default_factory=lambda: list(ALERT_DECISIONS))
    # Per account: at most `rate_limit_count` notifications per `rate_limit_window_s` of event time.
    rate_limit_count: int = Field(default=3, ge=1)
    rate_limit_window_s: float = Field(default=600.0, gt=0)
    timeout_s: float = Field(default=10.0, gt=0)
    max_attempts: int = Field(default=5, ge=1)

    @property
    def email_enabled(self) -> bool:
        return bool(self.smtp_host and self.email_to)

    @property
    def webhook_enabled(self) -> bool:
        return bool(self.webhook_url)


class ConsumerSettings(CommonSettings):
    """Everything `fraudops consume` needs."""

    model_config = settings_config()

    kafka: KafkaSettings = KafkaSettings()
    database: DatabaseSettings = DatabaseSettings()
    consumer: ConsumerSection = ConsumerSection()
    notify: NotifySection = NotifySection()
