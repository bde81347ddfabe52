"""Loading weights from local files: official, timm-style and ADP-C reference checkpoints."""

from __future__ import annotations

import pickle

import pytest
import torch

from model_zoo import CheckpointError, create_model, list_models, load_pretrained
from model_zoo.registry import read_state_dict, save_checkpoint


def official_state(official_keys: dict, name: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """A random checkpoint with exactly the official keys and shapes of the fixture."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in official_keys[name]["keys"]:
        if key.endswith("num_batches_tracked"):
            state[key] = torch.tensor(7)
        else:
            state[key] = torch.randn(shape, generator=gen)
    return state


def test_registry_lists_the_four_configs():
    assert set(list_models()) >= {"w18_small_v2", "w18", "w32", "w48"}


@pytest.mark.parametrize("exits", ["none", "rh"])
def test_official_checkpoint_loads_with_no_missing_backbone_keys(tmp_path, official_keys, exits):
    state = official_state(official_keys, "w18_small_v2")
    path = save_checkpoint({"state_dict": {f"module.{k}": v for k, v in state.items()}},
                           tmp_path / "hrnet.pth")
    model = create_model("w18_small_v2", exits=exits)
    report = load_pretrained(model, path)
    assert sorted(report.loaded) == sorted(state)
    ours = model.state_dict()
    for key, value in state.items():
        assert torch.equal(ours[key], value), key
    if exits == "none":
        assert report.initialised == []
    else:  # only what ADP-C adds to HRNet keeps its init
        assert report.initialised
        assert all(k.startswith("exit") or k.endswith("fill.Lambda") for k in report.initialised)


def test_timm_style_backbone_loads_and_drops_classifier(tmp_path, official_keys):
    state = official_state(official_keys, "w18_small_v2")
    state = {k: v for k, v in state.items() if not k.startswith("last_layer.")}
    state["incre_modules.0.0.conv1.weight"] = torch.zeros(32, 18, 1, 1)
    state["classifier.weight"] = torch.zeros(1000, 2048)
    path = save_checkpoint(state, tmp_path / "timm.pth")
    report = load_pretrained(create_model("w18_small_v2"), path)
    assert sorted(report.ignored) == ["classifier.weight", "incre_modules.0.0.conv1.weight"]
    assert any(k.startswith("last_layer.") for k in report.initialised)


def test_adpc_reference_checkpoint_keys_are_mapped(tmp_path):
    source = create_model("w18_small_v2")
    with torch.no_grad():
        for m in source.modules():
            if hasattr(m, "Lambda"):
                m.Lambda.fill_(1.25)
    reference = {}
    for key, value in source.state_dict().items():  # the reference code's naming
        if key.endswith("fill.Lambda"):
            conv = key[: -len("fill.Lambda")]
            reference[f"model.{conv}Lambda"] = value
            reference[f"model.{conv}square_dis"] = torch.zeros(7, 7)
        else:
            reference[f"model.{key}"] = value
    path = save_checkpoint(reference, tmp_path / "adpc_ref.pth")
    target = create_model("w18_small_v2")
    report = load_pretrained(target, path)
    assert report.initialised == []
    assert all(float(m.Lambda) == 1.25 for m in target.modules() if hasattr(m, "Lambda"))


def test_wrong_config_and_shape_errors_are_one_line(tmp_path, official_keys):
    path = save_checkpoint(official_state(official_keys, "w18_small_v2"), tmp_path / "a.pth")
    with pytest.raises(CheckpointError, match="check --model") as err:
        load_pretrained(create_model("w18", exits="none"), path)
    assert "\n" not in str(err.value)
    with pytest.raises(CheckpointError, match="shape"):
        load_pretrained(create_model("w18_small_v2", num_classes=5), path)
    partial = official_state(official_keys, "w18_small_v2")
    partial.pop("stage3.0.branches.0.0.conv1.weight")
    with pytest.raises(CheckpointError, match="lacks 1 backbone key"):
        load_pretrained(create_model("w18_small_v2"), save_checkpoint(partial, tmp_path / "p.pth"))


class Evil:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_checkpoints_are_never_unpickled(tmp_path, capsys):
    path = tmp_path / "evil.pth"
    torch.save({"weight": torch.zeros(1), "payload": Evil()}, path)
    with pytest.raises(CheckpointError, match="weights-only"):
        read_state_dict(path)
    assert "must never run" not in capsys.readouterr().out
    raw = tmp_path / "raw.pkl"
    raw.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(CheckpointError):
        read_state_dict(raw)


def test_truncated_and_missing_files(tmp_path, official_keys):
    path = save_checkpoint(official_state(official_keys, "w18_small_v2"), tmp_path / "ok.pth")
    cut = tmp_path / "cut.pth"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="corrupt, truncated"):
        read_state_dict(cut)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_state_dict(tmp_path / "nope.pth")


def test_save_checkpoint_is_atomic(tmp_path):
    path = save_checkpoint({"w": torch.ones(2)}, tmp_path / "sub" / "c.pt")
    assert path.is_file() and not list(path.parent.glob(".*.tmp"))
    assert torch.equal(read_state_dict(path)["w"], torch.ones(2))
