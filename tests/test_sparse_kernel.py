"""The native block-sparse masked conv: exact against the dense-masked reference, everywhere.

- the C++ core alone (tests/../edge/kernels/test_core.cpp), natively and for aarch64 under qemu;
- the PyTorch op against `reference_masked_conv2d` on every shape class of the model;
- a whole model in sparse mode against the dense-masked model (PyTorch and ExecuTorch).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zlib

import pytest
import torch
from conftest import CONVERT_SIZE, calibrate_heads, lively_init, median_exit1_confidence

from edge.bundle import BundleError, read_bundle
from edge.kernels.build import SOURCE_DIR, KernelUnavailable, build, executorch_library
from edge.kernels.torch_op import (
    fill_taps,
    masked_conv2d,
    pack_weight,
    reference_masked_conv2d,
)
from model_zoo.masking import MaskFill
from model_zoo.sparse import SparseConv, sparsify

CORE_TEST = SOURCE_DIR / "test_core.cpp"


def _compile_and_run(cxx: str, runner: list[str], tmp_path, extra: list[str],
                     source=CORE_TEST) -> str:
    """Compile a dependency-free C++ driver, run it (under `runner`), expect "0 failed"."""
    binary = tmp_path / source.stem
    subprocess.run([cxx, "-O2", "-std=c++17", f"-I{SOURCE_DIR}", str(source), "-o",
                    str(binary), *extra], check=True, capture_output=True, text=True)
    result = subprocess.run([*runner, str(binary)], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-1000:]
    assert "0 failed" in result.stdout
    return result.stdout


def test_core_is_exact_natively(tmp_path):
    cxx = shutil.which("g++")
    if cxx is None:
        pytest.skip("no g++: the sparse kernel needs a C++ compiler (apt-get install g++)")
    out = _compile_and_run(cxx, [], tmp_path, [])
    assert out.count("ok  ") >= 35  # every shape class x mask kind ran


def test_core_is_exact_on_aarch64_under_qemu(tmp_path):
    cxx, qemu = shutil.which("aarch64-linux-gnu-g++"), shutil.which("qemu-aarch64-static")
    if cxx is None or qemu is None:
        pytest.skip("aarch64 cross check needs Debian g++-aarch64-linux-gnu and "
                    "qemu-user-static (`make cross-tools` installs them as root)")
    # -static: the binary needs no aarch64 sysroot at run time.
    out = _compile_and_run(cxx, [qemu], tmp_path, ["-static"])
    assert out.count("ok  ") >= 35


def test_core_uses_no_machine_specific_flags():
    """Portable build: no -march anywhere. Intrinsics only in the int8 core, whose ISA paths are
    target-attributed functions picked at run time from what the CPU reports."""
    from edge.kernels import build as build_module

    for path in SOURCE_DIR.glob("*.[ch]*"):
        text = path.read_text()
        if path.name == "qmasked_conv.h":
            assert "__builtin_cpu_supports" in text and "getauxval" in text
            continue
        assert "immintrin" not in text and "arm_neon" not in text, path
    assert not any("march" in flag for flag in build_module.FLAGS)


# ------------------------------------------------------------------------- PyTorch op
SHAPES = [  # cin, cout, k, stride, h, w, bias: every conv class the model masks
    (18, 18, 3, 1, 17, 23, False),    # branch BasicBlock, odd size
    (36, 36, 3, 1, 16, 20, False),
    (18, 36, 3, 2, 15, 13, False),    # stride-2 transition / fuse, odd size
    (72, 144, 3, 2, 9, 11, False),
    (144, 18, 1, 1, 12, 10, False),   # fuse 1x1 (then upsampled)
    (270, 19, 1, 1, 8, 16, True),     # head class conv with bias
    (64, 64, 1, 1, 4, 8, True),       # redesigned-head conv at a coarse scale
]


def _mask(kind: str, h: int, w: int, gen: torch.Generator) -> torch.Tensor:
    if kind == "zeros":
        return torch.zeros(2, 1, h, w)
    if kind == "ones":
        return torch.ones(2, 1, h, w)
    if kind == "scattered":
        return (torch.rand(2, 1, h, w, generator=gen) < 0.3).float()
    coarse = torch.rand(2, 1, max(1, h // 4), max(1, w // 4), generator=gen)
    up = torch.nn.functional.interpolate(coarse, size=(h, w), mode="bilinear")
    return (up < 0.4).float()  # clustered blobs touching the borders


def _taps(window: int = 7) -> torch.Tensor:
    fill = MaskFill(window)
    with torch.no_grad():
        fill.Lambda.fill_(0.6)  # a wide kernel: fills reach 3 pixels, borders matter
        return fill_taps(*fill.taps())


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}to{s[1]}k{s[2]}s{s[3]}")
@pytest.mark.parametrize("kind", ["zeros", "ones", "scattered", "clustered"])
def test_op_matches_reference(shape, kind):
    cin, cout, k, stride, h, w, has_bias = shape
    gen = torch.Generator().manual_seed(zlib.crc32(repr((shape, kind)).encode()))
    x = torch.randn(2, cin, h, w, generator=gen)
    weight = pack_weight(torch.randn(cout, cin, k, k, generator=gen) / (cin * k * k) ** 0.5)
    bias = torch.randn(cout, generator=gen) if has_bias else None
    ho, wo = (h + 2 * (k // 2) - k) // stride + 1, (w + 2 * (k // 2) - k) // stride + 1
    mask = _mask(kind, ho, wo, gen)
    scale, shift = torch.rand(cout, generator=gen) + 0.5, torch.randn(cout, generator=gen)
    residual = torch.randn(2, cout, ho, wo, generator=gen)
    for epilogue in ({}, {"scale": scale, "shift": shift, "relu": True},
                     {"scale": scale, "shift": shift, "residual": residual, "relu": True}):
        args = (x, weight, bias, mask, _taps(), stride, k // 2, cout)
        ours = masked_conv2d(*args, epilogue.get("scale"), epilogue.get("shift"),
                             epilogue.get("residual"), epilogue.get("relu", False))
        ref = reference_masked_conv2d(*args, **epilogue)
        assert ours.is_contiguous(memory_format=torch.channels_last)
        scale_ref = float(ref.abs().max()) or 1.0
        assert float((ours - ref).abs().max()) <= 1e-5 * scale_ref, epilogue.keys()


def test_skipped_pixels_far_from_active_ones_are_exactly_zero_before_the_epilogue():
    x = torch.randn(1, 18, 32, 32)
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., 2:4, 2:4] = 1  # fill reaches rows/cols 0..6 only (window 7)
    out = masked_conv2d(x, pack_weight(torch.randn(18, 18, 3, 3)), None, mask, _taps(), 1, 1, 18,
                        None, None, None, False)
    assert float(out[..., 8:, :].abs().max()) == 0.0
    assert float(out[..., :7, :7].abs().max()) > 0.0


def test_op_rejects_a_mask_of_the_wrong_size():
    x = torch.randn(1, 18, 16, 16)
    with pytest.raises(ValueError, match="mask must be"):
        masked_conv2d(x, pack_weight(torch.randn(18, 18, 3, 3)), None, torch.ones(1, 1, 8, 8),
                      None, 1, 1, 18, None, None, None, False)


def test_torch_export_captures_the_op():
    conv = SparseConv(_masked_conv(18, 18, 3, 1), torch.nn.BatchNorm2d(18).eval(), relu=True)
    from model_zoo.masking import MaskPyramid

    class Wrap(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = conv

        def forward(self, x, mask):
            return self.conv(x, MaskPyramid(mask))

    program = torch.export.export(Wrap(), (torch.randn(1, 18, 16, 16), torch.ones(1, 1, 16, 16)))
    targets = [str(n.target) for n in program.graph.nodes if n.op == "call_function"]
    assert "adpc.masked_conv2d.default" in targets
    assert not any("convolution" in t for t in targets)  # no dense conv left


def _masked_conv(cin, cout, k, stride):
    from model_zoo.masking import MaskedConv2d

    return MaskedConv2d(cin, cout, k, stride, k // 2)


# ------------------------------------------------------------------------- whole model
@pytest.fixture(scope="module")
def lively_model(image):
    from model_zoo import create_model

    model = lively_init(create_model("w18_small_v2", threshold=None), seed=3).eval()
    calibrate_heads(model)
    return model, median_exit1_confidence(model, image)


def test_sparse_model_matches_the_dense_masked_model(lively_model, image):
    model, threshold = lively_model
    fast = sparsify(model)
    assert any(isinstance(m, SparseConv) for m in fast.modules())
    assert not any(isinstance(m, SparseConv) for m in model.modules())  # original untouched
    with torch.no_grad():
        dense, sparse = model(image, threshold), fast(image, threshold)
        off_dense, off_sparse = model(image, None), fast(image, None)
    fractions = [float(f.mean()) for f in dense.masked_fractions]
    assert all(0.05 < f < 0.95 for f in fractions[:1]), fractions  # masks are not trivial
    for a, b in zip(dense.logits + off_dense.logits, sparse.logits + off_sparse.logits,
                    strict=True):
        assert float((a.argmax(1) == b.argmax(1)).float().mean()) >= 0.9999
        assert float((a - b).abs().max()) <= 1e-3
    for ma, mb in zip(dense.masks, sparse.masks, strict=True):
        assert torch.equal(ma, mb)


def test_sparse_mode_refuses_the_plain_hrnet():
    from model_zoo import create_model

    with pytest.raises(ValueError, match="no masked convs"):
        sparsify(create_model("w18_small_v2", exits="none", threshold=None))


# ------------------------------------------------------------------------- ExecuTorch
@pytest.fixture(scope="module")
def sparse_bundle(shipped_source, tmp_path_factory):
    pytest.importorskip("executorch.runtime", reason="pip install 'adpc[executorch]'")
    from converters.convert import convert_stages
    from converters.export import stage_set

    stages = stage_set(shipped_source, "fp32", *CONVERT_SIZE, sparse=True)
    out = tmp_path_factory.mktemp("sparse") / "bundle"
    return convert_stages(out, stages, ["executorch"], {"checkpoint": "in memory"})


def test_sparse_pte_runs_the_kernel_inside_executorch(sparse_bundle):
    from converters.verify import verify_bundle

    manifest = sparse_bundle.manifest
    (entry,) = manifest.files
    assert entry.kernels == ("adpc::masked_conv2d",) and entry.path.endswith("_sparse.pte")
    report = {r["stage"]: r for r in sparse_bundle.outputs[0].report}
    assert report[1]["not_delegated"].get("masked_conv2d", 0) == 0  # stage 1 is never masked
    for k in (2, 3, 4):
        assert report[k]["not_delegated"].get("masked_conv2d", 0) > 5
    (parity,) = verify_bundle(sparse_bundle.bundle, frames=2,
                              references={"fp32": sparse_bundle.stages.reference})
    assert parity.status == "pass", parity.reason
    for e in parity.exits:
        assert e.agreement >= 0.9999 and e.max_abs <= 1e-3


def test_unknown_kernel_in_a_manifest_is_refused(sparse_bundle, tmp_path):
    folder = tmp_path / "b"
    shutil.copytree(sparse_bundle.bundle, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["files"][0]["kernels"] = ["adpc::does_not_exist"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="kernels"):
        read_bundle(folder)


def test_kernel_library_build_is_cached_and_named_by_its_inputs():
    pytest.importorskip("executorch", reason="pip install 'adpc[executorch]'")
    first = build(executorch_library())
    assert build(executorch_library()) == first and first.exists()


def test_without_a_compiler_the_op_falls_back_to_the_reference_with_a_warning(tmp_path):
    code = (
        "import warnings, torch\n"
        "from edge.kernels.torch_op import masked_conv2d, pack_weight, reference_masked_conv2d\n"
        "x = torch.randn(1, 4, 8, 8); w = pack_weight(torch.randn(4, 4, 3, 3))\n"
        "m = (torch.rand(1, 1, 8, 8) < 0.5).float(); t = torch.ones(7) / 10\n"
        "with warnings.catch_warnings(record=True) as caught:\n"
        "    warnings.simplefilter('always')\n"
        "    out = masked_conv2d(x, w, None, m, t, 1, 1, 4, None, None, None, False)\n"
        "ref = reference_masked_conv2d(x, w, None, m, t, 1, 1, 4)\n"
        "assert torch.allclose(out, ref)\n"
        "print([str(c.message) for c in caught])\n"
    )
    env = {**os.environ, "CXX": "/nonexistent/g++", "ADPC_CACHE": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=env, cwd=SOURCE_DIR.parents[1])
    assert result.returncode == 0, result.stderr[-2000:]
    assert "sparse kernel unavailable" in result.stdout and "CXX=/nonexistent" in result.stdout


def test_missing_compiler_is_one_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("CXX", "/nonexistent/g++")
    monkeypatch.setenv("ADPC_CACHE", str(tmp_path))
    with pytest.raises(KernelUnavailable, match="no C\\+\\+ compiler"):
        build(executorch_library())
