"""int8 sparse mode: each quantized masked conv chain becomes one `adpc::qmasked_conv2d` node.

The int8 stage graphs (model_zoo.quantize.convert) run a masked conv as

    DQ(x) -> conv(DQ(w)) -> Q/DQ(y) -> y*m + fill(y*m)*(1-m) -> BN -> [ReLU] -> Q(out)
    DQ(x) -> conv(DQ(w)) -> Q/DQ(y) -> ... -> BN -> Q/DQ(b) -> + DQ(r) -> [ReLU] -> Q(out)

with the fill, the mask slices and BN in float between int8 tensors. `fuse_masked_convs`
rewrites every such chain in place into one node that takes the int8 input, the int8 weights
and every quantisation parameter, samples the stage's mask itself, and returns the int8 output
(edge.kernels.qtorch_op): only active pixels are convolved, and nothing between two fused
convs is float. Chains whose result stays float (a BN output read by an upsample or a pool, the
class convs of the heads) are left as they are and counted in the report.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor
from torch.fx import GraphModule, Node

from edge.kernels import qtorch_op
from edge.kernels.qtorch_op import ARG, ARG_RESIDUAL

_Q = torch.ops.quantized_decomposed.quantize_per_tensor.default
_DQ = torch.ops.quantized_decomposed.dequantize_per_tensor.default
_DQC = torch.ops.quantized_decomposed.dequantize_per_channel.default
_CONV = torch.ops.aten.conv2d.default
_MUL = torch.ops.aten.mul.Tensor
_ADD = torch.ops.aten.add.Tensor
_RSUB = torch.ops.aten.rsub.Scalar
_BN = torch.ops.aten.batch_norm.default
_RELU = {torch.ops.aten.relu.default, torch.ops.aten.relu_.default}
_SLICE = torch.ops.aten.slice.Tensor
_INT8 = (-128, 127, torch.int8)
_FUSED = qtorch_op.qmasked_conv2d.default


@dataclass
class FuseReport:
    """What the pass did: fused chains, and the masked convs it left (with the reason)."""

    fused: int = 0
    with_residual: int = 0
    dead_fills: int = 0  # fused convs whose fill nobody reads (dropped)
    left: dict[str, str] = field(default_factory=dict)  # conv node name -> reason


def _only_user(node: Node) -> Node | None:
    users = list(node.users)
    return users[0] if len(users) == 1 else None


def _is(node: object, target) -> bool:
    if not isinstance(node, Node) or node.op != "call_function":
        return False
    return node.target in target if isinstance(target, set) else node.target == target


def _qparams(node: Node) -> tuple[float, int] | None:
    """(scale, zero point) of an int8 per-tensor Q or DQ node with literal parameters."""
    scale, zero_point, *bounds = node.args[1:]
    if tuple(bounds) != _INT8 or not isinstance(scale, float) or not isinstance(zero_point, int):
        return None
    return scale, zero_point


def _const(gm: GraphModule, node: object) -> Tensor | None:
    if isinstance(node, Node) and node.op == "get_attr":
        value = gm
        for part in node.target.split("."):
            value = getattr(value, part)
        return value.detach() if isinstance(value, Tensor) else None
    return None


def _mask_source(node: Node) -> tuple[Node, int] | None:
    """The mask placeholder behind a chain of strided slices, and the total step."""
    step = 1
    while _is(node, _SLICE):
        dim, start, end, stride = (list(node.args[1:]) + [None, None, 1])[:4]
        if start not in (None, 0) or end not in (None, 2**63 - 1) or dim not in (2, 3):
            return None
        if dim == 3:
            step *= stride
        node = node.args[0]
    return (node, step) if node.op == "placeholder" else None


@dataclass
class _Fill:
    end: Node  # the add that closes the fill: kept + fill * (1 - m)
    mask: Node  # the mask placeholder
    taps: Tensor


def _match_fill(gm: GraphModule, kept: Node) -> _Fill | str:
    """kept = y * m; the separable fill reads it; returns the closing add or a reason."""
    if not _is(kept, _MUL):
        return "no mask multiply after the conv"
    y, m = kept.args
    source = _mask_source(m) if isinstance(m, Node) else None
    if source is None:
        return "mask is not a strided slice of the stage's mask input"
    rows = next((u for u in kept.users if _is(u, _CONV)), None)
    closing = next((u for u in kept.users if _is(u, _ADD)), None)
    if rows is None or closing is None or len(kept.users) != 2:
        return "the masked value has readers other than the fill"
    cols = _only_user(rows)
    weighted = _only_user(cols) if cols is not None else None
    if not _is(cols, _CONV) or not _is(weighted, _MUL) or _only_user(weighted) is not closing:
        return "the fill is not the separable RBF fill"
    other = next(a for a in weighted.args if a is not cols)
    if not (_is(other, _RSUB) and other.args[0] is m and other.args[1] == 1.0):
        return "the fill is not weighted by (1 - mask)"
    row_w, col_w = _const(gm, rows.args[1]), _const(gm, cols.args[1])
    if row_w is None or col_w is None:
        return "the fill kernels are not constants (fold constants first)"
    row_t, col_t = row_w[0].flatten(), col_w[0].flatten()
    if not (torch.equal(row_w, row_t.expand_as(row_w.flatten(1)).reshape(row_w.shape))
            and torch.equal(col_w, col_t.expand_as(col_w.flatten(1)).reshape(col_w.shape))):
        return "the fill taps differ between channels"
    return _Fill(closing, source[0], torch.sqrt(row_t * col_t).to(torch.float32).contiguous())


def _bn_affine(gm: GraphModule, bn: Node) -> tuple[Tensor, Tensor] | None:
    weight, bias, mean, var = (_const(gm, a) for a in bn.args[1:5])
    training, eps = bn.args[5], bn.args[7]
    if training or any(t is None for t in (weight, bias, mean, var)):
        return None
    scale = weight / torch.sqrt(var + eps)
    return scale.float().contiguous(), (bias - mean * scale).float().contiguous()


def _match_tail(bn: Node) -> dict | str:
    """After BN: [ReLU] -> Q, or Q/DQ -> + DQ(r) -> [ReLU] -> Q. Returns the op's tail args."""
    after = _only_user(bn)
    if _is(after, _RELU):
        q_out = _only_user(after)
        if _is(q_out, _Q) and _qparams(q_out):
            return {"q_out": q_out, "relu": True, "residual": None}
        return "the ReLU output is not quantised"
    if not _is(after, _Q) or not _qparams(after):
        return "the BN output stays float (read by an upsample, a pool or the logits)"
    plain = {"q_out": after, "relu": False, "residual": None}
    dq_b = _only_user(after)
    add = _only_user(dq_b) if _is(dq_b, _DQ) else None
    if not _is(add, _ADD) or len(add.args) != 2:
        return plain
    other = add.args[1] if add.args[0] is dq_b else add.args[0]
    if not _is(other, _DQ) or not _qparams(other) or other is dq_b:
        return plain
    end = _only_user(add)
    relu = _is(end, _RELU)
    q_out = _only_user(end) if relu else end
    if not _is(q_out, _Q) or not _qparams(q_out):
        return plain
    return {"q_out": q_out, "relu": relu, "residual": other, "q_b": after}


def _add_const(gm: GraphModule, prefix: str, value: Tensor | None, graph) -> Node | None:
    if value is None:
        return None
    name, i = prefix, 0
    while hasattr(gm, name):
        i += 1
        name = f"{prefix}_{i}"
    gm.register_buffer(name, value.contiguous())
    return graph.get_attr(name)


def _fuse_one(gm: GraphModule, conv: Node, report: FuseReport) -> str | None:
    """Rewrite one masked conv chain; returns the reason when it cannot."""
    x_dq, w_dq = conv.args[0], conv.args[1]
    bias_node = conv.args[2] if len(conv.args) > 2 else None
    stride, padding, dilation, groups = (list(conv.args[3:7]) + [[1, 1], [0, 0], [1, 1], 1][
        len(conv.args[3:7]):])
    if not _is(x_dq, _DQ) or not _qparams(x_dq) or not _is(w_dq, _DQC):
        return "the conv is not an int8 conv"
    if groups != 1 or list(dilation) != [1, 1] or len(set(stride)) != 1 or len(set(padding)) != 1:
        return "grouped, dilated or non-square conv"
    weight, w_scale = _const(gm, w_dq.args[0]), _const(gm, w_dq.args[1])
    w_zp = _const(gm, w_dq.args[2])
    bias = _const(gm, bias_node) if bias_node is not None else None
    if weight is None or w_scale is None or weight.dtype != torch.int8 or w_dq.args[3] != 0 or (
            w_zp is not None and bool(w_zp.any())) or (bias_node is not None and bias is None):
        return "weights are not constant symmetric per-channel int8"
    q_y = _only_user(conv)
    dq_y = _only_user(q_y) if _is(q_y, _Q) else None
    if not _is(dq_y, _DQ) or _qparams(q_y) is None or _qparams(q_y) != _qparams(dq_y):
        return "the conv output is not quantised"
    kept = _only_user(dq_y)
    fill = _match_fill(gm, kept) if kept is not None else "the conv output has several readers"
    if isinstance(fill, str):
        return fill
    bn = _only_user(fill.end)
    if not _is(bn, _BN):
        return "no BN after the fill"
    affine = _bn_affine(gm, bn)
    if affine is None:
        return "BN is not in inference form"
    tail = _match_tail(bn)
    if isinstance(tail, str):
        return tail
    x_scale, x_zp = _qparams(x_dq)
    y_scale, y_zp = _qparams(q_y)
    o_scale, o_zp = _qparams(tail["q_out"])
    r_scale, r_zp, b_scale, b_zp, residual = 1.0, 0, 1.0, 0, None
    if tail["residual"] is not None:
        r_scale, r_zp = _qparams(tail["residual"])
        b_scale, b_zp = _qparams(tail["q_b"])
        residual = tail["residual"].args[0]
    graph = gm.graph
    with graph.inserting_before(tail["q_out"]):
        prefix = f"qsparse_{conv.name}"
        args = (
            x_dq.args[0], x_scale, x_zp,
            _add_const(gm, f"{prefix}_weight", qtorch_op.pack_qweight(weight), graph),
            int(weight.shape[0]), int(weight.shape[2]),
            _add_const(gm, f"{prefix}_w_scale", w_scale.float(), graph),
            _add_const(gm, f"{prefix}_bias", None if bias is None else bias.float(), graph),
            fill.mask, _add_const(gm, f"{prefix}_taps", fill.taps, graph),
            int(stride[0]), int(padding[0]), y_scale, y_zp,
            _add_const(gm, f"{prefix}_bn_scale", affine[0], graph),
            _add_const(gm, f"{prefix}_bn_shift", affine[1], graph),
            residual, r_scale, r_zp, b_scale, b_zp, bool(tail["relu"]), o_scale, o_zp,
        )
        fused = graph.call_function(qtorch_op.qmasked_conv2d.default, args)
    tail["q_out"].replace_all_uses_with(fused)
    report.fused += 1
    report.with_residual += residual is not None
    return None


def _drop_unused(gm: GraphModule) -> None:
    """Dead-code elimination that also drops unused in-place ReLUs (fx keeps mutating ops)."""
    for node in reversed(list(gm.graph.nodes)):
        if node.op in ("call_function", "get_attr") and not node.users:
            gm.graph.erase_node(node)
    gm.delete_all_unused_submodules()
    used = {n.target for n in gm.graph.nodes if n.op == "get_attr"}
    for name, _ in [*gm.named_parameters(), *gm.named_buffers()]:
        if name not in used:  # the float weights and BN statistics the fused nodes replaced
            owner, _, attr = name.rpartition(".")
            delattr(gm.get_submodule(owner) if owner else gm, attr)


_ARG_MASK, _ARG_TAPS = ARG["mask"], ARG["taps"]
_ARG_KERNEL, _ARG_STRIDE = ARG["kernel"], ARG["stride"]


def _masked_pointwise_reader(gm: GraphModule, node: Node, mask: Node) -> bool:
    """Whether `node` reads its input only at pixels `mask` computes: a 1x1 stride-1 conv
    masked by the same mask (fused, or the int8 dense-masked chain left in the graph)."""
    if _is(node, _FUSED):
        return (node.args[_ARG_KERNEL] == 1 and node.args[_ARG_STRIDE] == 1
                and node.args[_ARG_MASK] is mask)
    if not _is(node, _CONV) or not _is(node.args[1], _DQC):
        return False
    stride, padding = (list(node.args[3:5]) + [[1, 1], [0, 0]][len(node.args[3:5]):])
    weight = _const(gm, node.args[1].args[0])
    if list(stride) != [1, 1] or list(padding) != [0, 0] or weight is None or \
            tuple(weight.shape[-2:]) != (1, 1):
        return False
    q = _only_user(node)
    dq = _only_user(q) if _is(q, _Q) else None
    kept = _only_user(dq) if _is(dq, _DQ) else None
    if not _is(kept, _MUL):
        return False
    source = next((_mask_source(a) for a in kept.args if a is not dq and isinstance(a, Node)),
                  None)
    return source is not None and source[0] is mask


def _drop_dead_fills(gm: GraphModule) -> int:
    """Fused convs whose skipped pixels nobody reads get no fill (exact, and much cheaper).

    A 1x1 conv at a computed pixel reads only that pixel, and its own skipped pixels take its
    own fill: so a fill read only by 1x1 convs under the same mask never reaches the result
    (the final head's 270-channel conv, read by the class conv, is the big one).
    """
    dropped = 0
    for node in gm.graph.nodes:
        if not _is(node, _FUSED) or node.args[_ARG_TAPS] is None:
            continue
        mask, readers = node.args[_ARG_MASK], []
        for user in node.users:
            readers += list(user.users) if _is(user, _DQ) else [user]
        if readers and all(_masked_pointwise_reader(gm, r, mask) and (not _is(r, _FUSED) or
                           r.args[ARG_RESIDUAL] is not node) for r in readers):
            node.args = (*node.args[:_ARG_TAPS], None, *node.args[_ARG_TAPS + 1:])
            dropped += 1
    return dropped


def fuse_masked_convs(gm: GraphModule) -> FuseReport:
    """Fuse every int8 masked conv chain of a converted, constant-folded stage graph in place."""
    report = FuseReport()
    for conv in list(gm.graph.nodes):
        if not _is(conv, _CONV) or not _is(conv.args[1], _DQC):
            continue  # fill convs and float convs
        reason = _fuse_one(gm, conv, report)
        if reason is not None:
            report.left[conv.name] = reason
    _drop_unused(gm)
    report.dead_fills = _drop_dead_fills(gm)
    _drop_unused(gm)
    gm.graph.lint()
    gm.recompile()
    return report


def channels_last_inputs(gm: GraphModule) -> None:
    """Float 4-D inputs become channels-last once, at the graph's start, in place.

    The fused op reads and writes NHWC; converting the inputs lets every op after them keep
    that layout (XNNPACK runs the one conversion: a `_to_copy`, which it delegates, unlike a
    layout clone), instead of a layout copy per fused op.
    """
    graph = gm.graph
    inputs = [n for n in graph.nodes if n.op == "placeholder"]
    for node in inputs:
        value = node.meta.get("val")
        if value is None or value.dim() != 4 or value.shape[1] == 1:
            continue  # the mask: both layouts are the same
        with graph.inserting_after(inputs[-1]):
            nhwc = graph.call_function(torch.ops.aten._to_copy.default, (node,),
                                       {"memory_format": torch.channels_last})
        node.replace_all_uses_with(nhwc, delete_user_cb=lambda user, own=nhwc: user is not own)
    graph.lint()
    gm.recompile()


def int8_feature_inputs(gm: GraphModule) -> list[tuple[float, int] | None]:
    """Feature inputs that the graph only quantises become int8 inputs, in place.

    Returns, per graph input, the (scale, zero point) it now takes, or None where it stays as
    it was (the mask). The previous stage then hands its int8 output over as it is (requantised
    to these parameters inside its own graph), so no float feature map crosses a boundary.
    """
    graph = gm.graph
    params: list[tuple[float, int] | None] = []
    for node in [n for n in graph.nodes if n.op == "placeholder"]:
        value = node.meta.get("val")
        user = _only_user(node)
        quant = _only_user(user) if _is(user, torch.ops.aten._to_copy.default) else user
        if value is None or value.dim() != 4 or value.shape[1] == 1 or not _is(quant, _Q) \
                or _qparams(quant) is None:
            params.append(None)
            continue
        quant.replace_all_uses_with(node)
        graph.erase_node(quant)
        if user is not quant:
            graph.erase_node(user)
        params.append(_qparams(quant))
    graph.lint()
    gm.recompile()
    return params


__all__ = ["FuseReport", "channels_last_inputs", "fuse_masked_convs", "int8_feature_inputs"]
