"""The tabular form of transactions (pandas / Parquet), mirroring `fraudops.schema.Transaction`.

Columns are the schema's fields; passthrough features live in columns named ``extra_<name>``.
Missing optional values are nulls; an unknown label is -1 in the ``label`` column (int8).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from fraudops.data.exceptions import FrameError
from fraudops.schema import EXTRA_PREFIX, Channel, MerchantCategory, Transaction

UNKNOWN_LABEL = -1

STRING_COLUMNS = (
    "transaction_id",
    "account_id",
    "currency",
    "merchant_id",
    "merchant_category",
    "channel",
    "country",
    "device_id",
    "fraud_scenario",
)
BASE_COLUMNS = ("transaction_id", "account_id", "timestamp", "amount", "currency", "merchant_id",
                "merchant_category", "channel", "country", "device_id", "label", "fraud_scenario")
REQUIRED_COLUMNS = ("transaction_id", "account_id", "timestamp", "amount")


def extra_columns(frame: pd.DataFrame) -> list[str]:
    """Names of the passthrough feature columns (with their ``extra_`` prefix), in order."""
    return [c for c in frame.columns if c.startswith(EXTRA_PREFIX)]


def passthrough_names(frame: pd.DataFrame) -> list[str]:
    """Names of the passthrough features (without prefix), in column order."""
    return [c[len(EXTRA_PREFIX):] for c in extra_columns(frame)]


def normalize(frame: pd.DataFrame) -> pd.DataFrame:
    """Return `frame` with every base column present and in its canonical dtype.

    Raises `FrameError` naming each missing required column.
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise FrameError(f"missing required column(s): {', '.join(missing)}")
    out = frame.copy()
    out["timestamp"] = pd.to_datetime(out["timestamp"], utc=True)
    out["amount"] = out["amount"].astype("float64")
    defaults = {"currency": "USD", "merchant_category": MerchantCategory.OTHER.value,
                "channel": Channel.OTHER.value}
    for column in STRING_COLUMNS:
        if column not in out.columns:
            out[column] = defaults.get(column)
        out[column] = out[column].astype("string")
    if "label" not in out.columns:
        out["label"] = UNKNOWN_LABEL
    out["label"] = out["label"].fillna(UNKNOWN_LABEL).astype("int8")
    for column in extra_columns(out):
        out[column] = out[column].astype("float64")
    return out[list(BASE_COLUMNS) + extra_columns(out)]


def sort_by_time(frame: pd.DataFrame) -> pd.DataFrame:
    """Stable time order: the order in which the stream would deliver the events."""
    return frame.sort_values("timestamp", kind="stable").reset_index(drop=True)


def read(path: str | Path) -> pd.DataFrame:
    """Read a Parquet (or CSV) data set in the platform's layout."""
    path = Path(path)
    frame = pd.read_csv(path) if path.suffix == ".csv" else pd.read_parquet(path)
    return normalize(frame)


def write(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a data set as Parquet (zstd), creating parent directories."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    normalize(frame).to_parquet(path, index=False, compression="zstd")
    return path


def to_transactions(frame: pd.DataFrame) -> Iterator[Transaction]:
    """Yield one validated `Transaction` per row (for producing a data set to Kafka)."""
    for record in to_records(frame):
        yield Transaction.model_validate(record)


def to_records(frame: pd.DataFrame) -> Iterator[dict]:
    """Yield rows as plain dicts in the `Transaction` shape (JSON-ready, nulls dropped)."""
    extras = extra_columns(frame)
    base = frame[list(BASE_COLUMNS)]
    timestamps = base["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%S.%fZ").to_numpy()
    columns = {c: base[c].to_numpy(dtype=object) for c in BASE_COLUMNS if c != "timestamp"}
    extra_values = frame[extras].to_numpy(dtype="float64") if extras else None
    names = [c[len(EXTRA_PREFIX):] for c in extras]
    for i in range(len(frame)):
        record = {c: columns[c][i] for c in columns}
        record["timestamp"] = timestamps[i]
        record = {k: v for k, v in record.items() if v is not None and v is not pd.NA}
        record["amount"] = float(record["amount"])
        label = int(record.pop("label"))
        if label != UNKNOWN_LABEL:
            record["label"] = label
        if extra_values is not None:
            record["extra"] = dict(zip(names, extra_values[i].tolist(), strict=True))
        yield record


def from_transactions(transactions: Iterable[Transaction]) -> pd.DataFrame:
    """Build a normalized frame from events (e.g. the scored window read back from storage)."""
    rows = []
    for tx in transactions:
        row = tx.model_dump(exclude={"extra"})
        row.update({EXTRA_PREFIX + k: v for k, v in tx.extra.items()})
        rows.append(row)
    if not rows:
        return normalize(pd.DataFrame({c: [] for c in REQUIRED_COLUMNS}))
    frame = pd.DataFrame(rows)
    frame["label"] = frame["label"].astype("float64")
    return normalize(frame)


def label_rate(frame: pd.DataFrame) -> float:
    """Share of labelled rows that are fraud (NaN when nothing is labelled)."""
    labels = frame["label"].to_numpy()
    known = labels[labels != UNKNOWN_LABEL]
    return float(known.mean()) if known.size else float(np.nan)
