"""Drift features: the shared feature implementation's output, made interpretable.

Both sides of a comparison go through `window_features`: the rows of a time window plus
`lookback` of history before it, features computed in batch by `fraudops.features`, then the
window's rows kept. Loading the same amount of history on both sides keeps per-account features
(amount z-score, novelty flags) comparable between the training data and the live window.
One-hot groups are decoded back into one categorical column (``channel``, ``category``) so a
report says "the category mix moved" instead of thirteen separate 0/1 columns.

Label-informed features (feature spec 2.0.0: an account's, merchant's or device's confirmed
fraud, verdict counts and rates, risky visits) are not drift columns (`check_columns` refuses
them). They move with the *labelling process*, not with the traffic: how many flagged
transactions analysts review and how fast, how many chargebacks arrive and when, and on the
live side which transactions the champion itself flagged. A reference built from a generated
or imported label stream and a live window labelled by the platform's analysts differ there
while the transactions do not. Where labels enter the comparison, they enter point in time:
the reference is scored with the label stream beside its data (`window_features`'s `labels`,
each label counted only from its `labelled_at`), as the consumer scored the live side with
the labels it had received, so the score columns compare like with like.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import numpy as np
import pandas as pd

from fraudops.features import FeatureSpec, compute_batch
from fraudops.features.spec import CATEGORY_PREFIX, CHANNEL_PREFIX, LABEL_FEATURES

#: Categorical drift columns decoded from a one-hot group: column -> prefix in the spec.
ONE_HOT_GROUPS = {"channel": CHANNEL_PREFIX, "category": CATEGORY_PREFIX}


def label_informed(spec: FeatureSpec) -> set[str]:
    """The spec's label-informed features (never drift columns: see the module docstring)."""
    return set(LABEL_FEATURES) & set(spec.names)


def known_columns(spec: FeatureSpec) -> tuple[set[str], set[str]]:
    """(numeric, categorical) column names this spec can provide for drift."""
    flags = {n for n in spec.names if n.startswith("account_new_") or n == "account_first_seen"}
    return set(spec.names) - label_informed(spec), flags | set(ONE_HOT_GROUPS)


def check_columns(spec: FeatureSpec, numeric: Sequence[str], categorical: Sequence[str]) -> None:
    """Raise ValueError naming any drift column the spec cannot provide, or a label-informed
    one (they drift with the labelling process, not with the traffic)."""
    labelled = [n for n in (*numeric, *categorical) if n in label_informed(spec)]
    if labelled:
        raise ValueError(f"label-informed feature(s) {labelled} are not drift columns: they "
                         "move with how and when verdicts arrive, not with the transactions")
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


def window_features(frame: pd.DataFrame, spec: FeatureSpec, in_window: np.ndarray,
                    labels: pd.DataFrame | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Features of the window's rows and the loaded rows' history index of each.

    `frame` holds the window and its lookback (normalized, time-sorted); returns the feature
    matrix of all loaded rows (sequences need the history) and the positions of the window's.
    `labels`: the label stream (`fraudops.data.labels` layout), each label counted point in
    time (None: the label-informed features say "nothing known").
    """
    return compute_batch(frame, spec, labels=labels), np.flatnonzero(in_window)
