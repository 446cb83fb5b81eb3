"""Time-based train / validation / test split: the model never sees the future.

Cuts fall on timestamps (quantiles of event time), so every training row happened strictly
before every validation row, and every validation row before every test row. Sequences of
validation and test rows may reach back into the training period: that is the past, which the
stream also has when it scores.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from fraudops.training.exceptions import TrainingDataError

if TYPE_CHECKING:
    from fraudops.training.config import TrainingConfig
    from fraudops.training.dataset import FeatureSet


@dataclass(frozen=True)
class TimeSplit:
    """Row indices (into the time-sorted frame) of each part, and the cut times."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    validation_start: pd.Timestamp
    test_start: pd.Timestamp

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.train), "validation": len(self.validation),
                "test": len(self.test)}


def time_split(timestamps: pd.Series | np.ndarray, validation: float = 0.15,
               test: float = 0.15) -> TimeSplit:
    """Split rows by event time into (1 - validation - test, validation, test) shares."""
    if not (0 < validation < 1 and 0 <= test < 1 and validation + test < 1):
        raise TrainingDataError(f"bad split shares validation={validation}, test={test}")
    ts = pd.to_datetime(pd.Series(timestamps), utc=True)
    values = ts.to_numpy(dtype="datetime64[us]").astype(np.int64)
    if len(values) < 10:
        raise TrainingDataError(f"need at least 10 rows to split, got {len(values)}")
    ordered, n = np.sort(values), len(values)
    # Cut at the event time of the row at each share's position; rows sharing that time all
    # go to the later part, so equal timestamps never straddle a cut.
    cut_val = ordered[min(round(n * (1 - validation - test)), n - 1)]
    position = round(n * (1 - test))
    cut_test = ordered[position] if position < n else ordered[-1] + 1
    parts = [np.flatnonzero(values < cut_val),
             np.flatnonzero((values >= cut_val) & (values < cut_test)),
             np.flatnonzero(values >= cut_test)]
    if not len(parts[0]) or not len(parts[1]):
        raise TrainingDataError("time split left the training or validation part empty "
                                "(too many rows share one timestamp?)")
    as_time = lambda v: pd.Timestamp(int(v), unit="us", tz="UTC")
    return TimeSplit(*parts, as_time(cut_val), as_time(cut_test))


def split_for(data: FeatureSet, config: TrainingConfig) -> TimeSplit:
    """The time split a run uses (deterministic given data and config)."""
    return time_split(data.timestamps.astype("datetime64[us]"), config.validation_share,
                      config.test_share)


def labelled_parts(data: FeatureSet, split: TimeSplit) -> tuple[np.ndarray, np.ndarray]:
    """The labelled training and validation rows; each must hold fraud and legitimate rows."""
    train, validation = data.labelled(split.train), data.labelled(split.validation)
    for name, rows in (("training", train), ("validation", validation)):
        positives = int((data.labels[rows] == 1).sum())
        if positives == 0 or positives == len(rows):
            raise TrainingDataError(f"the {name} period needs labelled fraud and legitimate "
                                    f"rows; it has {positives} fraud of {len(rows)} labelled")
    return train, validation
