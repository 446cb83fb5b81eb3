"""Per-partition feature state that always matches the committed position.

Design (why the state can neither reset nor be applied twice)
------------------------------------------------------------
Transactions are keyed by account id, so all events of an account land in one partition and the
consumer keeps one `OnlineFeatureState` per assigned partition. The source of truth for "how far
has this partition been processed" is NOT the Kafka commit but a row of the decision store's
``stream_checkpoints`` table (group, topic, partition):

* ``next_offset`` is written in the SAME database transaction as the batch's decisions, alerts
  and notification outbox rows. A batch is therefore either fully durable with its position, or
  not at all. Kafka offsets are committed afterwards for lag tooling only.
* the snapshot is the partition's feature state just before ``snapshot_offset``: a header in
  the checkpoint row and one ``stream_state`` row per account, merchant and device entry. It is
  brought up to date every `snapshot_interval_s`, always with a batch, so
  ``snapshot_offset <= next_offset``; only the entries changed since the previous snapshot are
  rewritten, so its cost follows the recent traffic, not the number of accounts ever seen
  (`benchmarks/bench_state.py`: a whole-state pickle of 18,358 accounts took 1.7 s and 106 MB;
  the entries 10,000 transactions changed, 0.25 s and 32 MB).

On assignment the consumer restores the snapshot and seeks to ``snapshot_offset``. Events in
``[snapshot_offset, next_offset)`` were already decided: they are *replayed* into the state
(features update exactly as the first time) but not scored, stored, produced or notified again.
Only the records that were applied the first time are replayed: each stored decision names
the record it came from (``decision_sources``), so a redelivered or conflicting duplicate, a
too-late or a poison record in that range is skipped now as it was then (see
`consumers.idempotency`). From ``next_offset`` on, processing is normal. A crash anywhere before the database commit
leaves the previous row in place, so the batch is redone from a state that never saw it; a crash
after it only repeats the Kafka commit. Decisions are produced to Kafka before the commit, so a
crash in between may repeat a decision record on the topic (at-least-once; consumers of
``fraud-decisions`` key on the transaction id), never lose one; the store never duplicates
anything (primary keys on the transaction id).

Zombie writers (a consumer that lost its partitions during a long predictor outage but does not
know it yet) are fenced by optimistic concurrency: each checkpoint update is conditional on the
row still holding the ``next_offset`` the writer started from. If another member advanced it,
the whole batch rolls back (`StaleCheckpointError`) and the partition is re-synchronised.

Labels (the ``labels`` topic) update the label-informed features of every partition the
consumer owns (`OnlineFeatureState.apply_label`; a redelivered label changes nothing). Their
offsets are committed to Kafka only after the batch that applied them is durable, so every batch
that changed the state with a label also snapshots the changed entries in its database
transaction: after a crash, a label is either in the restored snapshot or read again (and
applied, idempotently); a partition that has no position yet (nothing consumed) takes its first
snapshot with its first transaction. With several consumers, each applies the labels of the
``labels`` partitions it reads: labels are keyed by account like the transactions, so an
account's labels reach its own partition's state when both topics have the same partition
count and the group's assignor co-locates partition p of both (the range assignor does).

Merchant and device state: alone, a partition sees only its own accounts' share of a merchant's
or device's traffic, while the batch features see all of it; right when one consumer owns every
partition. With ``FRAUDOPS_CONSUMER__ENTITY_STAGES`` the entity stages (`consumers.stages`) own
that state per merchant and per device partition, with this same snapshot and position
machinery, and the consumer keeps only the accounts'.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from fraudops.features import OnlineFeatureState
from fraudops.store import CheckpointRecord, SchemaNotCurrentError, Store, StreamCheckpoint

log = logging.getLogger(__name__)
#: Spreads partitions' snapshot times over the interval (0, 0.62, 0.24, 0.85, 0.47...).
_GOLDEN = (5 ** 0.5 - 1) / 2


@dataclass
class PartitionState:
    """What the consumer holds for one assigned partition of the transactions topic."""

    partition: int
    features: OnlineFeatureState
    #: ``next_offset`` as stored in the database (None: no row yet); the fencing token.
    stored_offset: int | None = None
    #: Offsets below this were decided in an earlier life: replay into the state only.
    replay_until: int = 0
    #: Next offset the in-memory state expects (None: accept whatever comes first).
    position: int | None = None
    last_snapshot: float = field(default=float("-inf"))
    #: A label changed the state since the last snapshot: the next batch takes one (see below).
    labels_changed: bool = False
    #: The first snapshot of this assignment was taken (see `snapshot_taken`).
    staggered: bool = False

    def accepts(self, offset: int) -> bool:
        """False for a record the state already saw (a re-fetch after a seek)."""
        return self.position is None or offset >= self.position

    def snapshot_due(self, now: float, interval_s: float) -> bool:
        return (self.stored_offset is None or self.labels_changed
                or now - self.last_snapshot >= interval_s)

    def snapshot_taken(self, now: float, interval_s: float) -> None:
        """Record a snapshot taken at `now`. The first one of the assignment counts as taken
        earlier by a share of the interval that differs between partitions, so the
        partitions of one consumer come due in different batches rather than all in one (at
        1,000 tx/s that one batch took 100-170 ms: the worst latencies of every run)."""
        share = 0.0 if self.staggered else (self.partition * _GOLDEN) % 1.0
        self.last_snapshot = now - share * interval_s
        self.staggered = True


def open_store(url: str) -> Store | None:
    """The store at `url` for a consumer or a stage; None, with the reason logged, when the
    database is not at this release's schema (`fraudops db upgrade` first)."""
    try:
        return Store.open_current(url)
    except SchemaNotCurrentError as error:
        log.error("%s", error)
        return None


def restore_partition(partition: int, checkpoint: StreamCheckpoint | None,
                      new_state: Callable[[], OnlineFeatureState],
                      load_entries: Callable[[], Iterable[tuple[str, str, bytes]]],
                      ) -> tuple[PartitionState, int | None]:
    """The partition's state from its checkpoint and stored entries, and the offset to seek to
    (None: nothing stored, from the partition's first record)."""
    if checkpoint is None or checkpoint.snapshot is None:
        log.info("partition %d: no snapshot, starting with empty state", partition)
        stored = checkpoint.next_offset if checkpoint is not None else None
        return PartitionState(partition, new_state(), stored_offset=stored), stored
    fresh = new_state()
    try:
        features = OnlineFeatureState.restore(checkpoint.snapshot, load_entries())
        usable = (features.spec.fingerprint == fresh.spec.fingerprint
                  and features.seq_len == fresh.seq_len)
    except ValueError as error:  # a snapshot format of another release
        log.warning("partition %d: %s", partition, error)
        usable = False
    if not usable:
        # The served model now expects other features: the old state cannot feed it. Start
        # empty from the stored position (history features rebuild as events arrive); its
        # first snapshot replaces the stored entries.
        log.warning("partition %d: snapshot was taken under another feature spec or format; "
                    "starting with empty state at offset %d", partition, checkpoint.next_offset)
        return PartitionState(partition, fresh, stored_offset=checkpoint.next_offset,
                              position=checkpoint.next_offset), checkpoint.next_offset
    start = checkpoint.snapshot_offset or 0
    state = PartitionState(partition, features, stored_offset=checkpoint.next_offset,
                           replay_until=checkpoint.next_offset, position=start,
                           last_snapshot=time.monotonic())
    log.info("partition %d: restored snapshot at offset %d (%d accounts), replaying to %d",
             partition, start, len(features.accounts), checkpoint.next_offset)
    return state, start


def restore_partitions(store: Store, group_id: str, topic: str, partitions: Iterable[int],
                       new_state: Callable[[], OnlineFeatureState]
                       ) -> dict[int, tuple[PartitionState, int | None]]:
    """`restore_partition` for each of `partitions` of `topic`, from `store` (one read of the
    group's checkpoints): each partition's state and the offset to seek to."""
    checkpoints = store.load_checkpoints(group_id, topic)
    return {partition: restore_partition(
                partition, checkpoints.get(partition), new_state,
                lambda p=partition: store.load_state(group_id, topic, p))
            for partition in partitions}


def checkpoint_for(state: PartitionState, *, group_id: str, topic: str, next_offset: int,
                   now: float, snapshot_interval_s: float) -> CheckpointRecord:
    """The checkpoint row of `state` after a batch that reached `next_offset`, with the state's
    changes since the previous snapshot when one is due."""
    record = CheckpointRecord(group_id=group_id, topic=topic, partition=state.partition,
                              next_offset=next_offset, expected_offset=state.stored_offset)
    if not state.snapshot_due(now, snapshot_interval_s):
        return record
    delta = state.features.delta()
    state.labels_changed = False
    return replace(record, snapshot_offset=next_offset, snapshot=delta.header,
                   state=delta.entries, replace_state=delta.full)
