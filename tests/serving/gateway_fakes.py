"""The real gateway app in process, with a recording Kafka producer and a stub predictor.

Only the two network clients are replaced (the store is a real SQLite file), so the routes,
the guard, the strict JSON parsing and the label history run as in production.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.exc import SQLAlchemyError

from fraudops import protocol
from fraudops.features import FEATURE_SPEC_VERSION, FeatureSpec
from fraudops.schema import Transaction
from fraudops.served_model import ModelDescription
from fraudops.store import BatchWrite, DecisionRecord, Store
from serving.exceptions import KafkaUnavailableError
from serving.gateway.app import create_app
from serving.settings import GatewayServiceSettings, GatewaySettings

INGEST_KEY = "ingest-key-0123456789"
ANALYST_KEY = "analyst-key-0123456789"
OTHER_ANALYST_KEY = "bo-key-0123456789"
ADMIN_KEY = "admin-key-0123456789"
PROXY_KEY = "proxy-key-0123456789"
PRINCIPALS = (f"payments:ingest:{INGEST_KEY},ana:analyst:{ANALYST_KEY},"
              f"bo:analyst:{OTHER_ANALYST_KEY},root:admin:{ADMIN_KEY},"
              f"oauth2-proxy:analyst:{PROXY_KEY}")
T0 = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)


@dataclass
class Sent:
    topic: str
    key: bytes
    value: bytes
    offset: int
    partition: int = 0


@dataclass
class RecordingProducer:
    """Stands in for `AckedProducer`: acknowledges at once, or fails while `down`."""

    sent: list[Sent] = field(default_factory=list)
    down: bool = False

    def send(self, topic: str, key: bytes, value: bytes) -> Sent:
        if self.down:
            raise KafkaUnavailableError("Kafka at 10.0.0.7:9092 did not acknowledge")
        record = Sent(topic, key, value, len(self.sent))
        value.decode("utf-8")  # what the real producer's serialisation would choke on
        self.sent.append(record)
        return record

    async def asend(self, topic: str, key: bytes, value: bytes) -> Sent:
        return self.send(topic, key, value)

    def reachable(self, timeout_s: float = 1.0) -> bool:
        return not self.down

    def close(self) -> None:
        pass


class StubPredictor:
    """Stands in for `PredictorClient`: the current feature spec, a fixed probability."""

    def __init__(self, seq_len: int = 4) -> None:
        spec = FeatureSpec()
        info = protocol.ModelInfo(seq_len, spec.dim, FEATURE_SPEC_VERSION, spec.fingerprint,
                                  "1", "1", feature_names=spec.names, versions=("seq:1+ae:1",))
        self.served = ModelDescription(info, spec)

    async def features(self) -> ModelDescription:
        return self.served

    async def score(self, x: np.ndarray, mask: np.ndarray) -> protocol.ScoreBatch:
        if not np.isfinite(x).all():  # the real predictor refuses these with 400
            raise AssertionError("non-finite features reached the predictor")
        return protocol.ScoreBatch(np.array([0.2]), np.array([0.1]), ["approve"], [()],
                                   model_version="seq:1+ae:1")

    async def ready(self) -> bool:
        return True

    async def aclose(self) -> None:
        pass


def transaction(tx_id: str, account: str = "acc-1", minutes: int = 0,
                amount: float = 42.5) -> Transaction:
    return Transaction(transaction_id=tx_id, account_id=account,
                       timestamp=T0 + timedelta(minutes=minutes), amount=amount,
                       merchant_id="m-1", merchant_category="grocery", channel="online",
                       country="DE", device_id="d-1")


def seed_alerts(store_url: str, *ids: str) -> None:
    """One `review` alert per id (account ``acc-<id>``)."""
    store = Store.from_url(store_url)
    records = []
    for i, tx_id in enumerate(ids):
        tx = transaction(tx_id, f"acc-{tx_id}", minutes=i, amount=900.0)
        records.append(DecisionRecord(tx.transaction_id, tx.account_id, tx.timestamp,
                                      tx.amount, 0.6, 0.5, "review", tx.model_dump_json()))
    store.write_batch(BatchWrite(decisions=records))
    store.close()


def settings(tmp: Path, database_url: str | None = None,
             **gateway: object) -> GatewayServiceSettings:
    section = GatewaySettings(**{"api_keys": PRINCIPALS, "reports_dir": str(tmp / "reports"),
                                 **gateway})
    url = database_url or f"sqlite:///{tmp / 'store.db'}"
    return GatewayServiceSettings(home=tmp / "home", gateway=section, database={"url": url})


def build(tmp: Path, database_url: str | None = None,
          **gateway: object) -> tuple[FastAPI, RecordingProducer]:
    """The app over a SQLite store in `tmp` (or `database_url`), with the recording producer
    and the stub predictor; `gateway`: `GatewaySettings` fields."""
    configured = settings(tmp, database_url, **gateway)
    # `fraudops db upgrade`: the gateway refuses a store not at this release's schema.
    with contextlib.suppress(SQLAlchemyError):  # a test's database that is down stays down
        Store.from_url(configured.database.resolved_url(configured.home)).close()
    app = create_app(configured)
    producer = RecordingProducer()
    app.state.services.producer = producer
    app.state.services.predictor = StubPredictor()
    return app, producer


def client(app: FastAPI, key: str | None = None, address: str = "10.1.1.1") -> TestClient:
    """A test client calling as `key` from `address` (5xx come back as answers)."""
    headers = {"X-API-Key": key} if key is not None else {}
    return TestClient(app, headers=headers, raise_server_exceptions=False,
                      client=(address, 50000))


async def call_asgi(app: FastAPI, method: str, path: str, headers: dict[str, str],
                    receive) -> tuple[int, dict[str, str], bytes]:
    """One request straight through the ASGI interface with a hand-made `receive`."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": method, "path": path, "raw_path": path.encode(), "query_string": b"",
             "root_path": "", "scheme": "http", "server": ("testserver", 80),
             "client": ("10.9.9.9", 1234),
             "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}
    answer: dict = {"status": None, "headers": {}, "body": b""}

    async def send(message: dict) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
            answer["headers"] = {k.decode(): v.decode() for k, v in message["headers"]}
        elif message["type"] == "http.response.body":
            answer["body"] += message.get("body", b"")

    await app(scope, receive, send)
    return answer["status"], answer["headers"], answer["body"]
