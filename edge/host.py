"""The host step between stages, in numpy: confidence, mask, carry-over, masked fraction.

The runtime runs it between converted stages on every backend (no torch on a phone). It
mirrors `model_zoo.masking`; `tests/test_host.py` keeps the two in agreement (they differ
only by float rounding of exp, so masks can differ only at pixels on the threshold).
"""

from __future__ import annotations

import numpy as np

DEFAULT_THRESHOLD = 0.998


def confidence(logits: np.ndarray) -> np.ndarray:
    """Max softmax probability as 1 / sum(exp(l - max l)) over the class axis (N x K x H x W)."""
    top = logits.max(axis=1, keepdims=True)
    return (1.0 / np.exp(logits - top).sum(axis=1, keepdims=True)).astype(logits.dtype)


def compute_mask(logits: np.ndarray, threshold: float) -> np.ndarray:
    """1 where the pixel must still be computed (confidence <= threshold; equality computes)."""
    return (confidence(logits) <= threshold).astype(logits.dtype)


def carry_over(previous: np.ndarray, new: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Confident pixels (mask 0) keep the previous exit's logits bit-exactly."""
    return np.where(mask > 0, new, previous)


def masked_fraction(mask: np.ndarray) -> float:
    """Share of skipped pixels over the whole batch."""
    return float(1.0 - mask.mean())
