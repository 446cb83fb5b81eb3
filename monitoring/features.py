"""Drift features: the shared feature implementation's output, made interpretable.

Both sides of a comparison go through `window_features`: the rows of a time window plus
`lookback` of history before it, features computed in batch by `fraudops.features`, then the
window's rows kept. Loading the same amount of history on both sides keeps per-account features
(amount z-score, novelty flags) comparable between the training data and the live window.
One-hot groups are decoded back into one categorical column (``channel``, ``category``) so a
report says "the category mix moved" instead of thirteen separate 0/1 columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from fraudops.features import FeatureSpec, compute_batch

#: Categorical drift columns decoded from a one-hot group: column -> prefix in the spec.
ONE_HOT_GROUPS = {"channel": "channel_", "category": "category_"}


def known_columns(spec: FeatureSpec) -> tuple[set[str], set[str]]:
    """(numeric, categorical) column names this spec can provide for drift."""
    flags = {n for n in spec.names if n.startswith("account_new_") or n == "account_first_seen"}
    return set(spec.names), flags | set(ONE_HOT_GROUPS)


def check_columns(spec: FeatureSpec, numeric: Sequence[str], categorical: Sequence[str]) -> None:
    """Raise ValueError naming any drift column the spec cannot provide."""
    numeric_ok, categorical_ok = known_columns(spec)
    bad = [n for n in numeric if n not in numeric_ok]
    bad += [c for c in categorical if c not in categorical_ok]
    if bad:
        raise ValueError(f"unknown drift feature(s) {bad}; numeric ones are feature names "
                         f"({', '.join(spec.names[:5])}, ...), categorical ones are "
                         f"{', '.join(sorted(categorical_ok))}")


def drift_frame(features: np.ndarray, spec: FeatureSpec, numeric: Sequence[str],
                categorical: Sequence[str]) -> pd.DataFrame:
    """The chosen drift columns of a feature matrix [N, spec.dim]."""
    index = {name: j for j, name in enumerate(spec.names)}
    out = {name: features[:, index[name]].astype(np.float64) for name in numeric}
    for name in categorical:
        if name in ONE_HOT_GROUPS:
            out[name] = _decode_one_hot(features, spec, ONE_HOT_GROUPS[name])
        else:
            out[name] = np.where(features[:, index[name]] > 0.5, "yes", "no")
    return pd.DataFrame(out)


def _decode_one_hot(features: np.ndarray, spec: FeatureSpec, prefix: str) -> np.ndarray:
    columns = [j for j, name in enumerate(spec.names) if name.startswith(prefix)]
    labels = np.array([spec.names[j][len(prefix):] for j in columns], dtype=object)
    return labels[features[:, columns].argmax(axis=1)]


def window_rows(frame: pd.DataFrame, start: datetime, end: datetime,
                lookback: timedelta) -> tuple[pd.DataFrame, np.ndarray]:
    """Rows of [start - lookback, end) of a time-sorted frame, and a mask of those in [start, end)."""
    times = frame["timestamp"]
    loaded = frame[(times >= pd.Timestamp(start) - lookback) & (times < pd.Timestamp(end))]
    loaded = loaded.reset_index(drop=True)
    return loaded, (loaded["timestamp"] >= pd.Timestamp(start)).to_numpy()


def window_features(frame: pd.DataFrame, spec: FeatureSpec, in_window: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Features of the window's rows and the loaded rows' history index of each.

    `frame` holds the window and its lookback (normalized, time-sorted); returns the feature
    matrix of all loaded rows (sequences need the history) and the positions of the window's.
    """
    return compute_batch(frame, spec), np.flatnonzero(in_window)
