"""Autoencoder over a transaction's own feature vector, trained on legitimate traffic only.

The anomaly score is the reconstruction error (mean squared error in standardised space),
log-transformed and standardised with the error distribution of legitimate validation rows:
0 is a typical legitimate transaction, 3 is three "legit spreads" more unusual. The threshold
for a target false-positive rate is calibrated on the same validation rows and stored with it.

With ``feature_scaled`` each feature's residual is first standardised robustly (median and
IQR of that feature's residual on legitimate validation rows): a feature the model always
reconstructs well then counts as much when it is off as one that is noisy anyway, instead of
the noisy features drowning the rare, telling ones. Checkpoints without the field load as the
plain score.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn

from fraudops.models.normalization import Standardizer

#: Added to the reconstruction error before its log (a perfect reconstruction is not -inf).
EPS = 1e-8
#: Smallest residual spread per feature (standardised units): a feature reconstructed almost
#: perfectly on legit rows must not turn a tiny deviation into an enormous error.
MIN_RESIDUAL_SCALE = 0.05
#: Standardised residuals are clipped: one wild feature must not decide the score alone.
RESIDUAL_CLIP = 20.0


@dataclass(frozen=True)
class AutoencoderConfig:
    """Architecture hyper-parameters (stored in the checkpoint to rebuild the module)."""

    input_dim: int
    hidden_size: int = 32
    bottleneck: int = 8
    dropout: float = 0.0
    #: Residuals standardised per feature (robust scale from legit validation rows).
    feature_scaled: bool = False

    def to_dict(self) -> dict:
        return asdict(self)


class Autoencoder(nn.Module):
    """forward(x [B, F]) -> reconstruction in standardised space; see `anomaly_score`."""

    def __init__(self, config: AutoencoderConfig):
        super().__init__()
        self.config = config
        c = config
        self.normalize = Standardizer(c.input_dim)
        self.encoder = nn.Sequential(
            nn.Linear(c.input_dim, c.hidden_size), nn.ReLU(), nn.Dropout(c.dropout),
            nn.Linear(c.hidden_size, c.bottleneck), nn.ReLU(),
        )
        self.decoder = nn.Sequential(
            nn.Linear(c.bottleneck, c.hidden_size), nn.ReLU(),
            nn.Linear(c.hidden_size, c.input_dim),
        )
        # Calibration of the score on legitimate validation traffic (set by `calibrate`).
        self.register_buffer("score_loc", torch.tensor(0.0))
        self.register_buffer("score_scale", torch.tensor(1.0))
        self.register_buffer("threshold", torch.tensor(float("inf")))
        self.register_buffer("target_fpr", torch.tensor(float("nan")))
        if c.feature_scaled:
            self.register_buffer("residual_center", torch.zeros(c.input_dim))
            self.register_buffer("residual_scale", torch.ones(c.input_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(self.normalize(x)))

    def residuals(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction minus input per feature [B, F] (robustly scaled if configured)."""
        residual = self(x) - self.normalize(x)
        if not self.config.feature_scaled:
            return residual
        scaled = (residual - self.residual_center) / self.residual_scale
        return scaled.clamp(-RESIDUAL_CLIP, RESIDUAL_CLIP)

    def reconstruction_error(self, x: torch.Tensor) -> torch.Tensor:
        """Mean squared (scaled) residual per row, in standardised feature space."""
        return self.residuals(x).pow(2).mean(dim=1)

    @torch.no_grad()
    def fit_residual_scale(self, legit_rows: torch.Tensor) -> None:
        """Per-feature median and IQR-based spread of the residual on legitimate rows."""
        if not self.config.feature_scaled:
            return
        residual = (self(legit_rows) - self.normalize(legit_rows)).double()
        low, center, high = torch.quantile(
            residual, torch.tensor([0.25, 0.5, 0.75], dtype=residual.dtype,
                                   device=residual.device), dim=0)
        self.residual_center.copy_(center)
        self.residual_scale.copy_(((high - low) / 1.349).clamp(min=MIN_RESIDUAL_SCALE))

    def anomaly_score(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised anomaly score [B] (higher = more unusual)."""
        log_error = torch.log(self.reconstruction_error(x) + EPS)
        return (log_error - self.score_loc) / self.score_scale

    @torch.no_grad()
    def calibrate(self, legit_rows: torch.Tensor, target_fpr: float) -> float:
        """Fit the score normalisation and the threshold flagging `target_fpr` of legit rows."""
        if not 0.0 < target_fpr < 1.0:
            raise ValueError(f"target_fpr must be in (0, 1), got {target_fpr}")
        self.fit_residual_scale(legit_rows)
        log_error = torch.log(self.reconstruction_error(legit_rows) + EPS).cpu().numpy()
        self.score_loc.fill_(float(np.median(log_error)))
        spread = float(np.subtract(*np.percentile(log_error, [75, 25]))) / 1.349  # IQR -> sigma
        self.score_scale.fill_(max(spread, 1e-3))
        scores = (log_error - self.score_loc.item()) / self.score_scale.item()
        self.threshold.fill_(float(np.quantile(scores, 1.0 - target_fpr)))
        self.target_fpr.fill_(target_fpr)
        return float(self.threshold)
