"""Training loops for both models: seeded, class-imbalance aware, early stopping on AUPRC."""

from __future__ import annotations

import copy
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from fraudops.models import LSTMCNN, Autoencoder, AutoencoderConfig, LSTMCNNConfig, seed_everything
from fraudops.training.config import TrainingConfig
from fraudops.training.dataset import FeatureSet
from fraudops.training.metrics import auprc
from fraudops.training.splits import TimeSplit, labelled_parts

log = logging.getLogger(__name__)
#: Rows used to fit the input standardisation (plenty for means and spreads).
NORMALIZATION_ROWS = 100_000
PREDICT_BATCH = 8192


@dataclass
class TrainResult:
    """A trained module and how training went."""

    module: nn.Module
    history: list[dict] = field(default_factory=list)
    best_epoch: int = 0
    best_validation_auprc: float = float("nan")
    seconds: float = 0.0


class EarlyStopping:
    """Keeps the best weights by validation AUPRC; says stop after `patience` epochs without gain."""

    def __init__(self, patience: int):
        self.patience, self.best, self.best_epoch, self.state, self.bad = patience, -1.0, 0, None, 0

    def update(self, epoch: int, score: float, module: nn.Module) -> bool:
        """Record an epoch; True means stop now."""
        score = -1.0 if math.isnan(score) else score
        if score > self.best:
            self.best, self.best_epoch, self.bad = score, epoch, 0
            self.state = copy.deepcopy(module.state_dict())
            return False
        self.bad += 1
        return self.bad > self.patience


def _sample_rows(rng: np.random.Generator, rows: np.ndarray, limit: int) -> np.ndarray:
    return np.sort(rng.choice(rows, size=limit, replace=False)) if len(rows) > limit else rows


@torch.no_grad()
def predict_sequence(module: LSTMCNN, data: FeatureSet, rows: np.ndarray,
                     device: torch.device) -> np.ndarray:
    """Fraud probabilities of `rows` (batched, eval mode)."""
    module.eval()
    out = []
    for start in range(0, len(rows), PREDICT_BATCH):
        x, mask = data.sequences(rows[start:start + PREDICT_BATCH])
        logits = module(torch.from_numpy(x).to(device), torch.from_numpy(mask).to(device))
        out.append(torch.sigmoid(logits).cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


@torch.no_grad()
def predict_anomaly(module: Autoencoder, data: FeatureSet, rows: np.ndarray,
                    device: torch.device) -> np.ndarray:
    """Anomaly scores of `rows`' current feature vectors."""
    module.eval()
    out = [module.anomaly_score(torch.from_numpy(data.features[rows[i:i + PREDICT_BATCH]])
                                .to(device)).cpu().numpy()
           for i in range(0, len(rows), PREDICT_BATCH)]
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def _epoch_rows(rng: np.random.Generator, positives: np.ndarray, negatives: np.ndarray,
                share: float) -> np.ndarray:
    drawn = rng.choice(negatives, size=max(1, round(share * len(negatives))), replace=False)
    rows = np.concatenate([positives, drawn])
    return rows[rng.permutation(len(rows))]


def train_sequence_model(data: FeatureSet, split: TimeSplit, config: TrainingConfig,
                         device: torch.device, progress: Callable[[dict], None] | None = None
                         ) -> TrainResult:
    """Train the LSTM-CNN; returns the weights of the epoch with the best validation AUPRC.

    With ``weight_average`` the weights evaluated (and kept) are the moving average's.
    """
    started = time.perf_counter()
    cfg = config.sequence
    train, validation = labelled_parts(data, split)
    seed_everything(config.seed)
    rng = np.random.default_rng(config.seed)
    module = LSTMCNN(LSTMCNNConfig(input_dim=data.spec.dim, conv_channels=cfg.conv_channels,
                                   hidden_size=cfg.hidden_size, head_size=cfg.head_size,
                                   dropout=cfg.dropout, wide_size=cfg.wide_size))
    module.normalize.fit(data.features[_sample_rows(rng, train, NORMALIZATION_ROWS)])
    module.to(device)
    positives = train[data.labels[train] == 1]
    negatives = train[data.labels[train] == 0]
    per_epoch = len(positives) + max(1, round(cfg.negative_sampling * len(negatives)))
    optimizer, scheduler = make_optimizer(module, cfg, math.ceil(per_epoch / cfg.batch_size))
    averaged = _weight_average(module, cfg.weight_average)
    loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor(cfg.positive_weight, device=device))
    stopper, result = EarlyStopping(cfg.patience), TrainResult(module)
    for epoch in range(1, cfg.epochs + 1):
        rows = _epoch_rows(rng, positives, negatives, cfg.negative_sampling)
        loss = _sequence_epoch(module, data, rows, (optimizer, scheduler, averaged), loss_fn,
                               cfg.batch_size, device)
        evaluated = averaged.module if averaged is not None else module
        score = auprc(data.labels[validation], predict_sequence(evaluated, data, validation,
                                                                device))
        _record(result, progress, {"model": "lstm_cnn", "epoch": epoch, "loss": loss,
                                   "validation_auprc": score})
        if stopper.update(epoch, score, evaluated):
            break
    module.load_state_dict(stopper.state)
    _undo_sampling_bias(module, cfg.positive_weight, cfg.negative_sampling)
    return _finish(result, stopper, started)


def make_optimizer(module: nn.Module, cfg, steps_per_epoch: int):
    """AdamW and the configured per-step learning-rate schedule (None: constant)."""
    optimizer = torch.optim.AdamW(module.parameters(), lr=cfg.learning_rate,
                                  weight_decay=cfg.weight_decay)
    total = max(1, cfg.epochs * steps_per_epoch)
    if cfg.schedule == "onecycle":
        return optimizer, torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=cfg.learning_rate, total_steps=total)
    if cfg.schedule == "cosine":
        return optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    return optimizer, None


def _weight_average(module: nn.Module, decay: float):
    """An exponential moving average of the weights (None when `decay` is 0)."""
    if decay <= 0:
        return None
    from torch.optim.swa_utils import AveragedModel

    @torch.no_grad()
    def update(averaged: list, current: list, count) -> None:
        # Warm-up as in timm's ModelEmaV2: a short run (few steps) is not dominated by the
        # random initial weights.
        rate = min(decay, (1.0 + float(count)) / (10.0 + float(count)))
        torch._foreach_lerp_(averaged, current, 1.0 - rate)

    return AveragedModel(module, multi_avg_fn=update, use_buffers=True)


def _sequence_epoch(module, data, rows, stepping, loss_fn, batch_size, device) -> float:
    optimizer, scheduler, averaged = stepping
    module.train()
    total, count = 0.0, 0
    for start in range(0, len(rows), batch_size):
        batch = rows[start:start + batch_size]
        x, mask = data.sequences(batch)
        y = torch.from_numpy(data.labels[batch].astype(np.float32)).to(device)
        logits = module(torch.from_numpy(x).to(device), torch.from_numpy(mask).to(device))
        loss = loss_fn(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(module.parameters(), 1.0)  # LSTMs spike on rare bursts
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        if averaged is not None:
            averaged.update_parameters(module)
        total, count = total + loss.item() * len(batch), count + len(batch)
    return total / max(count, 1)


@torch.no_grad()
def _undo_sampling_bias(module: LSTMCNN, positive_weight: float, negative_share: float) -> None:
    # Weighting fraud by w and keeping a share r of legit rows multiplies the learned odds by
    # w / r; shifting the output bias back makes the probability mean what it says.
    module.head[-1].bias -= math.log(positive_weight / negative_share)


def train_autoencoder(data: FeatureSet, split: TimeSplit, config: TrainingConfig,
                      device: torch.device, progress: Callable[[dict], None] | None = None
                      ) -> TrainResult:
    """Train the autoencoder on legitimate training rows; calibrate on legit validation rows."""
    started = time.perf_counter()
    cfg = config.autoencoder
    train, validation = labelled_parts(data, split)
    seed_everything(config.seed + 1)
    rng = np.random.default_rng(config.seed + 1)
    legit = _sample_rows(rng, train[data.labels[train] == 0], cfg.max_rows)
    module = Autoencoder(AutoencoderConfig(input_dim=data.spec.dim, hidden_size=cfg.hidden_size,
                                           bottleneck=cfg.bottleneck,
                                           feature_scaled=cfg.feature_scaled))
    module.normalize.fit(data.features[legit])
    module.to(device)
    optimizer = torch.optim.AdamW(module.parameters(), lr=cfg.learning_rate)
    stopper, result = EarlyStopping(cfg.patience), TrainResult(module)
    inputs = torch.from_numpy(data.features[legit]).to(device)
    legit_validation = validation[data.labels[validation] == 0]
    scale_rows = torch.from_numpy(data.features[legit_validation]).to(device)
    for epoch in range(1, cfg.epochs + 1):
        loss = _autoencoder_epoch(module, inputs, rng, optimizer, cfg.batch_size, cfg.noise)
        module.eval()
        module.fit_residual_scale(scale_rows)  # early stopping judges the score as served
        score = auprc(data.labels[validation], predict_anomaly(module, data, validation, device))
        _record(result, progress, {"model": "autoencoder", "epoch": epoch, "loss": loss,
                                   "validation_auprc": score})
        if stopper.update(epoch, score, module):
            break
    module.load_state_dict(stopper.state)
    module.eval()
    module.calibrate(scale_rows, cfg.target_fpr)
    return _finish(result, stopper, started)


def _autoencoder_epoch(module, inputs, rng, optimizer, batch_size, noise: float) -> float:
    module.train()
    order = torch.from_numpy(rng.permutation(len(inputs))).to(inputs.device)
    total = 0.0
    for start in range(0, len(order), batch_size):
        clean = module.normalize(inputs[order[start:start + batch_size]])
        # Denoising: reconstruct the clean row from a corrupted one (noise 0: plain MSE).
        noisy = clean + noise * torch.randn_like(clean) if noise > 0 else clean
        loss = (module.decoder(module.encoder(noisy)) - clean).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(clean)
    return total / max(len(order), 1)


def _record(result: TrainResult, progress, entry: dict) -> None:
    result.history.append(entry)
    log.info("%(model)s epoch %(epoch)d loss %(loss).4f validation AUPRC %(validation_auprc).4f",
             entry)
    if progress:
        progress(entry)


def _finish(result: TrainResult, stopper: EarlyStopping, started: float) -> TrainResult:
    result.module.eval()
    result.best_epoch, result.best_validation_auprc = stopper.best_epoch, stopper.best
    result.seconds = time.perf_counter() - started
    return result
