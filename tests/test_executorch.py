"""ExecuTorch: the shipped model's stages lowered to XNNPACK, run by the real runtime.

One fp32 and one int8 bundle per module (lowering dominates the run time); the parity checks
drive them through the numpy host loop every runtime uses (edge.runtime.iter_exits).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import assert_damaged_files_rejected

from converters.convert import convert_stages
from converters.verify import check_backend, frames_for
from edge.backends import BackendUnavailable, open_backend
from edge.backends.base import FileTensor, same_form
from edge.bundle import read_bundle
from edge.runtime import iter_exits

pytest.importorskip("executorch.runtime", reason="pip install 'adpc[executorch]'")


@pytest.fixture(scope="module")
def fp32_bundle(et_fp32_bundle):
    return et_fp32_bundle


@pytest.fixture(scope="module")
def int8_bundle(int8_stages, tmp_path_factory):
    out = tmp_path_factory.mktemp("et") / "int8"
    return convert_stages(out, int8_stages, ["executorch"])


@pytest.fixture(scope="module")
def frames(fp32_bundle):
    return frames_for(fp32_bundle.manifest, 2)


def test_one_program_with_a_method_per_stage(fp32_bundle):
    manifest = read_bundle(fp32_bundle.bundle)
    (entry,) = manifest.files_for("executorch", "fp32")
    assert entry.methods == ("stage1", "stage2", "stage3", "stage4")
    assert entry.path.endswith(".pte")
    assert manifest.provenance == {"checkpoint": "in memory"}


def test_stages_are_delegated_to_xnnpack(fp32_bundle):
    (result,) = fp32_bundle.outputs
    report = {r["stage"]: r for r in result.report}
    assert report[1]["delegated_fraction"] == 1.0  # stem, layer1, exit 1: no masks
    for k in (2, 3, 4):
        # only the mask's strided slices stay outside (portable slice_copy, a few per stage)
        assert report[k]["delegated_fraction"] >= 0.97, report[k]
        assert set(report[k]["not_delegated"]) <= {"slice_copy"}
        assert report[k]["delegates"] == 1


def test_fp32_matches_pytorch_exit_by_exit(fp32_bundle, fp32_stages, frames):
    threshold = fp32_bundle.manifest.threshold
    result = check_backend(fp32_bundle.bundle, fp32_bundle.manifest, "executorch", "fp32",
                           fp32_stages.reference, frames, threshold)
    assert result.status == "pass", result.reason
    for e in result.exits:
        assert e.max_abs <= 1e-3 and e.agreement >= 0.999
        assert e.mask_agreement is None or e.mask_agreement >= 0.999
    # the threshold really masked pixels, so carry-over was exercised
    with open_backend("executorch", fp32_bundle.bundle) as backend:
        steps = list(iter_exits(backend, frames[0][0].numpy(), threshold))
    assert steps[-1].masked_fraction > 0.05


def test_int8_agrees_with_the_int8_pytorch_model(int8_bundle, int8_stages, frames, fp32_bundle):
    threshold = int8_bundle.manifest.threshold
    result = check_backend(int8_bundle.bundle, int8_bundle.manifest, "executorch", "int8",
                           int8_stages.reference, frames, threshold)
    assert result.status == "pass", result.reason
    assert all(e.agreement >= 0.98 for e in result.exits)
    (int8_file,) = int8_bundle.manifest.files_for("executorch", "int8")
    (fp32_file,) = fp32_bundle.manifest.files_for("executorch", "fp32")
    assert int8_file.bytes < 0.5 * fp32_file.bytes  # int8 weights really are int8


def test_threads_and_bad_inputs(fp32_bundle):
    with open_backend("executorch", fp32_bundle.bundle, threads=1) as backend:
        image = np.zeros((1, 3, 64, 128), np.float32)
        with pytest.raises(ValueError, match="resized to the bundle size"):
            backend.run_stage(1, [np.zeros((1, 3, 32, 128), np.float32)])
        with pytest.raises(ValueError, match="takes 1 inputs"):
            backend.run_stage(1, [image, image])
        (feats, logits) = backend.run_stage(1, [image])
        assert logits.shape == (1, 19, 16, 32) and logits.dtype == np.float32
        assert torch.isfinite(torch.from_numpy(logits)).all()


def test_missing_backend_names_the_fix(fp32_bundle):
    with pytest.raises(BackendUnavailable, match="adpc convert --backend tflite"):
        open_backend("tflite", fp32_bundle.bundle, "fp32")
    with pytest.raises(BackendUnavailable, match="unknown backend"):
        open_backend("onnx", fp32_bundle.bundle)


def test_corrupt_and_truncated_programs_are_rejected(fp32_bundle, tmp_path):
    assert_damaged_files_rejected(fp32_bundle.bundle, tmp_path, "executorch", "fp32",
                                  "not a loadable ExecuTorch program")


# ------------------------------------------------------------------------ int8 sparse mode
@pytest.fixture(scope="module")
def int8_sparse_bundle(int8_stages, tmp_path_factory):
    import dataclasses

    out = tmp_path_factory.mktemp("et") / "int8_sparse"
    return convert_stages(out, dataclasses.replace(int8_stages, sparse=True), ["executorch"])


def test_int8_fusion_takes_every_3x3_masked_conv(int8_stages):
    """Each int8 masked conv chain becomes one op; the ones left keep a float result."""
    from collections import Counter
    from operator import attrgetter

    from converters.export import export_stage, fold_constants
    from model_zoo.qsparse import fuse_masked_convs

    for k in (2, 3, 4):
        gm = export_stage(int8_stages, k).module()
        fold_constants(gm)
        report = fuse_masked_convs(gm)
        ops = Counter(str(n.target) for n in gm.graph.nodes if n.op == "call_function")
        assert ops["adpc.qmasked_conv2d.default"] == report.fused >= 10
        assert report.with_residual >= 4  # BasicBlocks: BN -> + residual -> ReLU in the op
        # the final head's first conv: only the class conv (1x1, same mask) reads its fill
        assert report.dead_fills == (1 if k == 4 else 0)
        # what stays is a 1x1 conv whose BN output is read in float (fuse upsampling, heads)
        left = [n for n in gm.graph.nodes if n.name in report.left]
        weights = [attrgetter(n.args[1].args[0].target)(gm) for n in left]
        assert weights and all(w.shape[-1] == 1 for w in weights), report.left
        assert set(report.left.values()) <= {
            "the ReLU output is not quantised", "no BN after the fill",
            "the BN output stays float (read by an upsample, a pool or the logits)"}


def test_int8_sparse_pte_agrees_with_the_int8_dense_masked_pte(int8_sparse_bundle, int8_bundle,
                                                             frames):
    """Same answers as the dense-masked int8 program: >= 99.5% of argmax pixels and masks."""
    manifest = int8_sparse_bundle.manifest
    (entry,) = manifest.files_for("executorch", "int8")
    assert entry.kernels == ("adpc::qmasked_conv2d",) and entry.path.endswith("_sparse.pte")
    report = {r["stage"]: r for r in int8_sparse_bundle.outputs[0].report}
    for k in (2, 3, 4):
        assert report[k]["not_delegated"].get("qmasked_conv2d", 0) >= 10
    threshold = manifest.threshold
    with open_backend("executorch", int8_sparse_bundle.bundle, "int8") as sparse, \
            open_backend("executorch", int8_bundle.bundle, "int8") as dense:
        # features cross each boundary as the int8 NHWC tensors the next stage takes
        feats = sparse.run_stage(1, [frames[0][0].numpy()])[:-1]
        wanted = sparse.method_io(2)[0][:-1]
        assert all(isinstance(f, FileTensor) and f.data.dtype == np.int8 and f.data.shape ==
                   (1, *f.shape[2:], f.shape[1]) and same_form(f.spec, t)
                   for f, t in zip(feats, wanted, strict=True))
        masked = 0.0
        for image, _ in frames:
            mine = list(iter_exits(sparse, image.numpy(), threshold))
            theirs = list(iter_exits(dense, image.numpy(), threshold))
            assert len(mine) == len(theirs) == 4
            for a, b in zip(mine, theirs, strict=True):
                assert (a.logits.argmax(1) == b.logits.argmax(1)).mean() >= 0.995
                if a.mask is not None:
                    assert (a.mask == b.mask).mean() >= 0.995
            masked = max(masked, mine[-1].masked_fraction)
    assert masked > 0.05  # the masks really skipped pixels


def test_int8_sparse_pte_verifies_against_the_int8_pytorch_model(int8_sparse_bundle,
                                                                int8_stages, frames):
    result = check_backend(int8_sparse_bundle.bundle, int8_sparse_bundle.manifest, "executorch",
                           "int8", int8_stages.reference, frames,
                           int8_sparse_bundle.manifest.threshold)
    assert result.status == "pass", result.reason
