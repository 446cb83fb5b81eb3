"""The end-of-run summary: throughput, latency, decisions, quality against ground truth, drift.

Quality compares the decisions in the store with the stream's ground truth (the generator's
labels): a transaction counts as flagged when decided `review` or `block`. Figures are split
before / after the drift point and by the model version that decided, so the effect of drift and
of the retrained model shows.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from rich.console import Group
from rich.table import Table

from fraudops.schema import ALERT_DECISIONS

PERCENTILES = (50, 95, 99)


@dataclass(frozen=True)
class Quality:
    """Precision and recall of flagging (review or block) against the ground-truth labels."""

    transactions: int
    frauds: int
    flagged: int
    true_positives: int

    @property
    def precision(self) -> float:
        return self.true_positives / self.flagged if self.flagged else math.nan

    @property
    def recall(self) -> float:
        return self.true_positives / self.frauds if self.frauds else math.nan

    @classmethod
    def of(cls, flagged: np.ndarray, label: np.ndarray) -> Quality:
        return cls(len(label), int(label.sum()), int(flagged.sum()),
                   int((flagged & (label == 1)).sum()))

    def as_dict(self) -> dict[str, float | int]:
        return {**asdict(self), "precision": self.precision, "recall": self.recall}


@dataclass
class DriftOutcome:
    """What the monitoring loop did (all times in seconds since the stream started)."""

    #: The first check that saw drift or a quality drop (retraining may wait for data).
    detected_at_s: float | None = None
    report: str | None = None
    checks: int = 0
    retraining_started_at_s: float | None = None
    retraining_s: float | None = None
    retrained: bool = False
    #: The registered challenger after retraining (None: the run registered nothing, it failed).
    challenger: str | None = None
    promoted: bool | None = None
    initial_versions: str | None = None
    final_versions: str | None = None
    switched_at_s: float | None = None


@dataclass
class Summary:
    """Everything the demo reports at the end (also written as JSON to the state dir)."""

    sent: int
    decided: int
    stream_seconds: float
    throughput_tx_s: float
    latency_ms: dict[str, float]
    decisions: dict[str, int]
    quality: dict[str, dict[str, float | int]]
    by_model: dict[str, dict[str, float | int]]
    drift: DriftOutcome
    steps: dict[str, float | None] = field(default_factory=dict)
    #: Verdicts sent to `labels` during the stream, as they became known (what retraining and
    #: the drift job's quality figure learn from; the quality table uses the ground truth).
    labels_sent: int = 0
    #: Per supervised process: seconds until ready (None: never ready) and final state.
    processes: dict[str, dict[str, object]] = field(default_factory=dict)
    links: dict[str, str] = field(default_factory=dict)
    logs: str = ""
    problems: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, default=str, allow_nan=True)

    def write(self, path: Path) -> Path:
        path.write_text(self.to_json())
        return path


def summarize(stream: pd.DataFrame, after_drift: np.ndarray, sent_at: np.ndarray,
              decisions: pd.DataFrame, stream_seconds: float, drift: DriftOutcome) -> Summary:
    """Join the stream (ground truth, send times) with the stored decisions and compute figures."""
    truth = pd.DataFrame({"transaction_id": stream["transaction_id"].astype(str).to_numpy(),
                          "label": stream["label"].to_numpy(), "after_drift": after_drift,
                          "sent_at": sent_at})
    joined = truth.merge(decisions, on="transaction_id", how="inner")
    flagged = joined["decision"].isin(ALERT_DECISIONS).to_numpy()
    label = (joined["label"].to_numpy() == 1).astype(np.int8)
    after = joined["after_drift"].to_numpy(dtype=bool)
    quality = {"all": Quality.of(flagged, label).as_dict(),
               "before drift": Quality.of(flagged[~after], label[~after]).as_dict(),
               "after drift": Quality.of(flagged[after], label[after]).as_dict()}
    by_model = {}
    for version, rows in joined.groupby("model_version").groups.items():
        index = joined.index.get_indexer(rows)
        by_model[str(version) or "?"] = Quality.of(flagged[index], label[index]).as_dict()
    return Summary(
        sent=int(np.isfinite(sent_at).sum()), decided=len(joined), stream_seconds=stream_seconds,
        throughput_tx_s=_throughput(joined), latency_ms=_latency_ms(joined),
        decisions={str(k): int(v) for k, v in joined["decision"].value_counts().items()},
        quality=quality, by_model=by_model, drift=drift)


def _throughput(joined: pd.DataFrame) -> float:
    if len(joined) < 2:
        return 0.0
    stored = joined["scored_at"]
    span = (stored.max() - stored.min()).total_seconds()
    return len(joined) / span if span > 0 else math.nan


def _latency_ms(joined: pd.DataFrame) -> dict[str, float]:
    """Send-to-stored latency: Kafka, consumer batching, predictor and the store write."""
    if joined.empty:
        return {}
    stored = joined["scored_at"].astype("int64").to_numpy() / 1e9
    latency = (stored - joined["sent_at"].to_numpy()) * 1000.0
    latency = latency[np.isfinite(latency)]
    if latency.size == 0:
        return {}
    return {f"p{p}": float(np.percentile(latency, p)) for p in PERCENTILES}


def render(summary: Summary) -> Group:
    """Rich tables of the summary for the terminal."""
    return Group(_overview(summary), _quality_table(summary), _drift_table(summary),
                 _links_table(summary))


def _overview(summary: Summary) -> Table:
    table = Table(title="fraudops demo: summary", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("transactions sent / decided", f"{summary.sent:,} / {summary.decided:,}")
    table.add_row("throughput", f"{summary.throughput_tx_s:,.0f} tx/s decided "
                                f"(stream ran {summary.stream_seconds:.0f} s)")
    if summary.latency_ms:
        table.add_row("latency (sent -> stored)", "  ".join(
            f"{name} {value:,.0f} ms" for name, value in summary.latency_ms.items()))
    table.add_row("labels arrived", f"{summary.labels_sent:,} verdicts sent to `labels` as they "
                                    "became known (retraining learns from these only)")
    total = max(1, sum(summary.decisions.values()))
    table.add_row("decisions", "  ".join(
        f"{name} {count:,} ({count / total:.1%})"
        for name, count in sorted(summary.decisions.items())))
    for name, seconds in summary.steps.items():
        if seconds is not None:
            table.add_row(f"  time: {name}", f"{seconds:.1f} s")
    for problem in summary.problems:
        table.add_row("[red]problem[/]", problem)
    return table


def _quality_table(summary: Summary) -> Table:
    table = Table(title="quality vs the stream's ground truth (flagged = review or block)",
                  title_justify="left")
    for column in ("slice", "transactions", "frauds", "flagged", "precision", "recall"):
        table.add_column(column, justify="left" if column == "slice" else "right")
    rows = list(summary.quality.items()) + [
        (f"model {version}", figures) for version, figures in summary.by_model.items()]
    for name, q in rows:
        table.add_row(name, f"{q['transactions']:,}", f"{q['frauds']:,}", f"{q['flagged']:,}",
                      _pct(q["precision"]), _pct(q["recall"]))
    return table


def _drift_table(summary: Summary) -> Table:
    drift = summary.drift
    table = Table(title="drift and retraining (times since the stream started)",
                  show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("drift checks run", str(drift.checks))
    table.add_row("drift detected", _when(drift.detected_at_s))
    table.add_row("retraining started", _when(drift.retraining_started_at_s))
    table.add_row("retraining", "not run" if not drift.retrained else
                  f"done in {drift.retraining_s:.0f} s" if drift.retraining_s else "ran")
    if drift.retrained and drift.challenger is None:
        table.add_row("promotion", "[red]retraining registered no model (see its log)[/]")
    elif drift.promoted is not None:
        table.add_row("promotion", f"challenger {drift.challenger} promoted to champion"
                      if drift.promoted else
                      f"challenger {drift.challenger} not better: champion kept")
    table.add_row("model versions (sequence/autoencoder)",
                  f"{drift.initial_versions or '?'} -> {drift.final_versions or '?'}")
    table.add_row("live model switch", _when(drift.switched_at_s))
    return table


def _links_table(summary: Summary) -> Table:
    table = Table(title="links", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("where")
    for name, url in summary.links.items():
        table.add_row(name, url)
    table.add_row("process logs", summary.logs)
    return table


def _pct(value: float) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) \
        else f"{value:.1%}"


def _when(seconds: float | None) -> str:
    return "no" if seconds is None else f"at {seconds:.0f} s"
