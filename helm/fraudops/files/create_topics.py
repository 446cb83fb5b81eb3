"""Create the fraudops Kafka topics that do not exist yet (the chart's topic Job, without Strimzi).

Runs in the consumer image. Reads the connection from the same FRAUDOPS_KAFKA__* variables as every
unit and the topic list from FRAUDOPS_TOPICS_SPEC (JSON: [{name, partitions, replicas, config}]).
Existing topics are left as they are (partition counts are never changed behind the operator's
back); the Job retries while the brokers come up, for up to FRAUDOPS_TOPICS_TIMEOUT_SECONDS.
"""

from __future__ import annotations

import json
import logging
import os
import sys

from kafka.admin import KafkaAdminClient, NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError
from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_exponential

from fraudops.settings import KafkaSettings, settings_config

log = logging.getLogger("fraudops.create_topics")


class TopicSpec(BaseModel):
    name: str = Field(min_length=1)
    partitions: int = Field(ge=1)
    replicas: int = Field(ge=1)
    config: dict[str, str] = {}


class Settings(BaseSettings):
    model_config = settings_config()

    kafka: KafkaSettings = KafkaSettings()
    topics_spec: list[TopicSpec]
    topics_timeout_seconds: float = 300.0


def create_missing(admin: KafkaAdminClient, topics: list[TopicSpec]) -> list[str]:
    """Create each topic not yet on the cluster; return the names created."""
    existing = set(admin.list_topics())
    missing = [t for t in topics if t.name not in existing]
    created = []
    for topic in missing:
        new = NewTopic(topic.name, topic.partitions, topic.replicas,
                       topic_configs={k: str(v) for k, v in topic.config.items()})
        try:
            admin.create_topics([new])
            created.append(topic.name)
        except TopicAlreadyExistsError:  # another replica of the Job won the race
            pass
    return created


def run(settings: Settings) -> list[str]:
    @retry(retry=retry_if_exception_type(KafkaError),
           stop=stop_after_delay(settings.topics_timeout_seconds),
           wait=wait_exponential(max=10), reraise=True)
    def attempt() -> list[str]:
        # Each attempt gives up within the overall budget, so tenacity decides on retries.
        attempt_ms = int(min(30.0, settings.topics_timeout_seconds) * 1000)
        admin = KafkaAdminClient(client_id="fraudops-create-topics",
                                 bootstrap_timeout_ms=attempt_ms, request_timeout_ms=attempt_ms,
                                 **settings.kafka.client_options())
        try:
            return create_missing(admin, settings.topics_spec)
        finally:
            admin.close()

    return attempt()


def main() -> int:
    logging.basicConfig(level=os.environ.get("FRAUDOPS_LOG_LEVEL", "INFO"))
    settings = Settings()
    try:
        created = run(settings)
    except KafkaError as error:
        log.error("could not create topics on %s within %.0f s: %r",
                  settings.kafka.bootstrap_servers, settings.topics_timeout_seconds, error)
        return 1
    wanted = [t.name for t in settings.topics_spec]
    log.info("topics created: %s; already present: %s", created,
             [n for n in wanted if n not in created])
    print(json.dumps({"created": created}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
