"""The shipped default model: it loads from the package, and it really segments.

Properties, not recorded numbers: on held-out synthetic frames (seeds never used in training)
mIoU rises from exit to exit, beats chance by far, and CA at the shipped threshold skips pixels.
"""

from __future__ import annotations

import json

import pytest
import torch

from model_zoo import create_model
from model_zoo.data.sources import build_source
from model_zoo.data.transforms import eval_transform
from model_zoo.evaluate import evaluate
from model_zoo.registry import WEIGHTS_DIR, shipped_weights


@pytest.fixture(scope="module")
def shipped():
    return create_model("w18_small_v2", pretrained=True).eval()


def test_shipped_weights_and_card():
    path = shipped_weights("w18_small_v2")
    assert path.parent == WEIGHTS_DIR and path.stat().st_size < 50e6
    card = json.loads(path.with_suffix(".json").read_text())
    for key in ("recipe", "train_config", "training", "evaluation", "model_config"):
        assert card[key], key


def test_shipped_model_segments_held_out_frames(shipped):
    torch.set_num_threads(max(1, torch.get_num_threads()))
    source = build_source("synthetic", "val", (256, 512), length=6)
    pairs = [eval_transform(*source[i]) for i in range(6)]
    batches = [(torch.stack([p[0] for p in pairs[i:i + 3]]),
                torch.stack([p[1] for p in pairs[i:i + 3]])) for i in (0, 3)]
    off, on = evaluate(shipped, batches, [None, shipped.config.threshold], (256, 512))
    assert off.miou[-1] > 40.0  # chance is ~5% on 19 classes
    assert off.miou == sorted(off.miou) and on.miou[-1] > on.miou[0]
    assert on.masked[0] > 0.05 and on.gflops[-1] < off.gflops[-1]


def test_shipped_threshold_override_and_mismatch(shipped):
    assert create_model("w18_small_v2", pretrained=True, threshold=None).config.threshold is None
    with pytest.raises(ValueError, match="num_classes"):
        create_model("w18_small_v2", pretrained=True, num_classes=5)
    with pytest.raises(ValueError, match="no weights ship"):
        create_model("w48", pretrained=True)


def test_shipped_qat_twin_agrees_with_fp32(int8_stages, shipped):
    """The shipped QAT checkpoint feeds int8 conversion and segments like the fp32 model."""
    from converters.export import calibration_images, shipped_qat_path

    path = shipped_qat_path()
    assert path is not None and path.stat().st_size < 50e6
    card = json.loads(path.with_suffix(".json").read_text())
    assert card["kind"].startswith("qat") and card["model_config"]["threshold"] == 0.99
    assert int8_stages.quantized_from == "qat"
    with torch.no_grad():
        for image in calibration_images(64, 128, count=3):
            q = int8_stages.reference(image, threshold=None)
            f = shipped(image, threshold=None)
            agree = float((q.logits[3].argmax(1) == f.logits[3].argmax(1)).float().mean())
            assert agree >= 0.85
