"""The demo's data: one synthetic timeline, split into a training set and the live stream.

The generator draws one population and one timeline; the earliest rows become the training set
(written as Parquet for the pipeline to version and train on), the rest is the live stream, so
the stream's accounts have histories the models have seen. Drift switches on half-way through
the stream (in event time), so the first half of the stream looks like training data and the
second half does not.

Labels are events with their own time (`fraudops.data.labels`): the generator's label stream says
when each verdict becomes known. The platform learns only from labels that have arrived: the
training file holds the verdicts known at the split, the retraining data set those known at the
stream's current event time (others unknown, -1), and the stream itself carries no ground truth.
The demo's label stream compresses the delays to its few weeks of event time (`DEMO_LABELS`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from fraudops.data import tabular
from fraudops.data.generate import GeneratorConfig, generate
from fraudops.data.labels import (
    LabelStreamConfig,
    generate_labels,
    labels_path,
    verdicts_as_of,
    write_labels,
)

#: Event-time days per 10,000 rows: keeps a typical account's rate constant as rows grow.
DAYS_PER_10K_ROWS = 4.0
MIN_DAYS, MAX_DAYS = 14, 365
#: How verdicts arrive in the demo: the generator's model with its delays shortened to fit a
#: timeline of a few weeks (the defaults, analysts in ~2 h, chargebacks in ~12 days and a 30-day
#: maturity for legitimate traffic, would leave the demo's stream almost unlabelled; so would a
#: real platform's first weeks).
DEMO_LABELS = LabelStreamConfig(review_median_hours=1.0, chargeback_median_days=2.0,
                                chargeback_max_days=10.0, maturity_days=1.0)


@dataclass(frozen=True)
class DemoData:
    """The training file and the stream (time-sorted frame) with the drift point.

    `train` carries the verdicts known at the split; `stream` carries the ground truth (for the
    summary only: `stream_events` is what goes to Kafka); `labels` is the whole label stream.
    """

    train_path: Path
    train: pd.DataFrame
    stream: pd.DataFrame
    drift: str
    drift_start: datetime
    labels: pd.DataFrame
    split: pd.Timestamp
    #: Stream rows planned (duration x rate); the rest is a reserve of drifted traffic.
    planned_rows: int = 0

    @property
    def train_rows(self) -> int:
        return len(self.train)

    def warmup(self, share: float, max_rows: int) -> pd.DataFrame:
        """The training period's tail, replayed before the stream so that the consumer's
        per-account state (and the store the drift job looks back into) has recent history,
        as it would in a platform that has been running."""
        rows = min(max_rows, int(len(self.train) * share))
        return self.train.iloc[len(self.train) - rows:].reset_index(drop=True)

    def stream_events(self) -> pd.DataFrame:
        """The stream as it is produced: no ground truth (label unknown, no scenario)."""
        return self.stream.assign(label=tabular.UNKNOWN_LABEL, fraud_scenario=None)

    def labels_between(self, frame: pd.DataFrame, start: pd.Timestamp | None,
                       end: pd.Timestamp | None) -> pd.DataFrame:
        """The labels of `frame`'s transactions known in [start, end), in time order."""
        labels = self.labels[self.labels["transaction_id"].isin(frame["transaction_id"])]
        if start is not None:
            labels = labels[labels["labelled_at"] >= start]
        if end is not None:
            labels = labels[labels["labelled_at"] < end]
        return labels.reset_index(drop=True)

    def after_drift(self) -> pd.Series:
        """Boolean mask of stream rows at or after the drift point."""
        return self.stream["timestamp"] >= pd.Timestamp(self.drift_start)


def prepare(out_dir: Path, train_rows: int, stream_rows: int, *, reserve_rows: int = 0,
            drift: str = "spending_shift", seed: int = 7, fraud_rate: float = 0.02) -> DemoData:
    """Generate the timeline, write the training Parquet under `out_dir`, return both parts.

    The stream holds `stream_rows` planned rows (drift from half-way) and then `reserve_rows`
    more of the drifted traffic, streamed only if the demo needs to keep traffic flowing.
    """
    total = train_rows + stream_rows + reserve_rows
    days = int(min(MAX_DAYS, max(MIN_DAYS, round(total / 10_000 * DAYS_PER_10K_ROWS))))
    train_share = train_rows / total
    drift_share = (train_rows + stream_rows / 2) / total
    config = GeneratorConfig(rows=total, seed=seed, fraud_rate=fraud_rate, days=days,
                             drift=drift, drift_start=drift_share if drift != "none" else 0.5)
    frame = generate(config)
    split = pd.Timestamp(config.start_datetime()) + pd.Timedelta(
        seconds=train_share * days * 86400)
    labels = generate_labels(frame, seed, DEMO_LABELS)
    train = known_labels(frame[frame["timestamp"] < split], labels, split)
    stream = frame[frame["timestamp"] >= split].reset_index(drop=True)
    train_path = tabular.write(train, out_dir / "transactions.parquet")
    write_labels(labels[labels["labelled_at"] < split], labels_path(train_path))
    return DemoData(train_path=train_path, train=train, stream=stream, drift=drift,
                    drift_start=config.drift_start_datetime(), labels=labels, split=split,
                    planned_rows=min(len(stream), max(0, len(stream) - reserve_rows)))


def known_labels(frame: pd.DataFrame, labels: pd.DataFrame,
                 moment: pd.Timestamp) -> pd.DataFrame:
    """`frame` with each transaction's verdict known strictly before `moment` (-1 if none).

    The scenario column stays: evaluation reports recall per scenario with it, nothing learns
    from it."""
    verdicts = verdicts_as_of(labels[labels["labelled_at"] < moment], moment)
    known = frame["transaction_id"].map(verdicts.set_index("transaction_id")["label"])
    return frame.assign(label=known.fillna(tabular.UNKNOWN_LABEL).astype("int8"))


def write_labelled(data: DemoData, streamed: int, path: Path) -> Path:
    """The growing retraining data set: training rows plus the first `streamed` stream rows,
    each with the verdict known at the latest streamed event's time (-1 if none yet), and
    beside it (`labels_path`) the label stream known by then.

    Retraining learns from it, so it learns only from labels that have arrived, never from the
    stream's ground truth. Each file is written to a temporary name and renamed (the labels
    first), so a reader never sees half of one.
    """
    streamed = min(streamed, len(data.stream))
    moment = data.stream["timestamp"].iloc[streamed - 1] if streamed else data.split
    rows = pd.concat([data.train, data.stream.iloc[:streamed]], ignore_index=True)
    _replace(labels_path(path), lambda partial: write_labels(
        data.labels[data.labels["labelled_at"] < moment], partial))
    return _replace(path, lambda partial: tabular.write(
        known_labels(rows, data.labels, moment), partial))


def _replace(path: Path, write) -> Path:
    partial = path.with_name(path.name + ".partial")
    write(partial)
    partial.replace(path)
    return path
