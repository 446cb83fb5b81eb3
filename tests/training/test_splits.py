import numpy as np
import pandas as pd
import pytest

from fraudops.training.exceptions import TrainingDataError
from fraudops.training.splits import time_split


def test_no_future_data_in_training(small_features):
    stamps = small_features.timestamps
    split = time_split(stamps.astype("datetime64[us]"), 0.2, 0.2)
    assert stamps[split.train].max() < stamps[split.validation].min()
    assert stamps[split.validation].max() < stamps[split.test].min()
    assert sum(split.sizes().values()) == len(stamps)
    assert split.sizes()["train"] == pytest.approx(0.6 * len(stamps), rel=0.02)


def test_sequences_of_training_rows_stay_in_the_past(small_features):
    split = time_split(small_features.timestamps.astype("datetime64[us]"), 0.2, 0.2)
    index = small_features.seq_index[split.train]
    history = index[index >= 0]
    assert small_features.timestamps[history].max() < split.validation_start.value // 1000


def test_ties_never_straddle_a_cut():
    stamps = pd.to_datetime(["2026-01-01"] * 5 + ["2026-01-02"] * 5 + ["2026-01-03"] * 5,
                            utc=True)
    split = time_split(stamps, 0.3, 0.3)
    assert split.sizes() == {"train": 5, "validation": 5, "test": 5}


def test_without_test_share_everything_after_cut_is_validation():
    stamps = pd.date_range("2026-01-01", periods=100, freq="h", tz="UTC")
    split = time_split(stamps, 0.2, 0.0)
    assert len(split.test) == 0 and len(split.validation) == 20


def test_bad_shares_and_tiny_data_are_refused():
    with pytest.raises(TrainingDataError):
        time_split(pd.date_range("2026-01-01", periods=100, freq="h"), 0.6, 0.5)
    with pytest.raises(TrainingDataError, match="at least"):
        time_split(np.array(["2026-01-01"], dtype="datetime64[us]"))
