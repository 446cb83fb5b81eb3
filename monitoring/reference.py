"""The reference side: a window of the champion's training data, scored by the champion.

Lineage: the champion alias -> model version -> training run. The run tells where its data came
from, in order of preference:

1. an artifact directory ``reference/`` holding a Parquet sample (the data set's contiguous tail,
   in the platform layout) logged by the training run;
2. a run param or tag naming the data set (`DATA_PATH_KEYS`), plus the end of the training
   window (`DATA_END_KEYS`) when the data set extends beyond it.

A path option (``--reference`` / ``FRAUDOPS_DRIFT__REFERENCE_PATH``) is the fallback for runs that
logged neither (or whose data set is not reachable from here). Lineage comes first so that after
a promotion the reference follows the new champion's data.

The label stream beside the data (``<name>.labels.parquet``, as training reads it) comes along:
the champion scores the reference with its label-informed features point in time, each label
counted only from its `labelled_at` (see `monitoring.features`), over `LABEL_HISTORY` more of
the data so that the verdicts of older transactions count as they did in training and in the
stream. Without a label stream those features say "nothing known", as training said.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

from fraudops.data import tabular
from fraudops.data.labels import labels_path, read_labels
from fraudops.features import FeatureSpec, gather_sequences, sequence_index
from fraudops.features.spec import LABEL_MEMORY_US
from fraudops.models import Scorer
from monitoring.exceptions import ReferenceNotFoundError
from monitoring.features import window_features, window_rows
from monitoring.window import ScoredWindow

log = logging.getLogger(__name__)

REFERENCE_ARTIFACT = "reference"
#: Where the training run (fraudops.training.steps.register_step) records its data set and the
#: window it trained on; the other spellings keep older or hand-made runs usable.
DATA_PATH_KEYS = ("fraudops.data_path", "fraudops.data.path", "data_path", "data.data_path")
DATA_END_KEYS = ("data.window_end", "fraudops.data.end", "data_end", "train_end")
#: Run metrics of the sequence model on the training run's holdout (see `training.evaluation`).
HOLDOUT_PREFIX = "sequence."
#: How an unset value reads back from MLflow params (str(None)).
_UNSET = {"", "None", "null"}
#: Where a reference frame keeps the path of its label stream (`frame.attrs`).
LABELS_ATTR = "labels_path"
#: History scored before the reference window's lookback when there are labels: a verdict
#: counts for 28 days after it is known, on a transaction often weeks older than that.
LABEL_HISTORY = timedelta(microseconds=2 * LABEL_MEMORY_US)


@dataclass(frozen=True)
class Champion:
    """The registered champion version and what its training run logged."""

    name: str
    version: str
    run_id: str | None
    lineage: dict[str, str] = field(default_factory=dict)  # run params + tags
    metrics: dict[str, float] = field(default_factory=dict)

    def holdout_metrics(self) -> dict[str, float]:
        """The sequence model's figures on its training run's holdout (``sequence.*`` metrics)."""
        return {key.removeprefix(HOLDOUT_PREFIX): value for key, value in self.metrics.items()
                if key.startswith(HOLDOUT_PREFIX)}

    def lineage_value(self, keys: tuple[str, ...]) -> str | None:
        return next((self.lineage[k] for k in keys
                     if self.lineage.get(k) is not None and self.lineage[k] not in _UNSET), None)


def find_champion(client, name: str, alias: str) -> Champion:
    """Look up `name@alias` and its training run in the MLflow registry."""
    from mlflow.exceptions import MlflowException

    try:
        version = client.get_model_version_by_alias(name, alias)
    except MlflowException as error:
        raise ReferenceNotFoundError(f"no model version {name}@{alias} in the registry: "
                                     f"{error.message}") from error
    lineage, metrics = {}, {}
    if version.run_id:
        run = client.get_run(version.run_id)
        lineage = {**run.data.params, **run.data.tags}
        metrics = dict(run.data.metrics)
    return Champion(name, str(version.version), version.run_id, lineage, metrics)


def reference_data(champion: Champion, client, fallback_path: str = ""
                   ) -> tuple[pd.DataFrame, datetime | None, str]:
    """(normalized time-sorted data, end of the training window or None, where it came from)."""
    if champion.run_id and (sample := _logged_sample(client, champion.run_id)) is not None:
        return sample, None, f"runs:/{champion.run_id}/{REFERENCE_ARTIFACT}"
    data_path = champion.lineage_value(DATA_PATH_KEYS)
    if data_path and _reachable(data_path):
        end = champion.lineage_value(DATA_END_KEYS)
        return _read(data_path), (_utc(end) if end else None), data_path
    if fallback_path:
        log.info("%s v%s: no usable lineage (data path %s); reference from %s", champion.name,
                 champion.version, data_path, fallback_path)
        return _read(fallback_path), None, fallback_path
    raise ReferenceNotFoundError(
        f"the training run of {champion.name} v{champion.version} logged no reference sample "
        f"(artifact '{REFERENCE_ARTIFACT}/') and no reachable data path ({', '.join(DATA_PATH_KEYS)}"
        f": {data_path}); pass --reference PATH")


def _reachable(path: str) -> bool:
    if "://" in path and not path.startswith("file://"):
        return True  # object storage: let the read say what is wrong
    return Path(path.removeprefix("file://")).exists()


def _utc(value: str) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _logged_sample(client, run_id: str) -> pd.DataFrame | None:
    names = [a.path for a in client.list_artifacts(run_id, REFERENCE_ARTIFACT)]
    tables = [n for n in names if n.endswith((".parquet", ".csv"))
              and not n.endswith(".labels.parquet")]
    if not tables:
        return None
    directory = tempfile.mkdtemp(prefix="fraudops-ref-")
    if (stream := str(labels_path(tables[0]))) in names:
        client.download_artifacts(run_id, stream, directory)
    return _read(client.download_artifacts(run_id, tables[0], directory))


def _read(path: str) -> pd.DataFrame:
    if "://" in path and not path.startswith("file://"):
        frame = tabular.normalize(pd.read_parquet(path))  # s3://... through fsspec/s3fs
    else:
        local = Path(path.removeprefix("file://"))
        if not local.exists():
            raise ReferenceNotFoundError(f"reference data {local} does not exist")
        frame = tabular.read(local)
    frame = tabular.sort_by_time(frame)
    if "://" not in path.removeprefix("file://") and labels_path(local).is_file():
        frame.attrs[LABELS_ATTR] = str(labels_path(local))
    return frame


def reference_labels(data: pd.DataFrame) -> pd.DataFrame | None:
    """The label stream found beside the reference data (None: there is none)."""
    path = data.attrs.get(LABELS_ATTR)
    return read_labels(path) if path else None


def reference_window(data: pd.DataFrame, scorer: Scorer, spec: FeatureSpec, span: timedelta,
                     lookback: timedelta, end: datetime | None = None) -> ScoredWindow:
    """The last `span` of the training data before `end`, scored by the champion."""
    if data.empty:
        raise ReferenceNotFoundError("the reference data set is empty")
    end = pd.Timestamp(end) if end is not None else data["timestamp"].max() + pd.Timedelta(1, "us")
    start = end - span
    frame, in_window = window_rows(data, start, end, lookback)
    if not in_window.any():
        raise ReferenceNotFoundError(f"the reference data has no rows between {start} and {end}")
    labels = reference_labels(data)
    if labels is None:
        probability, anomaly = score_rows(frame, in_window, scorer, spec)
    else:  # scored over more history (LABEL_HISTORY), then cut to the frame (its suffix)
        wide, wide_in_window = window_rows(data, start, end, lookback + LABEL_HISTORY)
        probability, anomaly = (scores[len(wide) - len(frame):] for scores in score_rows(
            wide, wide_in_window, scorer, spec, labels))
    return ScoredWindow(frame, in_window, probability, anomaly,
                        frame["label"].to_numpy(dtype=np.int8), start.to_pydatetime(),
                        end.to_pydatetime())


def score_rows(frame: pd.DataFrame, in_window: np.ndarray, scorer: Scorer, spec: FeatureSpec,
               labels: pd.DataFrame | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Champion scores of the window's rows (NaN for lookback rows, which nobody compares);
    `labels` count point in time (`monitoring.features.window_features`)."""
    features, rows = window_features(frame, spec, in_window, labels)
    x, mask = gather_sequences(features, sequence_index(frame, scorer.seq_len)[rows])
    result = scorer.score(x, mask)
    probability = np.full(len(frame), np.nan)
    anomaly = np.full(len(frame), np.nan)
    probability[rows], anomaly[rows] = result.fraud_probability, result.anomaly_score
    return probability, anomaly
