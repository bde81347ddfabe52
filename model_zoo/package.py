"""Package a training run as a small shippable checkpoint plus its JSON card.

The checkpoint keeps only what inference needs (weights and the model config with the
calibrated threshold); the card says how it was made and how well it does, so a user can
reproduce or judge it without the run folder.
"""

from __future__ import annotations

import json
import platform
from collections.abc import Mapping
from pathlib import Path

import torch

from edge.atomic import write_text

from .quantize import QAT_FORMAT, read_qat
from .registry import CheckpointError, read_checkpoint, save_checkpoint


def training_summary(log_path: Path) -> dict:
    """Steps, wall time and median throughput from a run's log.jsonl."""
    if not log_path.is_file():
        return {}
    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    if not records:
        return {}
    rates = sorted(r["img_per_s"] for r in records)
    return {
        "steps": records[-1]["step"],
        "wall_time_s": round(records[-1]["time"] - records[0]["time"], 1),
        "median_img_per_s": rates[len(rates) // 2],
        "final_exit_loss": records[-1]["exit_loss"],
    }


def package(
    checkpoint: Path,
    out: Path,
    threshold: float | None,
    evaluation: Mapping | None = None,
    recipe: str | None = None,
    notes: str = "",
) -> tuple[Path, Path]:
    """Write `out` (.pt) and `out` with .json (the card).

    A training checkpoint keeps model + model_config; a QAT checkpoint (qat.pt) stays a QAT
    checkpoint (its stage graphs' state, loadable by `load_qat`) with the new threshold.
    """
    ckpt = read_checkpoint(checkpoint)
    qat = isinstance(ckpt, Mapping) and ckpt.get("format") == QAT_FORMAT
    if not qat and (not isinstance(ckpt, Mapping) or "model" not in ckpt
                    or "model_config" not in ckpt):
        raise CheckpointError(f"{checkpoint} is not an adpc training or QAT checkpoint")
    config = {**ckpt["model_config"], "threshold": threshold}
    if qat:
        read_qat(checkpoint)  # the full format check
        weights = {**ckpt, "model_config": config}
        train_config = dict(ckpt.get("extra", {})).get("train_config")
    else:
        weights = {"model": ckpt["model"], "model_config": config}
        train_config = ckpt.get("train_config")
    save_checkpoint(weights, out)
    card = {
        "name": out.stem,
        "kind": "qat int8 (fake-quant stage graphs)" if qat else "fp32",
        "model_config": config,
        "recipe": recipe,
        "train_config": train_config,
        "training": training_summary(Path(checkpoint).parent / "log.jsonl"),
        "evaluation": evaluation,
        "environment": {"torch": torch.__version__, "python": platform.python_version(),
                        "machine": platform.machine()},
        "notes": notes,
        "bytes": out.stat().st_size,
    }
    card_path = out.with_suffix(".json")
    write_text(card_path, json.dumps(card, indent=1))
    return out, card_path
