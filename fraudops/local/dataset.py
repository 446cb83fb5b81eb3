"""The demo's data: one synthetic timeline, split into a training set and the live stream.

The generator draws one population and one timeline; the earliest rows become the training set
(written as Parquet for the pipeline to version and train on), the rest is the live stream, so
the stream's accounts have histories the models have seen. Drift switches on half-way through
the stream (in event time), so the first half of the stream looks like training data and the
second half does not.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd

from fraudops.data import frame as frame_layout
from fraudops.data.generate import GeneratorConfig, generate

#: Event-time days per 10,000 rows: keeps a typical account's rate constant as rows grow.
DAYS_PER_10K_ROWS = 4.0
MIN_DAYS, MAX_DAYS = 14, 365


@dataclass(frozen=True)
class DemoData:
    """The training file and the stream (time-sorted frame) with the drift point."""

    train_path: Path
    train: pd.DataFrame
    stream: pd.DataFrame
    drift: str
    drift_start: datetime
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
    train = frame[frame["timestamp"] < split]
    stream = frame[frame["timestamp"] >= split].reset_index(drop=True)
    train_path = frame_layout.write(train, out_dir / "transactions.parquet")
    return DemoData(train_path=train_path, train=train, stream=stream, drift=drift,
                    drift_start=config.drift_start_datetime(),
                    planned_rows=min(len(stream), max(0, len(stream) - reserve_rows)))


def write_labelled(data: DemoData, streamed: int, path: Path) -> Path:
    """The growing labelled data set: training rows plus the first `streamed` stream rows.

    Retraining learns from it (the demo stream carries its ground truth, standing in for labels
    that arrive later). Written to a temporary file and renamed, so a reader never sees half.
    """
    frame = pd.concat([data.train, data.stream.iloc[:streamed]], ignore_index=True)
    partial = path.with_name(path.name + ".partial")
    frame_layout.write(frame, partial)
    partial.replace(path)
    return path
