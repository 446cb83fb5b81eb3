"""Label streams: verdicts that become known after their transactions, each at its own time.

A label stream is a frame of `fraudops.schema.TransactionLabel` rows (`LABEL_COLUMNS`), sorted
by `labelled_at`, written beside its transactions (`labels_path`). A transaction may have
several labels (a chargeback after a maturity rule flips it); its verdict at a moment is its
latest label known by then (`verdicts_as_of`), as the store's `labels` table holds it.

`generate_labels` simulates how verdicts arrive in a fraud operation:

- **Flagged** transactions are what a screen (rules and a model) would send to review when
  they happen. There is no model at generation time, so flagging is a draw: a share of the
  fraud (`flag_fraud_share`) and a small share of the legitimate traffic
  (`flag_legit_share`, the screen's false positives), independent of the scenario.
- An **analyst** reviews a flagged transaction within hours (log-normal delay) and gives its
  true verdict; a share of flagged transactions is never reviewed (`never_reviewed_share`).
- **Missed fraud** (not flagged, or flagged and never reviewed) is disputed by the card holder
  with probability `chargeback_share`: a **chargeback** days to weeks later (log-normal). The
  rest of the fraud is never labelled as fraud.
- A legitimate transaction without a verdict counts as legitimate only after `maturity_days`
  (a **rule**: no dispute by then). With `mature_unreported_fraud`, the rule also labels fraud
  that nobody reported by then, as a real rule would (wrongly: 0), and a later chargeback
  flips it.

The stream draws from its own random stream of the seed, so it never changes the transactions;
every label is known strictly after its transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from fraudops.data.exceptions import FrameError
from fraudops.schema import LabelSource, TransactionLabel

LABEL_COLUMNS = ("transaction_id", "label", "labelled_at", "source", "account_id",
                 "merchant_id", "device_id")
_STRINGS = ("transaction_id", "source", "account_id", "merchant_id", "device_id")
#: The generator's transaction streams are the seed's children 0-3; the labels take child 4.
_LABEL_STREAM = 4
_HOUR, _DAY = 3600.0, 86400.0
#: An analyst needs at least a minute; a chargeback takes at least a day.
_MIN_REVIEW_S, _MIN_CHARGEBACK_S = 60.0, _DAY


class LabelStreamConfig(BaseModel):
    """How verdicts arrive (see the module docstring); delays are log-normal: median, sigma."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    flag_fraud_share: float = Field(default=0.7, ge=0, le=1)
    flag_legit_share: float = Field(default=0.005, ge=0, le=1)
    never_reviewed_share: float = Field(default=0.1, ge=0, le=1)
    review_median_hours: float = Field(default=2.0, gt=0)
    review_sigma: float = Field(default=0.8, ge=0)
    review_max_hours: float = Field(default=48.0, gt=0)
    chargeback_share: float = Field(default=0.8, ge=0, le=1)
    chargeback_median_days: float = Field(default=12.0, gt=0)
    chargeback_sigma: float = Field(default=0.6, ge=0)
    chargeback_max_days: float = Field(default=120.0, gt=0)
    maturity_days: float = Field(default=30.0, gt=0)
    mature_unreported_fraud: bool = False


def generate_labels(transactions: pd.DataFrame, seed: int,
                    config: LabelStreamConfig | None = None) -> pd.DataFrame:
    """The label stream of a generated data set (its `label` column is the ground truth)."""
    config = config or LabelStreamConfig()
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(_LABEL_STREAM,)))
    n = len(transactions)
    # Every draw has a fixed size, so a change of one share leaves the other draws alone.
    u_flag, u_review, u_dispute = rng.random(n), rng.random(n), rng.random(n)
    review_s = _lognormal(rng, n, config.review_median_hours * _HOUR, config.review_sigma,
                          _MIN_REVIEW_S, config.review_max_hours * _HOUR)
    dispute_s = _lognormal(rng, n, config.chargeback_median_days * _DAY,
                           config.chargeback_sigma, _MIN_CHARGEBACK_S,
                           config.chargeback_max_days * _DAY)
    truth = transactions["label"].to_numpy()
    fraud, legit = truth == 1, truth == 0
    flag_share = np.where(fraud, config.flag_fraud_share, config.flag_legit_share)
    reviewed = (fraud | legit) & (u_flag < flag_share) & (u_review >= config.never_reviewed_share)
    disputed = fraud & ~reviewed & (u_dispute < config.chargeback_share)
    maturity_s = config.maturity_days * _DAY
    matures = legit & ~reviewed
    if config.mature_unreported_fraud:
        matures |= fraud & ~reviewed & ~(disputed & (dispute_s <= maturity_s))
    parts = [(reviewed, truth, review_s, LabelSource.ANALYST),
             (disputed, 1, dispute_s, LabelSource.CHARGEBACK),
             (matures, 0, np.full(n, maturity_s), LabelSource.RULE)]
    return _assemble(transactions, parts)


def _lognormal(rng: np.random.Generator, n: int, median: float, sigma: float, low: float,
               high: float) -> np.ndarray:
    return np.clip(median * np.exp(sigma * rng.standard_normal(n)), low, max(low, high))


def _assemble(transactions: pd.DataFrame, parts: list) -> pd.DataFrame:
    rows, frames = np.arange(len(transactions)), []
    for mask, verdict, delay_s, source in parts:
        picked = rows[mask]
        verdicts = np.broadcast_to(np.asarray(verdict), mask.shape)[picked]
        frames.append(pd.DataFrame({
            "row": picked, "label": verdicts.astype("int8"), "source": source.value,
            "delay_ms": np.round(delay_s[picked] * 1000).astype("int64")}))
    picked = pd.concat(frames, ignore_index=True)
    source_rows = transactions.iloc[picked["row"].to_numpy()].reset_index(drop=True)
    frame = pd.DataFrame({
        "transaction_id": source_rows["transaction_id"],
        "label": picked["label"],
        "labelled_at": source_rows["timestamp"] + pd.to_timedelta(picked["delay_ms"], "ms"),
        "source": picked["source"],
        **{key: source_rows[key] for key in ("account_id", "merchant_id", "device_id")}})
    order = np.lexsort((picked["row"].to_numpy(), frame["labelled_at"].to_numpy()))
    return normalize_labels(frame.iloc[order].reset_index(drop=True))


def normalize_labels(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with every label column in its canonical dtype; `FrameError` if one is missing
    or a value could never be a `TransactionLabel` (verdict, source, time)."""
    missing = [c for c in ("transaction_id", "label", "labelled_at") if c not in frame.columns]
    if missing:
        raise FrameError(f"label stream lacks column(s): {', '.join(missing)}")
    out = frame.copy()
    out["labelled_at"] = pd.to_datetime(out["labelled_at"], utc=True)
    for column in _STRINGS:
        out[column] = (out[column] if column in out.columns else None)
        out[column] = out[column].astype("string")
    out["source"] = out["source"].fillna(LabelSource.IMPORT.value)
    bad = ~out["label"].isin([0, 1]) | ~out["source"].isin([s.value for s in LabelSource])
    if bad.any() or out["labelled_at"].isna().any():
        raise FrameError("label stream has verdicts other than 0/1, unknown sources or no time")
    out["label"] = out["label"].astype("int8")
    return out[list(LABEL_COLUMNS)]


def labels_path(transactions_path: str | Path) -> Path:
    """Where the label stream of a transactions file lives: ``<name>.labels.parquet``."""
    path = Path(transactions_path)
    return path.with_name(f"{path.name.removesuffix('.parquet')}.labels.parquet")


def write_labels(frame: pd.DataFrame, path: str | Path) -> Path:
    """Write a label stream as Parquet (zstd), creating parent directories."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    normalize_labels(frame).to_parquet(path, index=False, compression="zstd")
    return path


def read_labels(path: str | Path) -> pd.DataFrame:
    """A label stream file, in time order (an imported one is written in source order)."""
    frame = normalize_labels(pd.read_parquet(path))
    return frame.sort_values("labelled_at", kind="stable", ignore_index=True)


def to_labels(frame: pd.DataFrame) -> Iterator[TransactionLabel]:
    """One validated `TransactionLabel` per row, in the frame's order (e.g. to produce it)."""
    for row in frame[list(LABEL_COLUMNS)].itertuples(index=False):
        yield TransactionLabel.model_validate(
            {k: v for k, v in row._asdict().items() if v is not None and v is not pd.NA})


def verdicts_as_of(labels: pd.DataFrame, moment: datetime | pd.Timestamp) -> pd.DataFrame:
    """Each transaction's current verdict from the labels known at `moment` (inclusive): its
    latest by `labelled_at`, then by stream order (the store's rule)."""
    known = labels[labels["labelled_at"] <= pd.Timestamp(moment)]
    ordered = known.sort_values("labelled_at", kind="stable")
    return ordered.drop_duplicates("transaction_id", keep="last").reset_index(drop=True)


def label_stream_summary(transactions: pd.DataFrame, labels: pd.DataFrame) -> dict[str, float]:
    """How the fraud of `transactions` got labelled (shares of the fraud: by an analyst, by a
    chargeback, never as fraud) and the median delays; a generated set's figures."""
    fraud_ids = transactions.loc[transactions["label"] == 1, "transaction_id"]
    delay_s = (labels["labelled_at"] - labels["transaction_id"].map(
        transactions.set_index("transaction_id")["timestamp"])).dt.total_seconds()
    said_fraud = labels[labels["label"] == 1].drop_duplicates("transaction_id")
    first = said_fraud.set_index("transaction_id")["source"].reindex(fraud_ids)
    n = max(len(fraud_ids), 1)
    return {
        "fraud_by_analyst": float((first == LabelSource.ANALYST.value).sum() / n),
        "fraud_by_chargeback": float((first == LabelSource.CHARGEBACK.value).sum() / n),
        "fraud_never_labelled": float(first.isna().sum() / n),
        "median_review_hours": _median(delay_s[labels["source"] == "analyst"]) / _HOUR,
        "median_chargeback_days": _median(delay_s[labels["source"] == "chargeback"]) / _DAY,
        "matured_share": float((labels["source"] == "rule").sum() / max(len(transactions), 1)),
    }


def _median(values: pd.Series) -> float:
    return float(values.median()) if len(values) else float("nan")
