"""The Apache Kafka launcher's cluster ids: what `kafka-storage format -t` accepts."""

from __future__ import annotations

import uuid

from local import kafka


def test_a_cluster_id_never_starts_with_a_dash(monkeypatch):
    # 0xF8 encodes to "-" first in URL-safe base64: the storage tool read it as an option.
    drawn = iter([uuid.UUID(bytes=bytes([0xF8]) + bytes(15)), uuid.UUID(int=7)])
    monkeypatch.setattr(kafka.uuid, "uuid4", lambda: next(drawn))
    cluster_id = kafka.new_cluster_id()
    assert cluster_id == "AAAAAAAAAAAAAAAAAAAABw" and len(cluster_id) == 22


def test_cluster_ids_are_22_url_safe_characters():
    ids = {kafka.new_cluster_id() for _ in range(2000)}
    assert len(ids) == 2000
    assert all(len(i) == 22 and not i.startswith("-") and set(i) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") for i in ids)
