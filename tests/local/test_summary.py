"""Summary figures from a stream's ground truth and the stored decisions."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
from rich.console import Console

from local.summary import DriftOutcome, Quality, render, summarize


def _stream() -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    ids = [f"tx-{i}" for i in range(8)]
    labels = [1, 0, 0, 1, 0, 1, 0, 0]
    stream = pd.DataFrame({"transaction_id": ids, "label": labels})
    after = np.array([False] * 4 + [True] * 4)
    sent = np.array([1000.0 + i for i in range(8)])
    sent[7] = np.nan  # never sent
    return stream, after, sent


def _decisions() -> pd.DataFrame:
    rows = [("tx-0", "block", "1/1", 1000.1), ("tx-1", "review", "1/1", 1001.2),
            ("tx-2", "approve", "1/1", 1002.3), ("tx-3", "approve", "1/1", 1003.4),
            ("tx-4", "approve", "2/2", 1004.5), ("tx-5", "block", "2/2", 1005.6),
            ("tx-6", "approve", "2/2", 1006.7), ("other", "block", "2/2", 1007.0)]
    frame = pd.DataFrame(rows, columns=["transaction_id", "decision", "model_version", "t"])
    frame["scored_at"] = pd.to_datetime(frame.pop("t"), unit="s", utc=True)
    return frame


def test_quality_counts_review_and_block_as_flagged() -> None:
    quality = Quality.of(np.array([True, True, False, False]), np.array([1, 0, 1, 0]))
    assert (quality.precision, quality.recall) == (0.5, 0.5)
    assert math.isnan(Quality.of(np.zeros(2, bool), np.zeros(2, np.int8)).precision)


def test_summary_joins_ground_truth_with_decisions() -> None:
    stream, after, sent = _stream()
    summary = summarize(stream, after, sent, _decisions(), 8.0, DriftOutcome(detected_at_s=4.0))
    assert (summary.sent, summary.decided) == (7, 7)  # "other" is not part of the stream
    assert summary.decisions == {"approve": 4, "block": 2, "review": 1}
    everything = summary.quality["all"]
    assert (everything["frauds"], everything["flagged"], everything["true_positives"]) == (3, 3, 2)
    assert summary.quality["before drift"]["recall"] == 0.5  # tx-0 caught, tx-3 missed
    assert summary.quality["after drift"]["precision"] == 1.0
    assert set(summary.by_model) == {"1/1", "2/2"}
    assert 90 < summary.latency_ms["p50"] < 500
    assert summary.throughput_tx_s > 1
    json.loads(summary.to_json())
    text = _rendered(summary)
    assert "precision" in text and "drift detected" in text


def test_summary_of_nothing_decided_is_still_rendered() -> None:
    stream, after, sent = _stream()
    empty = _decisions().iloc[0:0]
    summary = summarize(stream, after, sent, empty, 0.0, DriftOutcome())
    assert summary.decided == 0 and summary.latency_ms == {}
    assert "n/a" in _rendered(summary)


def _rendered(summary) -> str:
    console = Console(width=140, record=True)
    console.print(render(summary))
    return console.export_text()
