#!/usr/bin/env bash
# Fetch the pinned Apache Kafka broker runtime (jars from Maven Central, checksums verified by
# Maven) into the cache outside the work tree: $FRAUDOPS_KAFKA_RUNTIME, or
# ~/.cache/fraudops/kafka-<version>. Idempotent. The pins live in local/kafka.py.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv}
exec "$VENV/bin/python" -m local.kafka fetch "$@"
