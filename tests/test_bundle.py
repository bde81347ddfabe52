"""Bundle manifest: round trip, atomic writes, and one-line errors for every bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge.bundle import (
    MANIFEST,
    BundleError,
    BundleFile,
    ClassInfo,
    InputSpec,
    Manifest,
    StageFlops,
    StageSpec,
    TensorSpec,
    manifest_from_dict,
    read_bundle,
    write_bundle,
)


def make_manifest() -> Manifest:
    img = TensorSpec("image", (1, 3, 64, 128))
    feat = TensorSpec("features", (1, 256, 16, 32))
    logits = TensorSpec("logits", (1, 19, 16, 32))
    mask = TensorSpec("mask", (1, 1, 16, 32))
    stages = (
        StageSpec(1, 1, (img,), (feat, logits), StageFlops(1.5, 0.0, 0.0)),
        StageSpec(2, 2, (feat, mask), (logits,), StageFlops(0.0, 0.7, 0.1)),
    )
    return Manifest(
        model="w18_small_v2",
        model_config={"backbone": "w18_small_v2", "num_classes": 19},
        classes=tuple(ClassInfo(i, f"class{i}", (i, 2 * i, 3 * i)) for i in range(19)),
        input=InputSpec(64, 128, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        threshold=0.998,
        stages=stages,
    )


@pytest.fixture()
def bundle(tmp_path) -> Path:
    blob = tmp_path / "model.pte"
    blob.write_bytes(b"\x00program bytes\x01" * 100)
    files = {"model.pte": BundleFile(blob, "executorch", "fp32", ("stage1", "stage2"))}
    return write_bundle(tmp_path / "bundle", make_manifest(), files)


def test_round_trip(bundle):
    manifest = read_bundle(bundle)
    assert manifest == Manifest(**{**make_manifest().__dict__, "files": manifest.files})
    (entry,) = manifest.files
    assert entry.bytes == 1500 and len(entry.sha256) == 64 and entry.methods == ("stage1", "stage2")
    assert manifest.files_for("executorch", "fp32") == [entry]
    assert manifest.files_for("tflite") == []
    assert manifest.num_exits == 2
    assert manifest.stages[1].flops.gflops(0.5) == pytest.approx(0.7 * 0.5 + 0.25 * 0.1)


def test_stage_flops_match_model_zoo():
    from model_zoo.flops import stage_costs
    from model_zoo.registry import model_config

    cost = stage_costs(model_config("w18_small_v2"), 64, 128)[2]
    flops = StageFlops(cost.fixed_macs, cost.masked_macs, cost.fill_macs)
    for p in (0.0, 0.3, 1.0):
        assert flops.gflops(p) == cost.macs(p)


def test_rewrite_replaces_atomically_and_bad_manifest_writes_nothing(bundle, tmp_path):
    blob = tmp_path / "other.tflite"
    blob.write_bytes(b"tfl3")
    write_bundle(bundle, make_manifest(), {"m.tflite": BundleFile(blob, "tflite", "int8")})
    assert [f.path for f in read_bundle(bundle).files] == ["m.tflite"]
    assert not (bundle / "model.pte").exists()
    bad = Manifest(**{**make_manifest().__dict__, "threshold": 3.0})
    with pytest.raises(BundleError, match="threshold"):
        write_bundle(tmp_path / "new", bad, {})
    assert not (tmp_path / "new").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle", "model.pte", "other.tflite"]


def edit(bundle: Path, change) -> None:
    data = json.loads((bundle / MANIFEST).read_text())
    change(data)
    (bundle / MANIFEST).write_text(json.dumps(data))


@pytest.mark.parametrize(
    "change,needle",
    [
        (lambda d: d.update(schema_version=9), "schema_version 9 is not supported"),
        (lambda d: d.update(format="zip"), "not an adpc bundle"),
        (lambda d: d["stages"][0]["inputs"][0].update(shape=[1, -3]), "shape must be >= 1"),
        (lambda d: d["stages"][1]["inputs"][1].update(dtype="float8"), "dtype must be one of"),
        (lambda d: d["stages"].reverse(), "numbered 1..N"),
        (lambda d: d["classes"].pop(0), "ids 0..K-1"),
        (lambda d: d["input"].update(height=100), "multiples of 32"),
        (lambda d: d["files"][0].update(path="../evil.pte"), "relative inside the bundle"),
        (lambda d: d["files"][0].update(sha256="xyz"), "64 lowercase hex"),
        (lambda d: d["files"][0].update(backend="onnx"), "backend must be one of"),
        (lambda d: d["stages"][0].pop("flops"), "stages[0].flops is missing"),
        (lambda d: d.pop("model"), "model is missing"),
    ],
)
def test_bad_manifests_name_the_problem(bundle, change, needle):
    edit(bundle, change)
    with pytest.raises(BundleError, match=None) as err:
        read_bundle(bundle)
    assert needle in str(err.value) and "\n" not in str(err.value)


def test_missing_truncated_and_corrupt_files(bundle):
    pte = bundle / "model.pte"
    data = pte.read_bytes()
    pte.write_bytes(data[:-10])
    with pytest.raises(BundleError, match="truncated"):
        read_bundle(bundle)
    pte.write_bytes(data[:-1] + b"\x07")
    with pytest.raises(BundleError, match="sha256"):
        read_bundle(bundle)
    pte.unlink()
    with pytest.raises(BundleError, match="is missing"):
        read_bundle(bundle)
    assert read_bundle(bundle, verify_files=False).model == "w18_small_v2"


def test_not_a_bundle(tmp_path):
    with pytest.raises(BundleError, match="not a folder"):
        read_bundle(tmp_path / "nothing")
    with pytest.raises(BundleError, match="no manifest.json"):
        read_bundle(tmp_path)
    (tmp_path / MANIFEST).write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        read_bundle(tmp_path)
    with pytest.raises(BundleError, match="JSON object"):
        manifest_from_dict([1, 2])
