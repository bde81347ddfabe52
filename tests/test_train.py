"""Training: the loss, a few steps that learn, exact resume, DDP on 2 CPU processes, eval."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from converters.cli import main
from model_zoo import CheckpointError
from model_zoo.adpc import ExitOutputs
from model_zoo.registry import load_trained, read_checkpoint
from model_zoo.train import TrainConfig, anytime_loss, train

ROOT = Path(__file__).resolve().parents[1]


def tiny(tmp_path: Path, **overrides) -> TrainConfig:
    values = dict(
        data="synthetic", data_size=(64, 128), crop=(64, 128), scale=(1.0, 1.0), batch_size=2,
        steps=4, lr=0.01, workers=0, threads=1, checkpoint_every=100, log_every=1,
        out=str(tmp_path / "run"), progress=False,
    )
    values.update(overrides)
    return TrainConfig(**values)


def test_loss_ignores_255_and_uses_carried_logits():
    logits = [torch.randn(1, 19, 4, 4) for _ in range(4)]
    target = torch.full((1, 16, 16), 255, dtype=torch.long)
    target[0, 3, 5] = 7
    total, per_exit = anytime_loss(ExitOutputs(logits, [], []), target, (1, 0.5, 1, 1))
    for logit, loss in zip(logits, per_exit, strict=True):
        up = F.interpolate(logit, size=(16, 16), mode="bilinear", align_corners=False)
        expected = -torch.log_softmax(up[0, :, 3, 5], 0)[7]
        torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(total, per_exit[0] + 0.5 * per_exit[1] + per_exit[2] + per_exit[3])


def test_a_few_steps_reduce_the_loss(tmp_path):
    # one repeated scene (data_size == crop, no scale): the loss must fall when fitting it
    state = train(tiny(tmp_path, steps=12, lr=0.05, class_weights="none", train_images=1))
    losses = [r["loss"] for r in state.history]
    assert len(losses) == 12
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3, losses
    log = [json.loads(line) for line in (tmp_path / "run" / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 13)) and len(log[0]["exit_loss"]) == 4


def test_resume_continues_exactly(tmp_path):
    straight = train(tiny(tmp_path / "a"))
    a = read_checkpoint(tmp_path / "a" / "run" / "last.pt")
    train(tiny(tmp_path / "b"), stop_at=2)
    half = read_checkpoint(tmp_path / "b" / "run" / "last.pt")
    assert half["step"] == 2
    resumed = train(tiny(tmp_path / "b"), resume=tmp_path / "b" / "run" / "last.pt")
    b = read_checkpoint(tmp_path / "b" / "run" / "last.pt")
    assert b["step"] == a["step"] == 4
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    assert a["optimizer"]["state"].keys() == b["optimizer"]["state"].keys()
    assert a["scheduler"]["last_epoch"] == b["scheduler"]["last_epoch"] == 4
    assert [r["loss"] for r in straight.history[2:]] == [r["loss"] for r in resumed.history]


def test_resume_refuses_a_different_recipe(tmp_path):
    train(tiny(tmp_path), stop_at=1)
    with pytest.raises(CheckpointError, match="lr=0.01.*lr=0.02"):
        train(tiny(tmp_path, lr=0.02), resume=tmp_path / "run" / "last.pt")


def test_ddp_on_two_cpu_processes(tmp_path):
    out = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_port", "29517", "-m", "converters.cli", "train", "--steps", "2",
        "--batch-size", "2", "--crop", "64x128", "--data-size", "64x128", "--scale", "1,1",
        "--workers", "0", "--threads", "1", "--log-every", "1", "--out", str(out), "--quiet",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ckpt = read_checkpoint(out / "last.pt")
    assert ckpt["step"] == 2
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2]  # rank 0 alone writes


def test_checkpoint_rebuilds_and_eval_cli_writes_report(tmp_path, capsys):
    train(tiny(tmp_path, steps=1))
    ckpt = tmp_path / "run" / "last.pt"
    model = load_trained(ckpt)
    assert model.config.threshold == 0.998
    out = tmp_path / "eval"
    code = main(["eval", "--checkpoint", str(ckpt), "--size", "64x128", "--images", "2",
                 "--batch-size", "2", "--thresholds", "0.5,0.9", "--out", str(out), "--json"])
    assert code == 0
    data = json.loads(capsys.readouterr().out)
    assert [m["threshold"] for m in data["modes"]] == [None, 0.5, 0.9]
    assert all(len(m["miou"]) == 4 and len(m["gflops"]) == 4 for m in data["modes"])
    assert data["modes"][0]["masked"] == [] and len(data["modes"][1]["masked"]) == 3
    assert (out / "eval.json").is_file() and (out / "anytime.png").stat().st_size > 1000


def test_train_cli_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("stepz: 3\n")
    assert main(["train", "--config", str(bad)]) == 2
    assert "unknown training option(s) stepz" in capsys.readouterr().err
    assert main(["train", "--crop", "100x100", "--out", str(tmp_path)]) == 2
    assert "multiples of 32" in capsys.readouterr().err
    assert main(["eval", "--checkpoint", str(tmp_path / "none.pt")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_pack_keeps_weights_and_writes_a_card(tmp_path, capsys):
    train(tiny(tmp_path, steps=1))
    eval_json = tmp_path / "eval.json"
    eval_json.write_text(json.dumps({"modes": []}))
    out = tmp_path / "w" / "m.pt"
    assert main(["pack", "--checkpoint", str(tmp_path / "run" / "last.pt"), "--threshold",
                 "0.97", "--eval", str(eval_json), "--recipe", "adpc train ...",
                 "--out", str(out)]) == 0
    packed = read_checkpoint(out)
    assert set(packed) == {"model", "model_config"} and packed["model_config"]["threshold"] == 0.97
    model = load_trained(out)
    assert model.config.threshold == 0.97
    card = json.loads(out.with_suffix(".json").read_text())
    assert card["training"]["steps"] == 1 and card["evaluation"] == {"modes": []}
    assert card["recipe"] == "adpc train ..." and card["train_config"]["crop"] == [64, 128]
