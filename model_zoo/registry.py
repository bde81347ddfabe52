"""Named model variants and loading of weights from local files only.

One tiny registered constructor per variant (the timm pattern). Checkpoints are read with
`torch.load(..., weights_only=True)`: we never unpickle what a user hands us.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from edge.atomic import atomic_path

from .adpc import ADPCConfig, ADPCNet

_REGISTRY: dict[str, Callable[..., ADPCConfig]] = {}

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DEFAULT_WEIGHTS = {"w18_small_v2": "w18_small_v2_synthetic.pt"}
"""Checkpoints trained by this project's own recipe that ship inside the package."""


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read or does not fit the model."""


def register(name: str) -> Callable[[Callable[..., ADPCConfig]], Callable[..., ADPCConfig]]:
    def wrap(fn: Callable[..., ADPCConfig]) -> Callable[..., ADPCConfig]:
        _REGISTRY[name] = fn
        return fn

    return wrap


@register("w18_small_v2")
def w18_small_v2(**overrides) -> ADPCConfig:
    """The paper's "W18": HRNet-W18-Small-v2 with 64-channel RH exits (our default)."""
    return ADPCConfig(**{"backbone": "w18_small_v2", "head_channels": 64, **overrides})


@register("w18")
def w18(**overrides) -> ADPCConfig:
    return ADPCConfig(**{"backbone": "w18", "head_channels": 64, **overrides})


@register("w32")
def w32(**overrides) -> ADPCConfig:
    return ADPCConfig(**{"backbone": "w32", "head_channels": 128, **overrides})


@register("w48")
def w48(**overrides) -> ADPCConfig:
    return ADPCConfig(**{"backbone": "w48", "head_channels": 128, **overrides})


def list_models() -> list[str]:
    return sorted(_REGISTRY)


def model_config(name: str = "w18_small_v2", **overrides) -> ADPCConfig:
    if name not in _REGISTRY:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(list_models())}")
    overrides = {k: v for k, v in overrides.items() if v is not None or k == "threshold"}
    if overrides.get("exits") == "none" and "threshold" not in overrides:
        overrides["threshold"] = None
    return _REGISTRY[name](**overrides)


def create_model(
    name: str = "w18_small_v2",
    num_classes: int = 19,
    pretrained: bool | str | Path | None = None,
    **overrides,
) -> ADPCNet:
    """Build a registered variant.

    pretrained: True loads the checkpoint shipped for this variant (with its calibrated
    threshold unless `threshold` is given); a path loads a local checkpoint (official HRNet,
    timm backbone, ADP-C reference, or `adpc train`). Nothing is ever downloaded.
    overrides: exits ("rh" | "ee" | "none"), head_channels, threshold (None = CA off),
    fill_window.
    """
    if pretrained is True:
        return load_shipped(name, num_classes=num_classes, **overrides)
    model = ADPCNet(model_config(name, num_classes=num_classes, **overrides))
    if pretrained:
        load_pretrained(model, pretrained)
    return model


def shipped_weights(name: str) -> Path:
    if name not in DEFAULT_WEIGHTS:
        raise CheckpointError(
            f"no weights ship for {name!r} (shipped: {', '.join(DEFAULT_WEIGHTS)}); train one "
            "with `adpc train --model {name}` or pass a local checkpoint path"
        )
    path = WEIGHTS_DIR / DEFAULT_WEIGHTS[name]
    if not path.is_file():
        raise CheckpointError(f"shipped weights {path} are missing: reinstall adpc")
    return path


def load_shipped(name: str = "w18_small_v2", **overrides) -> ADPCNet:
    """The shipped model, its config (and calibrated threshold) taken from the checkpoint."""
    model = load_trained(shipped_weights(name))
    wanted = model_config(name, **overrides)
    saved = model.config
    for key in ("num_classes", "exits", "head_channels", "fill_window"):
        if key in overrides and getattr(wanted, key) != getattr(saved, key):
            raise CheckpointError(
                f"the shipped {name} model has {key}={getattr(saved, key)!r}, not "
                f"{getattr(wanted, key)!r}: train your own with `adpc train`"
            )
    if "threshold" in overrides:
        model.config = ADPCConfig(**{**saved.to_dict(), "threshold": overrides["threshold"]})
    return model


# ------------------------------------------------------------------------------- loading
_WRAPPER_KEYS = ("state_dict", "model_state", "model")
_PREFIXES = ("module.", "model.")
_TIMM_CLASSIFIER = re.compile(r"^(incre_modules|downsamp_modules|final_layer|classifier)\.")
_ADPC_ADDITION = re.compile(r"^exit\d\.|\.fill\.Lambda$")


@dataclass
class LoadReport:
    """What a load did: keys filled by the model's own init, and keys deliberately dropped."""

    loaded: list[str] = field(default_factory=list)
    initialised: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)


def read_checkpoint(path: str | Path) -> object:
    """Read a local checkpoint file safely (weights only: tensors and plain containers)."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist: pass the path of a local file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # truncated, corrupt or pickled-code files all land here
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"cannot read checkpoint {path} ({first[:160]}): the file is corrupt, truncated "
            "or not a weights-only torch checkpoint; re-export it with torch.save(state_dict)"
        ) from None
    return obj


def read_state_dict(path: str | Path) -> dict[str, Tensor]:
    """Read a state dict from a local file safely, unwrapping the usual containers."""
    obj = read_checkpoint(path)
    while isinstance(obj, Mapping) and not _is_state_dict(obj):
        inner = next((obj[k] for k in _WRAPPER_KEYS if k in obj), None)
        if inner is None:
            raise CheckpointError(
                f"checkpoint {path} holds no state dict (keys: {', '.join(list(obj)[:6])})"
            )
        obj = inner
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"checkpoint {path} holds a {type(obj).__name__}, not a state dict")
    return {_strip_prefix(k): v for k, v in obj.items()}


def _is_state_dict(obj: Mapping) -> bool:
    return bool(obj) and all(isinstance(v, Tensor) for v in obj.values())


def _strip_prefix(key: str) -> str:
    for prefix in _PREFIXES:
        if key.startswith(prefix):
            return key[len(prefix):]
    return key


def adapt_state_dict(state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """Map official HRNet, timm and ADP-C reference keys onto ours.

    Reference ADP-C convs keep `Lambda` on the conv and a `square_dis` table; ours keep
    Lambda in the `fill` submodule and rebuild the table. timm's classification modules are
    dropped. Returns (adapted state, dropped keys).
    """
    adapted: dict[str, Tensor] = {}
    dropped: list[str] = []
    for key, value in state.items():
        if _TIMM_CLASSIFIER.match(key) or key.endswith(".square_dis"):
            dropped.append(key)
        elif key.endswith(".Lambda") and not key.endswith(".fill.Lambda"):
            adapted[key[: -len("Lambda")] + "fill.Lambda"] = value
        else:
            adapted[key] = value
    return adapted, dropped


def load_pretrained(model: ADPCNet, path: str | Path) -> LoadReport:
    """Load a local checkpoint; every backbone key must be present and fit.

    Keys the ADP-C model adds to HRNet (exit heads, fill Lambdas) and the final head (absent
    from ImageNet backbones) may be missing: they keep their initialisation and are listed in
    the report.
    """
    state, dropped = adapt_state_dict(read_state_dict(path))
    own = model.state_dict()
    unexpected = [k for k in state if k not in own]
    if unexpected:
        raise CheckpointError(
            f"checkpoint {path} has {len(unexpected)} key(s) this {model.config.backbone} model "
            f"lacks, first {unexpected[0]!r}: check --model (w18_small_v2, w18, w32, w48)"
        )
    for key, value in state.items():
        if own[key].shape != value.shape:
            raise CheckpointError(
                f"checkpoint {path}: {key} has shape {tuple(value.shape)}, the model expects "
                f"{tuple(own[key].shape)}: check --model, --num-classes and --head-channels"
            )
    missing = [k for k in own if k not in state]
    essential = [
        k for k in missing if not (_ADPC_ADDITION.search(k) or k.startswith("last_layer."))
    ]
    if essential:
        raise CheckpointError(
            f"checkpoint {path} lacks {len(essential)} backbone key(s), first {essential[0]!r}: "
            f"it is not a {model.config.backbone} HRNet checkpoint: check --model"
        )
    model.load_state_dict(state, strict=False)
    return LoadReport(loaded=list(state), initialised=missing, ignored=dropped)


def load_trained(path: str | Path) -> ADPCNet:
    """Rebuild a model from a checkpoint written by `adpc train` (config + weights)."""
    ckpt = read_checkpoint(path)
    if not isinstance(ckpt, Mapping) or "model_config" not in ckpt or "model" not in ckpt:
        raise CheckpointError(
            f"{path} is not an adpc training checkpoint (no model_config): for HRNet or "
            "reference weights use create_model(name, pretrained=path)"
        )
    try:
        config = ADPCConfig(**{k: v for k, v in ckpt["model_config"].items()})
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} has an unusable model_config: {exc}") from None
    model = ADPCNet(config)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0]
        raise CheckpointError(f"{path}: weights do not fit its own config ({first})") from None
    return model


def load_any(path: str | Path):
    """A float model (`adpc train`'s last.pt, a packed model) or a QAT model (qat.pt)."""
    ckpt = read_checkpoint(path)
    if isinstance(ckpt, Mapping) and ckpt.get("format") == "adpc-qat":
        from .quantize import load_qat  # lazy: quantize imports this module

        return load_qat(path).eval()
    return load_trained(path)


def save_checkpoint(obj: object, path: str | Path) -> Path:
    """Write atomically: a temp file in the same folder, then rename."""
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)
    return Path(path)


__all__ = [
    "CheckpointError",
    "load_any",
    "LoadReport",
    "create_model",
    "list_models",
    "load_pretrained",
    "load_trained",
    "model_config",
    "read_checkpoint",
    "read_state_dict",
    "register",
    "save_checkpoint",
]
