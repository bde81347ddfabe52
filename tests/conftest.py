"""Shared fixtures: small models whose confidences actually vary, and the HRNet key fixture."""

from __future__ import annotations

import ast
import json
import math
import os
from pathlib import Path

import pytest
import torch
from torch import nn

from model_zoo import create_model
from model_zoo.masking import confidence

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two workers share two cores: one thread each, or spinning OpenMP / XNNPACK threads of
    # one worker stall the other (measured: 40x slower training steps under contention).
    torch.set_num_threads(1)
    try:
        from executorch.extension.pybindings.portable_lib import _unsafe_reset_threadpool
    except ImportError:
        pass
    else:
        _unsafe_reset_threadpool(1)

FIXTURE_KEYS = Path(__file__).resolve().parent / "fixtures" / "hrnet_official_state_dict_keys.json"
"""Official HRNet segmentation keys, shapes and parameter counts (copied from shared/fixtures)."""


@pytest.fixture(scope="session")
def official_keys() -> dict:
    return json.loads(FIXTURE_KEYS.read_text())


def lively_init(model: nn.Module, seed: int = 0) -> nn.Module:
    """He-initialise convs so logits are large enough for confidences to spread out.

    The reference init (std 0.001) makes every logit ~0 and every pixel unconfident.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=gen) * math.sqrt(2.0 / fan_in))
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.5)
    calibrate_heads(model)
    return model


def calibrate_heads(model, target_std: float = 2.0) -> None:
    """Scale each exit's class conv so its logits have a similar spread at every exit.

    Without it, residual growth makes the later exits' random logits huge and every pixel
    confident, which would leave nothing for the later masks to test.
    """
    x = torch.randn(1, 3, 64, 128, generator=torch.Generator().manual_seed(7))
    was_training = model.training
    model.eval()
    with torch.no_grad():
        outputs = model(x, threshold=None)
        for k, logits in zip(model.config.exit_stages, outputs.logits, strict=True):
            head = model.head(k)
            scale = target_std / float(logits.std())
            head[-1].weight.mul_(scale)
            head[-1].bias.mul_(scale)
    model.train(was_training)


def median_exit1_confidence(model, x: torch.Tensor) -> float:
    with torch.no_grad():
        _, logits = model.run_stage(1, x)
    return float(confidence(logits).median())


@pytest.fixture(scope="session")
def image() -> torch.Tensor:
    return torch.randn(2, 3, 64, 128, generator=torch.Generator().manual_seed(1))


@pytest.fixture(scope="session")
def adaptive_model(image):
    """A W18-Small-v2 ADP-C model in eval mode with a threshold that masks about half the map."""
    model = lively_init(create_model("w18_small_v2", threshold=None)).eval()
    threshold = median_exit1_confidence(model, image)
    return model, threshold


def imported_top_level(path: Path) -> set[str]:
    """Top-level package names a source file imports (absolute imports only)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


CONVERT_SIZE = (64, 128)
"""Small input for converter tests: every backend converts and runs all four stages quickly."""


@pytest.fixture(scope="session")
def shipped_source():
    """The shipped float model (and its QAT twin when shipped), as converters load it."""
    from converters.export import load_source

    return load_source(None)


@pytest.fixture(scope="session")
def fp32_stages(shipped_source):
    from converters.export import stage_set

    return stage_set(shipped_source, "fp32", *CONVERT_SIZE)


@pytest.fixture(scope="session")
def int8_stages(shipped_source):
    """int8 Q/DQ stage graphs (QAT when a QAT model ships, PTQ on synthetic scenes otherwise)."""
    pytest.importorskip("torchao.quantization.pt2e",
                        reason="int8 needs torchao (pip install 'adpc[executorch]')")
    from converters.export import stage_set

    return stage_set(shipped_source, "int8", *CONVERT_SIZE)


@pytest.fixture(scope="session")
def et_fp32_bundle(fp32_stages, tmp_path_factory):
    """The shipped model's fp32 ExecuTorch bundle at CONVERT_SIZE (a ConvertResult)."""
    pytest.importorskip("executorch.runtime", reason="pip install 'adpc[executorch]'")
    from converters.convert import convert_stages

    out = tmp_path_factory.mktemp("et") / "fp32"
    return convert_stages(out, fp32_stages, ["executorch"], {"checkpoint": "in memory"})


def assert_damaged_files_rejected(bundle, tmp_path, backend: str, precision: str,
                                  load_error: str) -> None:
    """Truncated and same-size corrupt copies of a backend's file: read_bundle names the
    problem, and a runtime handed the file without the checks fails in one line."""
    import shutil

    from edge.backends import open_backend
    from edge.bundle import BundleError, read_bundle

    copy = tmp_path / "damaged"
    shutil.copytree(bundle, copy)
    manifest = read_bundle(copy)
    (entry,) = manifest.files_for(backend, precision)
    path = copy / entry.path
    data = path.read_bytes()
    corrupt = bytearray(data)
    corrupt[:64] = bytes(64)  # same size, broken header
    for damaged, problem in ((data[: len(data) // 2], "truncated"), (bytes(corrupt), "sha256")):
        path.write_bytes(damaged)
        with pytest.raises(BundleError, match=problem):
            read_bundle(copy)
        with pytest.raises(BundleError, match=load_error) as info:
            open_backend(backend, copy, precision, manifest=manifest)
        assert "\n" not in str(info.value)
