"""Hybrid LSTM-CNN over an account's last K transactions.

1-D convolutions pick up local patterns between neighbouring transactions (bursts, amount
escalation); an LSTM summarises the whole history; the head also sees the current transaction's
own features, which carry most of the signal for a first transaction. Sequences arrive padded at
the front (see `fraudops.features.sequence_index`); the convolutions see the padding as their own
zero padding, and the LSTM runs over the steps moved to the front, so padding never reaches it
and the output does not depend on how much there is.

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


def left_align(steps: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Move each sequence's real steps to the front (order kept): `steps` [K, B, F] time-major,
    `mask` [B, K]; returns (aligned steps [K, B, F], lengths [B]).

    Rows are front-padded (their real steps last, as `fraudops.features.sequence_index` writes
    them). Padded steps become zeros at the end. A row with no real step keeps length 1 (its
    zero vector), so no sequence is empty. Steps move as whole rows of the flattened [K*B, F]
    view: one row copy each (in ONNX a Gather on axis 0, not a GatherElements over every
    element of an expanded index).
    """
    count, rows, width = steps.shape
    lengths = mask.sum(dim=1)
    pad = count - lengths
    positions = torch.arange(count, device=steps.device).unsqueeze(1) + pad.unsqueeze(0)  # [K, B]
    valid = positions < count
    index = positions.clamp(max=count - 1) * rows + torch.arange(rows, device=steps.device)
    gathered = steps.reshape(count * rows, width).index_select(0, index.reshape(-1))
    aligned = gathered.reshape(count, rows, width) * valid.unsqueeze(-1).to(steps.dtype)
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
        # Time-major (its weights are the same either way): the steps are moved and read back
        # in the layout the LSTM kernels (and ONNX's LSTM) work in, one transpose fewer.
        self.lstm = nn.LSTM(c.conv_channels, c.hidden_size)
        self.head = nn.Sequential(
            nn.Linear(c.hidden_size + c.conv_channels + c.input_dim, c.head_size),
            nn.ReLU(),
            nn.Dropout(c.dropout),
            nn.Linear(c.head_size, 1),
        )
        self.wide = _wide_branch(c) if c.wide_size > 0 else None

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        mask = mask.bool()
        real = mask.unsqueeze(1).to(x.dtype)  # [B, 1, K]
        # Padding is zero after normalisation too, exactly like the convolution's own padding.
        z = self.normalize(x) * mask.unsqueeze(-1).to(x.dtype)
        # The convolutions run on the front-padded rows as they come: the zeros before a
        # row's first real step are what the convolution's own padding gives an unpadded
        # sequence, so every real step's outputs are those of the row alone.
        conv = z.transpose(1, 2)  # [B, F, K]
        for layer in self.convs:
            # Re-zero the padding after every layer so the next one sees exactly what a
            # shorter, unpadded sequence would (its own zero padding), not ReLU(bias) leaking in.
            conv = torch.relu(layer(conv)) * real
        conv_last = conv[:, :, -1]  # the scored transaction is always the last step
        # The LSTM must start at each row's first real step: the (narrow) convolution outputs
        # move to the front, every row runs all K steps and the state after its last real step
        # is read back; the zeros after it cannot reach that state. (Packing the sequences, as
        # before, let the rows at each step depend on the other rows' lengths, so a row's
        # float32 result depended on the batch around it.)
        aligned, lengths = left_align(conv.permute(2, 0, 1), mask)  # [K, B, C]
        states, _ = self.lstm(aligned)  # [K, B, H]
        steps, rows, width = states.shape
        final = (lengths - 1) * rows + torch.arange(rows, device=x.device)  # last real steps
        hidden = states.reshape(steps * rows, width).index_select(0, final)
        current = z[:, -1, :]
        logit = self.head(torch.cat([hidden, conv_last, current], dim=1)).squeeze(-1)
        if self.wide is not None:
            logit = logit + self.wide(current).squeeze(-1)
        return logit


def _wide_branch(c: LSTMCNNConfig) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(c.input_dim, c.wide_size), nn.ReLU(), nn.Dropout(c.dropout),
        nn.Linear(c.wide_size, c.wide_size), nn.ReLU(), nn.Dropout(c.dropout),
        nn.Linear(c.wide_size, 1),
    )
