"""Training configuration: one frozen object passed from the CLI / component / trigger down."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from fraudops.features import DEFAULT_SEQ_LEN


class SequenceTrainConfig(BaseModel):
    """LSTM-CNN architecture and optimisation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    conv_channels: int = Field(default=32, ge=1)
    hidden_size: int = Field(default=48, ge=1)
    head_size: int = Field(default=64, ge=1)
    dropout: float = Field(default=0.1, ge=0.0, lt=1.0)
    #: Width of the wide branch over the current transaction's features (0: none). The
    #: ablation (benchmarks/bench_ablation.py) found it the largest single gain.
    wide_size: int = Field(default=128, ge=0)
    #: At most 16 epochs, stopping after 4 without a validation AUPRC gain: on imported data
    #: with no account id (sequences of length one) 8/2 stopped early and lost 0.015 AUPRC to
    #: the reference; 16/4 is 0.0045 ahead on 3 seeds, and the own 200k data stops at epoch 5
    #: either way (identical figures, ~10 s more): benchmarks/bench_import_quality.py.
    epochs: int = Field(default=16, ge=1)
    batch_size: int = Field(default=512, ge=8)
    learning_rate: float = Field(default=2e-3, gt=0)
    weight_decay: float = Field(default=1e-5, ge=0)
    patience: int = Field(default=4, ge=0, description="Epochs without AUPRC gain before stop.")
    #: Share of legitimate training rows drawn per epoch (fresh draw each epoch): fraud is rare,
    #: so each epoch sees every fraud row and a sample of the rest. Faster, and balances classes.
    negative_sampling: float = Field(default=0.6, gt=0.0, le=1.0)
    #: Extra weight on fraud rows in the loss (on top of the sampling).
    positive_weight: float = Field(default=3.0, gt=0.0)
    #: Learning-rate schedule over the planned epochs: constant, one-cycle or cosine decay.
    schedule: Literal["constant", "onecycle", "cosine"] = "constant"
    #: Decay of an exponential moving average of the weights, evaluated and kept instead of
    #: the raw weights (0: off). Averaging smooths the noise of the last updates.
    weight_average: float = Field(default=0.98, ge=0.0, lt=1.0)


class AutoencoderTrainConfig(BaseModel):
    """Autoencoder architecture and optimisation."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hidden_size: int = Field(default=32, ge=1)
    bottleneck: int = Field(default=8, ge=1)
    epochs: int = Field(default=6, ge=1)
    batch_size: int = Field(default=1024, ge=8)
    learning_rate: float = Field(default=2e-3, gt=0)
    patience: int = Field(default=2, ge=0)
    #: Legitimate training rows used (at most); the autoencoder needs far fewer than all.
    max_rows: int = Field(default=60_000, ge=100)
    #: Score from per-feature robustly standardised residuals (see `Autoencoder`): AUPRC
    #: 0.43 against 0.28 alone on 100k generated rows (benchmarks/bench_ablation.py).
    feature_scaled: bool = True
    #: Denoising: standard deviation of Gaussian noise added to the standardised inputs in
    #: training (the target stays the clean row); 0 = plain autoencoder.
    noise: float = Field(default=0.0, ge=0.0)
    target_fpr: float = Field(default=0.01, gt=0.0, lt=1.0,
                              description="Share of legit validation rows over the threshold.")


class PolicyConfig(BaseModel):
    """Targets the decision policy's thresholds are fitted to, on validation data."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    review_fpr: float = Field(default=0.01, gt=0.0, lt=1.0)
    block_fpr: float = Field(default=0.001, gt=0.0, lt=1.0)
    anomaly_fpr: float = Field(default=0.002, gt=0.0, lt=1.0)
    #: Cost of one analyst review (money, the data's currency): review a transaction when its
    #: expected loss (calibrated probability times amount) is at least this. None: no cost rule.
    review_cost: float | None = Field(default=None, gt=0.0)
    #: Reviews the team can do per day: the cost rule's threshold rises until it flags at most
    #: this many validation rows per day (on top of the rate thresholds). None: no limit.
    daily_review_capacity: int | None = Field(default=None, ge=1)


class CalibrationConfig(BaseModel):
    """How the sequence model's probability is calibrated on validation data."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: platt: logistic on the logit (keeps the ranking); isotonic: monotone steps; none: raw.
    method: Literal["none", "platt", "isotonic"] = "platt"
    #: Platt only: the autoencoder's anomaly score is a second input (the combiner).
    use_anomaly: bool = False


class ReferenceTrainConfig(BaseModel):
    """The gradient-boosted reference (LightGBM) every run trains beside the deep models.

    It sees the same current-transaction feature vector and split; its metrics say whether the
    deep models earn their keep on this data.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Off: no reference is trained, and runs report the deep models alone.
    enabled: bool = True
    #: Boosting rounds at most (early stopping usually ends sooner).
    rounds: int = Field(default=400, ge=1)
    learning_rate: float = Field(default=0.05, gt=0)
    num_leaves: int = Field(default=31, ge=2)
    subsample: float = Field(default=0.8, gt=0.0, le=1.0)
    colsample: float = Field(default=0.8, gt=0.0, le=1.0)
    #: Rounds without validation AUPRC gain before stopping.
    patience: int = Field(default=30, ge=1)
    #: Weight on fraud rows (LightGBM's scale_pos_weight).
    positive_weight: float = Field(default=3.0, gt=0.0)


class TrainingConfig(BaseModel):
    """Everything a training run needs besides the data."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seed: int = 0
    seq_len: int = Field(default=DEFAULT_SEQ_LEN, ge=1, le=256)
    validation_share: float = Field(default=0.15, gt=0.0, lt=0.5)
    test_share: float = Field(default=0.15, ge=0.0, lt=0.5)
    device: str = "auto"
    #: torch CPU threads; 0 = torch's default (all cores). One by default: these models are
    #: small, intra-op parallelism barely helps them, and on a shared or oversubscribed CPU
    #: two spinning OpenMP threads measured 20x slower than one (113 s vs 5 s per 20k rows).
    threads: int = Field(default=1, ge=0)
    #: Export each model's scoring graph to ONNX beside its weights (logged with the model;
    #: the predictor serves it with ONNX Runtime, its default on the CPU). A graph that
    #: disagrees with torch beyond 1e-5 is refused: the run goes on without it.
    export_onnx: bool = True
    sequence: SequenceTrainConfig = SequenceTrainConfig()
    autoencoder: AutoencoderTrainConfig = AutoencoderTrainConfig()
    reference: ReferenceTrainConfig = ReferenceTrainConfig()
    policy: PolicyConfig = PolicyConfig()
    calibration: CalibrationConfig = CalibrationConfig()
    #: Metric the promotion gate compares (a key of the sequence model's test metrics).
    gate_metric: str = "auprc"
    #: How much better the challenger must be to replace the champion.
    gate_margin: float = Field(default=0.002, ge=0.0)
