"""Confidence adaptivity: the mask rule, mask resampling, the masked conv and its RBF fill.

This module is the one definition of the mask rule in PyTorch (SPEC.md section 4). Every other
part of the model imports it; `edge.host` mirrors the same rule in numpy for the runtime, and a
test keeps the two in agreement.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

DEFAULT_THRESHOLD = 0.998
"""Cityscapes threshold of the paper: a pixel is computed while its confidence is <= this."""

DEFAULT_FILL_WINDOW = 7
DEFAULT_LAMBDA = 3.0
FILL_EPS = 1e-5


def confidence(logits: Tensor) -> Tensor:
    """Max softmax probability over classes, written as 1 / sum(exp(l - max)).

    That form needs no softmax op (not delegated by XNNPACK) and is the same formula the
    host runs between converted stages. Returns N x 1 x H x W.
    """
    top = logits.amax(dim=1, keepdim=True)
    return 1.0 / torch.exp(logits - top).sum(dim=1, keepdim=True)


def compute_mask(logits: Tensor, threshold: float) -> Tensor:
    """1.0 where the pixel must still be computed (confidence <= threshold), else 0.0.

    Equality computes. The mask is a hard decision: no gradient flows through it (the
    detach suffices; a `no_grad` block would export as a higher-order op that quantizers and
    lowering passes do not look into).
    """
    return (confidence(logits.detach()) <= threshold).to(logits.dtype)


def carry_over(previous: Tensor, new: Tensor, mask: Tensor) -> Tensor:
    """Eq. 7: confident pixels (mask 0) keep the previous exit's logits bit-exactly."""
    return torch.where(mask > 0, new, previous)


def masked_fraction(mask: Tensor) -> Tensor:
    """Fraction of pixels skipped (mask 0), per image: shape N."""
    return 1.0 - mask.flatten(1).mean(dim=1)


def resample_mask(mask: Tensor, height: int, width: int) -> Tensor:
    """Mask at a coarser resolution by legacy nearest sampling (the top-left pixel of a block).

    For the exact power-of-two factors of HRNet this is strided slicing, which exports to
    every backend as a plain slice. Thresholding commutes with nearest sampling, so taking the
    mask from logits resampled first (the reference code) gives the same result.
    """
    full_h, full_w = mask.shape[-2:]
    if (full_h, full_w) == (height, width):
        return mask
    step_h, step_w = full_h // height, full_w // width
    if step_h * height != full_h or step_w * width != full_w or step_h != step_w:
        raise ValueError(
            f"cannot resample a {full_h}x{full_w} mask to {height}x{width}: the factor must be "
            "the same integer on both axes (input sizes must be multiples of 32)"
        )
    return mask[..., ::step_h, ::step_w]


class MaskPyramid:
    """The mask of one exit, served at any conv's output resolution.

    Built once per stage call from the 1/4-resolution mask; holds no module state, so the
    model itself stays stateless between forwards.
    """

    def __init__(self, mask: Tensor) -> None:
        if mask.dim() != 4 or mask.shape[1] != 1:
            raise ValueError(f"mask must be N x 1 x H x W, got {tuple(mask.shape)}")
        self.mask = mask
        self._cache: dict[tuple[str, str], Tensor] = {}

    def at(self, height: int, width: int) -> Tensor:
        # str: under torch.export with dynamic H/W the sizes are SymInts, which do not hash;
        # their printed form is stable within one trace (a miss only costs one extra slice).
        key = (str(height), str(width))
        if key not in self._cache:
            self._cache[key] = resample_mask(self.mask, height, width)
        return self._cache[key]


class MaskFill(nn.Module):
    """RBF interpolation of skipped pixels from computed neighbours (SPEC.md section 4).

    Its own module so quantizers can keep it in float (TOOLCHAIN.md, QAT section).
    K(d) = exp(-Lambda^2 d^2) over a window x window grid, centre 0, normalised by the fixed
    sum of the weights + 1e-5, zero padding, no renormalisation by the mask.

    Computed separably: exp(-L^2 (dx^2 + dy^2)) = g(dx) g(dy), and the centre tap may be
    included because the filled pixels are exactly those where `y * mask` is 0. That equals the
    2-D kernel to float rounding and runs 4-5x faster in XNNPACK than a 7x7 depthwise conv.
    """

    def __init__(self, window: int = DEFAULT_FILL_WINDOW, init_lambda: float = DEFAULT_LAMBDA):
        super().__init__()
        if window < 1 or window % 2 == 0:
            raise ValueError(f"fill window must be a positive odd number, got {window}")
        self.window = window
        self.Lambda = nn.Parameter(torch.tensor(float(init_lambda)))
        offsets = torch.arange(window, dtype=torch.float32) - window // 2
        self.register_buffer("square_offsets", offsets**2, persistent=False)

    def taps(self) -> tuple[Tensor, Tensor]:
        """The 1-D kernel g and the normaliser Z = sum of the 2-D weights without the centre."""
        g = torch.exp(-(self.Lambda**2) * self.square_offsets)
        return g, g.sum() ** 2 - 1.0 + FILL_EPS

    def kernel(self) -> Tensor:
        """The equivalent 2-D kernel (centre 0), for reference and FLOPs."""
        g, norm = self.taps()
        weights = g[:, None] * g[None, :]
        centre = self.window // 2
        return weights.index_put((torch.tensor(centre), torch.tensor(centre)),
                                 torch.tensor(0.0)) / norm

    def forward(self, y: Tensor, mask: Tensor) -> Tensor:
        kept = y * mask
        channels, pad = y.shape[1], self.window // 2
        g, norm = self.taps()
        rows = (g / norm).reshape(1, 1, 1, self.window).repeat(channels, 1, 1, 1)
        cols = g.reshape(1, 1, self.window, 1).repeat(channels, 1, 1, 1)
        filled = F.conv2d(kept, rows, padding=(0, pad), groups=channels)
        filled = F.conv2d(filled, cols, padding=(pad, 0), groups=channels)
        return kept + filled * (1.0 - mask)

    def extra_repr(self) -> str:
        return f"window={self.window}"


class MaskAware(nn.Module):
    """Marker: modules whose forward takes (x, masks) with masks a MaskPyramid or None."""


class MaskedConv2d(nn.Conv2d, MaskAware):
    """A conv whose output is computed where the mask is 1 and RBF-filled where it is 0.

    Subclasses nn.Conv2d so the weight keys are the official HRNet ones. Without a mask (CA
    off, or the plain HRNet) it is an ordinary conv. The mask is applied to the conv output
    before BN, ReLU and residual adds, which then run on the whole map.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = False,
        fill_window: int | None = DEFAULT_FILL_WINDOW,
    ) -> None:
        super().__init__(
            in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias
        )
        self.fill = MaskFill(fill_window) if fill_window else None

    def forward(self, x: Tensor, masks: MaskPyramid | None = None) -> Tensor:  # type: ignore[override]
        y = super().forward(x)
        if masks is None:
            return y
        if self.fill is None:
            raise RuntimeError("this conv was built without a fill (plain HRNet); it takes no mask")
        return self.fill(y, masks.at(y.shape[-2], y.shape[-1]))


class MaskedSequential(nn.Sequential, MaskAware):
    """nn.Sequential that hands the mask pyramid to the children that take one.

    Keeps the official numeric key layout (`transition1.0.0.weight`, `exit2.1.weight`).
    """

    def forward(self, x: Tensor, masks: MaskPyramid | None = None) -> Tensor:  # type: ignore[override]
        for module in self:
            x = module(x, masks) if isinstance(module, MaskAware) else module(x)
        return x
