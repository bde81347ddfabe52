"""The ADP-C model: official HRNet layout, exits, CA semantics, stage-wise API, validation."""

from __future__ import annotations

import pytest
import torch
from conftest import lively_init

from model_zoo import InputSizeError, create_model
from model_zoo.adpc import ADPCConfig, ADPCNet
from model_zoo.masking import MaskedConv2d, MaskFill, confidence

CONFIGS = ["w18_small_v2", "w18", "w32", "w48"]


@pytest.mark.parametrize("name", CONFIGS)
def test_plain_hrnet_has_the_official_keys_shapes_order_and_params(name, official_keys):
    with torch.device("meta"):
        model = create_model(name, exits="none")
    ours = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    assert ours == official_keys[name]["keys"]
    assert sum(p.numel() for p in model.parameters()) == official_keys[name]["params"]


@pytest.mark.parametrize("name", CONFIGS)
def test_adpc_model_adds_only_exits_and_lambdas(name, official_keys):
    with torch.device("meta"):
        model = create_model(name)
    official = [k for k, _ in official_keys[name]["keys"]]
    ours = list(model.state_dict())
    extra = [k for k in ours if k not in set(official)]
    assert all(k.startswith(("exit1.", "exit2.", "exit3.")) or k.endswith(".fill.Lambda")
               for k in extra)
    assert [k for k in ours if k in set(official)] == official  # same order of modules
    assert not any(k.startswith("exit1.") and k.endswith("Lambda") for k in ours)  # exit 1 unmasked


def test_w18_small_v2_param_count_with_exits():
    model = create_model("w18_small_v2")
    n_lambda = sum(1 for m in model.modules() if isinstance(m, MaskFill))
    n_masked = sum(1 for m in model.modules() if isinstance(m, MaskedConv2d))
    assert n_lambda == n_masked > 0
    heads = sum(
        p.numel() for n, p in model.named_parameters()
        if n.startswith("exit") and not n.endswith("Lambda")
    )
    assert sum(p.numel() for p in model.parameters()) == 3_939_579 + heads + n_lambda


def test_redesigned_head_layout():
    model = create_model("w18_small_v2", num_classes=5)
    convs = {k: [m for m in model.head(k) if isinstance(m, torch.nn.Conv2d)] for k in (1, 2, 3)}
    # D = 3, 2, 1 pools then D - 1 up-convs, then the class conv; all 1x1
    assert [len(convs[k]) for k in (1, 2, 3)] == [6, 4, 2]
    assert all(c.kernel_size == (1, 1) for k in convs for c in convs[k])
    assert convs[1][0].in_channels == 256 and convs[2][0].in_channels == 54
    assert convs[3][0].in_channels == 126 and convs[1][0].out_channels == 64
    assert model.last_layer[0].in_channels == 270 and model.last_layer[3].out_channels == 5
    assert not isinstance(convs[1][0], MaskedConv2d) and isinstance(convs[2][0], MaskedConv2d)
    w48 = create_model("w48")
    assert w48.head(1)[1].out_channels == 128 and w48.last_layer[0].in_channels == 720


def test_ee_heads_are_hrnet_heads():
    model = create_model("w18_small_v2", exits="ee")
    assert [type(m).__name__ for m in model.exit2] == ["MaskedConv2d", "BatchNorm2d", "ReLU",
                                                      "MaskedConv2d"]


def test_forward_shapes_and_resolution_from_input():
    model = create_model("w18_small_v2", num_classes=7).eval()
    for h, w in [(64, 64), (96, 160)]:
        with torch.no_grad():
            out = model(torch.randn(1, 3, h, w))
        assert len(out.logits) == 4 and len(out.masks) == 3 and len(out.masked_fractions) == 3
        assert all(t.shape == (1, 7, h // 4, w // 4) for t in out.logits)
        assert all(m.shape == (1, 1, h // 4, w // 4) for m in out.masks)


def test_masks_only_shrink_and_carry_over_is_bit_exact(adaptive_model, image):
    model, threshold = adaptive_model
    with torch.no_grad():
        out = model(image, threshold=threshold)
    fractions = [float(f.mean()) for f in out.masked_fractions]
    assert 0.2 < fractions[0] < 0.8, fractions  # the fixture really exercises both sides
    for earlier, later in zip(out.masks, out.masks[1:], strict=False):
        assert torch.all(later <= earlier)
    for i, mask in enumerate(out.masks):
        keep = (mask == 0).expand_as(out.logits[i])
        assert torch.equal(out.logits[i + 1][keep], out.logits[i][keep])


def test_stage_api_chains_to_forward(adaptive_model, image):
    from model_zoo.masking import carry_over, compute_mask

    model, threshold = adaptive_model
    with torch.no_grad():
        out = model(image, threshold=threshold)
        state, carried = model.run_stage(1, image)
        chained = [carried]
        for k in (2, 3, 4):
            mask = compute_mask(carried, threshold)
            state, raw = model.run_stage(k, state, mask)
            carried = carry_over(carried, raw, mask)
            chained.append(carried)
    assert state is None
    for a, b in zip(out.logits, chained, strict=True):
        assert torch.equal(a, b)


def test_masked_fraction_zero_is_exactly_the_ee_rh_model(adaptive_model, image):
    model, _ = adaptive_model
    with torch.no_grad():
        off = model(image, threshold=None)
        everything = model(image, threshold=1.0)  # conf <= 1 everywhere: nothing skipped
    assert all(float(f.max()) == 0.0 for f in everything.masked_fractions)
    for a, b in zip(off.logits, everything.logits, strict=True):
        assert torch.equal(a, b)


def test_ca_changes_later_exits_only(adaptive_model, image):
    model, threshold = adaptive_model
    with torch.no_grad():
        off = model(image, threshold=None)
        on = model(image, threshold=threshold)
    assert torch.equal(off.logits[0], on.logits[0])
    assert not torch.allclose(off.logits[3], on.logits[3])


def test_gradients_reach_lambda_and_every_exit(image):
    model = lively_init(create_model("w18_small_v2", threshold=None), seed=3).train()
    with torch.no_grad():  # train-mode BN: pick the threshold from train-mode confidences
        threshold = float(confidence(model(image, threshold=None).logits[0]).median())
    out = model(image, threshold=threshold)
    assert 0 < float(out.masked_fractions[0].mean()) < 1
    sum(t.square().mean() for t in out.logits).backward()
    class_convs = {model.head(k)[-1] for k in (2, 3, 4)}
    for k in (1, 2, 3, 4):
        for name, p in model.head(k).named_parameters():
            if name.endswith("Lambda") and model.head(k)[-1].fill.Lambda is p:
                continue  # see below
            assert p.grad is not None and p.grad.abs().sum() > 0, f"exit {k} {name}"
    fills = {m: m.fill.Lambda.grad for m in model.modules() if isinstance(m, MaskedConv2d)}
    assert all(g is not None for g in fills.values())
    # every fill but the class convs' gets a gradient; a class conv's filled pixels are exactly
    # the ones carry-over replaces with the previous exit's logits, so its fill is dead code
    assert all(g.abs() > 0 for m, g in fills.items() if m not in class_convs)
    assert all(g == 0 for m, g in fills.items() if m in class_convs)


@pytest.mark.parametrize("size", [(65, 128), (64, 100), (10, 10)])
def test_bad_input_sizes_name_the_fix(size):
    model = create_model("w18_small_v2")
    with pytest.raises(InputSizeError, match="multiples of 32.*pad=True"):
        model(torch.randn(1, 3, *size))


def test_pad_option_crops_outputs_back():
    model = create_model("w18_small_v2").eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 70, 100), pad=True)
    assert out.logits[-1].shape[-2:] == (18, 25) and out.masks[0].shape[-2:] == (18, 25)


def test_wrong_channel_count_and_bad_configs():
    model = create_model("w18_small_v2")
    with pytest.raises(InputSizeError, match="N x 3 x H x W"):
        model(torch.randn(1, 4, 64, 64))
    with pytest.raises(ValueError, match="unknown backbone"):
        ADPCConfig(backbone="w19")
    with pytest.raises(ValueError, match="threshold"):
        ADPCConfig(threshold=1.5)
    with pytest.raises(ValueError, match="unknown model"):
        create_model("resnet50")
    with pytest.raises(ValueError, match="threshold=None"):
        ADPCNet(ADPCConfig(exits="none"))


def test_plain_hrnet_forward_has_one_exit():
    model = create_model("w18_small_v2", exits="none").eval()
    with torch.no_grad():
        out = model(torch.randn(1, 3, 64, 64))
    assert len(out.logits) == 1 and out.logits[0].shape == (1, 19, 16, 16)
