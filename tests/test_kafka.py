"""The one producer factory (`fraudops.kafka.make_producer`) every unit builds its producer with."""

from __future__ import annotations

import pytest
from confluent_kafka import Consumer, KafkaError, Producer

from fraudops.kafka import make_producer
from fraudops.settings import KafkaSettings


@pytest.mark.parametrize("tuning", [{"acks": 0}, {"acks": 1}, {"acks": "1"},
                                    {"request.required.acks": 1}])
def test_weaker_acknowledgements_are_refused(tuning: dict) -> None:
    with pytest.raises(ValueError, match="acks=all"):
        make_producer(KafkaSettings(bootstrap_servers="127.0.0.1:1"), **tuning)


def _deliver(producer: Producer, topic: str) -> tuple[KafkaError | None, object]:
    """Produce one record and wait for its delivery report: (error, message)."""
    reports = []
    producer.produce(topic, b"v", b"k", on_delivery=lambda error, m: reports.append((error, m)))
    producer.flush(30)
    assert len(reports) == 1, "no delivery report within 30 s"
    return reports[0]


@pytest.mark.integration
def test_a_record_is_acknowledged_and_readable(kafka_broker) -> None:
    topic = kafka_broker.unique_topic("producer", partitions=1)
    producer = make_producer(KafkaSettings(bootstrap_servers=kafka_broker.bootstrap),
                             **{"linger.ms": 1})
    error, message = _deliver(producer, topic)
    assert error is None
    consumer = Consumer({"bootstrap.servers": kafka_broker.bootstrap, "group.id": "producer-test",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        consumer.subscribe([topic])
        record = consumer.poll(20)
    finally:
        consumer.close()
    assert record is not None and record.error() is None
    assert (record.offset(), record.key(), record.value()) == (message.offset(), b"k", b"v")

