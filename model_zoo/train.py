"""ADP-C training: per-exit loss on carried-over logits, SGD + poly, checkpoints, exact resume.

Single process or `torchrun` (DistributedDataParallel; SyncBatchNorm on GPUs). Every batch is a
function of (seed, step, rank), so `--resume` continues exactly where a run stopped.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import Tensor, nn

from .adpc import ADPCNet, ExitOutputs
from .data.cityscapes_classes import IGNORE_INDEX, NUM_CLASSES
from .data.sources import build_source
from .data.transforms import TrainTransform
from .registry import (
    CheckpointError,
    create_model,
    load_pretrained,
    read_checkpoint,
    save_checkpoint,
)

if TYPE_CHECKING:
    from .quantize import QuantizedADPC

CITYSCAPES_CLASS_WEIGHTS = (
    0.8373, 0.918, 0.866, 1.0345, 1.0166, 0.9969, 0.9754, 1.0489, 0.8786, 1.0023,
    0.9539, 0.9843, 1.1116, 0.9037, 1.0865, 1.0955, 1.0865, 1.1529, 1.0507,
)  # fmt: skip
"""HRNet's fixed Cityscapes class weights (SPEC.md section 5)."""


@dataclass
class TrainConfig:
    """Everything a run depends on; stored in every checkpoint so --resume can check it."""

    model: str = "w18_small_v2"
    num_classes: int = NUM_CLASSES
    head_channels: int | None = None
    threshold: float | None = 0.998
    pretrained: str | None = None
    data: str = "synthetic"  # "synthetic" or a Cityscapes root folder
    data_size: tuple[int, int] = (256, 512)  # synthetic render size (H, W)
    train_images: int | None = None  # use only the first N training images (None: all)
    crop: tuple[int, int] = (256, 512)
    scale: tuple[float, float] = (0.5, 2.0)
    batch_size: int = 8  # global, split across processes
    steps: int = 1000
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-4
    poly_power: float = 0.9
    exit_weights: tuple[float, ...] = (1.0, 1.0, 1.0, 1.0)
    class_weights: str = "cityscapes"  # "cityscapes" or "none"
    seed: int = 0
    workers: int = 1
    threads: int | None = None
    checkpoint_every: int = 200
    log_every: int = 10
    out: str = "runs/train"
    progress: bool = True
    qat: bool = False  # fine-tune `pretrained` with int8 QAT (model_zoo.quantize)

    @classmethod
    def from_dict(cls, values: dict) -> TrainConfig:
        known = {f.name: f for f in fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"unknown training option(s) {', '.join(unknown)}; "
                             f"known: {', '.join(known)}")
        tupled = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return cls(**tupled)

    def validate(self) -> None:
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError("steps and batch_size must be >= 1")
        if self.lr <= 0:
            raise ValueError(f"learning rate must be > 0, got {self.lr}")
        if any(c % 32 for c in self.crop):
            raise ValueError(f"crop {self.crop[0]}x{self.crop[1]} must be multiples of 32")
        if self.class_weights not in ("cityscapes", "none"):
            raise ValueError("class_weights must be 'cityscapes' or 'none'")
        if self.qat and not self.pretrained:
            raise ValueError("QAT fine-tunes a trained float model: pass pretrained (the "
                             "shipped model or an `adpc train` checkpoint)")


@dataclass
class TrainState:
    step: int = 0
    history: list[dict] = field(default_factory=list)


# ------------------------------------------------------------------------------ the loss
def anytime_loss(
    outputs: ExitOutputs,
    target: Tensor,
    exit_weights: Sequence[float],
    class_weights: Tensor | None = None,
) -> tuple[Tensor, list[Tensor]]:
    """Weighted sum of per-exit cross-entropies on the carried-over logits.

    Logits (1/4 resolution) are upsampled bilinearly to the label size; 255 is ignored.
    """
    if len(exit_weights) != len(outputs.logits):
        raise ValueError(f"{len(exit_weights)} exit weights for {len(outputs.logits)} exits")
    per_exit = []
    for logits in outputs.logits:
        up = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
        per_exit.append(F.cross_entropy(up, target, weight=class_weights,
                                        ignore_index=IGNORE_INDEX))
    total = sum(w * loss for w, loss in zip(exit_weights, per_exit, strict=True))
    return total, per_exit


def poly_lambda(total_steps: int, power: float):
    def factor(step: int) -> float:
        return max(0.0, 1.0 - step / total_steps) ** power

    return factor


# ------------------------------------------------------------------------------ the data
class StepBatches(torch.utils.data.Sampler):
    """Global sample indices for this rank, step by step from `start`.

    Step s, rank r, slot j reads global index s * B + r * b + j (B global, b local batch).
    """

    def __init__(self, start: int, steps: int, global_batch: int, rank: int, world: int):
        self.start, self.steps, self.world, self.rank = start, steps, world, rank
        self.global_batch, self.local_batch = global_batch, global_batch // world

    def __iter__(self) -> Iterator[list[int]]:
        for step in range(self.start, self.steps):
            first = step * self.global_batch + self.rank * self.local_batch
            yield list(range(first, first + self.local_batch))

    def __len__(self) -> int:
        return max(0, self.steps - self.start)


class AugmentedSamples(torch.utils.data.Dataset):
    """Global index -> (epoch-shuffled source item, augmentation seeded by that index)."""

    def __init__(self, source, transform: TrainTransform, seed: int) -> None:
        self.source, self.transform, self.seed = source, transform, seed
        self._order: tuple[int, np.ndarray] | None = None  # per-worker cache of one epoch

    def __len__(self) -> int:  # the sampler decides; indices are unbounded
        return 2**62

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        n = len(self.source)
        epoch, offset = divmod(index, n)
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, np.random.default_rng([self.seed, epoch]).permutation(n))
        image, label = self.source[int(self._order[1][offset])]
        rng = np.random.default_rng([self.seed, 1, index])
        return self.transform(image, label, rng)


# --------------------------------------------------------------------------- the trainer
def _dist_info() -> tuple[int, int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    return rank, world, local


def build_model(config: TrainConfig) -> ADPCNet:
    model = create_model(
        config.model, num_classes=config.num_classes, head_channels=config.head_channels,
        threshold=config.threshold,
    )
    if config.pretrained:
        load_pretrained(model, config.pretrained)
    return model


def train(
    config: TrainConfig, resume: str | Path | None = None, stop_at: int | None = None
) -> TrainState:
    """Run (or continue) training; returns the final state. Writes checkpoints and a log.

    stop_at: leave after that step with a checkpoint (time-boxed or preemptible runs); the
    schedule still spans `config.steps`, so `resume` later continues exactly.
    """
    config.validate()
    end = config.steps if stop_at is None else min(stop_at, config.steps)
    rank, world, local_rank = _dist_info()
    if config.batch_size % world:
        raise ValueError(f"batch size {config.batch_size} must divide by {world} processes")
    if config.threads:
        torch.set_num_threads(config.threads)
    distributed = world > 1
    use_cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{local_rank}" if use_cuda else "cpu")
    if distributed and not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo")

    torch.manual_seed(config.seed)
    model: ADPCNet | QuantizedADPC = build_model(config)
    if config.qat:
        if distributed:
            raise ValueError("QAT fine-tuning runs in one process: launch it without torchrun")
        from .quantize import prepare_qat

        model = prepare_qat(model, *config.crop)
    start_step, ckpt = 0, None
    if resume:
        ckpt = read_checkpoint(resume)
        _check_resumable(ckpt, config)
        model.load_state_dict(ckpt["model"])
        start_step = int(ckpt["step"])
    model.to(device)
    if distributed and use_cuda:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)  # CPU has no SyncBatchNorm
    net: nn.Module = model
    if distributed:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[local_rank] if use_cuda else None,
            find_unused_parameters=config.threshold is None,
        )

    optimizer = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum,
        weight_decay=config.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, poly_lambda(config.steps, config.poly_power)
    )
    if ckpt is not None:
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])

    source = build_source(config.data, "train", config.data_size, config.seed,
                          length=config.train_images)
    samples = AugmentedSamples(source, TrainTransform(config.crop, config.scale), config.seed)
    loader = torch.utils.data.DataLoader(
        samples,
        batch_sampler=StepBatches(start_step, end, config.batch_size, rank, world),
        num_workers=config.workers,
        persistent_workers=False,
        pin_memory=use_cuda,
    )
    class_weights = (
        torch.tensor(CITYSCAPES_CLASS_WEIGHTS, device=device)
        if config.class_weights == "cityscapes" and config.num_classes == NUM_CLASSES
        else None
    )
    out = Path(config.out)
    is_main = rank == 0
    if is_main:
        out.mkdir(parents=True, exist_ok=True)
    state = TrainState(step=start_step)
    bar = _progress(config, start_step, is_main)
    net.train()
    window_start, window_images = time.perf_counter(), 0
    for images, labels in loader:
        images, labels = images.to(device, non_blocking=True), labels.to(device)
        outputs = net(images)
        loss, per_exit = anytime_loss(outputs, labels, config.exit_weights, class_weights)
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"loss became {float(loss)} at step {state.step}: lower --lr or check the data"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        scheduler.step()
        state.step += 1
        window_images += images.shape[0] * world
        if state.step % config.log_every == 0 or state.step == end:
            elapsed = time.perf_counter() - window_start
            record = {
                "step": state.step,
                "lr": optimizer.param_groups[0]["lr"],
                "loss": round(float(loss.detach()), 5),
                "exit_loss": [round(float(v.detach()), 5) for v in per_exit],
                "masked": [round(float(f.mean()), 4) for f in outputs.masked_fractions],
                "img_per_s": round(window_images / max(elapsed, 1e-9), 3),
                "time": time.time(),
            }
            state.history.append(record)
            if is_main:
                with open(out / "log.jsonl", "a") as log:
                    log.write(json.dumps(record) + "\n")
            window_start, window_images = time.perf_counter(), 0
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(
                "loss " + "/".join(f"{float(v.detach()):.3f}" for v in per_exit)
                + (f" {state.history[-1]['img_per_s']:.1f} img/s" if state.history else "")
            )
        if is_main and (state.step % config.checkpoint_every == 0 or state.step == end):
            write_checkpoint(out / "last.pt", model, optimizer, scheduler, state.step, config)
    if bar is not None:
        bar.close()
    if config.qat and is_main:  # the deployable artefact: frozen, loadable by load_qat
        from .quantize import save_qat

        save_qat(out / "qat.pt", model.eval(), {"step": state.step,
                                                "train_config": _plain(asdict(config))})
    if distributed:
        dist.barrier()
    return state


def _progress(config: TrainConfig, start: int, is_main: bool):
    if not (config.progress and is_main):
        return None
    from tqdm import tqdm

    return tqdm(total=config.steps, initial=start, desc="train", unit="step", dynamic_ncols=True)


def write_checkpoint(path: Path, model: ADPCNet | QuantizedADPC, optimizer, scheduler, step: int,
                     config: TrainConfig) -> Path:
    payload = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "step": step,
        "train_config": _plain(asdict(config)),
        "model_config": _plain(model.config.to_dict()),
    }
    return save_checkpoint(payload, path)


def _plain(values: dict) -> dict:
    """Tuples -> lists so the checkpoint holds only weights-only-loadable containers."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}


_RESUME_MUST_MATCH = ("model", "num_classes", "head_channels", "threshold", "data", "crop",
                      "batch_size", "seed", "lr", "qat", "pretrained")
"""What a resumed run must share with the checkpoint. --steps may change: the poly schedule
is then recomputed for the new total (exactness holds only when it stays the same)."""


def _check_resumable(ckpt: dict, config: TrainConfig) -> None:
    for key in ("model", "optimizer", "scheduler", "step", "train_config"):
        if key not in ckpt:
            raise CheckpointError(f"checkpoint lacks {key!r}: --resume needs a checkpoint "
                                  "written by `adpc train` (last.pt)")
    saved = ckpt["train_config"]
    mine = _plain(asdict(config))
    for key in _RESUME_MUST_MATCH:
        if saved.get(key) != mine.get(key):
            raise CheckpointError(
                f"--resume: the checkpoint was trained with {key}={saved.get(key)!r}, this run "
                f"has {key}={mine.get(key)!r}; pass the same options to continue exactly"
            )
    if int(ckpt["step"]) >= config.steps:
        raise CheckpointError(f"--resume: the run already finished (checkpoint at step "
                              f"{ckpt['step']} of {config.steps}); start a new run instead")


def images_per_second(history: list[dict]) -> float:
    rates = [r["img_per_s"] for r in history[1:]] or [r["img_per_s"] for r in history]
    return float(np.median(rates)) if rates else math.nan
