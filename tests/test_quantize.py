"""QAT (model_zoo.quantize): interface, float islands, training, freeze, checkpoints, convert.

One prepared graph is built per module (export + prepare dominate the run time); tests that
change it work on deep copies (well under a second).
"""

from __future__ import annotations

import copy

import pytest
import torch
from conftest import lively_init, median_exit1_confidence
from torch import nn

from model_zoo import CheckpointError, create_model
from model_zoo.adpc import ADPCConfig, ExitOutputs
from model_zoo.masking import MaskFill, carry_over
from model_zoo.quantize import (
    SCALE_FLOOR,
    QuantizedADPC,
    calibrate,
    convert,
    float_island_violations,
    freeze,
    in_mask_fill,
    is_fake_quant,
    is_training,
    load_qat,
    mask_nodes,
    prepare_ptq,
    prepare_qat,
    read_qat,
    restore_qat,
    save_qat,
    thaw,
)
from model_zoo.train import anytime_loss

_WHY = "QAT needs torchao and executorch (pip install 'adpc[executorch]')"
pytest.importorskip("torchao.quantization.pt2e", reason=_WHY)
pytest.importorskip("executorch.backends.xnnpack.quantizer.xnnpack_quantizer", reason=_WHY)

HEIGHT, WIDTH = 64, 128
CONV = torch.ops.aten.conv2d.default


def lift_class_convs(model: nn.Module) -> None:
    """Move the scale `calibrate_heads` puts on each class conv into the head's last BN.

    Random stage-4 features reach ~2e4, so the calibrated class weights end near 1e-4: below
    the int8 weight grid's finest step (SCALE_FLOOR), where they would round to 0 or +-1.
    Dividing the eval-mode BN by f and multiplying the conv by f is exact (ReLU and bilinear
    upsampling are positively homogeneous).
    """
    with torch.no_grad():
        for k in model.config.exit_stages:
            head = model.head(k)
            factor = 0.5 / float(head[-1].weight.abs().max())
            last_bn = [m for m in head if isinstance(m, nn.BatchNorm2d)][-1]
            head[-1].weight.mul_(factor)
            last_bn.weight.div_(factor)
            last_bn.bias.div_(factor)


def float_with_masks(model, x: torch.Tensor, masks: list[torch.Tensor]) -> list[torch.Tensor]:
    """The float model's exit logits under given masks (the stage API with the host step)."""
    with torch.no_grad():
        state, carried = model.run_stage(1, x)
        logits = [carried]
        for k, mask in zip((2, 3, 4), masks, strict=True):
            state, raw = model.run_stage(k, state, mask)
            carried = carry_over(carried, raw, mask)
            logits.append(carried)
    return logits


def agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.argmax(1) == b.argmax(1)).float().mean())


def same(a: ExitOutputs, b: ExitOutputs) -> bool:
    return all(torch.equal(u, v) for u, v in zip(
        [*a.logits, *a.masks, *a.masked_fractions], [*b.logits, *b.masks, *b.masked_fractions],
        strict=True))


@pytest.fixture(scope="module")
def float_model(image):
    """Lively W18-Small-v2 (19 classes), CA at the median exit-1 confidence, in eval mode."""
    model = lively_init(create_model("w18_small_v2", num_classes=19, threshold=None)).eval()
    lift_class_convs(model)
    with torch.no_grad():  # one stem channel below the int8 weight floor (like trained weights)
        model.conv1.weight[0] *= 0.01
    model.config = ADPCConfig(**{**model.config.to_dict(),
                                 "threshold": median_exit1_confidence(model, image)})
    return model


@pytest.fixture(scope="module")
def prepared(float_model):
    """The pristine QAT stage graphs (dynamic batch and H/W); copy before calling them."""
    return prepare_qat(float_model, HEIGHT, WIDTH)


@pytest.fixture(scope="module")
def calibrated(prepared, image):
    """Observers set by one eval-form pass over `image` (BN keeps its running stats), frozen."""
    return calibrate(copy.deepcopy(prepared), [image])


def all_nodes(q):
    return [n for g in q.graphs for n in g.graph.nodes]


def test_prepare_qat_keeps_the_models_interface(prepared, float_model, image):
    out = copy.deepcopy(prepared)(image)
    with torch.no_grad():
        ref = float_model(image)
    assert isinstance(out, ExitOutputs)
    assert len(out.logits) == 4 and len(out.masks) == 3 and len(out.masked_fractions) == 3
    for mine, theirs in zip([*out.logits, *out.masks, *out.masked_fractions],
                            [*ref.logits, *ref.masks, *ref.masked_fractions], strict=True):
        assert mine.shape == theirs.shape
    # the graphs own copies: training them never writes into the float model
    stem = prepared.graphs[0].get_parameter("model.conv1.weight")
    assert stem.data_ptr() != float_model.conv1.weight.data_ptr()
    assert is_training(prepared)


def test_fake_quant_is_close_to_float(calibrated, float_model, image):
    with torch.no_grad():
        q = calibrated(image)
        f = float_model(image)
    assert 0.3 < float(f.masks[0].mean()) < 0.7  # the threshold really splits the map
    # masks come from fake-quantised logits: pixels right at the threshold may flip
    assert float((q.masks[0] == f.masks[0]).float().mean()) >= 0.8
    assert agreement(q.logits[0], f.logits[0]) >= 0.98
    # under the same masks, int8 noise alone moves few decisions at any exit
    ref = float_with_masks(float_model, image, q.masks)
    for i in range(4):
        assert agreement(q.logits[i], ref[i]) >= 0.9, f"exit {i + 1}"


def test_fills_and_mask_stay_float(prepared, float_model):
    n_fills = sum(isinstance(m, MaskFill) for m in float_model.modules())
    fill_convs = 0
    for k, gm in enumerate(prepared.graphs, start=1):
        graph = gm.graph
        assert float_island_violations(gm) == []
        fills = [n for n in graph.nodes if n.target == CONV and in_mask_fill(n)]
        fill_convs += len(fills)
        for conv in fills:  # neither the masked input nor the RBF kernel is fake-quantised
            assert not any(is_fake_quant(a) for a in conv.all_input_nodes), conv.name
        for node in graph.nodes:  # the only fake-quant a fill reads is its conv's int8 output
            if in_mask_fill(node):
                for arg in node.all_input_nodes:
                    if is_fake_quant(arg):
                        assert arg.args[0].target == CONV and not in_mask_fill(arg.args[0])
        mask = mask_nodes(gm)
        assert (len(mask) > 1) == (k > 1)  # the mask input and its strided slices
        assert not any(is_fake_quant(u) for n in mask for u in n.users)
        # the mask rule is host work: no comparison sits inside a stage graph
        assert not any(str(n.target).startswith(("aten.le", "aten.gt")) for n in graph.nodes)
        # ...while every other conv is int8: its weight passes a fake-quant
        others = [n for n in graph.nodes if n.target == CONV and not in_mask_fill(n)]
        assert others and all(is_fake_quant(n.args[1]) for n in others)
    assert fill_convs == 2 * n_fills > 0  # separable: a row and a column conv per fill


def test_qat_steps_train_weights_and_lambdas(prepared, float_model, image):
    gm = copy.deepcopy(prepared)
    params = dict(gm.named_parameters())
    lambdas = {k: p for k, p in params.items() if k.endswith("fill.Lambda")}
    before = {k: p.detach().clone() for k, p in params.items()}
    target = torch.randint(0, 19, (image.shape[0], HEIGHT, WIDTH),
                           generator=torch.Generator().manual_seed(5))
    opt = torch.optim.SGD(gm.parameters(), lr=1e-3, momentum=0.9)
    for step in range(3):
        loss, _ = anytime_loss(gm(image), target, (1.0, 1.0, 1.0, 1.0))
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        if step == 0:
            dead = {k for k, p in lambdas.items() if float(p.grad.abs()) == 0}
        opt.step()
    # as in the float model, every fill but the class convs' gets a gradient: a class conv's
    # filled pixels are exactly the ones carry-over replaces, so its fill is dead code
    heads = {2: "exit2", 3: "exit3", 4: "last_layer"}
    class_fills = {f"graphs.{k - 1}.model.{name}.{len(float_model.head(k)) - 1}.fill.Lambda"
                   for k, name in heads.items()}
    assert len(lambdas) > 100 and all(p.grad is not None for p in lambdas.values())
    assert dead == class_fills
    # (at this learning rate a Lambda of 3.0 moves by less than float32 resolves)
    changed = [k for k, p in params.items() if not torch.equal(before[k], p)]
    assert "graphs.0.model.conv1.weight" in changed
    assert len(changed) > 0.5 * (len(params) - len(lambdas))


def _observer_state(gm) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in gm.state_dict().items()
            if "activation_post_process" in k or "running_" in k}


def test_freeze_stops_observers_and_thaw_restarts_them(prepared, image):
    gm = copy.deepcopy(prepared)
    gm(image)  # train form: observers and BN statistics move
    freeze(gm)
    assert not is_training(gm)
    state = _observer_state(gm)
    other = torch.randn(1, 3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        first, _, second = gm(image), gm(other * 3), gm(image)
    assert same(first, second)
    after = _observer_state(gm)
    assert all(torch.equal(state[k], after[k]) for k in state)
    thaw(gm)
    assert is_training(gm)
    with torch.no_grad():
        gm(other * 3)
    moved = _observer_state(gm)
    assert any(not torch.equal(state[k], moved[k]) for k in state)


def test_save_and_restore_round_trip_bit_exactly(calibrated, prepared, float_model, image,
                                                 tmp_path):
    path = tmp_path / "qat.pt"
    save_qat(path, calibrated, {"step": 3, "lr": [0.001]})
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["extra"] == {"step": 3, "lr": [0.001]} and ckpt["training"] is False
    assert all(isinstance(v, torch.Tensor) for v in ckpt["state"].values())
    restored = restore_qat(copy.deepcopy(prepared), read_qat(path), path)  # fresh, train form
    assert not is_training(restored)
    with torch.no_grad():
        assert same(calibrated(image), restored(image))
    converted = QuantizedADPC(list(calibrated.graphs), calibrated.config, HEIGHT, WIDTH, True,
                              "int8")  # what `convert` returns (converting here costs a minute)
    with pytest.raises(ValueError, match="convert again"):
        save_qat(path, converted)
    with pytest.raises(ValueError, match="weights_only"):
        save_qat(path, calibrated, {"bad": object()})


def test_training_form_checkpoint_resumes_exactly(prepared, calibrated, float_model, image,
                                                  tmp_path):
    gm = copy.deepcopy(prepared)
    gm(image)  # observers and BN statistics move
    path = save_qat(tmp_path / "train.pt", gm)
    restored = restore_qat(copy.deepcopy(calibrated), read_qat(path))  # frozen -> train form
    assert is_training(restored)
    with torch.no_grad():
        assert same(gm(image), restored(image))  # both update their observers identically


@pytest.mark.slow
def test_load_qat_rebuilds_bit_exactly(calibrated, float_model, image, tmp_path):
    path = save_qat(tmp_path / "qat.pt", calibrated)
    loaded = load_qat(path)  # a second export + prepare: the graph must come out the same
    assert not is_training(loaded)
    with torch.no_grad():
        assert same(calibrated(image), loaded(image))


def test_bad_qat_checkpoints_raise_one_line_errors(tmp_path):
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"\x80\x04 definitely not a checkpoint")
    foreign = tmp_path / "foreign.pt"
    torch.save({"model": {"w": torch.zeros(1)}}, foreign)
    broken = tmp_path / "broken.pt"
    torch.save({"format": "adpc-qat", "version": 2, "mode": "qat",
                "model_config": {"backbone": "w19"},
                "height": HEIGHT, "width": WIDTH, "dynamic_hw": True, "training": False,
                "state": {}}, broken)
    for path, match in [(garbage, "cannot read"), (foreign, "not an adpc QAT"),
                        (broken, "unusable model_config"), (tmp_path / "missing.pt", "exist")]:
        with pytest.raises(CheckpointError, match=match) as info:
            load_qat(path)
        assert "\n" not in str(info.value)


def test_restoring_into_the_wrong_graph_fails_clearly(prepared, float_model, tmp_path):
    gm = copy.deepcopy(prepared)
    path = save_qat(tmp_path / "q.pt", gm)
    ckpt = read_qat(path)
    other = {**ckpt, "model_config": {**ckpt["model_config"], "num_classes": 7}}
    with pytest.raises(CheckpointError, match="num_classes=7"):
        restore_qat(gm, other, path)
    partial = {**ckpt, "state": {k: v for k, v in ckpt["state"].items() if "conv1." not in k}}
    with pytest.raises(CheckpointError, match="does not fit") as info:
        restore_qat(gm, partial, path)
    assert "\n" not in str(info.value)


def test_convert_agrees_with_fake_quant(calibrated, image):
    n_fake_quants = sum(is_fake_quant(n) for n in all_nodes(calibrated))
    converted = convert(calibrated)
    with torch.no_grad():
        q, c = calibrated(image), converted(image)
    for i in range(4):
        assert agreement(c.logits[i], q.logits[i]) >= 0.95, f"exit {i + 1}"
    assert float((c.masks[0] == q.masks[0]).float().mean()) >= 0.95
    assert not any(is_fake_quant(n) for n in all_nodes(converted))
    targets = {str(n.target) for n in all_nodes(converted)}
    assert any("dequantize_per_channel" in t for t in targets)  # folded int8 weights
    assert sum(is_fake_quant(n) for n in all_nodes(calibrated)) == n_fake_quants  # untouched


def test_dynamic_size_evaluates_at_another_size(calibrated, float_model):
    x = torch.randn(1, 3, 96, 160, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        q = calibrated(x)
    assert all(t.shape == (1, 19, 24, 40) for t in q.logits)
    assert all(m.shape == (1, 1, 24, 40) for m in q.masks)
    ref = float_with_masks(float_model, x, q.masks)
    assert agreement(q.logits[3], ref[3]) >= 0.85


def test_prepare_qat_rejects_bad_sizes(float_model):
    with pytest.raises(ValueError, match="multiples of 32"):
        prepare_qat(float_model, 60, 128)
    with pytest.raises(ValueError, match="at least 64"):
        prepare_qat(float_model, 32, 128)


def test_fake_quant_scales_are_the_ones_convert_uses(calibrated):
    """The fused stock fake-quant floored scales at 6.1e-5, convert at 2^-12: they disagreed."""
    modules = [g.get_submodule(n.target) for g in calibrated.graphs for n in g.graph.nodes
               if is_fake_quant(n)]
    assert modules
    for module in modules:
        assert torch.equal(module.scale, module.calculate_qparams()[0].to(module.scale.dtype))
        assert float(module.scale.min()) >= SCALE_FLOOR
    stage1 = calibrated.graphs[0]
    stem = next(n for n in stage1.graph.nodes if n.target == CONV)
    stem_scales = stage1.get_submodule(stem.args[1].target).scale
    assert float(stem_scales[0]) == SCALE_FLOOR < float(stem_scales[1:].min())


@pytest.mark.slow
def test_convert_for_litert_keeps_float_weights_and_agrees(calibrated, image):
    folded, unfolded = convert(calibrated), convert(calibrated, fold_quantize=False)
    targets = {str(n.target) for n in all_nodes(unfolded)}
    assert "quantized_decomposed.quantize_per_channel.default" in targets
    with torch.no_grad():
        assert same(folded(image), unfolded(image))


def test_threshold_is_a_run_time_choice(calibrated, float_model, image):
    """The mask rule runs on the host between stage graphs: any threshold, no re-export."""
    with torch.no_grad():
        off = calibrated(image, threshold=None)
        everything = calibrated(image, threshold=1.0)
        some = calibrated(image, threshold=float_model.config.threshold)
    assert all(float(f.max()) == 0.0 for f in everything.masked_fractions)
    for a, b in zip(off.logits, everything.logits, strict=True):
        assert torch.allclose(a, b, atol=1e-5)  # all-ones masks == CA off
    assert float(some.masked_fractions[0].mean()) > 0.2


def test_ptq_calibrates_and_converts_close_to_float(float_model, image):
    q = prepare_ptq(float_model, HEIGHT, WIDTH)
    assert q.mode == "ptq" and not is_training(q)
    calibrate(q, [image])
    int8 = convert(q)
    with torch.no_grad():
        out = int8(image)
    ref = float_with_masks(float_model, image, out.masks)
    for i in range(4):
        assert agreement(out.logits[i], ref[i]) >= 0.9, f"exit {i + 1}"


def test_pack_keeps_a_qat_checkpoint_loadable(calibrated, tmp_path):
    from model_zoo.package import package

    path = save_qat(tmp_path / "qat.pt", calibrated, {"step": 7, "train_config": {"qat": True}})
    out, card = package(path, tmp_path / "shipped_qat.pt", 0.5)
    ckpt = read_qat(out)
    assert ckpt["model_config"]["threshold"] == 0.5 and ckpt["mode"] == "qat"
    restored = restore_qat(copy.deepcopy(calibrated), ckpt, out)
    x = torch.randn(1, 3, HEIGHT, WIDTH, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert same(calibrated(x, threshold=0.5), restored(x, threshold=0.5))
    import json

    data = json.loads(card.read_text())
    assert data["kind"].startswith("qat") and data["train_config"] == {"qat": True}
