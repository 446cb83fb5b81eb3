"""The deep models against the gradient-boosted reference, on the same holdout rows.

`add_reference` puts the reference's metrics (``reference.*``) and the gap (``gap.*``: the
LSTM-CNN's value minus the reference's, negative where the reference does better) beside the
deep models' metrics; `comparison_report` states the gap in words and a table for the run's
report (and the MLflow run's description).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from fraudops.training.metrics import score_metrics

if TYPE_CHECKING:  # the CLI's table uses `gap` and `verdict`: no torch for those
    import numpy as np

    from fraudops.training.dataset import FeatureSet
    from fraudops.training.evaluation import Evaluation
    from fraudops.training.reference import ReferenceModel

#: Score metrics compared model against model (per-scenario recall is compared as well).
COMPARED = ("auprc", "roc_auc", "recall_at_1pct_fpr", "recall_at_0.1pct_fpr",
            "precision_at_100", "amount_caught_at_1pct_fpr", "value_detected_at_fp_ratio_1",
            "value_detected_at_fp_ratio_0.1", "precision_at_daily_capacity", "brier")
SCENARIO_RECALL = "recall_at_1pct_fpr."
REPORT_FILE = "reference_comparison.md"


def add_reference(result: Evaluation, reference: ReferenceModel, data: FeatureSet,
                  rows: np.ndarray) -> Evaluation:
    """Score the evaluation's rows with the reference; add ``reference.*`` and ``gap.*``."""
    from fraudops.training.evaluation import probability_metrics

    rows = data.labelled(rows)
    probability = reference.predict(data.features[rows])
    scenarios = result.scenarios if (result.scenarios != "").any() else None
    values = score_metrics(result.labels, probability, result.amounts, scenarios)
    result.metrics.update({f"reference.{name}": value for name, value in values.items()})
    result.metrics.update(probability_metrics(result, "reference", probability))
    result.metrics.update({f"gap.{name}": gap(result.metrics, name) for name in COMPARED})
    result.reference_probability = probability
    return result


def gap(metrics: dict, name: str) -> float:
    """LSTM-CNN minus reference for metric `name` (NaN where either is missing)."""
    deep, reference = metrics.get(f"sequence.{name}"), metrics.get(f"reference.{name}")
    if deep is None or reference is None:
        return math.nan
    return deep - reference


def compared_names(metrics: dict) -> list[str]:
    """The metrics both models have: `COMPARED`, then recall per fraud scenario."""
    scenarios = sorted(k.removeprefix("reference.") for k in metrics
                       if k.startswith(f"reference.{SCENARIO_RECALL}")
                       and f"sequence.{k.removeprefix('reference.')}" in metrics)
    return [n for n in COMPARED if f"reference.{n}" in metrics] + scenarios


def verdict(metrics: dict, metric: str = "auprc") -> str:
    """One sentence: which of the LSTM-CNN and the reference is better, by how much."""
    deep, reference = metrics.get(f"sequence.{metric}"), metrics.get(f"reference.{metric}")
    if reference is None:
        return "No gradient-boosted reference was trained in this run."
    difference = gap(metrics, metric)
    if deep is None or not math.isfinite(difference):
        return f"The LSTM-CNN and the reference cannot be compared on {metric} here."
    if difference == 0:
        return f"The LSTM-CNN and the LightGBM reference are level on {metric} ({deep:.4f})."
    leader = "The LSTM-CNN beats" if difference > 0 else "The LightGBM reference beats"
    other = "the LightGBM reference" if difference > 0 else "the LSTM-CNN"
    return (f"{leader} {other} by {abs(difference):.4f} {metric} on the test period "
            f"(LSTM-CNN {deep:.4f}, reference {reference:.4f}).")


def comparison_report(metrics: dict) -> str:
    """Markdown for the run's report: the verdict, then each compared metric with its gap."""
    rows = metrics.get("rows")
    setting = (f"Same features, same time split; {_number(rows, ',.0f')} labelled test rows, "
               f"fraud rate {_number(metrics.get('fraud_rate'), '.2%')}. "
               "Gap = LSTM-CNN minus reference (negative: the reference is better).")
    lines = ["## LSTM-CNN against the gradient-boosted reference", "", verdict(metrics), "",
             setting, "", "| metric | LSTM-CNN | LightGBM reference | gap |",
             "|---|---:|---:|---:|"]
    for name in compared_names(metrics):
        values = (metrics.get(f"sequence.{name}"), metrics.get(f"reference.{name}"),
                  gap(metrics, name))
        lines.append(f"| {name} | " + " | ".join(_number(v, "+.4f" if i == 2 else ".4f")
                                                   for i, v in enumerate(values)) + " |")
    return "\n".join(lines) + "\n"


def _number(value: float | None, spec: str) -> str:
    return "n/a" if value is None or not math.isfinite(value) else format(value, spec)
