"""`adpc convert`, `verify` and `bench` on the command line: real bundles, real runtimes."""

from __future__ import annotations

import json
import shutil

import pytest

from converters.cli import main
from edge.backends import open_backend
from edge.bench import check_report, cost_table_key
from edge.bundle import read_bundle
from edge.runtime import default_cost_model
from model_zoo.registry import DEFAULT_WEIGHTS, WEIGHTS_DIR

pytest.importorskip("executorch.runtime", reason="pip install 'adpc[executorch]'")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def bundle(et_fp32_bundle, tmp_path):
    """A private copy of the shipped model's ExecuTorch bundle, pointing at the shipped weights."""
    folder = tmp_path / "bundle"
    shutil.copytree(et_fp32_bundle.bundle, folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["provenance"] = {"checkpoint": str(WEIGHTS_DIR / DEFAULT_WEIGHTS["w18_small_v2"])}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_verify_prints_the_parity_table(capsys, bundle):
    code, out, _ = run(capsys, "verify", str(bundle), "--frames", "1", "--json")
    assert code == 0
    (row,) = json.loads(out)
    assert row["backend"] == "executorch" and row["status"] == "pass"
    assert [e["exit"] for e in row["exits"]] == [1, 2, 3, 4]
    assert all(e["max_abs"] <= 1e-3 and e["agreement"] >= 0.999 for e in row["exits"])
    code, out, _ = run(capsys, "verify", str(bundle), "--frames", "1")
    assert code == 0 and "executorch  fp32" in out and "pass" in out


def test_bench_compares_with_dense_and_calibrates(capsys, bundle, tmp_path):
    report = tmp_path / "bench.json"
    code, out, _ = run(capsys, "bench", str(bundle), "--threads", "1", "--repeats", "1",
                       "--max-frames", "1", "--calibrate", "--out", str(report))
    assert code == 0 and "dense/CA" in out
    data = json.loads(report.read_text())
    assert [e["exit"] for e in data["exits"]] == [1, 2, 3, 4]
    assert all(e["ms"] > 0 and e["dense_ms"] > 0 and e["cold_ms"] > 0 for e in data["exits"])
    assert all(e["p99_ms"] >= e["p90_ms"] >= e["ms"] * 0.999 for e in data["exits"])
    assert data["peak_rss_mb"] > 50
    assert data["cost_model"].startswith("calibrated")
    assert check_report(data) == [] and data["energy_meter"] in out  # the meter is named
    assert data["calibration"]["key"] in read_bundle(bundle).cost_tables
    with open_backend("executorch", bundle, threads=1) as backend:  # the table is stored...
        assert cost_table_key(backend) in read_bundle(bundle).cost_tables
        assert default_cost_model(backend).source.startswith("calibrated")  # ...and used
    # the stage files were not touched: the bundle still verifies
    assert read_bundle(bundle, verify_files=True).files


@pytest.mark.parametrize("argv, needle", [
    (["convert", "--size", "60x128", "--frames", "0"], "multiples of 32"),
    (["convert", "--backend", "onnx"], "choose from executorch, tflite, coreml"),
    (["convert", "--checkpoint", "/no/such.pt"], "does not exist"),
    (["verify", "/no/such/bundle"], "not a folder"),
    (["bench", "/no/such/bundle"], "not a folder"),
    (["bench", ".", "--repeats", "0"], "--repeats"),
])
def test_convert_verify_bench_user_errors_are_one_line(capsys, argv, needle):
    code, out, err = run(capsys, *argv)
    assert code == 2 and needle in err and err.count("\n") == 1, err


def test_verify_without_the_source_checkpoint_names_the_fix(capsys, bundle):
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["provenance"] = {"checkpoint": "/gone/model.pt"}
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = run(capsys, "verify", str(bundle), "--frames", "1")
    assert code == 2 and "--checkpoint" in err and err.count("\n") == 1


def test_a_bad_manifest_is_rejected_in_one_line(capsys, bundle):
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["stages"][1]["inputs"][0]["shape"] = [1, -3, 16, 32]
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    code, _, err = run(capsys, "verify", str(bundle))
    assert code == 2 and "stages[1].inputs[0].shape" in err and err.count("\n") == 1


def test_run_writes_overlays_and_a_report(capsys, bundle, tmp_path):
    out = tmp_path / "run"
    code, stdout, _ = run(capsys, "run", str(bundle), "--threads", "1", "--max-frames", "2",
                          "--deadline-ms", "1000", "--out", str(out), "--json")
    assert code == 0
    data = json.loads(stdout)
    assert data["summary"]["frames"] == 2 and data["summary"]["over_deadline"] == 0
    assert all(f["exit"] == 4 for f in data["frames"])  # a generous deadline reaches the end
    assert (out / "overlay.gif").stat().st_size > 0
    assert json.loads((out / "run.json").read_text())["summary"] == data["summary"]


@pytest.mark.parametrize("argv, needle", [
    (["--deadline-ms", "-5"], "must be > 0"),
    (["--battery", "lots"], "battery"),
    (["--source", "/no/such/video.mp4"], "does not exist"),
    (["--max-frames", "0"], "--max-frames"),
    (["--loop"], "give --max-frames N"),
    (["--pretrained"], "a bundle folder or --pretrained"),
])
def test_run_user_errors_are_one_line(capsys, bundle, tmp_path, argv, needle):
    code, _, err = run(capsys, "run", str(bundle), "--out", str(tmp_path / "r"), *argv)
    assert code == 2 and needle in err and err.count("\n") == 1, err


def test_run_needs_a_bundle_or_pretrained(capsys, tmp_path):
    code, _, err = run(capsys, "run", "--out", str(tmp_path / "r"))
    assert code == 2 and "a bundle folder or --pretrained" in err and err.count("\n") == 1
    code, _, err = run(capsys, "run", "--pretrained", "--precision", "fp16")
    assert code == 2 and "--pretrained converts fp32 or int8" in err and err.count("\n") == 1


def test_run_loops_a_folder_for_soak_runs(capsys, bundle, tmp_path):
    out = tmp_path / "soak"
    code, stdout, _ = run(capsys, "run", str(bundle), "--threads", "1", "--loop",
                          "--max-frames", "10", "--out", str(out), "--json")
    assert code == 0
    data = json.loads(stdout)
    assert data["summary"]["frames"] == 10  # the shipped drive has 8 frames
    assert [f["index"] for f in data["frames"]] == list(range(10))


@pytest.fixture
def small_drive(bundle, tmp_path):
    """Two shipped frames with labels at the test bundle's input size."""
    from PIL import Image

    from converters.demo import SAMPLES

    size = read_bundle(bundle).input
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(2):
        for kind, resample in (("frame", Image.BILINEAR), ("label", Image.NEAREST)):
            with Image.open(SAMPLES / f"{kind}_{i:04d}.png") as im:
                im.resize((size.width, size.height), resample).save(folder / f"{kind}_{i:04d}.png")
    return folder


def test_demo_runs_a_converted_bundle_through_the_runtime(capsys, bundle, small_drive, tmp_path):
    out = tmp_path / "demo"
    code, stdout, _ = run(capsys, "demo", "--bundle", str(bundle), "--frames", str(small_drive),
                          "--threads", "1", "--out", str(out))
    assert code == 0 and "executorch fp32" in stdout and "mIoU" in stdout
    report = json.loads((out / "demo.json").read_text())
    assert report["runtime"] == "executorch fp32" and report["bundle"] == str(bundle)
    assert report["frames"] == 2 and len(report["exit_ms_median"]) == 4
    assert report["exit_ms_median"] == sorted(report["exit_ms_median"])
    assert len(report["masked"]) == 3 and all(0 <= m <= 100 for m in report["miou"])
    assert report["gflops"] == sorted(report["gflops"]) and report["gflops"][0] > 0
    assert (out / "exits.png").stat().st_size > 0 and (out / "overlay.gif").stat().st_size > 0
    code, _, err = run(capsys, "demo", "--bundle", str(bundle), "--out", str(out))
    assert code == 2 and "convert one at the frames' size" in err and err.count("\n") == 1


def test_demo_reuses_a_cached_bundle(bundle, tmp_path):
    from converters.demo import bundle_name, cached_bundle

    size = read_bundle(bundle).input
    shipped = WEIGHTS_DIR / DEFAULT_WEIGHTS["w18_small_v2"]
    name = bundle_name(shipped, "executorch", "fp32", size.height, size.width)
    cached = tmp_path / "cache" / "bundles" / name
    shutil.copytree(bundle, cached)
    before = (cached / "manifest.json").stat().st_mtime_ns
    folder, built = cached_bundle(None, "fp32", size.height, size.width, cache=tmp_path / "cache")
    assert folder == cached and not built
    assert (cached / "manifest.json").stat().st_mtime_ns == before


def test_the_default_path_is_int8_sparse_where_the_kernel_builds(monkeypatch):
    from converters.demo import bundle_name, fastest_path
    from edge.kernels import executorch_op
    from edge.kernels.build import KernelUnavailable

    assert fastest_path() == ("int8", True, "int8 sparse ExecuTorch (the native int8 kernel "
                                            "builds here)")

    def no_compiler():
        raise KernelUnavailable("no C++ compiler found")

    monkeypatch.setattr(executorch_op, "load_executorch_kernels", no_compiler)
    precision, sparse, why = fastest_path()
    assert (precision, sparse) == ("int8", False) and "no C++ compiler found" in why
    shipped = WEIGHTS_DIR / DEFAULT_WEIGHTS["w18_small_v2"]
    assert bundle_name(shipped, "executorch", "int8", 64, 128, sparse=True) != bundle_name(
        shipped, "executorch", "int8", 64, 128)
