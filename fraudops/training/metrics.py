"""Evaluation metrics for fraud scores.

All functions take labels (1 = fraud) and scores (higher = more suspicious) as 1-D arrays.
Operating points "at X% FPR" use the lowest threshold whose false-positive rate on the given
data is at most X, i.e. the recall an analyst team with that alert budget would get.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import average_precision_score, roc_auc_score

from fraudops.schema import APPROVE, BLOCK, DECISIONS
from fraudops.training.exceptions import TrainingDataError

FPR_POINTS = {"1pct": 0.01, "0.1pct": 0.001}
PRECISION_AT_K = (100, 500)
#: False-positive ratios (legitimate alerts per fraud alert) of the value-detection figures.
FP_RATIOS = {"1": 1.0, "0.1": 0.1}
MICROS_PER_DAY = 86_400 * 10**6


def _check(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    labels = np.asarray(labels).astype(np.int64)
    scores = np.asarray(scores, dtype=np.float64)
    if labels.shape != scores.shape or labels.ndim != 1:
        raise TrainingDataError(f"labels {labels.shape} and scores {scores.shape} must be 1-D, "
                                "same length")
    if not np.isin(labels, (0, 1)).all():
        raise TrainingDataError("labels must be 0/1 (drop unlabelled rows first)")
    return labels, scores


def _both_classes(labels: np.ndarray) -> bool:
    return 0 < labels.sum() < labels.size


def auprc(labels, scores) -> float:
    """Area under the precision-recall curve (average precision); NaN with one class."""
    labels, scores = _check(labels, scores)
    return float(average_precision_score(labels, scores)) if _both_classes(labels) else np.nan


def roc_auc(labels, scores) -> float:
    """Area under the ROC curve; NaN with one class."""
    labels, scores = _check(labels, scores)
    return float(roc_auc_score(labels, scores)) if _both_classes(labels) else np.nan


def threshold_at_fpr(labels, scores, max_fpr: float) -> float:
    """Smallest score threshold (``score >= t`` flags) with false-positive rate <= `max_fpr`."""
    labels, scores = _check(labels, scores)
    negatives = np.sort(scores[labels == 0])[::-1]
    if negatives.size == 0:
        return float(scores.min()) if scores.size else np.inf
    allowed = int(np.floor(max_fpr * negatives.size))  # false positives we may flag
    if allowed >= negatives.size:
        return -np.inf
    # Flag strictly above the (allowed+1)-th highest negative score.
    return float(np.nextafter(negatives[allowed], np.inf))


def recall_at_fpr(labels, scores, max_fpr: float) -> float:
    """Share of fraud flagged at the threshold from `threshold_at_fpr`."""
    labels, scores = _check(labels, scores)
    if labels.sum() == 0:
        return np.nan
    threshold = threshold_at_fpr(labels, scores, max_fpr)
    return float(np.mean(scores[labels == 1] >= threshold))


def precision_at_k(labels, scores, k: int) -> float:
    """Share of fraud among the `k` highest-scored rows (ties broken by order)."""
    labels, scores = _check(labels, scores)
    if labels.size == 0:
        return np.nan
    top = np.argsort(-scores, kind="stable")[:k]
    return float(labels[top].mean())


def amount_caught(labels, flagged, amounts) -> float:
    """Share of the fraudulent amount in flagged rows (money the system would stop)."""
    labels = np.asarray(labels).astype(bool)
    amounts = np.asarray(amounts, dtype=np.float64)
    total = amounts[labels].sum()
    return float(amounts[labels & np.asarray(flagged, dtype=bool)].sum() / total) if total else np.nan


def value_detected_at_fp_ratio(labels, scores, amounts, ratio: float) -> float:
    """Share of the fraud amount flagged at the lowest threshold whose alerts hold at most
    `ratio` legitimate rows per fraud row (the "value detection rate at an X:1 false-positive
    ratio" fraud teams report). Thresholds are taken between distinct scores."""
    labels, scores = _check(labels, scores)
    amounts = np.asarray(amounts, dtype=np.float64)
    total = amounts[labels == 1].sum()
    if not total:
        return np.nan
    order = np.argsort(-scores, kind="stable")
    fraud = np.cumsum(labels[order])
    legit = np.cumsum(1 - labels[order])
    caught = np.cumsum(amounts[order] * labels[order])
    # Only cut where the next score differs: rows with one score are flagged together.
    cut = np.r_[scores[order][1:] != scores[order][:-1], True]
    ok = cut & (fraud > 0) & (legit <= ratio * fraud)
    return float(caught[ok].max() / total) if ok.any() else 0.0


def precision_at_daily_capacity(labels, scores, timestamps_us, capacity: int) -> float:
    """Precision of a team that reviews the `capacity` highest-scored rows of each day."""
    labels, scores = _check(labels, scores)
    days = np.asarray(timestamps_us, dtype=np.int64) // MICROS_PER_DAY
    frame = pd.DataFrame({"day": days, "score": scores, "label": labels})
    top = frame.sort_values("score", ascending=False, kind="stable").groupby("day").head(capacity)
    return float(top["label"].mean()) if len(top) else np.nan


def recall_by_scenario(labels, flagged, scenarios) -> dict[str, float]:
    """Recall per fraud scenario (synthetic data's ground truth); empty without scenarios."""
    labels = np.asarray(labels).astype(bool)
    flagged = np.asarray(flagged, dtype=bool)
    names = pd.Series(np.asarray(scenarios, dtype=object)).fillna("").astype(str).to_numpy()
    out = {}
    for name in sorted(set(names[labels]) - {""}):
        rows = labels & (names == name)
        out[name] = float(flagged[rows].mean())
    return out


def score_metrics(labels, scores, amounts=None, scenarios=None) -> dict[str, float]:
    """The standard metric set for one score: AUPRC, ROC-AUC, recall@FPR, precision@k, amounts.

    Amount and scenario figures use the 1%-FPR operating point.
    """
    labels, scores = _check(labels, scores)
    out = {"auprc": auprc(labels, scores), "roc_auc": roc_auc(labels, scores)}
    for tag, fpr in FPR_POINTS.items():
        out[f"recall_at_{tag}_fpr"] = recall_at_fpr(labels, scores, fpr)
    for k in PRECISION_AT_K:
        out[f"precision_at_{k}"] = precision_at_k(labels, scores, k)
    flagged = scores >= threshold_at_fpr(labels, scores, FPR_POINTS["1pct"])
    if amounts is not None:
        out["amount_caught_at_1pct_fpr"] = amount_caught(labels, flagged, amounts)
        for tag, ratio in FP_RATIOS.items():
            out[f"value_detected_at_fp_ratio_{tag}"] = value_detected_at_fp_ratio(
                labels, scores, amounts, ratio)
    if scenarios is not None:
        for name, value in recall_by_scenario(labels, flagged, scenarios).items():
            out[f"recall_at_1pct_fpr.{name}"] = value
    return out


def decision_metrics(labels, decisions, amounts=None, scenarios=None) -> dict[str, float]:
    """How the approve/review/block policy behaves: rates, recall, fraud amount stopped."""
    labels = np.asarray(labels).astype(bool)
    decisions = np.asarray(decisions).astype(str)
    flagged = decisions != APPROVE
    blocked = decisions == BLOCK
    out = {f"{d}_rate": float(np.mean(decisions == d)) for d in DECISIONS}
    out["flagged_recall"] = float(flagged[labels].mean()) if labels.any() else np.nan
    out["blocked_recall"] = float(blocked[labels].mean()) if labels.any() else np.nan
    out["flagged_fpr"] = float(flagged[~labels].mean()) if (~labels).any() else np.nan
    out["block_precision"] = float(labels[blocked].mean()) if blocked.any() else np.nan
    if amounts is not None:
        out["amount_flagged"] = amount_caught(labels, flagged, amounts)
        out["amount_blocked"] = amount_caught(labels, blocked, amounts)
    if scenarios is not None:
        for name, value in recall_by_scenario(labels, flagged, scenarios).items():
            out[f"flagged_recall.{name}"] = value
    return out
