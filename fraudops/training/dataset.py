"""Featurized data set: the feature matrix, per-row history indices and the label columns.

Sequences are gathered per mini-batch from the [N, F] matrix and the [N, K] index instead of
being materialised ([N, K, F] for 200k rows would be ~0.8 GB). Saved as one ``.npz`` plus the
feature spec as JSON, which is what the pipeline's featurize step hands to the trainers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from fraudops.data import tabular
from fraudops.data.labels import labels_path, read_labels
from fraudops.features import (
    FeatureSpec,
    build_spec,
    compute_batch,
    gather_sequences,
    sequence_index,
)
from fraudops.training.exceptions import TrainingDataError

ARRAYS_FILE = "features.npz"
#: `load_frame` notes the data set's label stream here (a path: attrs are copied often).
LABELS_ATTR = "labels_path"
SPEC_FILE = "feature_spec.json"


@dataclass
class FeatureSet:
    """Features and labels of a time-sorted data set (row i = i-th event in stream order)."""

    features: np.ndarray  # float32 [N, F]
    seq_index: np.ndarray  # int64 [N, K], -1 = padding
    labels: np.ndarray  # int8 [N], -1 = unknown
    amounts: np.ndarray  # float64 [N]
    timestamps: np.ndarray  # int64 [N], microseconds since epoch
    scenarios: np.ndarray  # str [N], "" when none
    spec: FeatureSpec

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def seq_len(self) -> int:
        return self.seq_index.shape[1]

    def sequences(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """x float32 [B, K, F] and mask bool [B, K] of the given rows."""
        return gather_sequences(self.features, self.seq_index[rows])

    def labelled(self, rows: np.ndarray) -> np.ndarray:
        """The subset of `rows` with a known label."""
        return rows[self.labels[rows] >= 0]

    def spec_dict(self) -> dict:
        """The spec as stored with a model (includes the names for reason codes)."""
        return {**self.spec.to_dict(), "names": list(self.spec.names)}

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        np.savez(directory / ARRAYS_FILE, features=self.features, seq_index=self.seq_index,
                 labels=self.labels, amounts=self.amounts, timestamps=self.timestamps,
                 scenarios=self.scenarios.astype(str))
        (directory / SPEC_FILE).write_text(json.dumps(self.spec_dict(), indent=2))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> FeatureSet:
        directory = Path(directory)
        if not (directory / ARRAYS_FILE).is_file():
            raise TrainingDataError(f"no featurized data in {directory} ({ARRAYS_FILE} missing)")
        spec = FeatureSpec.from_dict(json.loads((directory / SPEC_FILE).read_text()))
        with np.load(directory / ARRAYS_FILE, allow_pickle=False) as arrays:
            return cls(arrays["features"], arrays["seq_index"], arrays["labels"],
                       arrays["amounts"], arrays["timestamps"], arrays["scenarios"], spec)


def featurize(frame: pd.DataFrame, seq_len: int, spec: FeatureSpec | None = None,
              labels: pd.DataFrame | None = None) -> FeatureSet:
    """Normalize, time-sort and featurize `frame` (spec: the data's passthrough by default).

    The label-informed features count `labels` (by default the label stream `load_frame`
    found beside the data file), each only from its `labelled_at` on."""
    if labels is None and frame.attrs.get(LABELS_ATTR):
        labels = read_labels(frame.attrs[LABELS_ATTR])
    if frame.empty:
        raise TrainingDataError("the data set is empty")
    ordered = tabular.sort_by_time(tabular.normalize(frame))
    spec = spec or build_spec(tabular.passthrough_names(ordered))
    missing = [n for n in spec.passthrough if tabular.EXTRA_PREFIX + n not in ordered.columns]
    if missing:
        raise TrainingDataError(f"data lacks passthrough column(s) the model needs: {missing}")
    scenarios = ordered["fraud_scenario"].fillna("").astype(str).to_numpy()
    return FeatureSet(
        features=compute_batch(ordered, spec, labels=labels),
        seq_index=sequence_index(ordered, seq_len),
        labels=ordered["label"].to_numpy(dtype=np.int8),
        amounts=ordered["amount"].to_numpy(dtype=np.float64),
        timestamps=ordered["timestamp"].to_numpy(dtype="datetime64[us]").astype(np.int64),
        scenarios=scenarios,
        spec=spec,
    )


def load_frame(path: str | Path) -> pd.DataFrame:
    """Read a data set in the platform's layout (Parquet or CSV) with a clear error."""
    path = Path(path)
    if not path.exists():
        raise TrainingDataError(f"data file {path} does not exist")
    try:
        frame = tabular.read(path)
    except tabular.FrameError as error:
        raise TrainingDataError(f"{path}: {error}") from error
    if labels_path(path).is_file():
        frame.attrs[LABELS_ATTR] = str(labels_path(path))
    return frame
