"""The numpy host step applies the model's torch mask rule.

exp and the class sum round differently in numpy and torch (last ulp), so confidences agree to
float rounding and masks agree everywhere except pixels within that rounding of the threshold.
"""

from __future__ import annotations

import numpy as np
import torch

from edge import host
from model_zoo import masking


def test_host_mask_rule_matches_torch():
    gen = torch.Generator().manual_seed(0)
    for scale in (0.5, 3.0, 12.0):
        logits = torch.randn(2, 19, 32, 64, generator=gen) * scale
        conf_t = masking.confidence(logits).numpy()
        conf_n = host.confidence(logits.numpy())
        assert conf_n.dtype == np.float32
        np.testing.assert_allclose(conf_n, conf_t, rtol=1e-6, atol=0)
        for threshold in (0.2, 0.9, 0.998, float(conf_t.flat[17])):
            a = host.compute_mask(logits.numpy(), threshold)
            b = masking.compute_mask(logits, threshold).numpy()
            near = np.abs(conf_t - threshold) <= 1e-6 * threshold
            np.testing.assert_array_equal(a[~near], b[~near])


def test_host_carry_over_and_fraction():
    old = np.random.default_rng(0).normal(size=(1, 19, 8, 8)).astype(np.float32)
    new = old + 1
    mask = (np.random.default_rng(1).random((1, 1, 8, 8)) > 0.5).astype(np.float32)
    out = host.carry_over(old, new, mask)
    np.testing.assert_array_equal(out, np.where(mask > 0, new, old))
    assert host.masked_fraction(mask) == 1 - mask.mean()
    assert host.DEFAULT_THRESHOLD == masking.DEFAULT_THRESHOLD
