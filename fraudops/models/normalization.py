"""Input normalisation fitted on training data and stored inside the model as buffers.

Features arrive raw (counts, log amounts, one-hots, a data set's anonymous passthrough columns);
each model normalises them with statistics seen in training, so the statistics travel with the
checkpoint and serving cannot apply different ones. Two kinds:

* `Standardizer`: (x - mean) / std, the default.
* `QuantileNormalizer`: rank-gauss, each feature through its training quantiles onto a
  standard normal, as scikit-learn's ``QuantileTransformer(output_distribution="normal")``
  does (same interpolation, ties and bounds) but in torch, so the checkpoint holds it and the
  scorer applies it in the forward pass. Neural nets on skewed tabular inputs train better on
  such inputs; trees do not need it.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

#: Features whose training spread is below this are treated as constant (scale 1) instead of
#: blowing up tiny noise into huge inputs.
MIN_STD = 1e-6
#: Standardised inputs are clipped: an extreme value in production must not saturate the net.
CLIP = 10.0
#: scikit-learn's QuantileTransformer bound: probabilities are kept in [BOUND, 1 - BOUND]
#: before the normal quantile function (so outputs lie within about +-5.2).
BOUND = 1e-7
#: Quantiles kept per feature by a `QuantileNormalizer` (scikit-learn's default).
DEFAULT_QUANTILES = 1000


class Standardizer(nn.Module):
    """(x - mean) / std per feature, clipped to +-CLIP."""

    def __init__(self, dim: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def fit(self, rows: np.ndarray) -> Standardizer:
        """Set the statistics from a [N, dim] array of (real, unpadded) feature rows."""
        rows = np.asarray(rows, dtype=np.float64)
        std = rows.std(axis=0)
        std[std < MIN_STD] = 1.0
        self.mean.copy_(torch.as_tensor(rows.mean(axis=0), dtype=torch.float32))
        self.std.copy_(torch.as_tensor(std, dtype=torch.float32))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ((x - self.mean) / self.std).clamp(-CLIP, CLIP)


class QuantileNormalizer(nn.Module):
    """Rank-gauss per feature: x -> Phi^-1(training CDF(x)), the CDF interpolated linearly
    between `quantiles` stored training quantiles; a value repeated in training (a one-hot's
    0) maps to the middle of its probability range, as in scikit-learn."""

    def __init__(self, dim: int, quantiles: int = DEFAULT_QUANTILES):
        super().__init__()
        if quantiles < 2:
            raise ValueError(f"need at least 2 quantiles, got {quantiles}")
        self.register_buffer("quantiles", torch.zeros(dim, quantiles))  # [F, Q], ascending
        # The probability of each stored quantile: fixed by Q, so not part of the state.
        self.register_buffer("levels", torch.linspace(0.0, 1.0, quantiles), persistent=False)

    def fit(self, rows: np.ndarray) -> QuantileNormalizer:
        """Set the quantiles from a [N, dim] array of (real, unpadded) feature rows."""
        rows = np.asarray(rows, dtype=np.float64)
        levels = np.linspace(0.0, 1.0, self.quantiles.shape[1])  # float64, as scikit-learn
        values = np.percentile(rows, levels * 100, axis=0)  # [Q, F], scikit-learn's knots
        # float rounding can make a percentile step down by an ulp; interpolation needs order
        values = np.maximum.accumulate(values, axis=0)
        self.quantiles.copy_(torch.as_tensor(values.T, dtype=torch.float32))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1]).T.contiguous()  # [F, N]: one sorted row per feature
        # Interpolating from the right and from the left and averaging puts a tied value
        # at the middle of its range (scikit-learn's rule); elsewhere both agree.
        p = 0.5 * (self._interp(flat, right=True) + self._interp(flat, right=False))
        low, high = self.quantiles[:, :1], self.quantiles[:, -1:]
        # At or past the training extremes: the bounds (the lower one wins for a constant
        # feature, as in scikit-learn). `>=` as well: x + BOUND rounds to x in float32.
        p = torch.where((flat + BOUND > high) | (flat >= high), torch.ones_like(p), p)
        p = torch.where((flat - BOUND < low) | (flat <= low), torch.zeros_like(p), p)
        # float64 here: 1 - BOUND is not representable in float32 (the top would be 5.17)
        z = torch.special.ndtri(p.double().clamp(BOUND, 1.0 - BOUND)).to(x.dtype)
        return z.T.reshape(shape)

    def _interp(self, flat: torch.Tensor, right: bool) -> torch.Tensor:
        q, last = self.quantiles, self.quantiles.shape[1] - 1
        upper = torch.searchsorted(q, flat, right=right)
        lower = upper - 1
        upper, lower = upper.clamp(0, last), lower.clamp(0, last)
        x0, x1 = q.gather(1, lower), q.gather(1, upper)
        y0, y1 = self.levels[lower], self.levels[upper]
        span = x1 - x0
        step = torch.where(span > 0, (flat - x0) / torch.where(span > 0, span, 1.0), 0.0)
        if not right:  # from the left: anchored at the upper knot (a tie's first level)
            step = torch.where(span > 0, step, 1.0)
        return y0 + step.clamp(0.0, 1.0) * (y1 - y0)


def make_normalizer(dim: int, quantiles: int) -> nn.Module:
    """A `QuantileNormalizer` with `quantiles` quantiles, or (0) a `Standardizer`."""
    return QuantileNormalizer(dim, quantiles) if quantiles > 0 else Standardizer(dim)
