"""Core ML: every stage converts, its spec matches the contract, the zips checksum in a bundle.

Core ML cannot predict on Linux: here the packages are spec-validated and the backend must
refuse to open with the macOS message; the numeric parity test runs on macOS only.
"""

from __future__ import annotations

import hashlib
import sys
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import imported_top_level

from converters import coreml
from converters.export import ExportError, calibration_images
from converters.stages import build_manifest
from edge.backends import BackendUnavailable, open_backend
from edge.backends.coreml import runtime_available, unpack_mlpackage
from edge.bundle import BundleError, read_bundle, write_bundle
from edge.host import carry_over, compute_mask

pytest.importorskip("coremltools", reason="Core ML conversion needs coremltools "
                    "(pip install 'adpc[coreml]')")

AGREEMENT = {"fp16": 0.98, "int8": 0.95}
"""Per-exit argmax agreement with PyTorch that the macOS parity test demands."""


@pytest.fixture(scope="module", params=["fp32", "int8"])
def converted(request, tmp_path_factory):
    """(stage set, BackendFiles, bundle folder), converted once per precision."""
    stages = request.getfixturevalue(f"{request.param}_stages")
    work = tmp_path_factory.mktemp(f"coreml_{request.param}")
    files = coreml.convert(stages, work / "work")
    manifest = build_manifest(stages.config, stages.height, stages.width)
    bundle = write_bundle(work / "bundle", manifest, files.files)
    return stages, files, bundle


def _sha(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_every_stage_spec_matches_the_contract(converted):
    stages, files, _ = converted
    precision = files.precision
    assert precision == coreml.FILE_PRECISION[stages.precision]
    assert sorted(files.files) == [coreml.package_name(k, precision) for k in range(1, 5)]
    for io, row in zip(stages.io, files.report, strict=True):
        item = files.files[coreml.package_name(io.index, precision)]
        report = coreml.validate_spec(item.source, io, precision)
        assert [t["name"] for t in report["inputs"]] == [n for n, _ in io.inputs]
        assert [tuple(t["shape"]) for t in report["outputs"]] == [s for _, s in io.outputs]
        assert {t["dtype"] for t in report["inputs"] + report["outputs"]} == {"float32"}
        assert set(report["ops"]) <= coreml.EXPECTED_OPS[precision]
        assert not any("softmax" in op or "greater" in op or "less" in op or "reduce" in op
                       for op in report["ops"])
        assert report["compute_dtype"] == {"FLOAT16": report["ops"]["conv"]}
        assert report["deployment_target"] == coreml.TARGETS[precision]
        assert row["ops"] == report["ops"] and row["bytes"] == item.source.stat().st_size
        assert (item.backend, item.precision, item.methods) == ("coreml", precision,
                                                                (f"stage{io.index}",))
    if precision == "int8":  # W8A8: int8 weights on every conv outside the float fills
        assert all(r["ops"]["quantize"] > 0 and r["ops"]["constexpr_affine_dequantize"] > 0
                   for r in files.report)


def test_renamed_outputs_are_recorded_in_the_file_io(converted):
    stages, files, _ = converted
    for io in stages.io:
        own = files.files[coreml.package_name(io.index, files.precision)].io
        if io.index in (2, 3):  # x0 (and x1) are read and written: Core ML needs two names
            outputs = [t.name for t in own[f"stage{io.index}"].outputs]
            assert outputs == coreml.output_names(io) and "x0_out" in outputs
        else:
            assert own == {}


def test_notes_say_parity_needs_macos(converted):
    _, files, _ = converted
    text = " ".join(files.notes)
    assert ("needs macOS" in text) == (sys.platform != "darwin")
    assert all(r["predicted"] == (sys.platform == "darwin") for r in files.report)


def test_reconversion_gives_the_same_bytes(converted, tmp_path):
    """Same model, same zip: ids are derived from paths, timestamps and modes fixed."""
    stages, files, _ = converted
    archive = coreml.write_package(coreml.convert_stage(stages, 1), tmp_path, 1, files.precision)
    original = files.files[coreml.package_name(1, files.precision)].source
    assert _sha(archive) == _sha(original)
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
    assert names == sorted(names) and all(n.startswith(f"stage1_{files.precision}.mlpackage/")
                                          for n in names)
    assert not any("debug_handle" in n for n in names)


def test_bundle_checksums_and_backend_on_this_platform(converted):
    stages, files, bundle = converted
    manifest = read_bundle(bundle)  # verifies every file's size and sha256
    entries = manifest.files_for("coreml", files.precision)
    assert len(entries) == 4
    for entry in entries:
        assert entry.sha256 == _sha(files.files[entry.path].source)
    assert runtime_available() == (sys.platform == "darwin")
    if sys.platform == "darwin":
        with open_backend("coreml", bundle, stages.precision) as backend:
            assert backend.method_io(2)[1][0].name == "x0_out"
    else:  # "fp32" finds the fp16 files, then refuses to run here
        with pytest.raises(BackendUnavailable, match="Core ML predictions need macOS"):
            open_backend("coreml", bundle, stages.precision)


def test_backend_names_a_missing_stage_file(converted, tmp_path):
    stages, files, _ = converted
    partial = {k: v for k, v in files.files.items() if "stage3" not in k}
    manifest = build_manifest(stages.config, stages.height, stages.width)
    bundle = write_bundle(tmp_path / "bundle", manifest, partial)
    with pytest.raises(BackendUnavailable, match="stage3"):
        open_backend("coreml", bundle, files.precision)


def test_validate_spec_names_each_mismatch(converted, monkeypatch):
    stages, files, _ = converted
    io = stages.io[1]
    archive = files.files[coreml.package_name(2, files.precision)].source
    wrong = replace(io, inputs=(("x0", (1, 256, 32, 64)), *io.inputs[1:]))
    with pytest.raises(ExportError, match=r"input x0 shape \[1, 256, 16, 32\]"):
        coreml.validate_spec(archive, wrong)
    monkeypatch.setitem(coreml.EXPECTED_OPS, files.precision,
                        coreml.EXPECTED_OPS[files.precision] - {"relu"})
    with pytest.raises(ExportError, match=r"unexpected MIL ops \['relu'\]"):
        coreml.validate_spec(archive, io, files.precision)
    if files.precision == "fp16":
        with pytest.raises(ExportError, match="W8A8"):
            coreml.validate_spec(archive, io, "int8")


def test_unpack_refuses_paths_outside_the_folder(tmp_path):
    archive = tmp_path / "evil.mlpackage.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("stage1.mlpackage/Manifest.json", "{}")
        zf.writestr("../outside.txt", "x")
    with pytest.raises(BundleError, match="unsafe paths"):
        unpack_mlpackage(archive, tmp_path / "out")
    assert not (tmp_path / "outside.txt").exists()


def test_edge_backend_imports_no_training_code():
    path = Path(__file__).resolve().parents[1] / "edge" / "backends" / "coreml.py"
    assert not imported_top_level(path) & {"torch", "model_zoo", "converters"}


# ------------------------------------------------------------------------ macOS parity
def backend_exits(backend, image: np.ndarray, threshold: float) -> list[np.ndarray]:
    """Carried logits of every exit, driven by the numpy host step like the runtime."""
    state: list[np.ndarray] = [image]
    carried = None
    exits = []
    for k in range(1, len(backend.manifest.stages) + 1):
        mask = None if carried is None else compute_mask(carried, threshold)
        outputs = backend.run_stage(k, state if mask is None else [*state, mask])
        if backend.stage(k).exit is None:
            state = outputs
            continue
        state, raw = outputs[:-1], outputs[-1]
        carried = raw if carried is None else carry_over(carried, raw, mask)
        exits.append(carried)
    return exits


@pytest.mark.skipif(sys.platform != "darwin", reason="Core ML predictions need macOS")
def test_exits_agree_with_pytorch_on_macos(converted):
    stages, files, bundle = converted
    threshold = stages.config.threshold
    with open_backend("coreml", bundle, files.precision) as backend:
        for x in calibration_images(stages.height, stages.width, 4):
            with torch.no_grad():
                expected = stages.reference(x, threshold=threshold).logits
            got = backend_exits(backend, x.numpy(), threshold)
            for exit_, (e, g) in enumerate(zip(expected, got, strict=True), start=1):
                agree = float((e.argmax(1).numpy() == g.argmax(1)).mean())
                assert agree >= AGREEMENT[files.precision], (
                    f"exit {exit_} ({files.precision}): argmax agreement {agree:.2%}")
