"""Input standardisation fitted on training data and stored inside the model as buffers.

Features arrive raw (counts, log amounts, one-hots); each model standardises them with the mean
and standard deviation seen in training, so the statistics travel with the checkpoint and
serving cannot apply different ones.
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
