"""A frame (uint8 RGB, any size) -> the bundle's input tensor (float32 1 x 3 x H x W).

The manifest's `input` block says everything: size, colour order, pixel scale, mean and std.
Numpy only, so the phone-side path has no torch.
"""

from __future__ import annotations

import numpy as np

from .bundle import InputSpec
from .sources import FitGeometry, FitMode, fit_to


def to_input(
    frame: np.ndarray, spec: InputSpec, mode: FitMode = "letterbox"
) -> tuple[np.ndarray, FitGeometry]:
    """Fit the frame to the bundle size and normalise it; returns (tensor, geometry)."""
    image, geometry = fit_to(frame, spec.height, spec.width, mode)
    if spec.color_order == "BGR":
        image = image[..., ::-1]
    x = image.astype(np.float32) * np.float32(spec.pixel_scale)
    x = (x - np.asarray(spec.mean, np.float32)) / np.asarray(spec.std, np.float32)
    return np.ascontiguousarray(x.transpose(2, 0, 1)[None]), geometry
