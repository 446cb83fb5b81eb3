"""Producing to Kafka: one way for every unit to build its producer.

A unit connects as its `KafkaSettings` say (bootstrap servers, security protocol, SASL) and
counts a record as produced only once every in-sync replica has it (``acks=all``); keyed records
go where Kafka's default (Java) partitioner puts them (murmur2 of the key), so every producer of
the platform places one account on one partition. What differs between units is tuning
(lingering, batch sizes, timeouts) and how they wait for the acknowledgements (the gateway per
request, the consumer per batch), so only that is theirs. Needs confluent-kafka (librdkafka; the
serving and streaming extras).

librdkafka runs delivery callbacks only inside ``poll()`` or ``flush()``: whoever produces must
call one of them (a loop that produces, or a thread that only polls).
"""

from __future__ import annotations

import logging

from confluent_kafka import Producer

from fraudops.settings import KafkaSettings

#: Where librdkafka's own log lines go (instead of its default, stderr).
CLIENT_LOG = logging.getLogger("librdkafka")


def log_client_error(error: object) -> None:
    """librdkafka's `error_cb`: connection trouble it retries on its own is a warning; a fatal
    error ends the client (a consumer then stops and restarts from the store)."""
    fatal = getattr(error, "fatal", None)
    if fatal is not None and fatal():
        CLIENT_LOG.error("Kafka client failed: %s", error)
    else:
        CLIENT_LOG.warning("Kafka client: %s", error)

#: librdkafka's names for the acknowledgement setting (``acks`` is an alias).
_ACKS_KEYS = ("acks", "request.required.acks")


def make_producer(kafka: KafkaSettings, **tuning: object) -> Producer:
    """A confluent-kafka producer connected as `kafka` says, with ``acks=all`` and the
    Java-compatible murmur2 partitioner.

    `tuning` passes librdkafka producer configuration (``**{"linger.ms": 5}``,
    ``"message.timeout.ms"``, ``"error_cb"``...); it may not weaken the acknowledgements.
    """
    if any(str(tuning.get(key, "all")) not in ("all", "-1") for key in _ACKS_KEYS):
        raise ValueError("a fraudops producer waits for every in-sync replica (acks=all)")
    config = {key: value for key, value in tuning.items() if key not in _ACKS_KEYS}
    return Producer({**kafka.librdkafka_config(), "partitioner": "murmur2_random",
                     "logger": CLIENT_LOG, "error_cb": log_client_error, **config,
                     "acks": "all"})
