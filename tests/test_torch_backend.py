"""The torch backend: serialised stage programs (dense and sparse) that load without pickle."""

from __future__ import annotations

import io
import pickle
import shutil
import zipfile

import pytest
import torch
from conftest import CONVERT_SIZE, assert_damaged_files_rejected

from converters.cli import main
from edge.backends import open_backend
from edge.bundle import BundleError, read_bundle


@pytest.fixture(scope="module")
def torch_bundle(fp32_stages, tmp_path_factory):
    from converters.convert import convert_stages

    out = tmp_path_factory.mktemp("torch") / "fp32"
    return convert_stages(out, fp32_stages, ["torch"], {"checkpoint": "in memory"})


def test_torch_stage_files_reproduce_the_model_exactly(torch_bundle):
    from converters.verify import verify_bundle

    (entry,) = torch_bundle.manifest.files
    assert entry.path == "torch/stages_fp32.zip" and entry.kernels == ()
    # unused parameters are pruned: four stages together hold about one model, not four
    params = sum(p.numel() for p in torch_bundle.stages.reference.parameters())
    assert entry.bytes < 2 * 4 * params
    (parity,) = verify_bundle(torch_bundle.bundle, frames=2,
                              references={"fp32": torch_bundle.stages.reference})
    assert parity.status == "pass", parity.reason
    assert all(e.max_abs <= 1e-5 and e.agreement == 1.0 for e in parity.exits)


def test_sparse_torch_stage_files_match_the_dense_model(shipped_source, tmp_path):
    from converters.convert import convert_stages
    from converters.export import stage_set
    from converters.verify import verify_bundle

    stages = stage_set(shipped_source, "fp32", *CONVERT_SIZE, sparse=True)
    result = convert_stages(tmp_path / "sparse", stages, ["torch"], {"checkpoint": "in memory"})
    (entry,) = result.manifest.files
    assert entry.kernels == ("adpc::masked_conv2d",)
    (parity,) = verify_bundle(result.bundle, frames=2, references={"fp32": stages.reference})
    assert parity.status == "pass", parity.reason
    assert all(e.agreement >= 0.9999 and e.max_abs <= 1e-3 for e in parity.exits)


def test_damaged_torch_files_are_rejected(torch_bundle, tmp_path):
    assert_damaged_files_rejected(torch_bundle.bundle, tmp_path, "torch", "fp32",
                                  load_error="not a loadable torch stage file")


class _Exploit:
    """Unpickling this would create a file: the loader must never get that far."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_a_pickled_object_in_a_stage_file_is_refused_not_executed(torch_bundle, tmp_path):
    copy = tmp_path / "evil"
    shutil.copytree(torch_bundle.bundle, copy)
    manifest = read_bundle(copy)
    (entry,) = manifest.files
    marker = tmp_path / "pwned"
    path = copy / entry.path
    with zipfile.ZipFile(path) as src:
        members = {name: src.read(name) for name in src.namelist()}
    buffer = io.BytesIO()
    torch.save({"weight": _Exploit(str(marker))}, buffer, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    members["stage1/state_dict.pt"] = buffer.getvalue()
    with zipfile.ZipFile(path, "w") as dst:
        for name, data in members.items():
            dst.writestr(name, data)
    with pytest.raises(BundleError, match="not a plain tensor file") as info:
        open_backend("torch", copy, "fp32", manifest=manifest)
    assert "\n" not in str(info.value)
    assert not marker.exists()


def test_torch_backend_refuses_int8_before_any_work(capsys):
    code = main(["convert", "--backend", "torch", "--precision", "int8", "--out", "/nonexistent/x"])
    assert code == 2
    assert "fp32 stage programs only" in capsys.readouterr().err
