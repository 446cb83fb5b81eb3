"""Helpers of the end-to-end consumer tests: real models on disk, the real predictor and the
consumer as subprocesses, and an independent reference computation of the expected scores."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from email import message_from_bytes
from pathlib import Path

import httpx
import numpy as np
from consumer_helpers import T0

from fraudops.features import OnlineFeatureState, build_spec
from fraudops.models import (
    DecisionPolicy,
    Scorer,
)
from fraudops.models.untrained import (
    TINY_AUTOENCODER,
    TINY_SEQUENCE,
    build_untrained_pair,
    save_pair,
)
from fraudops.schema import Transaction
from fraudops.settings import TopicSettings
from serving.server import load_served
from serving.settings import PredictorSettings

SEQ_LEN = 16
FRAUDOPS = Path(sys.executable).parent / "fraudops"
REPO_ROOT = Path(__file__).resolve().parents[2]
CHANNELS = ("online", "card_present", "atm", "transfer")
CATEGORIES = ("grocery", "electronics", "travel", "jewelry", "fuel")


def transactions(n: int, accounts: int = 40, seed: int = 7, prefix: str = "tx") -> list[dict]:
    """A varied, time-ordered stream of valid transaction documents."""
    rng = random.Random(seed)
    docs = []
    for i in range(n):
        account = rng.randrange(accounts)
        docs.append({
            "transaction_id": f"{prefix}-{i}", "account_id": f"acc-{account}",
            "timestamp": (T0 + timedelta(seconds=20 * i)).isoformat(),
            "amount": round(rng.lognormvariate(3.5, 1.4), 2),
            "merchant_id": f"m-{rng.randrange(60)}", "device_id": f"d-{account}-{rng.randrange(2)}",
            "channel": rng.choice(CHANNELS), "merchant_category": rng.choice(CATEGORIES),
            "country": rng.choice(("FR", "FR", "FR", "DE", "BR")),
        })
    return docs


@dataclass(frozen=True)
class Models:
    sequence: Path
    autoencoder: Path


def write_models(directory: Path, sample: list[dict]) -> Models:
    """Small untrained models (real classes, real format) whose policy alerts on ~8% of `sample`.

    Seeded: the same directory content every run.
    """
    spec = build_spec()
    rows = np.stack([f for f, _, _ in _features(sample, spec)])
    sequence, autoencoder = build_untrained_pair(
        rows, sequence_size=TINY_SEQUENCE, autoencoder_size=TINY_AUTOENCODER, calibrate_fpr=0.05)
    models = Models(*save_pair(directory, spec, SEQ_LEN, sequence, autoencoder))
    scores = reference_scores(models, {d["transaction_id"]: (0, i) for i, d in enumerate(sample)},
                              sample)
    probabilities = np.array([p for p, _ in scores.values()])
    review, block = np.quantile(probabilities, [0.92, 0.98])
    policy = DecisionPolicy(block_probability=float(block), review_probability=float(review))
    return Models(*save_pair(directory, spec, SEQ_LEN, sequence, autoencoder, policy))


def _features(docs: list[dict], spec) -> list:
    state = OnlineFeatureState(spec, SEQ_LEN)
    return [state.update(Transaction.model_validate(d)) for d in docs]


def served_scorer(models: Models) -> Scorer:
    """The models as the predictor serves them by default (its precision and forward passes):
    a reference computed otherwise could differ in the last bits and flip a decision that sits
    on a threshold."""
    return load_served(str(models.sequence), str(models.autoencoder),
                       PredictorSettings(device="cpu")).scorer


def reference_scores(models: Models, placed: dict[str, tuple[int, int]],
                     docs: list[dict]) -> dict[str, tuple[float, str]]:
    """Expected (fraud probability, decision) per transaction, computed independently of the
    consumer: one fresh feature state per partition, events in offset order."""
    scorer = served_scorer(models)
    by_partition: dict[int, list[dict]] = defaultdict(list)
    for doc in sorted(docs, key=lambda d: placed[d["transaction_id"]]):
        by_partition[placed[doc["transaction_id"]][0]].append(doc)
    expected = {}
    for partition_docs in by_partition.values():
        feats = _features(partition_docs, build_spec())
        result = scorer.score(np.stack([s for _, s, _ in feats]), np.stack([m for _, _, m in feats]))
        for doc, p, decision in zip(partition_docs, result.fraud_probability, result.decision,
                                    strict=True):
            expected[doc["transaction_id"]] = (float(p), str(decision))
    return expected


class Inbox:
    """aiosmtpd handler keeping the Message-ID of every email the SMTP server accepted."""

    def __init__(self) -> None:
        self.message_ids: list[str] = []

    async def handle_DATA(self, server, session, envelope):
        self.message_ids.append(message_from_bytes(envelope.content)["Message-ID"])
        return "250 OK"


class Service:
    """A `fraudops ...` subprocess with its log file."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path) -> None:
        self.args, self.env, self.log_path = args, env, log_path
        self.process: subprocess.Popen | None = None

    def start(self) -> Service:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen([str(FRAUDOPS), *self.args],
                                            env={**os.environ, **self.env}, stdout=log,
                                            stderr=subprocess.STDOUT, cwd=REPO_ROOT)
        return self

    def wait_http(self, url: str, timeout: float = 60.0) -> Service:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.args} exited {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(url, timeout=1.0).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"{url} not ready:\n{self.log()}")

    def signal(self, signum: int) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = 30.0) -> int:
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-5000:]


def predictor_service(models: Models, port: int, home: Path, log_path: Path) -> Service:
    env = {"FRAUDOPS_HOME": str(home), "FRAUDOPS_PREDICTOR__HTTP_PORT": str(port),
           "FRAUDOPS_PREDICTOR__SEQUENCE_MODEL_URI": str(models.sequence),
           "FRAUDOPS_PREDICTOR__AUTOENCODER_MODEL_URI": str(models.autoencoder),
           "FRAUDOPS_PREDICTOR__POLL_INTERVAL_S": "0", "FRAUDOPS_PREDICTOR__TORCH_THREADS": "1",
           "FRAUDOPS_PREDICTOR__DEVICE": "cpu"}
    return Service(["serve", "predictor"], env, log_path)


def consumer_env(bootstrap: str, topics: TopicSettings, db_url: str, group_id: str,
                 predictor_url: str, **extra: str) -> dict[str, str]:
    env = {"FRAUDOPS_KAFKA__BOOTSTRAP_SERVERS": bootstrap, "FRAUDOPS_DATABASE__URL": db_url,
           "FRAUDOPS_CONSUMER__GROUP_ID": group_id,
           "FRAUDOPS_CONSUMER__PREDICTOR_URL": predictor_url,
           "FRAUDOPS_CONSUMER__METRICS_PORT": "0", "FRAUDOPS_CONSUMER__BATCH_SIZE": "100",
           "FRAUDOPS_CONSUMER__BATCH_MAX_WAIT_MS": "20",
           "FRAUDOPS_CONSUMER__SNAPSHOT_INTERVAL_S": "0.3",
           "FRAUDOPS_CONSUMER__BACKOFF_MAX_S": "0.5"}
    for field, name in topics.model_dump().items():
        env[f"FRAUDOPS_KAFKA__TOPICS__{field.upper()}"] = name
    env.update(extra)
    return env
