"""The masked conv, the fill and the mask rule against formulas written out independently."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from model_zoo.masking import (
    MaskedConv2d,
    MaskPyramid,
    carry_over,
    compute_mask,
    confidence,
    masked_fraction,
    resample_mask,
)


def reference_fill(y: np.ndarray, m: np.ndarray, lam: float, window: int = 7) -> np.ndarray:
    """SPEC.md section 4 written with explicit window offsets in float64 numpy.

    out = y*m + I(y*m)*(1-m); I = sum over the window (centre excluded) of
    exp(-lam^2 (dx^2+dy^2)) * u[shifted], divided by (sum of those 48 weights + 1e-5),
    zero outside the image.
    """
    r = window // 2
    u = y * m
    weights = {
        (dy, dx): math.exp(-(lam**2) * (dx * dx + dy * dy))
        for dy in range(-r, r + 1)
        for dx in range(-r, r + 1)
        if (dy, dx) != (0, 0)
    }
    norm = sum(weights.values()) + 1e-5
    padded = np.pad(u, ((0, 0), (0, 0), (r, r), (r, r)))
    h, w = y.shape[-2:]
    acc = np.zeros_like(u)
    for (dy, dx), wt in weights.items():
        acc += wt * padded[:, :, r + dy : r + dy + h, r + dx : r + dx + w]
    return u + acc / norm * (1 - m)


@pytest.mark.parametrize(
    "cin,cout,kernel,stride,bias,lam",
    [(8, 6, 3, 1, False, 3.0), (8, 6, 3, 2, False, 0.7), (5, 7, 1, 1, True, 0.4)],
)
def test_masked_conv_matches_formula(cin, cout, kernel, stride, bias, lam):
    gen = torch.Generator().manual_seed(0)
    conv = MaskedConv2d(cin, cout, kernel, stride, kernel // 2, bias=bias).double()
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen))
        if bias:
            conv.bias.copy_(torch.randn(cout, generator=gen))
        conv.fill.Lambda.fill_(lam)
    x = torch.randn(2, cin, 22, 18, generator=gen, dtype=torch.float64)
    # mask given at the input's resolution; a stride-2 conv must use its top-left samples
    mask = (torch.rand(2, 1, 22, 18, generator=gen) > 0.6).double()
    mask[0, :, :3, :] = 0  # skipped border rows: the fill reads zero padding there
    out = conv(x, MaskPyramid(mask)).detach().numpy()

    y = F.conv2d(x, conv.weight, conv.bias, stride=stride, padding=kernel // 2).detach().numpy()
    m = mask.numpy()[:, :, ::stride, ::stride]
    expected = reference_fill(y, m, lam)
    np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-10)
    # computed pixels are the conv itself, bit for bit
    assert np.array_equal(out[m.astype(bool).repeat(cout, 1)], y[m.astype(bool).repeat(cout, 1)])


def test_fill_is_zero_far_from_computed_pixels():
    conv = MaskedConv2d(3, 4, 3, padding=1)
    mask = torch.zeros(1, 1, 20, 20)
    mask[..., 2, 2] = 1
    out = conv(torch.randn(1, 3, 20, 20), MaskPyramid(mask))
    assert torch.count_nonzero(out[..., 6:, :]) == 0  # beyond the 7x7 window of (2, 2)
    assert torch.count_nonzero(out[..., :6, :6]) > 0


def test_all_ones_mask_is_the_plain_conv_and_all_zeros_is_zero():
    conv = MaskedConv2d(4, 4, 3, padding=1)
    x = torch.randn(1, 4, 16, 16)
    plain = conv(x)
    assert torch.equal(conv(x, MaskPyramid(torch.ones(1, 1, 16, 16))), plain)
    assert torch.count_nonzero(conv(x, MaskPyramid(torch.zeros(1, 1, 16, 16)))) == 0


def test_lambda_gets_gradients():
    conv = MaskedConv2d(4, 4, 3, padding=1)
    mask = (torch.rand(1, 1, 16, 16) > 0.5).float()
    conv(torch.randn(1, 4, 16, 16), MaskPyramid(mask)).square().sum().backward()
    assert conv.fill.Lambda.grad is not None and conv.fill.Lambda.grad.abs() > 0


def test_confidence_is_max_softmax_and_equality_computes():
    logits = torch.randn(3, 19, 8, 8) * 4
    expected = torch.softmax(logits, dim=1).amax(dim=1, keepdim=True)
    torch.testing.assert_close(confidence(logits), expected, rtol=1e-6, atol=1e-7)
    conf = confidence(logits)
    threshold = float(conf.flatten()[5])
    mask = compute_mask(logits, threshold)
    assert mask.flatten()[5] == 1.0  # equality computes
    assert torch.equal(mask.bool(), conf <= threshold)


def test_resample_is_legacy_nearest_and_commutes_with_threshold():
    logits = torch.randn(1, 19, 32, 64)
    for size in [(16, 32), (8, 16), (4, 8)]:
        nearest = F.interpolate(logits, size=size, mode="nearest")
        assert torch.equal(resample_mask(compute_mask(logits, 0.3), *size),
                           compute_mask(nearest, 0.3))
    with pytest.raises(ValueError, match="multiples of 32"):
        resample_mask(torch.ones(1, 1, 30, 64), 16, 32)


def test_carry_over_keeps_confident_pixels_bit_exact():
    old, new = torch.randn(2, 19, 8, 8), torch.randn(2, 19, 8, 8)
    mask = (torch.rand(2, 1, 8, 8) > 0.5).float()
    out = carry_over(old, new, mask)
    keep = (mask == 0).expand_as(old)
    assert torch.equal(out[keep], old[keep]) and torch.equal(out[~keep], new[~keep])
    assert torch.allclose(masked_fraction(mask), 1 - mask.mean(dim=(1, 2, 3)))
