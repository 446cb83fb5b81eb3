"""Decision store: every scored transaction, alerts, notification outbox, labels, checkpoints.

The consumer writes it; the gateway reads alerts and writes analyst feedback; the drift job reads
the scored window; the training pipeline reads labelled transactions. SQLAlchemy, SQLite by
default, PostgreSQL in a cluster::

    store = Store.from_url(settings.database.resolved_url(settings.home))
    store.list_alerts(status="open", limit=20)
    store.record_label(LabelRecord("tx-1", 1, source="analyst", analyst="ana"))
    store.label_history("tx-1")  # every label given, oldest first; store.get_label: the current

The schema is versioned with Alembic (`fraudops.store.migrate`, `fraudops db upgrade`): the
units open the store with `Store.open_current`, which refuses a database not at this release's
schema; `Store.from_url` (tests, SQLite dev use) upgrades it first.
"""

from fraudops.store.exceptions import (
    NotFoundError,
    SchemaNotCurrentError,
    StaleCheckpointError,
    StoreError,
    UnsupportedDatabaseError,
)
from fraudops.store.lists import ListEntryInfo, ListInfo
from fraudops.store.models import (
    Alert,
    AlertStatus,
    Decision,
    DecisionSource,
    Label,
    LabelEvent,
    LabelOutcome,
    Notification,
    NotificationStatus,
    StreamCheckpoint,
    StreamStateEntry,
)
from fraudops.store.records import (
    ALERT_DECISIONS,
    BatchWrite,
    CheckpointRecord,
    DecisionRecord,
    LabelEntry,
    LabelledTransaction,
    LabelRecord,
    NotificationRecord,
    RecordSource,
)
from fraudops.store.repository import Store, create_store_engine

__all__ = [
    "ALERT_DECISIONS",
    "Alert",
    "AlertStatus",
    "BatchWrite",
    "CheckpointRecord",
    "Decision",
    "DecisionRecord",
    "DecisionSource",
    "Label",
    "LabelEntry",
    "LabelEvent",
    "LabelOutcome",
    "LabelRecord",
    "LabelledTransaction",
    "ListEntryInfo",
    "ListInfo",
    "NotFoundError",
    "Notification",
    "NotificationRecord",
    "NotificationStatus",
    "RecordSource",
    "SchemaNotCurrentError",
    "StaleCheckpointError",
    "Store",
    "StoreError",
    "StreamCheckpoint",
    "StreamStateEntry",
    "UnsupportedDatabaseError",
    "create_store_engine",
]
