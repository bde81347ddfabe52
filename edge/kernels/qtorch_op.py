"""`torch.ops.adpc.qmasked_conv2d`: the int8 masked conv as one op torch.export captures.

It replaces, in a quantized stage graph, the whole chain the int8 dense-masked model runs for
one masked conv (model_zoo.qsparse builds it):

    DQ(x) -> conv(DQ(w)) [+ bias] -> Q/DQ(y) -> y*m + fill(y*m)*(1-m) -> BN -> [Q/DQ -> + DQ(r)]
          -> [ReLU] -> Q(out)

Schema (the ExecuTorch kernel registers the same `.out` variant):
    qmasked_conv2d(x, x_scale, x_zp, weight, out_channels, kernel, w_scale, bias?, mask?,
                   taps?, stride, padding, y_scale, y_zp, bn_scale?, bn_shift?, residual?,
                   r_scale, r_zp, b_scale, b_zp, relu, o_scale, o_zp) -> Tensor
- x: int8 N x Cin x H x W (computed channels-last), real value x_scale * (x - x_zp);
- weight: int8, symmetric per output channel with scales w_scale (float, Cout), packed once at
  export by the core (`pack_qweight`: a byte layout that does not depend on the machine, with
  its sizes in a header); out_channels and kernel repeat its sizes for shape inference;
- mask: N x 1 x Hm x Wm float 0/1 at an integer multiple s of the output size, sampled at
  [::s, ::s] inside the op (None: every pixel computed, no fill);
- taps: the 1-D fill taps t with 2-D kernel t t^T (edge.kernels.torch_op.fill_taps);
- y_scale / y_zp: the quantisation of the conv output the graph applies before the fill;
- bn_scale / bn_shift: folded BN after the fill; residual (int8, r_scale / r_zp): added after
  the BN output is quantised with b_scale / b_zp; relu; the output is int8 (o_scale, o_zp),
  channels-last.
`reference_qmasked_conv2d` defines the numbers (float conv of dequantised values, exactly the
graph's arithmetic); the native core accumulates in int32, so a few outputs may differ by one
step where float rounding lands on a tie.
"""

from __future__ import annotations

import ctypes
import functools
import struct
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor

from .build import CORE, KernelUnavailable, build

_ARGS = ("Tensor x, float x_scale, int x_zp, Tensor weight, int out_channels, int kernel, "
         "Tensor w_scale, Tensor? bias, "
         "Tensor? mask, Tensor? taps, int stride, int padding, float y_scale, int y_zp, "
         "Tensor? bn_scale, Tensor? bn_shift, Tensor? residual, float r_scale, int r_zp, "
         "float b_scale, int b_zp, bool relu, float o_scale, int o_zp")
SCHEMA = f"qmasked_conv2d({_ARGS}) -> Tensor"
OUT_SCHEMA = f"qmasked_conv2d.out({_ARGS}, *, Tensor(a!) out) -> Tensor(a!)"
QMIN, QMAX = -128, 127


def quantize(v: Tensor, scale: float, zero_point: int) -> Tensor:
    """torch's quantize_per_tensor: clamp(round(v * (1 / scale)) + zp) as int8."""
    return torch.clamp(torch.round(v * (1.0 / scale)) + zero_point, QMIN, QMAX).to(torch.int8)


def dequantize(q: Tensor, scale: float, zero_point: int) -> Tensor:
    return (q.to(torch.float32) - zero_point) * scale


def sample_mask(mask: Tensor, height: int, width: int) -> Tensor:
    """The mask at the conv output size: top-left sampling by the integer factor."""
    mh, mw = mask.shape[-2:]
    step = mh // height
    if step < 1 or step * height != mh or step * width != mw:
        raise ValueError(f"a {mh}x{mw} mask does not sample to the {height}x{width} output by "
                         "one integer factor")
    return mask[..., ::step, ::step]


def separable_fill(kept: Tensor, taps: Tensor) -> Tensor:
    """sum_d t[dy] t[dx] kept(p + d), zero outside the image (NCHW float)."""
    c, window = kept.shape[1], taps.numel()
    rows = taps.reshape(1, 1, 1, window).expand(c, 1, 1, window)
    cols = taps.reshape(1, 1, window, 1).expand(c, 1, window, 1)
    filled = F.conv2d(kept, rows, padding=(0, window // 2), groups=c)
    return F.conv2d(filled, cols, padding=(window // 2, 0), groups=c)


PACK_MAGIC = b"AQW1"
PACK_HEADER = 16
PACK_ALIGN = 16


def unpack_qweight(packed: Tensor) -> Tensor:
    """The core's packed weight back to int8 OIHW (the layout is documented in qmasked_conv.h:
    a header "AQW1", cout, cin, k; then [k][ceil(k*cin/4)][cout padded to 16][4] bytes)."""
    raw = packed.detach().to(torch.int8).contiguous()
    head = raw[:PACK_HEADER].numpy().tobytes()
    if len(head) < PACK_HEADER or head[:4] != PACK_MAGIC:
        raise ValueError("not a packed adpc int8 weight (no AQW1 header)")
    cout, cin, k = struct.unpack("<3i", head[4:16])
    cp, groups = -(-cout // PACK_ALIGN) * PACK_ALIGN, -(-k * cin // 4)
    body = raw[PACK_HEADER:PACK_HEADER + k * groups * cp * 4]
    if body.numel() != k * groups * cp * 4:
        raise ValueError(f"packed weight of {cout}x{cin}x{k}x{k} is truncated")
    rows = body.reshape(k, groups, cp, 4).permute(0, 1, 3, 2).reshape(k, groups * 4, cp)
    taps = rows[:, : k * cin].reshape(k, k, cin, cp)  # [ky][kx][ci][o]
    return taps.permute(3, 2, 0, 1)[:cout].contiguous()


def pack_qweight(weight: Tensor) -> Tensor:
    """int8 OIHW -> the core's packed layout (done once, at export); needs the native core."""
    lib = native_library()
    if lib is None:
        raise KernelUnavailable("packing int8 weights needs the native kernel (a C++ compiler)")
    w = weight.detach().to(torch.int8).contiguous()
    cout, cin, k, k2 = w.shape
    size = lib.adpc_qpacked_size(cout, cin, k)
    if k != k2 or size <= 0:
        raise ValueError(f"cannot pack a {tuple(w.shape)} weight")
    packed = torch.empty(size, dtype=torch.int8)
    if lib.adpc_qpack_weight(w.data_ptr(), cout, cin, k, packed.data_ptr()):
        raise ValueError(f"cannot pack a {tuple(w.shape)} weight")
    return packed


def reference_qmasked_conv2d(
    x: Tensor, x_scale: float, x_zp: int, weight: Tensor, out_channels: int, kernel: int,
    w_scale: Tensor, bias: Tensor | None, mask: Tensor | None, taps: Tensor | None, stride: int,
    padding: int, y_scale: float, y_zp: int, bn_scale: Tensor | None, bn_shift: Tensor | None,
    residual: Tensor | None, r_scale: float, r_zp: int, b_scale: float, b_zp: int, relu: bool,
    o_scale: float, o_zp: int,
) -> Tensor:
    """The int8 dense-masked chain, op for op as the quantized graph runs it."""
    oihw = unpack_qweight(weight)
    if tuple(oihw.shape) != (out_channels, x.shape[1], kernel, kernel):
        raise ValueError(f"the packed weight is {tuple(oihw.shape)}, the op says "
                         f"{(out_channels, x.shape[1], kernel, kernel)}")
    xf = dequantize(x, x_scale, x_zp)
    wf = oihw.to(torch.float32) * w_scale.reshape(-1, 1, 1, 1)
    y = F.conv2d(xf, wf, bias, stride, padding)
    v = dequantize(quantize(y, y_scale, y_zp), y_scale, y_zp)
    if mask is not None:
        m = sample_mask(mask.to(torch.float32), *v.shape[-2:])
        kept = v * m
        v = kept + separable_fill(kept, taps) * (1.0 - m) if taps is not None else kept
    if bn_scale is not None:
        v = v * bn_scale.reshape(1, -1, 1, 1)
    if bn_shift is not None:
        v = v + bn_shift.reshape(1, -1, 1, 1)
    if residual is not None:
        v = dequantize(quantize(v, b_scale, b_zp), b_scale, b_zp) + dequantize(
            residual, r_scale, r_zp)
    if relu:
        v = torch.relu(v)
    return quantize(v, o_scale, o_zp).contiguous(memory_format=torch.channels_last)


@functools.cache
def native_library() -> ctypes.CDLL | None:
    """The compiled core with the int8 entry points, or None (one warning) without them."""
    try:
        lib = ctypes.CDLL(str(build(CORE)))
        fn = lib.adpc_qmasked_conv2d
    except (KernelUnavailable, OSError, AttributeError) as err:
        warnings.warn(f"adpc int8 sparse kernel unavailable, using the dense reference: {err}",
                      RuntimeWarning, stacklevel=2)
        return None
    p, i, f = ctypes.c_void_p, ctypes.c_int, ctypes.c_float
    fn.restype = i
    fn.argtypes = [i] * 8 + [p, f, i, p, p, p, p, i, i, f, i, p, i, p, p, p, f, i, f, i, i, f, i,
                             p, i]
    lib.adpc_qpacked_size.restype = ctypes.c_long
    lib.adpc_qpacked_size.argtypes = [i, i, i]
    lib.adpc_qpack_weight.restype = i
    lib.adpc_qpack_weight.argtypes = [p, i, i, i, p]
    return lib


def _ptr(t: Tensor | None) -> int | None:
    return t.data_ptr() if t is not None else None


def _f32(t: Tensor | None) -> Tensor | None:
    return None if t is None else t.to(torch.float32).contiguous()


def native_qmasked_conv2d(
    x: Tensor, x_scale: float, x_zp: int, weight: Tensor, out_channels: int, kernel: int,
    w_scale: Tensor, bias: Tensor | None, mask: Tensor | None, taps: Tensor | None, stride: int,
    padding: int, y_scale: float, y_zp: int, bn_scale: Tensor | None, bn_shift: Tensor | None,
    residual: Tensor | None, r_scale: float, r_zp: int, b_scale: float, b_zp: int, relu: bool,
    o_scale: float, o_zp: int,
) -> Tensor:
    args = (x, x_scale, x_zp, weight, out_channels, kernel, w_scale, bias, mask, taps, stride,
            padding, y_scale, y_zp, bn_scale, bn_shift, residual, r_scale, r_zp, b_scale, b_zp,
            relu, o_scale, o_zp)
    lib = native_library()
    if lib is None:
        return reference_qmasked_conv2d(*args)
    if x.dtype != torch.int8 or weight.dtype != torch.int8 or x.dim() != 4:
        raise ValueError("adpc::qmasked_conv2d takes int8 N x C x H x W activations and an int8 "
                         "packed weight")
    n, cin, h, w = x.shape
    if weight.numel() != lib.adpc_qpacked_size(out_channels, cin, kernel):
        raise ValueError(f"the packed weight has {weight.numel()} bytes, not those of a "
                         f"{out_channels}x{cin}x{kernel}x{kernel} conv")
    ho = (h + 2 * padding - kernel) // stride + 1
    wo = (w + 2 * padding - kernel) // stride + 1
    cl = torch.channels_last
    xs = x.contiguous(memory_format=cl)
    rs = None if residual is None else residual.to(torch.int8).contiguous(memory_format=cl)
    ms = _f32(mask)
    mh, mw = (ms.shape[-2], ms.shape[-1]) if ms is not None else (ho, wo)
    ts = _f32(taps)
    out = torch.empty((n, out_channels, ho, wo), dtype=torch.int8, memory_format=cl)
    code = lib.adpc_qmasked_conv2d(
        n, h, w, cin, out_channels, kernel, stride, padding, _ptr(xs), x_scale, x_zp,
        _ptr(weight.contiguous()), _ptr(_f32(w_scale)), _ptr(_f32(bias)), _ptr(ms), mh, mw,
        y_scale, y_zp, _ptr(ts), ts.numel() if ts is not None else 0, _ptr(_f32(bn_scale)),
        _ptr(_f32(bn_shift)), _ptr(rs), r_scale, r_zp, b_scale, b_zp, int(relu), o_scale, o_zp,
        _ptr(out), torch.get_num_threads())
    if code:
        raise ValueError(f"adpc::qmasked_conv2d rejected its arguments (code {code})")
    return out


def _register() -> torch.library.Library:
    """Define the op once per process (importing this module twice must not re-register)."""
    lib = torch.library.Library("adpc", "FRAGMENT")
    lib.define(SCHEMA)
    lib.define(OUT_SCHEMA)
    lib.impl("qmasked_conv2d", native_qmasked_conv2d, "CPU")

    def out_variant(*args, out):
        out.copy_(native_qmasked_conv2d(*args))
        return out

    lib.impl("qmasked_conv2d.out", out_variant, "CPU")

    @torch.library.register_fake("adpc::qmasked_conv2d", lib=lib)
    def _fake(x, x_scale, x_zp, weight, out_channels, kernel, w_scale, bias, mask, taps, stride,
              padding, *rest):
        ho = (x.shape[2] + 2 * padding - kernel) // stride + 1
        wo = (x.shape[3] + 2 * padding - kernel) // stride + 1
        return x.new_empty((x.shape[0], out_channels, ho, wo), dtype=torch.int8).contiguous(
            memory_format=torch.channels_last)

    return lib


_LIBRARY = _register() if not hasattr(torch.ops.adpc, "qmasked_conv2d") else None
qmasked_conv2d = torch.ops.adpc.qmasked_conv2d
ARG = {part.split()[-1]: i for i, part in enumerate(_ARGS.split(", "))}
"""Position of each argument in the schema, by name (graph passes read fused nodes by it)."""
ARG_X, ARG_RESIDUAL = ARG["x"], ARG["residual"]  # int8 activations, each before scale and zp
__all__ = ["ARG", "ARG_RESIDUAL", "ARG_X", "dequantize", "pack_qweight", "qmasked_conv2d",
           "quantize", "reference_qmasked_conv2d", "unpack_qweight"]
