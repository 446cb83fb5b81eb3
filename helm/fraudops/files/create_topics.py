"""Create the fraudops Kafka topics that do not exist yet (the chart's topic Job, without Strimzi).

Runs in the consumer image (its streaming extra brings confluent-kafka's admin client). Reads the
connection from the same FRAUDOPS_KAFKA__* variables as every unit and the topic list from
FRAUDOPS_TOPICS_SPEC (JSON: [{name, partitions, replicas, config}]). Existing topics are left as
they are (partition counts are never changed behind the operator's back); the Job retries while
the brokers come up, for up to FRAUDOPS_TOPICS_TIMEOUT_SECONDS.
"""

from __future__ import annotations

import json
import logging
import os
import sys

from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import AdminClient, NewTopic
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


def create_missing(admin: AdminClient, topics: list[TopicSpec], timeout_s: float) -> list[str]:
    """Create each topic not yet on the cluster; return the names created."""
    existing = set(admin.list_topics(timeout=timeout_s).topics)
    missing = [t for t in topics if t.name not in existing]
    if not missing:
        return []
    futures = admin.create_topics(
        [NewTopic(t.name, t.partitions, t.replicas, config={k: str(v) for k, v in t.config.items()})
         for t in missing], operation_timeout=timeout_s, request_timeout=timeout_s)
    created, failure = [], None
    for topic in missing:
        try:
            futures[topic.name].result()
            created.append(topic.name)
        except KafkaException as error:
            if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:  # else: another Job won
                failure = failure or error
    if failure is not None:
        raise failure
    return created


def run(settings: Settings) -> list[str]:
    @retry(retry=retry_if_exception_type(KafkaException),
           stop=stop_after_delay(settings.topics_timeout_seconds),
           wait=wait_exponential(max=10), reraise=True)
    def attempt() -> list[str]:
        # Each attempt gives up within the overall budget, so tenacity decides on retries.
        attempt_s = min(30.0, settings.topics_timeout_seconds)
        admin = AdminClient({**settings.kafka.librdkafka_config(),
                             "client.id": "fraudops-create-topics",
                             "socket.timeout.ms": int(attempt_s * 1000)})
        return create_missing(admin, settings.topics_spec, attempt_s)

    return attempt()


def main() -> int:
    logging.basicConfig(level=os.environ.get("FRAUDOPS_LOG_LEVEL", "INFO"))
    settings = Settings()
    try:
        created = run(settings)
    except KafkaException as error:
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
