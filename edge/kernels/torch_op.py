"""`torch.ops.adpc.masked_conv2d`: the native masked conv as a PyTorch op torch.export captures.

Schema (the ExecuTorch kernel registers the same `.out` variant):
    masked_conv2d(x, weight, bias?, mask, taps?, stride, padding, out_channels,
                  scale?, shift?, residual?, relu) -> Tensor
- x: N x Cin x H x W (computed channels-last; other layouts are converted first);
- weight: packed [k, k, Cin, Cout_pad] (`pack_weight`), Cout_pad a multiple of 8;
- mask: N x 1 x Ho x Wo at the output resolution, 1 = compute, 0 = skip;
- taps: 1-D fill taps t with 2-D kernel t t^T (`fill_taps`), None = no fill (skipped = 0);
- scale/shift (folded BN), residual, relu: the epilogue, on every pixel.
The result is channels-last. On CPU the op calls the C++ core through ctypes; when the core
cannot be built it warns once and runs `reference_masked_conv2d` (same numbers, dense speed).
"""

from __future__ import annotations

import ctypes
import functools
import warnings

import torch
import torch.nn.functional as F
from torch import Tensor

from .build import CORE, KernelUnavailable, build

CHANNEL_ALIGN = 8
_ARGS = ("Tensor x, Tensor weight, Tensor? bias, Tensor mask, Tensor? taps, int stride, "
         "int padding, int out_channels, Tensor? scale, Tensor? shift, Tensor? residual, bool relu")
SCHEMA = f"masked_conv2d({_ARGS}) -> Tensor"
OUT_SCHEMA = f"masked_conv2d.out({_ARGS}, *, Tensor(a!) out) -> Tensor(a!)"


def pack_weight(weight: Tensor) -> Tensor:
    """OIHW -> [k, k, Cin, Cout_pad] with zero output-channel padding (the core's layout)."""
    cout = weight.shape[0]
    padded = -(-cout // CHANNEL_ALIGN) * CHANNEL_ALIGN
    packed = weight.detach().permute(2, 3, 1, 0).contiguous()
    return F.pad(packed, (0, padded - cout)).contiguous()


def unpack_weight(packed: Tensor, out_channels: int) -> Tensor:
    return packed[..., :out_channels].permute(3, 2, 0, 1).contiguous()


def fill_taps(g: Tensor, norm: Tensor) -> Tensor:
    """1-D taps t with t t^T = g g^T / norm: the separable RBF fill as one vector."""
    return (g / torch.sqrt(norm)).detach().contiguous()


def out_size(size: int, k: int, stride: int, padding: int) -> int:
    return (size + 2 * padding - k) // stride + 1


def reference_masked_conv2d(
    x: Tensor, weight: Tensor, bias: Tensor | None, mask: Tensor, taps: Tensor | None,
    stride: int, padding: int, out_channels: int, scale: Tensor | None = None,
    shift: Tensor | None = None, residual: Tensor | None = None, relu: bool = False,
) -> Tensor:
    """Dense conv, mask, fill, epilogue: the semantics the native kernel must reproduce."""
    y = F.conv2d(x, unpack_weight(weight, out_channels), bias, stride, padding)
    kept = y * mask
    if taps is not None:
        c, window = y.shape[1], taps.numel()
        rows = taps.reshape(1, 1, 1, window).expand(c, 1, 1, window)
        cols = taps.reshape(1, 1, window, 1).expand(c, 1, window, 1)
        filled = F.conv2d(kept, rows, padding=(0, window // 2), groups=c)
        filled = F.conv2d(filled, cols, padding=(window // 2, 0), groups=c)
        kept = kept + filled * (1.0 - mask)
    if scale is not None:
        kept = kept * scale.reshape(1, -1, 1, 1)
    if shift is not None:
        kept = kept + shift.reshape(1, -1, 1, 1)
    if residual is not None:
        kept = kept + residual
    if relu:
        kept = torch.relu(kept)
    return kept.contiguous(memory_format=torch.channels_last)


@functools.cache
def native_library() -> ctypes.CDLL | None:
    """The compiled core, or None (with one warning) when it cannot be built here."""
    try:
        lib = ctypes.CDLL(str(build(CORE)))
    except (KernelUnavailable, OSError) as err:
        warnings.warn(f"adpc sparse kernel unavailable, using the dense reference: {err}",
                      RuntimeWarning, stacklevel=2)
        return None
    lib.adpc_masked_conv2d.restype = ctypes.c_int
    lib.adpc_masked_conv2d.argtypes = [ctypes.c_int] * 9 + [ctypes.c_void_p] * 5 + [
        ctypes.c_int] + [ctypes.c_void_p] * 3 + [ctypes.c_int, ctypes.c_void_p, ctypes.c_int]
    return lib


def _ptr(t: Tensor | None) -> int | None:
    return t.data_ptr() if t is not None else None


def _f32(t: Tensor | None, layout=torch.contiguous_format) -> Tensor | None:
    if t is None:
        return None
    return t.to(torch.float32).contiguous(memory_format=layout)


def native_masked_conv2d(
    x: Tensor, weight: Tensor, bias: Tensor | None, mask: Tensor, taps: Tensor | None,
    stride: int, padding: int, out_channels: int, scale: Tensor | None = None,
    shift: Tensor | None = None, residual: Tensor | None = None, relu: bool = False,
) -> Tensor:
    lib = native_library()
    if lib is None:
        return reference_masked_conv2d(x, weight, bias, mask, taps, stride, padding,
                                       out_channels, scale, shift, residual, relu)
    n, cin, h, w = x.shape
    k = weight.shape[0]
    if tuple(weight.shape[1:3]) != (k, cin) or weight.shape[3] % CHANNEL_ALIGN:
        raise ValueError(
            f"weight must be packed [k, k, {cin}, Cout_pad], got {tuple(weight.shape)}"
        )
    ho, wo = out_size(h, k, stride, padding), out_size(w, k, stride, padding)
    if tuple(mask.shape) != (n, 1, ho, wo):
        raise ValueError(
            f"mask must be {(n, 1, ho, wo)} (the conv output size), got {tuple(mask.shape)}"
        )
    cl = torch.channels_last
    xs, ws, ms = _f32(x, cl), _f32(weight), _f32(mask)
    bs, ts, ss, hs, rs = _f32(bias), _f32(taps), _f32(scale), _f32(shift), _f32(residual, cl)
    out = torch.empty((n, out_channels, ho, wo), dtype=torch.float32, memory_format=cl)
    code = lib.adpc_masked_conv2d(
        n, h, w, cin, out_channels, weight.shape[3], k, stride, padding,
        _ptr(xs), _ptr(ws), _ptr(bs), _ptr(ms), _ptr(ts), taps.numel() if taps is not None else 0,
        _ptr(ss), _ptr(hs), _ptr(rs), int(relu), _ptr(out), torch.get_num_threads(),
    )
    if code:
        raise ValueError(f"adpc::masked_conv2d rejected its arguments (code {code})")
    return out


def _register() -> torch.library.Library:
    """Define the op once per process (importing this module twice must not re-register)."""
    lib = torch.library.Library("adpc", "FRAGMENT")
    lib.define(SCHEMA)
    lib.define(OUT_SCHEMA)
    lib.impl("masked_conv2d", native_masked_conv2d, "CPU")

    def out_variant(x, weight, bias, mask, taps, stride, padding, out_channels, scale, shift,
                    residual, relu, *, out):
        out.copy_(native_masked_conv2d(x, weight, bias, mask, taps, stride, padding,
                                       out_channels, scale, shift, residual, relu))
        return out

    lib.impl("masked_conv2d.out", out_variant, "CPU")

    @torch.library.register_fake("adpc::masked_conv2d", lib=lib)
    def _fake(x, weight, bias, mask, taps, stride, padding, out_channels, scale, shift,
              residual, relu):
        k = weight.shape[0]
        ho = (x.shape[2] + 2 * padding - k) // stride + 1
        wo = (x.shape[3] + 2 * padding - k) // stride + 1
        return x.new_empty((x.shape[0], out_channels, ho, wo)).contiguous(
            memory_format=torch.channels_last)

    return lib


_LIBRARY = _register() if not hasattr(torch.ops.adpc, "masked_conv2d") else None
masked_conv2d = torch.ops.adpc.masked_conv2d
__all__ = ["masked_conv2d", "pack_weight", "fill_taps", "reference_masked_conv2d"]
