"""The two sides of a drift comparison as `ScoredWindow`s.

Current side: the latest window of scored transactions in the decision store (the consumer
writes every decision with the raw event). Reference side: transactions of the champion's
training data, scored by the champion (see `monitoring.reference`). Both hold the window's rows
plus `lookback` of history before it, so features are computed the same way on both sides.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
from sqlalchemy import func, select

from fraudops.data import tabular
from fraudops.store import Decision, Label, Store
from monitoring.exceptions import EmptyWindowError

_DECISION_COLUMNS = (Decision.transaction_json, Decision.fraud_probability,
                     Decision.anomaly_score, Decision.model_version, Label.label)


@dataclass
class ScoredWindow:
    """Transactions (window + lookback, time-sorted) with scores and known labels."""

    frame: pd.DataFrame
    in_window: np.ndarray  # bool [N]: row belongs to the window (else lookback history)
    fraud_probability: np.ndarray  # float64 [N]
    anomaly_score: np.ndarray  # float64 [N]
    labels: np.ndarray  # int8 [N], -1 = unknown
    start: datetime
    end: datetime
    model_versions: tuple[str, ...] = ()

    @property
    def rows(self) -> int:
        return int(self.in_window.sum())

    def describe(self) -> dict:
        labelled = self.labels[self.in_window] >= 0
        return {"start": self.start.isoformat(), "end": self.end.isoformat(),
                "rows": self.rows, "labelled": int(labelled.sum()),
                "model_versions": list(self.model_versions)}


def latest_event_time(store: Store) -> datetime | None:
    """Event time of the newest scored transaction (None for an empty store)."""
    with store.engine.connect() as connection:
        value = connection.execute(select(func.max(Decision.event_time))).scalar()
    return None if value is None else _utc(value)


def earliest_event_time(store: Store) -> datetime | None:
    """Event time of the oldest scored transaction (None for an empty store)."""
    with store.engine.connect() as connection:
        value = connection.execute(select(func.min(Decision.event_time))).scalar()
    return None if value is None else _utc(value)


def _utc(value: datetime) -> datetime:
    stamp = pd.Timestamp(value)
    stamp = stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")
    return stamp.to_pydatetime()


def window_bounds(store: Store, length: timedelta, end: datetime | None = None,
                  max_rows: int = 0, lookback: timedelta = timedelta(0)
                  ) -> tuple[datetime, datetime]:
    """[start, end) of the current window; `end` defaults to just after the newest event.

    Event time, not wall-clock time, anchors the window: a replayed or delayed stream is judged
    on the events it carries. Until the store holds `lookback` of history before a whole window,
    there is no window (`EmptyWindowError`): per-account features would be computed from a
    truncated history (every account looks new) while the reference's are not, a drift that
    is not there; and a shortened window would miss part of the daily cycle.
    """
    if end is None:
        latest = latest_event_time(store)
        if latest is None:
            raise EmptyWindowError("the decision store holds no scored transactions yet")
        end = latest + timedelta(microseconds=1)
    start = end - length
    if lookback:
        covered = earliest_event_time(store)
        if covered is not None and covered + lookback > start:
            raise EmptyWindowError(
                f"the store's history starts at {covered:%Y-%m-%d %H:%M}: the first window is "
                f"checked once events reach {covered + lookback + length:%Y-%m-%d %H:%M} (the "
                f"{lookback} of history the features look back on, then a whole window)")
    if max_rows:
        start = max(start, _nth_latest_time(store, end, max_rows) or start)
    return start, end


def _nth_latest_time(store: Store, end: datetime, n: int) -> datetime | None:
    query = (select(Decision.event_time).where(Decision.event_time < end)
             .order_by(Decision.event_time.desc()).offset(n - 1).limit(1))
    with store.engine.connect() as connection:
        value = connection.execute(query).scalar()
    return None if value is None else _utc(value)


def load_store_window(store: Store, start: datetime, end: datetime, lookback: timedelta,
                      event_labels: bool = False) -> ScoredWindow:
    """Scored transactions of [start - lookback, end) from the store, labels joined.

    Analyst labels (the labels table) are the arrived labels; `event_labels` also trusts a label
    carried by the event itself (synthetic replays carry their ground truth).
    """
    query = (select(*_DECISION_COLUMNS)
             .outerjoin(Label, Label.transaction_id == Decision.transaction_id)
             .where(Decision.event_time >= start - lookback, Decision.event_time < end)
             .order_by(Decision.event_time, Decision.transaction_id))
    with store.engine.connect() as connection:
        rows = connection.execute(query).all()
    if not rows:
        raise EmptyWindowError(f"no scored transactions between {start - lookback} and {end}")
    return _window_from_rows(rows, start, end, event_labels)


def _window_from_rows(rows, start, end, event_labels: bool) -> ScoredWindow:
    events, probability, anomaly, versions, analyst = zip(*rows, strict=True)
    frame = parse_events(events)
    labels = np.array([-1 if v is None else v for v in analyst], dtype=np.int8)
    if event_labels:
        labels = np.where(labels >= 0, labels, frame["label"].to_numpy(dtype=np.int8))
    order = np.argsort(frame["timestamp"].to_numpy(), kind="stable")
    frame = frame.iloc[order].reset_index(drop=True)
    in_window = (frame["timestamp"] >= pd.Timestamp(start)).to_numpy()
    window_versions = {versions[i] for i in order[in_window] if versions[i]}
    return ScoredWindow(frame, in_window, np.asarray(probability, float)[order],
                        np.asarray(anomaly, float)[order], labels[order], start, end,
                        tuple(sorted(window_versions)))


def parse_events(events: tuple[str, ...] | list[str]) -> pd.DataFrame:
    """Raw event JSON (as the consumer stored it) -> normalized frame, in the given order."""
    records = [json.loads(event) for event in events]
    for record in records:
        for name, value in (record.pop("extra", None) or {}).items():
            record[tabular.EXTRA_PREFIX + name] = value
    frame = pd.DataFrame.from_records(records)
    frame["timestamp"] = pd.to_datetime(frame["timestamp"], utc=True, format="ISO8601")
    if "label" in frame.columns:
        frame["label"] = frame["label"].astype("float64")
    return tabular.normalize(frame)
