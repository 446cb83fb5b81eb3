"""MLflow pyfunc wrappers around the fraudops checkpoint format.

Why pyfunc and not ``mlflow.pytorch``: MLflow 3.17's pytorch flavour defaults to torch.export
(pt2) and loads back as a GraphModule, losing the normalisation buffers' meaning, the policy
and the masking logic. Logging our own checkpoint directory as the artifact of a small
`PythonModel` keeps one loader (`fraudops.models.checkpoint.load_checkpoint`) for every source,
while `mlflow.pyfunc.load_model(...).predict` still works for ad-hoc use.
"""

from __future__ import annotations

import numpy as np
import torch
from mlflow.pyfunc import PythonModel

from fraudops.models.calibration import Calibration
from fraudops.models.checkpoint import load_checkpoint
from fraudops.models.device import pick_device

#: Name of the checkpoint directory inside the logged MLflow model's artifacts.
CHECKPOINT_ARTIFACT = "checkpoint"


class _CheckpointModel(PythonModel):
    def load_context(self, context) -> None:
        self.device = pick_device()
        self.bundle = load_checkpoint(context.artifacts[CHECKPOINT_ARTIFACT], self.device)


class SequencePyfunc(_CheckpointModel):
    """predict({"sequences": [B,K,F] float32, "mask": [B,K] bool}) -> fraud probability [B].

    The probability is calibrated as the scorer calibrates it, unless the calibration takes the
    autoencoder's score as an input (that needs the pair: use `fraudops.models.load_scorer`);
    then it is the raw one.
    """

    def predict(self, context, model_input, params=None):
        x = torch.as_tensor(np.asarray(model_input["sequences"], dtype=np.float32))
        mask = torch.as_tensor(np.asarray(model_input["mask"], dtype=bool))
        with torch.no_grad():
            logits = self.bundle.module(x.to(self.device), mask.to(self.device))
        raw = torch.sigmoid(logits).cpu().numpy()
        calibration = Calibration.from_dict(self.bundle.extra.get("calibration"))
        if calibration.uses_anomaly:
            return raw
        return calibration.apply(raw, np.zeros_like(raw)).astype(np.float32)


class AutoencoderPyfunc(_CheckpointModel):
    """predict([B,F] float32 current-transaction features) -> normalised anomaly score [B]."""

    def predict(self, context, model_input, params=None):
        x = torch.as_tensor(np.asarray(model_input, dtype=np.float32)).to(self.device)
        with torch.no_grad():
            return self.bundle.module.anomaly_score(x).cpu().numpy()
