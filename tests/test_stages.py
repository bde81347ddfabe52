"""The stage contract: stage graphs + the host step reproduce the model's forward exactly."""

from __future__ import annotations

import pytest
import torch

from converters.stages import (
    StageGraph,
    build_manifest,
    run_stage_chain,
    stage_graphs,
    stage_io,
)
from edge.bundle import manifest_from_dict
from model_zoo import create_model


def test_chained_stage_graphs_equal_forward(adaptive_model, image):
    model, threshold = adaptive_model
    with torch.no_grad():
        expected = model(image, threshold=threshold)
        logits, masks = run_stage_chain(stage_graphs(model), image, threshold, model.config)
    assert 0.2 < float(expected.masked_fractions[0].mean()) < 0.8
    for a, b in zip(expected.logits, logits, strict=True):
        assert torch.equal(a, b)
    for a, b in zip(expected.masks, masks, strict=True):
        assert torch.equal(a, b)


def test_io_contract_matches_what_the_graphs_return(adaptive_model, image):
    model, threshold = adaptive_model
    h, w = image.shape[-2:]
    ios = stage_io(model.config, h, w, batch=image.shape[0])
    assert [io.exit for io in ios] == [1, 2, 3, 4]
    assert [n for n, _ in ios[0].inputs] == ["image"]
    assert [n for n, _ in ios[2].inputs] == ["x0", "x1", "mask"]
    assert [n for n, _ in ios[3].outputs] == ["logits"]
    with torch.no_grad():
        state = (image,)
        for io, graph in zip(ios, stage_graphs(model), strict=True):
            assert [tuple(t.shape) for t in state] == [s for _, s in io.inputs]
            out = graph(*state)
            assert [tuple(t.shape) for t in out] == [s for _, s in io.outputs]
            mask = torch.ones(image.shape[0], 1, h // 4, w // 4)
            state = (*out[:-1], mask)


def test_stage_graphs_export(adaptive_model):
    """Each stage is capturable by torch.export (what every converter starts from)."""
    model, _ = adaptive_model
    ios = stage_io(model.config, 64, 128)
    for io, graph in zip(ios, stage_graphs(model), strict=True):
        args = tuple(torch.rand(s) if n == "mask" else torch.randn(s) for n, s in io.inputs)
        if "mask" in dict(io.inputs):
            args = (*args[:-1], (args[-1] > 0.5).float())
        program = torch.export.export(graph.eval(), args)
        ops = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
        assert not any("softmax" in op or "amax" in op or op.startswith("aten.le") for op in ops)
        with torch.no_grad():
            for a, b in zip(program.module()(*args), graph(*args), strict=True):
                torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


def test_manifest_describes_the_stages():
    model = create_model("w18_small_v2")
    manifest = build_manifest(model, 256, 512)
    again = manifest_from_dict(manifest.to_dict())
    assert again == manifest
    assert manifest.num_exits == 4 and manifest.threshold == 0.998
    assert manifest.classes[13].name == "car" and manifest.classes[0].color == (128, 64, 128)
    total = sum(s.flops.gflops() for s in manifest.stages)
    assert total == pytest.approx(73.227 / 16, rel=1e-3)  # the 1024x2048 table, 16x fewer pixels
    assert manifest.stages[0].flops.masked == 0 and manifest.stages[1].flops.fill > 0


def test_plain_hrnet_has_no_stage_graphs():
    with pytest.raises(ValueError, match="no early exits"):
        StageGraph(create_model("w18_small_v2", exits="none"), 1)
