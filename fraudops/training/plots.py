"""Evaluation plots (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.metrics import precision_recall_curve, roc_curve


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def pr_curve_plot(labels: np.ndarray, scores: dict[str, np.ndarray], path: str | Path) -> Path:
    """Precision-recall curves of several scores on the same labels, saved as PNG."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 5))
    for name, values in scores.items():
        precision, recall, _ = precision_recall_curve(labels, values)
        ax.plot(recall, precision, label=name)
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall (test period)",
           xlim=(0, 1), ylim=(0, 1.02))
    ax.legend(loc="lower left")
    return _save(fig, plt, path)


def score_distribution_plot(labels: np.ndarray, values: np.ndarray, name: str,
                            threshold: float | None, path: str | Path) -> Path:
    """Histogram of one score for legitimate vs fraudulent rows (log counts)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    finite = np.isfinite(values)
    bins = np.histogram_bin_edges(values[finite], bins=60)
    for label, text in ((0, "legitimate"), (1, "fraud")):
        ax.hist(values[finite & (labels == label)], bins=bins, alpha=0.6, label=text, log=True)
    if threshold is not None and np.isfinite(threshold):
        ax.axvline(threshold, color="black", linestyle="--", label="threshold")
    ax.set(xlabel=name, ylabel="rows (log)", title=f"{name} by class (test period)")
    ax.legend()
    return _save(fig, plt, path)


def reliability_plot(labels: np.ndarray, probabilities: dict[str, np.ndarray],
                     path: str | Path, bins: int = 10) -> Path:
    """Observed fraud rate against predicted probability (equal-count bins, log axes: fraud
    is rare, so most rows sit at small probabilities), one line per model."""
    from sklearn.calibration import calibration_curve

    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 5))
    floor = 1e-4
    ax.plot([floor, 1], [floor, 1], color="grey", linestyle=":", label="perfectly calibrated")
    for name, values in probabilities.items():
        observed, predicted = calibration_curve(labels, np.clip(values, 0, 1), n_bins=bins,
                                                strategy="quantile")
        ax.plot(np.maximum(predicted, floor), np.maximum(observed, floor), marker="o",
                label=name)
    ax.set(xscale="log", yscale="log", xlabel="predicted fraud probability",
           ylabel="observed fraud rate", title="Reliability (test period)")
    ax.legend(loc="upper left")
    return _save(fig, plt, path)


def _save(fig, plt, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def curve_points(labels: np.ndarray, scores: np.ndarray, limit: int = 200
                 ) -> dict[str, list[float]]:
    """ROC points thinned to `limit` (for kfp ClassificationMetrics.log_roc_curve)."""
    fpr, tpr, thresholds = roc_curve(labels, scores)
    keep = np.unique(np.linspace(0, len(fpr) - 1, min(limit, len(fpr))).astype(int))
    finite = np.nan_to_num(thresholds[keep], posinf=1.0, neginf=0.0)
    return {"fpr": fpr[keep].tolist(), "tpr": tpr[keep].tolist(), "threshold": finite.tolist()}
