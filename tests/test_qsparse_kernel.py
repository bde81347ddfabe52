"""The int8 masked conv core (edge/kernels/qmasked_conv.h): exact everywhere it runs.

- the C++ driver (edge/kernels/test_qcore.cpp) on every instruction-set path of this machine,
  natively and for aarch64 under qemu (portable and dot-product paths);
- the C ABI through ctypes against a numpy reference of the semantics (float32 arithmetic in
  the documented order), with 1 and several threads, and its argument checks.
"""

from __future__ import annotations

import ctypes
import re
import shutil

import numpy as np
import pytest
from test_sparse_kernel import _compile_and_run

from edge.kernels.build import CORE, SOURCE_DIR, KernelUnavailable, build

QCORE_TEST = SOURCE_DIR / "test_qcore.cpp"


def _check_driver_output(out: str) -> None:
    assert out.count("ok  ") >= 84  # 14 shapes x 6 mask kinds, at least once each
    off, total = map(int, re.search(r"off by 1 LSB: (\d+) of (\d+)", out).groups())
    assert total > 0 and off <= total // 1000  # rare float-order differences in the fill only


def test_qcore_is_exact_natively(tmp_path):
    cxx = shutil.which("g++")
    if cxx is None:
        pytest.skip("no g++: the sparse kernel needs a C++ compiler (apt-get install g++)")
    out = _compile_and_run(cxx, [], tmp_path, ["-pthread"], source=QCORE_TEST)
    _check_driver_output(out)
    assert "portable" in out.splitlines()[0]  # the fallback is tested wherever a fast path runs


def test_qcore_is_exact_on_aarch64_under_qemu(tmp_path):
    cxx, qemu = shutil.which("aarch64-linux-gnu-g++"), shutil.which("qemu-aarch64-static")
    if cxx is None or qemu is None:
        pytest.skip("aarch64 cross check needs Debian g++-aarch64-linux-gnu and "
                    "qemu-user-static (`make system-packages` installs them as root)")
    out = _compile_and_run(cxx, [qemu], tmp_path, ["-static", "-pthread"], source=QCORE_TEST)
    _check_driver_output(out)
    assert "neondot" in out.splitlines()[0]  # qemu's default CPU has the dot product


# ------------------------------------------------------------------------------- C ABI
@pytest.fixture(scope="module")
def lib():
    try:
        library = ctypes.CDLL(str(build(CORE)))
    except KernelUnavailable as err:
        pytest.skip(str(err))
    p, i, f = ctypes.c_void_p, ctypes.c_int, ctypes.c_float
    library.adpc_qmasked_conv2d.restype = i
    library.adpc_qmasked_conv2d.argtypes = [i] * 8 + [p, f, i, p, p, p, p, i, i, f, i, p, i, p,
                                                      p, p, f, i, f, i, i, f, i, p, i]
    library.adpc_qpacked_size.restype = ctypes.c_long
    library.adpc_qpacked_size.argtypes = [i, i, i]
    library.adpc_qpack_weight.restype = i
    library.adpc_qpack_weight.argtypes = [p, i, i, i, p]
    return library


def _ptr(a: np.ndarray | None) -> int | None:
    return None if a is None else a.ctypes.data


def _pack(lib, w: np.ndarray) -> np.ndarray:
    cout, cin, k, _ = w.shape
    packed = np.zeros(lib.adpc_qpacked_size(cout, cin, k), np.int8)
    assert lib.adpc_qpack_weight(_ptr(w), cout, cin, k, _ptr(packed)) == 0
    return packed


def test_abi_version_and_packed_layout(lib):
    assert lib.adpc_abi_version() == 2
    rng = np.random.default_rng(0)
    cout, cin, k = 19, 6, 3
    w = np.ascontiguousarray(rng.integers(-128, 128, (cout, cin, k, k)).astype(np.int8))
    packed = _pack(lib, w)
    cp, groups = 32, (k * cin + 3) // 4
    assert packed.size == 16 + k * groups * cp * 4 + cp * 4
    assert bytes(packed[:4]) == b"AQW1"
    assert list(packed[4:16].view("<i4")) == [cout, cin, k]
    # [ky][g][cout_pad][4], byte j of kernel row ky = tap (kx, ci) with j = kx * cin + ci
    body = packed[16:16 + k * groups * cp * 4].reshape(k, groups, cp, 4)
    expect = np.zeros((k, groups * 4, cp), np.int8)
    expect[:, :k * cin, :cout] = w.transpose(2, 3, 1, 0).reshape(k, k * cin, cout)
    np.testing.assert_array_equal(body.transpose(0, 1, 3, 2).reshape(k, groups * 4, cp), expect)
    sums = packed[16 + k * groups * cp * 4:].view("<i4")
    np.testing.assert_array_equal(sums[:cout], w.astype(np.int64).sum(axis=(1, 2, 3)))
    assert not sums[cout:].any()
    assert lib.adpc_qpacked_size(0, 1, 1) == -1 and lib.adpc_qpacked_size(1, 1, 0) == -3


def _rne_clamp(t: np.ndarray, zp: int) -> np.ndarray:
    return np.clip(np.rint(t) + zp, -128, 127)


def _inv(scale: float) -> np.float32:
    return np.float32(1.0 / float(np.float32(scale)))


def reference(case: dict) -> tuple[np.ndarray, np.ndarray]:
    """Steps 1-5 of qmasked_conv.h, densely, float32 ops in the documented order.

    Returns the int8 output (NHWC) and which pixels are filled (skipped with an active pixel
    within the window), where float order may change a result by one step.
    """
    f32 = np.float32
    x, w, k, s, pad = case["x"], case["w"], case["k"], case["stride"], case["pad"]
    n, h, wd, cin = x.shape
    cout = w.shape[0]
    ho, wo = (h + 2 * pad - k) // s + 1, (wd + 2 * pad - k) // s + 1
    xp = np.pad(x.astype(np.int64) - case["x_zp"], ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    acc = np.zeros((n, ho, wo, cout), np.int64)
    for ky in range(k):
        for kx in range(k):
            win = xp[:, ky:ky + s * (ho - 1) + 1:s, kx:kx + s * (wo - 1) + 1:s, :]
            acc += win @ w[:, :, ky, kx].astype(np.int64).T
    y = acc.astype(np.int32).astype(f32) * (f32(case["x_scale"]) * case["w_scale"])
    if case["bias"] is not None:
        y = y + case["bias"]
    q = _rne_clamp(y * _inv(case["y_scale"]), case["y_zp"])
    yp = (q - case["y_zp"]).astype(f32) * f32(case["y_scale"])
    mask = case["mask"]
    if mask is None:
        m = np.ones((n, ho, wo), bool)
    else:
        step = mask.shape[1] // ho
        m = mask[:, ::step, ::step] != 0
    v = np.where(m[..., None], yp, f32(0))
    filled = np.zeros((n, ho, wo), bool)
    taps = case["taps"]
    if mask is not None and taps is not None and taps.size > 1:
        r = taps.size // 2
        kept = np.pad(v, ((0, 0), (r, r), (r, r), (0, 0)))
        hs = np.zeros_like(kept[:, :, r:r + wo])
        for d in range(taps.size):  # H along rows, then V along columns, ascending taps
            hs = hs + taps[d] * kept[:, :, d:d + wo]
        vs = np.zeros_like(v)
        for d in range(taps.size):
            vs = vs + taps[d] * hs[:, d:d + ho]
        v = np.where(m[..., None], v, vs)
        active = np.pad(m, ((0, 0), (r, r), (r, r)))
        near = np.zeros_like(m)
        for dy in range(taps.size):
            for dx in range(taps.size):
                near |= active[:, dy:dy + ho, dx:dx + wo]
        filled = near & ~m
    if case["bn_scale"] is not None:
        v = v * case["bn_scale"]
    if case["bn_shift"] is not None:
        v = v + case["bn_shift"]
    if case["residual"] is not None:
        qb = _rne_clamp(v * _inv(case["b_scale"]), case["b_zp"])
        v = (qb - case["b_zp"]).astype(f32) * f32(case["b_scale"]) + \
            (case["residual"].astype(np.int32) - case["r_zp"]).astype(f32) * f32(case["r_scale"])
    if case["relu"]:
        v = np.maximum(v, f32(0))
    return _rne_clamp(v * _inv(case["o_scale"]), case["o_zp"]).astype(np.int8), filled


def make_case(seed: int, cin: int, cout: int, k: int, stride: int, h: int, w: int, *, step=1,
              mask_kind="clustered", window=7, bias=True, bn=True, residual=False, relu=True,
              n=1) -> dict:
    rng = np.random.default_rng(seed)
    f32 = np.float32
    pad = k // 2
    ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    x = rng.integers(-128, 128, (n, h, w, cin)).astype(np.int8)
    wt = rng.integers(-127, 128, (cout, cin, k, k)).astype(np.int8)
    fan = (cin * k * k) ** 0.5
    case = {"x": x, "w": np.ascontiguousarray(wt), "k": k, "stride": stride, "pad": pad,
            "x_scale": 0.02, "x_zp": int(rng.integers(-20, 20)),
            "w_scale": ((rng.random(cout) + 0.5) / (127 * fan)).astype(f32),
            "bias": (rng.standard_normal(cout) * 0.5).astype(f32) if bias else None,
            "bn_scale": (rng.random(cout) + 0.5).astype(f32) if bn else None,
            "bn_shift": (rng.standard_normal(cout) * 0.3).astype(f32) if bn else None,
            "residual": rng.integers(-128, 128, (n, ho, wo, cout)).astype(np.int8)
            if residual else None,
            "y_scale": 0.03, "y_zp": int(rng.integers(-10, 10)), "r_scale": 0.02, "r_zp": 5,
            "b_scale": 0.035, "b_zp": -3, "relu": relu, "o_scale": 0.04,
            "o_zp": -100 if relu else 2}
    mh, mw = ho * step, wo * step
    if mask_kind == "none":
        case["mask"] = None
    elif mask_kind == "scattered":
        case["mask"] = (rng.random((n, mh, mw)) < 0.3).astype(f32)
    else:  # blobs: a coarse random field, upsampled, thresholded
        coarse = rng.random((n, max(1, mh // 6) + 1, max(1, mw // 6) + 1))
        iy = np.arange(mh) * (coarse.shape[1] - 1) // max(1, mh - 1)
        ix = np.arange(mw) * (coarse.shape[2] - 1) // max(1, mw - 1)
        case["mask"] = (coarse[:, iy][:, :, ix] < 0.45).astype(f32)
    d = np.arange(window, dtype=f32) - window // 2
    g = np.exp(-f32(0.36) * d * d)
    case["taps"] = (g / np.sqrt(g.sum() ** 2 - 1 + 1e-5)).astype(f32) if window else None
    # C order: the kernel reads raw pointers (fancy indexing and astype keep other layouts)
    return {key: np.ascontiguousarray(v) if isinstance(v, np.ndarray) else v
            for key, v in case.items()}


def run_native(lib, case: dict, threads: int, **override) -> tuple[int, np.ndarray]:
    """adpc_qmasked_conv2d on a case; `override` replaces arguments (shapes stay the case's)."""
    x, w, k, s, pad = case["x"], case["w"], case["k"], case["stride"], case["pad"]
    n, h, wd, cin = x.shape
    cout = w.shape[0]
    ho, wo = (h + 2 * pad - k) // s + 1, (wd + 2 * pad - k) // s + 1
    out = np.full((n, ho, wo, cout), 77, np.int8)
    mask, taps = case["mask"], case["taps"]
    c = {**case, "packed": _pack(lib, w), "out": out,
         "mh": mask.shape[1] if mask is not None else ho,
         "mw": mask.shape[2] if mask is not None else wo,
         "window": taps.size if taps is not None else 0, **override}
    code = lib.adpc_qmasked_conv2d(
        n, h, wd, cin, cout, k, c["stride"], c["pad"], _ptr(c["x"]), c["x_scale"], c["x_zp"],
        _ptr(c["packed"]), _ptr(c["w_scale"]), _ptr(c["bias"]), _ptr(c["mask"]), c["mh"], c["mw"],
        c["y_scale"], c["y_zp"], _ptr(c["taps"]), c["window"], _ptr(c["bn_scale"]),
        _ptr(c["bn_shift"]), _ptr(c["residual"]), c["r_scale"], c["r_zp"], c["b_scale"],
        c["b_zp"], int(c["relu"]), c["o_scale"], c["o_zp"], _ptr(c["out"]), threads)
    return code, out


CASES = [  # cin, cout, k, stride, h, w, options
    (18, 18, 3, 1, 21, 27, {}),
    (36, 36, 3, 1, 12, 17, {"residual": True, "step": 2}),
    (18, 36, 3, 2, 19, 23, {"step": 4, "bias": False}),
    (144, 72, 1, 1, 9, 11, {"mask_kind": "scattered", "relu": False}),
    (64, 19, 1, 1, 10, 13, {"bn": False, "window": 5}),
    (72, 72, 3, 1, 8, 9, {"mask_kind": "none"}),
    (27, 5, 3, 1, 7, 6, {"window": 0, "n": 2, "residual": True}),
]


@pytest.mark.parametrize("spec", CASES, ids=lambda s: f"{s[0]}to{s[1]}k{s[2]}s{s[3]}")
def test_c_abi_matches_the_numpy_reference_with_threads(lib, spec):
    cin, cout, k, stride, h, w, options = spec
    case = make_case(sum(spec[:6]), cin, cout, k, stride, h, w, **options)
    expect, filled = reference(case)
    outputs = []
    for threads in (1, 2, 3):
        code, out = run_native(lib, case, threads)
        assert code == 0
        outputs.append(out)
    for out in outputs[1:]:
        np.testing.assert_array_equal(out, outputs[0])  # threads never change a result
    diff = np.abs(outputs[0].astype(np.int32) - expect)
    assert not diff[~filled].any()  # active and far skipped pixels: exact
    assert diff.max() <= 1 and (diff > 0).mean() < 1e-3  # filled: float order, rarely 1 step


def test_c_abi_names_the_bad_argument(lib):
    case = make_case(1, 8, 8, 3, 1, 8, 8, step=2, residual=True)
    assert run_native(lib, case, 2)[0] == 0
    bad_packed = _pack(lib, case["w"]).copy()
    bad_packed[4] = 9  # cout in the header
    expect = {  # argument position in adpc_qmasked_conv2d's signature
        8: {"pad": -1}, 9: {"x": None}, 10: {"x_scale": 0.0}, 11: {"x_zp": 128},
        12: {"packed": bad_packed}, 13: {"w_scale": np.zeros(8, np.float32)}, 16: {"mh": 9},
        17: {"mw": 4}, 18: {"y_scale": -1.0}, 19: {"y_zp": -129}, 21: {"window": 4},
        25: {"r_scale": 0.0}, 28: {"b_zp": 300}, 30: {"o_scale": float("inf")},
        31: {"o_zp": 128}, 32: {"out": None},
    }
    for position, override in expect.items():
        assert run_native(lib, case, 1, **override)[0] == position, override
    assert run_native(lib, case, 0)[0] == 33
    assert run_native(lib, case, 1, stride=0)[0] == 7
