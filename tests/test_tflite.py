"""TFLite (LiteRT): the shipped model's stages as signatures of one .tflite, run by ai-edge-litert.

One fp32 and one int8 bundle per module (litert conversion dominates the run time); the parity
checks drive them through the numpy host loop every runtime uses (edge.runtime.iter_exits).
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from conftest import assert_damaged_files_rejected, imported_top_level

from converters.convert import convert_stages
from converters.verify import check_backend, frames_for
from edge.backends import BackendUnavailable, open_backend
from edge.backends.tflite import ordered_names, runtime_available
from edge.bundle import BundleError, read_bundle
from edge.runtime import iter_exits

pytest.importorskip("litert_torch", reason="pip install 'adpc[tflite]'")
pytest.importorskip("ai_edge_litert.interpreter", reason="pip install 'adpc[tflite]'")

METHODS = ("stage1", "stage2", "stage3", "stage4")


@pytest.fixture(scope="module")
def fp32_bundle(fp32_stages, tmp_path_factory):
    out = tmp_path_factory.mktemp("tflite") / "fp32"
    return convert_stages(out, fp32_stages, ["tflite"], {"checkpoint": "in memory"})


@pytest.fixture(scope="module")
def int8_bundle(int8_stages, tmp_path_factory):
    out = tmp_path_factory.mktemp("tflite") / "int8"
    return convert_stages(out, int8_stages, ["tflite"])


def test_signature_names_order_by_index_not_by_name():
    names = {f"args_{i}": i for i in (10, 2, 0, 1, 3, 4, 5, 6, 7, 8, 9)}
    assert ordered_names(names) == [f"args_{i}" for i in range(11)]
    with pytest.raises(ValueError, match="not numbered"):
        ordered_names(["output_0", "output_2"])


def test_one_file_with_a_signature_per_stage(fp32_bundle):
    (entry,) = read_bundle(fp32_bundle.bundle).files_for("tflite", "fp32")
    assert entry.path == "tflite/stages_fp32.tflite" and entry.methods == METHODS
    for spec, k in zip(fp32_bundle.manifest.stages, range(1, 5), strict=True):
        own = entry.io[f"stage{k}"]
        assert [t.name for t in own.inputs] == [t.name for t in spec.inputs]
        assert [t.shape for t in own.outputs] == [t.shape for t in spec.outputs]
        assert {(t.dtype, t.layout, t.quantization) for t in (*own.inputs, *own.outputs)} == {
            ("float32", "NCHW", None)}
    (result,) = fp32_bundle.outputs
    assert [r["stage"] for r in result.report] == [1, 2, 3, 4]
    assert all(r["op_types"].get("CONV_2D", 0) > 0 for r in result.report)


def test_fp32_matches_pytorch_exit_by_exit(fp32_bundle, fp32_stages):
    threshold = fp32_bundle.manifest.threshold
    frames = frames_for(fp32_bundle.manifest, 2)
    result = check_backend(fp32_bundle.bundle, fp32_bundle.manifest, "tflite", "fp32",
                           fp32_stages.reference, frames, threshold)
    assert result.status == "pass", result.reason
    for e in result.exits:
        assert e.max_abs <= 1e-3 and e.agreement >= 0.999
        assert e.mask_agreement is None or e.mask_agreement >= 0.999
    with open_backend("tflite", fp32_bundle.bundle) as backend:  # carry-over was exercised
        steps = list(iter_exits(backend, frames[0][0].numpy(), threshold))
    assert steps[-1].masked_fraction > 0.05


def test_int8_file_has_int8_io_and_weights(int8_bundle, fp32_bundle):
    (entry,) = int8_bundle.manifest.files_for("tflite", "int8")
    image = entry.io["stage1"].inputs[0]
    assert image.dtype == "int8" and image.quantization is not None
    assert entry.io["stage2"].inputs[0].dtype == "int8"  # branch features cross as int8
    (fp32_file,) = fp32_bundle.manifest.files_for("tflite", "fp32")
    assert entry.bytes < 0.5 * fp32_file.bytes
    (result,) = int8_bundle.outputs
    assert result.report[0]["int8_ops"] == result.report[0]["ops"]  # stage 1: no masks


def test_int8_agrees_with_the_int8_pytorch_model(int8_bundle, int8_stages):
    # 8 frames: exit 1's logits are int8 themselves, so 1-LSB rounding differences flip
    # near-tied pixels; 2 frames measured 97.9% there, 8 frames 98.7% (all exits >= 98.6%)
    frames = frames_for(int8_bundle.manifest, 8)
    result = check_backend(int8_bundle.bundle, int8_bundle.manifest, "tflite", "int8",
                           int8_stages.reference, frames, int8_bundle.manifest.threshold)
    assert result.status == "pass", result.reason
    assert all(e.agreement >= 0.98 for e in result.exits)


def test_threads_and_bad_inputs(int8_bundle):
    with open_backend("tflite", int8_bundle.bundle, "int8", threads=2) as backend:
        image = np.zeros((1, 3, 64, 128), np.float32)
        with pytest.raises(ValueError, match="resized to the bundle size"):
            backend.run_stage(1, [np.zeros((1, 3, 32, 128), np.float32)])
        feats, logits = backend.run_stage(1, [image])
        assert feats.shape == (1, 256, 16, 32) and logits.shape == (1, 19, 16, 32)
        assert logits.dtype == np.float32 and np.isfinite(logits).all()


def test_corrupt_and_truncated_files_are_rejected(int8_bundle, tmp_path):
    assert_damaged_files_rejected(int8_bundle.bundle, tmp_path, "tflite", "int8",
                                  "not a loadable .tflite")


def test_io_that_does_not_match_the_file_is_rejected(fp32_bundle):
    manifest = fp32_bundle.manifest
    (entry,) = manifest.files_for("tflite")
    own = entry.io["stage2"]
    nhwc = replace(own, inputs=tuple(replace(t, layout="NHWC") for t in own.inputs))
    bad = replace(entry, io={**entry.io, "stage2": nhwc})
    with pytest.raises(BundleError, match="stage2 input x0 is float32 .*NHWC"):
        open_backend("tflite", fp32_bundle.bundle, manifest=replace(manifest, files=(bad,)))


def test_missing_runtime_names_the_install(fp32_bundle, monkeypatch):
    for name in ("ai_edge_litert", "ai_edge_litert.interpreter", "tflite_runtime",
                 "tflite_runtime.interpreter"):
        monkeypatch.setitem(sys.modules, name, None)
    assert not runtime_available()
    with pytest.raises(BackendUnavailable, match=r"pip install 'adpc\[tflite\]'"):
        open_backend("tflite", fp32_bundle.bundle)


def test_runtime_side_imports_no_training_code():
    path = Path(__file__).parents[1] / "edge" / "backends" / "tflite.py"
    assert not imported_top_level(path) & {"torch", "model_zoo", "converters", "litert_torch"}
