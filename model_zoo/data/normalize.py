"""ImageNet normalisation shared by every data source.

The HRNet backbones were pre-trained on ImageNet, so every image fed to them (real Cityscapes
or synthetic) must be scaled to [0, 1] and standardised with the same mean and std.
"""

from __future__ import annotations

import numpy as np
import torch

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def normalize(image_uint8_hwc: np.ndarray) -> torch.Tensor:
    """Turn an HxWx3 uint8 RGB array into a 3xHxW float32 tensor, ImageNet-standardised.

    One fused multiply-add per pixel (``x * 1/(255 std) - mean/std``) instead of three passes,
    because this runs in every DataLoader worker for every training image.
    """
    image = np.asarray(image_uint8_hwc)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"expected an HxWx3 uint8 image, got dtype {image.dtype} and shape {image.shape}"
        )
    chw = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).to(torch.float32)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(3, 1, 1)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(3, 1, 1)
    return (chw * (1.0 / (255.0 * std)) - mean / std).contiguous()
