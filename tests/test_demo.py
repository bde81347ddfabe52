"""`adpc demo`: exits on sample frames, panel and report, and clear errors."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image

from converters.cli import main
from converters.demo import SAMPLES, load_frames
from model_zoo import create_model
from model_zoo.registry import save_checkpoint


@pytest.fixture()
def small_frames(tmp_path):
    """Two shipped frames with labels, halved to 128x256 to keep the test quick."""
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(2):
        for kind, resample in (("frame", Image.BILINEAR), ("label", Image.NEAREST)):
            with Image.open(SAMPLES / f"{kind}_{i:04d}.png") as im:
                im.resize((256, 128), resample).save(folder / f"{kind}_{i:04d}.png")
    return folder


@pytest.fixture()
def checkpoint(tmp_path):
    model = create_model("w18_small_v2", threshold=0.5)
    return save_checkpoint({"model": model.state_dict(),
                            "model_config": model.config.to_dict()}, tmp_path / "m.pt")


def test_shipped_samples_have_frames_and_labels():
    frames = load_frames(SAMPLES)
    assert len(frames) >= 4
    for _, image, label in frames:
        assert image.shape == (256, 512, 3) and label is not None and label.shape == (256, 512)
        assert set(np.unique(label)) <= set(range(19)) | {255}


def test_demo_reports_every_exit_and_writes_panel(tmp_path, small_frames, checkpoint, capsys):
    out = tmp_path / "demo"
    code = main(["demo", "--eager", "--checkpoint", str(checkpoint), "--frames",
                 str(small_frames), "--out", str(out), "--threads", "1"])
    assert code == 0
    text = capsys.readouterr().out
    assert "exit" in text and "mIoU" in text and "exits.png" in text
    report = json.loads((out / "demo.json").read_text())
    assert report["frames"] == 2 and report["size"] == [128, 256]
    assert len(report["exit_ms_median"]) == 4 and len(report["masked"]) == 3
    assert report["exit_ms_median"] == sorted(report["exit_ms_median"])
    assert all(0 <= m <= 100 for m in report["miou"])
    with Image.open(out / "exits.png") as im:
        assert im.size[0] == 2 * 256 and im.size[1] > 4 * 128


def test_demo_threshold_off_and_errors(tmp_path, small_frames, checkpoint, capsys):
    out = tmp_path / "off"
    assert main(["demo", "--eager", "--checkpoint", str(checkpoint), "--frames",
                 str(small_frames), "--threshold", "off", "--out", str(out)]) == 0
    assert json.loads((out / "demo.json").read_text())["masked"] == [0.0, 0.0, 0.0]
    capsys.readouterr()
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["demo", "--checkpoint", str(checkpoint), "--frames", str(empty)]) == 2
    assert "no .png/.jpg frames" in capsys.readouterr().err
    odd = tmp_path / "odd"
    odd.mkdir()
    shutil.copy(small_frames / "frame_0000.png", odd / "frame_0000.png")
    Image.open(odd / "frame_0000.png").resize((250, 120)).save(odd / "frame_0000.png")
    assert main(["demo", "--checkpoint", str(checkpoint), "--frames", str(odd)]) == 2
    assert "multiples of 32" in capsys.readouterr().err
    assert main(["demo", "--checkpoint", str(checkpoint), "--threshold", "high"]) == 2
    assert "a number or 'off'" in capsys.readouterr().err
