"""`adpc verify`: run every available backend of a bundle against PyTorch, exit by exit.

Both sides run the whole anytime chain on the same frames, carry-over included: PyTorch
through `AnytimeChain.forward`, the converted files through `edge.runtime.iter_exits` (the numpy
host step every runtime uses). Per exit: max |logit difference|, argmax agreement, mask
agreement, and mIoU against the frames' labels. Targets (issue 4): fp32 max diff <= 1e-3 and
argmax >= 99.9%; int8 argmax >= 98% against the converted (int8) PyTorch model; masks >= 99.9%.

Core ML predictions need macOS: on Linux its rows say so instead of showing numbers.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from edge.backends import BackendUnavailable, open_backend
from edge.bundle import Manifest, read_bundle
from edge.runtime import iter_exits
from model_zoo.adpc import AnytimeChain
from model_zoo.evaluate import confusion, iou_per_class, mean_iou

TARGETS = {
    "fp32": {"max_abs": 1e-3, "agreement": 0.999},
    "fp16": {"max_abs": None, "agreement": 0.99},
    "int8": {"max_abs": None, "agreement": 0.98},
}
MASK_TARGET = 0.999


@dataclass
class ExitParity:
    exit: int
    max_abs: float
    agreement: float
    mask_agreement: float | None  # the mask this exit's stage ran under (None for exit 1)
    miou: float | None  # the backend's mIoU on the frames' labels
    reference_miou: float | None


@dataclass
class BackendParity:
    backend: str
    precision: str
    status: str  # "pass" | "fail" | "unavailable"
    reason: str = ""
    exits: list[ExitParity] = field(default_factory=list)

    def to_dict(self) -> dict:
        return asdict(self)


def frames_for(manifest: Manifest, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Synthetic validation scenes (image, label) at the bundle's size: fixed seeds."""
    from model_zoo.data.sources import build_source
    from model_zoo.data.transforms import eval_transform

    size = (manifest.input.height, manifest.input.width)
    source = build_source("synthetic", "val", size, length=count)
    pairs = [eval_transform(*source[i]) for i in range(min(count, len(source)))]
    return [(image[None], label[None]) for image, label in pairs]


def _labels(logits: np.ndarray | torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    t = torch.as_tensor(logits)
    return F.interpolate(t, size=size, mode="bilinear", align_corners=False).argmax(1)


def check_backend(
    bundle: Path,
    manifest: Manifest,
    backend: str,
    precision: str,
    reference: AnytimeChain,
    frames: Sequence[tuple[torch.Tensor, torch.Tensor]],
    threshold: float | None,
    threads: int | None = None,
) -> BackendParity:
    """One backend/precision of a bundle against `reference` on `frames`."""
    try:
        runner = open_backend(backend, bundle, precision, threads=threads, manifest=manifest)
    except BackendUnavailable as exc:
        return BackendParity(backend, precision, "unavailable", str(exc))
    classes = len(manifest.classes)
    n_exits = manifest.num_exits
    worst = [0.0] * n_exits
    agree = [[] for _ in range(n_exits)]
    masks = [[] for _ in range(n_exits)]
    conf = [torch.zeros(classes, classes, dtype=torch.long) for _ in range(n_exits)]
    ref_conf = [torch.zeros(classes, classes, dtype=torch.long) for _ in range(n_exits)]
    with runner:
        for image, label in frames:
            with torch.no_grad():
                ref = reference(image, threshold=threshold)
            size = tuple(label.shape[-2:])
            for step in iter_exits(runner, image.numpy(), threshold):
                i = step.exit - 1
                mine, theirs = step.logits, ref.logits[i].numpy()
                worst[i] = max(worst[i], float(np.abs(mine - theirs).max()))
                agree[i].append(float((mine.argmax(1) == theirs.argmax(1)).mean()))
                if step.mask is not None:
                    masks[i].append(float((step.mask == ref.masks[i - 1].numpy()).mean()))
                conf[i] += confusion(_labels(mine, size), label, classes)
                ref_conf[i] += confusion(_labels(theirs, size), label, classes)
    exits = [
        ExitParity(i + 1, worst[i], float(np.mean(agree[i])),
                   float(np.mean(masks[i])) if masks[i] else None,
                   mean_iou(iou_per_class(conf[i])), mean_iou(iou_per_class(ref_conf[i])))
        for i in range(n_exits)
    ]
    target = TARGETS[precision]
    failures = []
    for e in exits:
        if target["max_abs"] is not None and e.max_abs > target["max_abs"]:
            failures.append(f"exit {e.exit} max diff {e.max_abs:.2e} > {target['max_abs']:g}")
        if e.agreement < target["agreement"]:
            failures.append(f"exit {e.exit} argmax {e.agreement:.2%} < {target['agreement']:.1%}")
        if precision == "fp32" and e.mask_agreement is not None and e.mask_agreement < MASK_TARGET:
            failures.append(f"exit {e.exit} masks {e.mask_agreement:.2%} < {MASK_TARGET:.1%}")
    return BackendParity(backend, precision, "fail" if failures else "pass",
                         "; ".join(failures), exits)


def reference_for(manifest: Manifest, precision: str, checkpoint: str | Path | None):
    """The PyTorch chain a bundle must match, rebuilt from its provenance (or `checkpoint`)."""
    from .export import load_source, stage_set

    path = checkpoint or manifest.provenance.get("checkpoint")
    if path is None:
        raise FileNotFoundError("the bundle does not say which checkpoint it came from: "
                                "pass --checkpoint PATH")
    if not Path(path).is_file():
        raise FileNotFoundError(f"the bundle's source checkpoint {path} is not here: pass "
                                "--checkpoint PATH")
    source = load_source(path)
    qat = manifest.provenance.get("qat_checkpoint")
    if precision == "int8" and qat and Path(qat).is_file():
        source.qat_path = Path(qat)
    ref_precision = "int8" if precision == "int8" else "fp32"
    stages = stage_set(source, ref_precision, manifest.input.height, manifest.input.width)
    return stages.reference


def verify_bundle(
    bundle: str | Path,
    checkpoint: str | Path | None = None,
    frames: int = 4,
    backends: Sequence[str] | None = None,
    threshold: float | None | str = "manifest",
    threads: int | None = None,
    references: dict | None = None,
) -> list[BackendParity]:
    """Every backend/precision in the bundle (or those named) against PyTorch.

    references: precision -> reference chain, to skip rebuilding it (e.g. right after convert).
    """
    folder = Path(bundle)
    manifest = read_bundle(folder)
    thr = manifest.threshold if threshold == "manifest" else threshold
    pairs = sorted({(f.backend, f.precision) for f in manifest.files
                    if backends is None or f.backend in backends})
    data = frames_for(manifest, frames)
    refs = dict(references or {})
    results = []
    for backend, precision in pairs:
        key = "int8" if precision == "int8" else "fp32"
        if backend == "coreml" and sys.platform != "darwin":
            from edge.backends.coreml import PARITY_NOTE

            results.append(BackendParity(backend, precision, "unavailable",
                                         f"{PARITY_NOTE} (spec validated at conversion)"))
            continue
        if key not in refs:
            refs[key] = reference_for(manifest, key, checkpoint)
        results.append(check_backend(folder, manifest, backend, precision, refs[key], data, thr,
                                     threads))
    return results


def format_table(results: Sequence[BackendParity]) -> str:
    """One row per backend x precision x exit."""
    head = (f"{'backend':<11} {'prec':<5} {'exit':>4} {'max|diff|':>10} {'argmax':>8} "
            f"{'masks':>8} {'mIoU':>6} {'torch':>6}  status")
    lines = [head, "-" * len(head)]
    for r in results:
        if not r.exits:
            lines.append(f"{r.backend:<11} {r.precision:<5} {'-':>4} {'':>10} {'':>8} {'':>8} "
                         f"{'':>6} {'':>6}  {r.status}: {r.reason}")
            continue
        for e in r.exits:
            mask = "-" if e.mask_agreement is None else f"{e.mask_agreement:.2%}"
            status = r.status if e.exit == len(r.exits) else ""
            lines.append(
                f"{r.backend:<11} {r.precision:<5} {e.exit:>4} {e.max_abs:>10.2e} "
                f"{e.agreement:>8.2%} {mask:>8} {100 * e.miou:>6.2f} "
                f"{100 * e.reference_miou:>6.2f}  {status}")
        if r.reason:
            lines.append(f"{'':<11} {'':<5} {'':>4} {r.reason}")
    return "\n".join(lines)
