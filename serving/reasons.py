"""Reason codes: the few features of a transaction that most plausibly drove its score.

Cheap by design (a few vector operations per batch, no extra forward pass): a feature's
reason score is its standardised deviation from the training mean, |x - mean| / std, weighted by
the feature's importance to the sequence model. Importance is computed once per loaded model:
the mean absolute gradient of the fraud logit with respect to the current transaction's
standardised features, over random standard-normal inputs. Only features at least `min_z`
standard deviations away are reported, so an ordinary transaction gets no reasons.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

#: Importance never weighs a feature below this share of the most important one: a huge
#: deviation in a low-gradient feature is still worth showing to an analyst.
_MIN_WEIGHT = 0.25
_PROBE_ROWS = 64


@dataclass(frozen=True)
class ReasonCoder:
    """Ranks features by weighted standardised deviation."""

    names: tuple[str, ...]
    mean: np.ndarray
    std: np.ndarray
    weight: np.ndarray
    top_k: int = 3
    min_z: float = 2.0

    def explain(self, current: np.ndarray) -> list[str]:
        """Comma-separated reason codes per row of `current` [B, F] (raw features)."""
        if self.top_k == 0 or current.shape[0] == 0:
            return [""] * current.shape[0]
        z = np.abs((current - self.mean) / self.std)
        score = np.where(z >= self.min_z, z * self.weight, 0.0)
        k = min(self.top_k, score.shape[1])
        top = np.argpartition(-score, k - 1, axis=1)[:, :k]
        top_scores = np.take_along_axis(score, top, axis=1)
        order = np.argsort(-top_scores, axis=1)
        top, top_scores = (np.take_along_axis(a, order, axis=1) for a in (top, top_scores))
        names = self.names
        return [",".join(names[j] for j, s in zip(row, srow, strict=True) if s > 0)
                for row, srow in zip(top.tolist(), top_scores.tolist(), strict=True)]


def build_reason_coder(sequence_model: nn.Module, names: Sequence[str], seq_len: int, *,
                       top_k: int = 3, min_z: float = 2.0) -> ReasonCoder:
    """Reason coder for a sequence model that standardises its input with ``.normalize``."""
    dim = len(names)
    mean, std = _standardisation(sequence_model, dim)
    weight = _gradient_importance(sequence_model, mean, std, seq_len)
    return ReasonCoder(tuple(names), mean, std, weight, top_k, min_z)


def _standardisation(model: nn.Module, dim: int) -> tuple[np.ndarray, np.ndarray]:
    norm = getattr(model, "normalize", None)
    if norm is None or not hasattr(norm, "mean"):
        return np.zeros(dim, np.float32), np.ones(dim, np.float32)
    return (norm.mean.detach().cpu().numpy().astype(np.float32),
            norm.std.detach().cpu().numpy().astype(np.float32))


def _gradient_importance(model: nn.Module, mean: np.ndarray, std: np.ndarray,
                         seq_len: int) -> np.ndarray:
    """Mean |d logit / d z| of the current transaction's standardised features, scaled to 1."""
    parameter = next(model.parameters())
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(_PROBE_ROWS, seq_len, len(mean), generator=generator)
    x = (z * torch.as_tensor(std) + torch.as_tensor(mean)).to(
        parameter.device, parameter.dtype).requires_grad_(True)
    device = parameter.device
    mask = torch.ones(_PROBE_ROWS, seq_len, dtype=torch.bool, device=device)
    was_training = model.training
    model.eval()
    try:
        # cuDNN computes an LSTM's backward pass in training mode only; this probe needs the
        # eval-mode model (no dropout), so it takes the plain CUDA kernels instead.
        with torch.enable_grad(), torch.backends.cudnn.flags(enabled=False):
            (grad,) = torch.autograd.grad(model(x, mask).sum(), x)
    finally:
        model.train(was_training)
    grad = (grad[:, -1, :].abs().mean(dim=0).cpu().numpy() * std).astype(np.float32)
    top = float(grad.max()) if grad.size else 0.0
    if not np.isfinite(top) or top <= 0:
        return np.ones_like(mean)
    return np.maximum(grad / top, _MIN_WEIGHT).astype(np.float32)
