"""Hybrid LSTM-CNN over an account's last K transactions.

1-D convolutions pick up local patterns between neighbouring transactions (bursts, amount
escalation); an LSTM summarises the whole history; the head also sees the current transaction's
own features, which carry most of the signal for a first transaction. Sequences arrive padded at
the front (see `fraudops.features.sequence_index`); the model left-aligns them and packs them,
so padding never reaches the LSTM and the output does not depend on how much there is.

With ``wide_size`` > 0 (wide and deep) the current transaction's full feature vector also goes
through its own two-layer branch, and that branch's logit is added to the sequence head's: a
transaction with no history (imported data without an account id: sequences of length one) is
then scored by a model of its own features as strong as a tabular one, and the sequence branch
adds what the history says. ``wide_size`` = 0 is the first architecture (checkpoints written
before the field existed load as that).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from fraudops.models.normalization import Standardizer


@dataclass(frozen=True)
class LSTMCNNConfig:
    """Architecture hyper-parameters (stored in the checkpoint to rebuild the module)."""

    input_dim: int
    conv_channels: int = 32
    kernel_size: int = 3
    hidden_size: int = 48
    head_size: int = 64
    dropout: float = 0.1
    #: Width of the wide branch over the current transaction (0: none, the v1 architecture).
    wide_size: int = 0

    def to_dict(self) -> dict:
        return asdict(self)


def left_align(x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Move each row's real steps to the front (order kept); returns (aligned x, lengths).

    Padded steps become zeros at the end. A row with no real step keeps length 1 (its zero
    vector), so packing never sees an empty sequence.
    """
    steps = x.shape[1]
    lengths = mask.sum(dim=1)
    pad = steps - lengths
    positions = torch.arange(steps, device=x.device).unsqueeze(0) + pad.unsqueeze(1)
    valid = positions < steps
    gathered = torch.gather(x, 1, positions.clamp(max=steps - 1).unsqueeze(-1).expand_as(x))
    aligned = gathered * valid.unsqueeze(-1).to(x.dtype)
    return aligned, lengths.clamp(min=1)


class LSTMCNN(nn.Module):
    """forward(x [B, K, F] raw features, mask [B, K] bool) -> fraud logits [B]."""

    def __init__(self, config: LSTMCNNConfig):
        super().__init__()
        self.config = config
        c = config
        self.normalize = Standardizer(c.input_dim)
        self.convs = nn.ModuleList([
            nn.Conv1d(c.input_dim, c.conv_channels, c.kernel_size, padding=c.kernel_size // 2),
            nn.Conv1d(c.conv_channels, c.conv_channels, c.kernel_size, padding=c.kernel_size // 2),
        ])
        self.lstm = nn.LSTM(c.conv_channels, c.hidden_size, batch_first=True)
        self.head = nn.Sequential(
            nn.Linear(c.hidden_size + c.conv_channels + c.input_dim, c.head_size),
            nn.ReLU(),
            nn.Dropout(c.dropout),
            nn.Linear(c.head_size, 1),
        )
        self.wide = _wide_branch(c) if c.wide_size > 0 else None

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mask = mask.bool()
        # Padding is zero after normalisation too, exactly like the convolution's own padding.
        z = self.normalize(x) * mask.unsqueeze(-1).to(x.dtype)
        aligned, lengths = left_align(z, mask)
        steps = torch.arange(aligned.shape[1], device=x.device).unsqueeze(0)
        real = (steps < lengths.unsqueeze(1)).unsqueeze(1).to(x.dtype)
        conv = aligned.transpose(1, 2)  # [B, F, K]
        for layer in self.convs:
            # Re-zero the tail after every layer so the next one sees exactly what a shorter,
            # unpadded sequence would (its own zero padding), not ReLU(bias) leaking in.
            conv = torch.relu(layer(conv)) * real
        # Every row runs all K steps and the state after its last real step is read back:
        # left-aligned, the zeros after it cannot reach that state. (Packing the sequences,
        # as before, let the rows at each step depend on the other rows' lengths, so a row's
        # float32 result depended on the batch around it.)
        states, _ = self.lstm(conv.transpose(1, 2))  # [B, K, H]
        final = (lengths - 1).view(-1, 1, 1)  # each row's last real step
        hidden = states.gather(1, final.expand(-1, 1, states.shape[2]))
        conv_last = torch.gather(conv, 2, final.expand(-1, conv.shape[1], 1)).squeeze(-1)
        current = z[:, -1, :]  # the scored transaction itself is always the last column
        logit = self.head(torch.cat([hidden.squeeze(1), conv_last, current], dim=1)).squeeze(-1)
        if self.wide is not None:
            logit = logit + self.wide(current).squeeze(-1)
        return logit


def _wide_branch(c: LSTMCNNConfig) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(c.input_dim, c.wide_size), nn.ReLU(), nn.Dropout(c.dropout),
        nn.Linear(c.wide_size, c.wide_size), nn.ReLU(), nn.Dropout(c.dropout),
        nn.Linear(c.wide_size, 1),
    )
