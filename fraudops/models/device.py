"""Device choice and seeding shared by training and serving."""

from __future__ import annotations

import random

import numpy as np
import torch


def pick_device(preference: str = "auto") -> torch.device:
    """CUDA when available (or asked for), else CPU. `preference`: auto | cpu | cuda[:N]."""
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(preference)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA); returns a CPU generator for data order."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    generator = torch.Generator()
    generator.manual_seed(seed)
    return generator
