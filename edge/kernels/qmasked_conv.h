// Int8 masked convolution: the quantized counterpart of masked_conv.h, for int8 programs.
//
// Semantics: exactly what the quantized dense-masked graph computes, step by step. Every float
// operation is a float32 operation in the order written here, never fused into an FMA (this
// header switches contraction off for its own code), so results are reproducible bit for bit
// on every machine:
//  1. acc = sum over taps and cin of (x_q - x_zp) * w_q, in int32; out-of-image taps add 0
//     (the input is padded with x_zp). y = float(acc) * (x_scale * w_scale[c]) + bias[c].
//  2. The graph's Q/DQ pair after the conv: qy = clamp(rne(y * inv(y_scale)) + y_zp, -128, 127),
//     y' = (qy - y_zp) * y_scale, with inv(s) = float(1 / double(s)) and rne = round half to
//     even (torch's quantize_per_tensor).
//  3. Mask: m(oy, ox) = mask[oy * step][ox * step] != 0 for a mask given at `step` times the
//     output resolution (mh = step * ho, mw = step * wo). A null mask: every pixel active, no fill.
//  4. Active pixels: v = y'. Skipped pixels: v = the separable RBF fill of y' * m, i.e.
//     H(r, x) = sum_dx t[dx] * (y' m)(r, x + dx), then v = sum_dy t[dy] * H(r + dy, x), each sum
//     taken in ascending tap order from 0 (zero outside the image). No mask dilation: a skipped
//     pixel never gets the true conv; with no active pixel in its window it gets v = 0.
//  5. Epilogue on every pixel: v = v * bn_scale[c] + bn_shift[c] (null = identity); with a
//     residual, v = dq(q(v; b_scale, b_zp)) + r_scale * (r_q - r_zp) (the graph quantises the BN
//     output before the add); ReLU; out_q = clamp(rne(v * inv(o_scale)) + o_zp, -128, 127).
//
// Layout: activations int8 NHWC. Weights int8, symmetric per output channel, packed once at
// export time by qpack_weight into a byte layout that does not depend on the machine:
//   header  "AQW1", cout, cin, k                         (4 x 4 bytes, little endian)
//   weights [k][G][cout_pad][4] int8, G = ceil(k * cin / 4), cout_pad = cout rounded up to 16
//   sums    [cout_pad] int32 little endian: sum of each output channel's weights
// Byte j of kernel row ky is tap (kx, ci) with j = kx * cin + ci: the k taps of one kernel row
// read one contiguous stretch of k * cin input bytes (NHWC), whatever the stride, so narrow
// layers waste no input-channel padding (3 * 18 = 54 bytes -> 14 groups, not 3 x 5). One group
// of 4 bytes x 16 channels is 64 bytes: a 512-, 256- or 128-bit kernel reads 16, 8 or 4 output
// channels from it. The sums give the zero-point correction -zp * sum(w) per channel for free.
//
// Design (speed is the point: a sparse kernel that loses to the dense int8 conv is useless):
// - One scan of the mask builds the compacted list of active output pixels: per pixel a pointer
//   to the top-left of its window in a zero-point-padded copy of the input (only the rows and
//   columns active windows read are copied) and its output index. No division in the hot loop.
// - Register tiles of 8 pixels x up to 3 vectors of output channels, accumulated over all
//   kernel rows and 4-byte groups with the machine's int8 dot product (AVX512-VNNI vpdpbusd,
//   AVX2 vpmaddwd, ARMv8.2 sdot, or plain C++), starting from the zero-point correction; then
//   the whole float chain (steps 1-2 and 5) on the tile's accumulators, the 8 pixels side by
//   side, and int8 stores: active pixels are finished in one pass.
// - vpdpbusd multiplies u8 by s8: activations are flipped to u8 (x ^ 0x80 = x + 128) while they
//   are copied (or on the fly for 1x1 convs, which need no copy) and the correction uses
//   x_zp + 128. The other paths use s8 directly.
// - Fill only where it matters: skipped pixels with an active pixel within the window ("near")
//   get the separable fill; the others get the per-channel constant epilogue(0), copied. The
//   conv pass keeps y' of active pixels in a float plane (4 bytes per pixel and channel: when
//   the fill runs at all) and the fill reads it directly: H is computed only at the columns
//   near pixels read, V over runs of near pixels, both as contiguous tap sums (NHWC runs).
// - Mask planning (output-resolution mask, near pixels, the H columns) is a few vectorised
//   byte operations per pixel; run scans go 8 bytes at a time.
// - ISA dispatch at run time from one portable build (no -march): AVX512-VNNI, AVX2 and a
//   portable path on x86-64; sdot (when the CPU reports it) and the portable path on aarch64.
//   Only the int8 dot-product tiles are ISA-specific; the float code is written once (GCC/
//   Clang vector extensions on x86-64, NEON on aarch64) and compiled inside each ISA's target
//   functions. ADPC_QKERNEL=portable|avx2|avx512vnni|neondot picks a lower path (tests).
//
// Threading is the caller's, as in masked_conv.h: `par(num_tasks, fn)` must call fn(i) once for
// each i in [0, num_tasks).
#pragma once

#include <algorithm>
#include <cfloat>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "masked_conv.h"

#if defined(__FAST_MATH__)
#error "qmasked_conv.h needs IEEE float32 arithmetic (exact rounding): build without -ffast-math"
#endif
#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD != 0
#error "qmasked_conv.h needs float32 evaluation (FLT_EVAL_METHOD == 0)"
#endif
#if !defined(__GNUC__) && !defined(__clang__)
#error "qmasked_conv.h needs GCC or Clang (vector extensions, target attributes)"
#endif
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "qmasked_conv.h assumes a little-endian machine"
#endif

#if defined(__x86_64__)
#define ADPC_Q_X86 1
#include <immintrin.h>
#elif defined(__aarch64__)
#define ADPC_Q_ARM64 1
#include <arm_neon.h>
#if defined(__linux__)
#include <sys/auxv.h>
#endif
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
#endif

// Exact float32 semantics for everything below: no a * b + c contracted into an FMA (GCC
// contracts by default, even with -std=c++17, inside AVX2/AVX-512 target functions and always
// on aarch64).
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#else
#pragma GCC push_options
#pragma GCC optimize("fp-contract=off")
#endif
// Helpers take 32-byte vectors by reference; the vectors they return never cross an ABI
// boundary (always inlined), but GCC warns at the end of the translation unit: silenced.
#if !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

#if defined(ADPC_Q_X86)
#define ADPC_Q_AVX2 __attribute__((target("avx2,fma")))
#define ADPC_Q_VNNI __attribute__((target("avx2,fma,avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))
#endif
#if defined(ADPC_Q_ARM64)
#define ADPC_Q_DOT __attribute__((target("arch=armv8.2-a+dotprod")))
#endif

// Fixed-size loops over a tile's pixels and vectors must be fully unrolled, or the accumulators
// live in memory instead of registers (GCC's -O3 leaves 8 x 3 loops rolled).
#define ADPC_Q_PRAGMA(x) _Pragma(#x)
#define ADPC_Q_UNROLL(n) ADPC_Q_PRAGMA(GCC unroll n)
// The tile loops are compiled once per ISA, not once per epilogue variant (build time).
#define ADPC_Q_NOINLINE __attribute__((noinline))

namespace adpc {

// ----------------------------------------------------------------------------- arguments
struct QMaskedConvArgs {
  int n = 0, h = 0, w = 0, cin = 0, cout = 0, k = 1, stride = 1, pad = 0;
  const int8_t* x = nullptr;           // [n][h][w][cin]
  float x_scale = 1.0f;
  int x_zp = 0;
  const int8_t* packed = nullptr;      // qpack_weight's output
  const float* w_scale = nullptr;      // [cout]
  const float* bias = nullptr;         // [cout] or null
  const float* mask = nullptr;         // [n][mh][mw], mh = step * ho, mw = step * wo; or null
  int mh = 0, mw = 0;
  float y_scale = 1.0f;                // the conv output's Q/DQ pair
  int y_zp = 0;
  const float* taps = nullptr;         // [window] 1-D fill taps (2-D kernel t t^T), or null
  int window = 0;
  const float* bn_scale = nullptr;     // [cout] or null
  const float* bn_shift = nullptr;     // [cout] or null
  const int8_t* residual = nullptr;    // [n][ho][wo][cout] or null
  float r_scale = 1.0f;
  int r_zp = 0;
  float b_scale = 1.0f;                // the BN output's Q/DQ pair before the residual add
  int b_zp = 0;
  int relu = 0;
  float o_scale = 1.0f;
  int o_zp = 0;
  int8_t* out = nullptr;               // [n][ho][wo][cout]
  int32_t* acc_out = nullptr;          // test hook: if set, acc of active pixels, [n][ho][wo][cout]
};

// A bad argument is reported as its 1-based position in adpc_qmasked_conv2d's C signature.
enum QArg : int {
  kQOk = 0, kQN, kQH, kQW, kQCin, kQCout, kQK, kQStride, kQPad, kQX, kQXScale, kQXZp, kQPacked,
  kQWScale, kQBias, kQMask, kQMh, kQMw, kQYScale, kQYZp, kQTaps, kQWindow, kQBnScale, kQBnShift,
  kQResidual, kQRScale, kQRZp, kQBScale, kQBZp, kQRelu, kQOScale, kQOZp, kQOut, kQThreads,
};

// ----------------------------------------------------------------------------- packed weights
constexpr int kQChannelAlign = 16;
constexpr int kQHeaderBytes = 16;
constexpr int kQMaxChannels = 1 << 16;  // keeps every size product far from int overflow
constexpr int kQMaxKernel = 31;

inline int qpadded_channels(int cout) { return (cout + kQChannelAlign - 1) / kQChannelAlign * kQChannelAlign; }
inline int qgroups(int cin, int k) { return (k * cin + 3) / 4; }

namespace qdetail {
inline void put_le32(int8_t* p, int32_t v) {
  const uint32_t u = static_cast<uint32_t>(v);
  for (int i = 0; i < 4; ++i) p[i] = static_cast<int8_t>(static_cast<uint8_t>(u >> (8 * i)));
}
inline int32_t get_le32(const int8_t* p) {
  uint32_t u = 0;
  for (int i = 0; i < 4; ++i) u |= static_cast<uint32_t>(static_cast<uint8_t>(p[i])) << (8 * i);
  return static_cast<int32_t>(u);
}
inline int64_t weight_bytes(int cout, int cin, int k) {
  return static_cast<int64_t>(k) * qgroups(cin, k) * qpadded_channels(cout) * 4;
}
}  // namespace qdetail

// Bytes of the packed weight, or -1 for sizes out of range.
inline int64_t qpacked_size(int cout, int cin, int k) {
  if (cout <= 0 || cout > kQMaxChannels || cin <= 0 || cin > kQMaxChannels || k <= 0 || k > kQMaxKernel)
    return -1;
  return kQHeaderBytes + qdetail::weight_bytes(cout, cin, k) + 4 * static_cast<int64_t>(qpadded_channels(cout));
}

// OIHW int8 -> the packed layout above. Returns 0, or the 1-based position of a bad argument.
inline int qpack_weight(const int8_t* oihw, int cout, int cin, int k, int8_t* packed) {
  if (!oihw) return 1;
  if (cout <= 0 || cout > kQMaxChannels) return 2;
  if (cin <= 0 || cin > kQMaxChannels) return 3;
  if (k <= 0 || k > kQMaxKernel) return 4;
  if (!packed) return 5;
  const int cp = qpadded_channels(cout), groups = qgroups(cin, k);
  std::memcpy(packed, "AQW1", 4);
  qdetail::put_le32(packed + 4, cout);
  qdetail::put_le32(packed + 8, cin);
  qdetail::put_le32(packed + 12, k);
  int8_t* wts = packed + kQHeaderBytes;
  const int64_t nbytes = qdetail::weight_bytes(cout, cin, k);
  std::memset(wts, 0, static_cast<size_t>(nbytes));
  int8_t* sums = wts + nbytes;
  for (int o = 0; o < cp; ++o) {
    int32_t sum = 0;
    for (int ky = 0; o < cout && ky < k; ++ky)
      for (int kx = 0; kx < k; ++kx)
        for (int ci = 0; ci < cin; ++ci) {
          const int8_t v = oihw[((static_cast<int64_t>(o) * cin + ci) * k + ky) * k + kx];
          const int j = kx * cin + ci;
          wts[((static_cast<int64_t>(ky) * groups + j / 4) * cp + o) * 4 + j % 4] = v;
          sum += v;
        }
    qdetail::put_le32(sums + 4 * o, sum);
  }
  return 0;
}

inline bool qpacked_matches(const int8_t* packed, int cout, int cin, int k) {
  return std::memcmp(packed, "AQW1", 4) == 0 && qdetail::get_le32(packed + 4) == cout &&
         qdetail::get_le32(packed + 8) == cin && qdetail::get_le32(packed + 12) == k;
}

// ----------------------------------------------------------------------------- validation
inline bool qscale_ok(float s) { return s > 0.0f && s <= FLT_MAX; }  // positive and finite
inline bool qzp_ok(int zp) { return zp >= -128 && zp <= 127; }

// 0 if the arguments describe a valid call, else the QArg of the first bad one.
inline int qcheck_args(const QMaskedConvArgs& a, int threads) {
  if (a.n <= 0) return kQN;
  if (a.cin <= 0 || a.cin > kQMaxChannels) return kQCin;
  if (a.cout <= 0 || a.cout > kQMaxChannels) return kQCout;
  if (a.k <= 0 || a.k > kQMaxKernel) return kQK;
  // |acc| <= 255 * 128 * k * k * cin must fit in int32 (in every path's intermediate sums).
  if (static_cast<int64_t>(a.k) * a.k * a.cin > 65536) return kQCin;
  if (a.stride <= 0) return kQStride;
  if (a.pad < 0 || a.pad > kQMaxKernel) return kQPad;
  if (a.h <= 0 || a.h + 2 * a.pad < a.k) return kQH;
  if (a.w <= 0 || a.w + 2 * a.pad < a.k) return kQW;
  if (static_cast<int64_t>(a.n) * (a.h + 2 * a.pad) * (a.w + 2 * a.pad) * a.cin > (int64_t{1} << 40))
    return kQN;
  if (!a.x) return kQX;
  if (!qscale_ok(a.x_scale)) return kQXScale;
  if (!qzp_ok(a.x_zp)) return kQXZp;
  if (!a.packed || !qpacked_matches(a.packed, a.cout, a.cin, a.k)) return kQPacked;
  if (!a.w_scale) return kQWScale;
  for (int c = 0; c < a.cout; ++c)
    if (!qscale_ok(a.w_scale[c])) return kQWScale;
  const int ho = conv_out_size(a.h, a.k, a.stride, a.pad), wo = conv_out_size(a.w, a.k, a.stride, a.pad);
  if (static_cast<int64_t>(a.n) * ho * wo >= (int64_t{1} << 31)) return kQN;
  if (a.mask) {
    if (a.mh <= 0 || a.mh % ho != 0) return kQMh;
    if (a.mw <= 0 || a.mw % wo != 0 || a.mw / wo != a.mh / ho) return kQMw;
  }
  if (!qscale_ok(a.y_scale)) return kQYScale;
  if (!qzp_ok(a.y_zp)) return kQYZp;
  if (a.taps && (a.window <= 0 || a.window % 2 == 0 || a.window > 255)) return kQWindow;
  if (a.residual) {
    if (!qscale_ok(a.r_scale)) return kQRScale;
    if (!qzp_ok(a.r_zp)) return kQRZp;
    if (!qscale_ok(a.b_scale)) return kQBScale;
    if (!qzp_ok(a.b_zp)) return kQBZp;
  }
  if (!qscale_ok(a.o_scale)) return kQOScale;
  if (!qzp_ok(a.o_zp)) return kQOZp;
  if (!a.out) return kQOut;
  if (threads <= 0) return kQThreads;
  return kQOk;
}

// ----------------------------------------------------------------------------- ISA choice
enum class QIsa : int { kPortable = 0, kAvx2 = 1, kAvx512Vnni = 2, kNeonDot = 3 };
constexpr int kQIsaCount = 4;

inline const char* qisa_name(QIsa isa) {
  switch (isa) {
    case QIsa::kAvx2: return "avx2";
    case QIsa::kAvx512Vnni: return "avx512vnni";
    case QIsa::kNeonDot: return "neondot";
    default: return "portable";
  }
}

inline bool qisa_supported(QIsa isa) {
  switch (isa) {
    case QIsa::kPortable: return true;
#if defined(ADPC_Q_X86)
    case QIsa::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case QIsa::kAvx512Vnni:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512vnni");
#endif
#if defined(ADPC_Q_ARM64)
    case QIsa::kNeonDot:
#if defined(__ARM_FEATURE_DOTPROD)
      return true;  // the whole build targets a dot-product CPU
#elif defined(__linux__)
      return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#elif defined(__APPLE__)
      return true;  // every arm64 Apple CPU has it
#else
      return false;
#endif
#endif
    default: return false;
  }
}

// The best path this CPU runs; ADPC_QKERNEL=portable|avx2|avx512vnni|neondot picks a (supported)
// lower one, for tests and benchmarks.
inline QIsa qisa_default() {
  static const QIsa chosen = [] {
    const char* env = std::getenv("ADPC_QKERNEL");
    for (int i = 0; env && i < kQIsaCount; ++i)
      if (std::strcmp(env, qisa_name(static_cast<QIsa>(i))) == 0 && qisa_supported(static_cast<QIsa>(i)))
        return static_cast<QIsa>(i);
    for (QIsa isa : {QIsa::kAvx512Vnni, QIsa::kNeonDot, QIsa::kAvx2})
      if (qisa_supported(isa)) return isa;
    return QIsa::kPortable;
  }();
  return chosen;
}

struct QWorkspace;

namespace qdetail {

// A register tile's output channels: v vectors of `lanes` channels starting at channel co.
struct ChannelTile {
  int co, v, lanes;
};

// The float chain's per-call constants. Kernels copy it to a local before their loops: int8
// stores may alias anything, so fields read through a reference would be reloaded after each.
struct Chain {
  const int32_t* corr;  // per channel (cp entries): -zp_eff * sum(w)
  const float *mul, *bias, *bn_s, *bn_b;
  float inv_y, y_scale, y_lo, y_hi;  // y_lo/hi: clamp bounds of rne(y * inv_y), minus y_zp
  float inv_b, b_scale, b_lo, b_hi;
  float r_scale, r_zpf;
  float relu_floor;
  float inv_o, o_lo, o_hi, o_zpf;
};

// Everything one call's passes read: geometry, per-channel constants, pixel list, planes.
struct QPlan {
  int n, h, w, cin, cout, k, stride, pad, ho, wo, rows;
  int cp;       // packed channel count (multiple of 16): stride of the accumulator rows
  int cb;       // channels rounded up to 8: the float blocks, and the y' plane's pixel stride
  int groups;   // 4-byte groups per kernel row
  int64_t rs;   // bytes between kernel rows in the buffer the pixel pointers point into
  int64_t wg;   // bytes between weight groups (cp * 4)
  const int8_t* wts;
  const ChannelTile* tiles;
  int ntiles;
  bool flip;    // VNNI without a copy: flip activations to u8 on the fly
  Chain chain;
  // active pixels (count a multiple of 8; the last entry repeated)
  const uint8_t* const* ptr;
  const int32_t* opix;
  int64_t count;
  // skipped pixels
  bool fill;    // taps with a window > 1
  int R;
  const float* taps;
  const uint8_t *m8, *hneed;
  const uint8_t* ykeep;  // per pixel: 1 active, its y' is read by the fill; 2 inactive, read as 0
  const uint8_t* cls;  // per pixel: 0 active, 1 skipped with an active pixel in its window, 2 other
  const int32_t *row_active, *row_near, *hlo, *hhi;
  float* yp;    // [rows * wo][cb]: y' of the active pixels the fill reads (ykeep == 1), and 0 at
                // the inactive pixels it reads (ykeep == 2)
  bool store_yp;
  const int8_t* far_row;  // wo * cout bytes: a far skipped pixel's output (no residual)
  const int8_t* residual;
  int8_t* out;
  int32_t* acc_out;
  // padded input copy
  const int8_t* x;
  uint8_t* padded;
  int hp, wp;
  uint8_t pad_byte, xor_byte;
  const int32_t *need_lo, *need_hi;  // per padded row: columns [lo, hi) to copy
};

// ------------------------------------------------------------------ float chain (all paths)
// Blocks of kLanes channels in the machine's native float vector: 8 lanes of GCC/Clang vector
// extensions on x86-64 (compiled for whatever target the calling ISA function has: ymm with
// AVX2/AVX-512, two xmm on the baseline), 4 lanes of NEON intrinsics on aarch64 (where NEON is
// the baseline, and GCC's generic 8-lane code falls apart into scalars). Rounding and clamping
// stay IEEE float32 operations in the order of the semantics: results are bit-identical.
// Every generic function takes an Isa tag: the one choice the float code makes per ISA is how
// to narrow int32 lanes to bytes (vpmovdb with AVX-512, a byte shuffle without).
struct IsaGeneric {
  static constexpr bool kVpmov = false;
};
struct IsaAvx512 {
  static constexpr bool kVpmov = true;
};

constexpr float kRoundMagic = 12582912.0f;  // 1.5 * 2^23: (t + M) - M = rne(t) for |t| < 2^22

#if defined(ADPC_Q_ARM64)
constexpr int kLanes = 4;
typedef float32x4_t fvec;
typedef int32x4_t ivec;
ADPC_INLINE fvec splat(float v) { return vdupq_n_f32(v); }
ADPC_INLINE fvec load_f(const float* p) { return vld1q_f32(p); }
ADPC_INLINE ivec load_i(const int32_t* p) { return vld1q_s32(p); }
ADPC_INLINE void store_f(float* p, fvec v) { vst1q_f32(p, v); }
ADPC_INLINE fvec to_float(ivec v) { return vcvtq_f32_s32(v); }
ADPC_INLINE fvec s8_to_float(const int8_t* p) {
  int32_t w;
  std::memcpy(&w, p, 4);
  const int16x8_t h = vmovl_s8(vreinterpret_s8_s32(vdup_n_s32(w)));
  return vcvtq_f32_s32(vmovl_s16(vget_low_s16(h)));
}
// fmax/fmin differ from maxps only in NaNs (none here) and in the sign of a zero result, which
// the rounding below erases ((-0 + M) - M = +0).
ADPC_INLINE fvec vmax(fvec a, fvec b) { return vmaxq_f32(a, b); }
ADPC_INLINE fvec vmin(fvec a, fvec b) { return vminq_f32(a, b); }
// Integer-valued lanes in [-128, 127] -> kLanes bytes.
template <class Isa>
ADPC_INLINE uint32_t to_bytes(fvec t) {
  const int16x4_t h = vmovn_s32(vcvtq_s32_f32(t));
  return vget_lane_u32(vreinterpret_u32_s8(vmovn_s16(vcombine_s16(h, h))), 0);
}
typedef uint32_t bvec;
#else
constexpr int kLanes = 8;
typedef float fvec __attribute__((vector_size(32)));
typedef int32_t ivec __attribute__((vector_size(32)));
typedef int8_t i8x32 __attribute__((vector_size(32)));
typedef int8_t i8x8 __attribute__((vector_size(8)));
// fvec{} + v: one broadcast (GCC expands the 8-element initializer lane by lane).
ADPC_INLINE fvec splat(float v) { return fvec{} + v; }
ADPC_INLINE fvec load_f(const float* p) { fvec v; std::memcpy(&v, p, sizeof v); return v; }
ADPC_INLINE ivec load_i(const int32_t* p) { ivec v; std::memcpy(&v, p, sizeof v); return v; }
ADPC_INLINE void store_f(float* p, const fvec& v) { std::memcpy(p, &v, sizeof v); }
ADPC_INLINE fvec to_float(const ivec& v) { return __builtin_convertvector(v, fvec); }
// Element by element, so that compilers emit one sign-extending load (vpmovsxbd).
ADPC_INLINE fvec s8_to_float(const int8_t* p) {
  const ivec v = {p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]};
  return to_float(v);
}
// a > b ? a : b is exactly maxps semantics, so it compiles to one instruction.
ADPC_INLINE fvec vmax(const fvec& a, const fvec& b) { return a > b ? a : b; }
ADPC_INLINE fvec vmin(const fvec& a, const fvec& b) { return a < b ? a : b; }
template <class Isa>
ADPC_INLINE i8x8 to_bytes(const fvec& t) {
  const ivec i = __builtin_convertvector(t, ivec);
#if defined(__clang__) || __GNUC__ >= 12
  if constexpr (!Isa::kVpmov) {  // GCC lowers the conversion below to scalar code without AVX-512
    const i8x32 b = reinterpret_cast<const i8x32&>(i);
    return __builtin_shufflevector(b, b, 0, 4, 8, 12, 16, 20, 24, 28);
  }
#endif
  return __builtin_convertvector(i, i8x8);
}
typedef i8x8 bvec;
#endif

// rne(clamp(t, lo, hi)) for integer lo, hi: equals clamp(rne(t), lo, hi), needs no rounding
// instruction (the magic-number add rounds half to even) and keeps |t| small enough for it.
ADPC_INLINE fvec round_clamped(const fvec& value, const fvec& lo, const fvec& hi) {
  const fvec t = vmin(vmax(value, lo), hi);
  return (t + kRoundMagic) - kRoundMagic;
}

// n < kLanes bytes at the end of a pixel: never touch the next pixel's channels (another
// task's); constant-size copies, no byte loop.
ADPC_INLINE void store_bytes(int8_t* p, const bvec& v, int n) {
  if (n >= kLanes) {
    std::memcpy(p, &v, kLanes);
    return;
  }
  const int8_t* s = reinterpret_cast<const int8_t*>(&v);
  if (kLanes == 8 && (n & 4)) {
    std::memcpy(p, s, 4);
    p += 4;
    s += 4;
  }
  if (n & 2) {
    std::memcpy(p, s, 2);
    p += 2;
    s += 2;
  }
  if (n & 1) *p = *s;
}
ADPC_INLINE fvec s8_to_float_tail(const int8_t* p, int n) {
  if (n >= kLanes) return s8_to_float(p);
  int8_t t[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  for (int i = 0; i < n; ++i) t[i] = p[i];
  return s8_to_float(t);
}

// The chain's scalars as vectors, made once per pass.
struct ChainV {
  fvec inv_y, y_scale, y_lo, y_hi, inv_b, b_scale, b_lo, b_hi, r_scale, r_zp, relu_floor;
  fvec inv_o, o_lo, o_hi, o_zp;
  explicit ChainV(const Chain& C)
      : inv_y(splat(C.inv_y)), y_scale(splat(C.y_scale)), y_lo(splat(C.y_lo)), y_hi(splat(C.y_hi)),
        inv_b(splat(C.inv_b)), b_scale(splat(C.b_scale)), b_lo(splat(C.b_lo)),
        b_hi(splat(C.b_hi)), r_scale(splat(C.r_scale)), r_zp(splat(C.r_zpf)),
        relu_floor(splat(C.relu_floor)), inv_o(splat(C.inv_o)), o_lo(splat(C.o_lo)),
        o_hi(splat(C.o_hi)), o_zp(splat(C.o_zpf)) {}
};

// Channel blocks of a pixel: b * kLanes, except that the last one ends at cout when cout is not a
// multiple of kLanes (it recomputes a few channels, with the same values): every load and store
// is a full vector inside the pixel, no tail code. Only cout < kLanes needs partial ones.
ADPC_INLINE int block_at(int b, int cout) {
  return cout >= kLanes ? std::min(b * kLanes, cout - kLanes) : 0;
}

// The chain runs stage by stage over the pixels of a group (up to 8), one channel block at a
// time: each stage is a row of independent operations (a block alone is a ~20-instruction
// serial chain the core cannot overlap enough), and per-channel constants load once per block.

// Step 5 for n <= 8 pixels: v[p] (channel block at) -> int8 at out[p] + at.
template <class Isa, bool HasRes>
ADPC_INLINE void finish_group(const Chain& C, const ChainV& V, fvec* v, int n, int at, int valid,
                              int8_t* const* out, const int8_t* const* res) {
  const fvec bn_s = load_f(C.bn_s + at), bn_b = load_f(C.bn_b + at);
  for (int p = 0; p < n; ++p) v[p] = v[p] * bn_s;
  for (int p = 0; p < n; ++p) v[p] = v[p] + bn_b;
  if (HasRes) {
    for (int p = 0; p < n; ++p) v[p] = round_clamped(v[p] * V.inv_b, V.b_lo, V.b_hi);  // q(v; b) - b_zp
    for (int p = 0; p < n; ++p) v[p] = v[p] * V.b_scale;
    for (int p = 0; p < n; ++p) {
      const fvec r = (s8_to_float_tail(res[p] + at, valid) - V.r_zp) * V.r_scale;
      v[p] = v[p] + r;
    }
  }
  for (int p = 0; p < n; ++p) v[p] = vmax(v[p], V.relu_floor);
  for (int p = 0; p < n; ++p) v[p] = round_clamped(v[p] * V.inv_o, V.o_lo, V.o_hi);
  for (int p = 0; p < n; ++p) store_bytes(out[p] + at, to_bytes<Isa>(v[p] + V.o_zp), valid);
}

// Steps 1-2 and 5 for the 8 pixels of a tile, from their int32 accumulators (zero-point
// correction included by the tiles).
template <class Isa, bool HasRes, bool StoreYp>
ADPC_INLINE void finish_active(const QPlan& P, const int32_t* acc, const int32_t* opix, float* scratch) {
  const Chain C = P.chain;
  const ChainV V(C);
  const int cout = P.cout, cp = P.cp, cb = P.cb, blocks = (cout + kLanes - 1) / kLanes;
  const int valid = std::min(kLanes, cout);
  int8_t* out[8];
  const int8_t* res[8];
  float* yp[8];
  for (int p = 0; p < 8; ++p) {
    out[p] = P.out + static_cast<int64_t>(opix[p]) * cout;
    res[p] = HasRes ? P.residual + static_cast<int64_t>(opix[p]) * cout : nullptr;
    // only the y' the fill reads; the others go to a scratch block (no branch in the chain)
    yp[p] = StoreYp ? (P.ykeep[opix[p]] ? P.yp + static_cast<int64_t>(opix[p]) * cb : scratch) : nullptr;
  }
  for (int b = 0; b < blocks; ++b) {
    const int at = block_at(b, cout);
    const fvec mul = load_f(C.mul + at), bias = load_f(C.bias + at);
    fvec v[8];
    ADPC_Q_UNROLL(8)
    for (int p = 0; p < 8; ++p) v[p] = to_float(load_i(acc + p * cp + at)) * mul;
    if (P.acc_out) {
      for (int p = 0; p < 8; ++p)
        std::memcpy(P.acc_out + static_cast<int64_t>(opix[p]) * cout + at, acc + p * cp + at, sizeof(int32_t) * valid);
    }
    ADPC_Q_UNROLL(8)
    for (int p = 0; p < 8; ++p) v[p] = v[p] + bias;
    ADPC_Q_UNROLL(8)
    for (int p = 0; p < 8; ++p) v[p] = round_clamped(v[p] * V.inv_y, V.y_lo, V.y_hi);  // qy - y_zp
    ADPC_Q_UNROLL(8)
    for (int p = 0; p < 8; ++p) v[p] = v[p] * V.y_scale;  // y' = (qy - y_zp) * y_scale
    if (StoreYp) {
      ADPC_Q_UNROLL(8)
      for (int p = 0; p < 8; ++p) store_f(yp[p] + at, v[p]);
    }
    finish_group<Isa, HasRes>(C, V, v, 8, at, valid, out, res);
  }
}

// Step 5 for n <= 8 pixels whose values (cb floats each) are at vals + p * cb.
template <class Isa, bool HasRes>
ADPC_INLINE void finish_values(const Chain& C, const ChainV& V, const float* vals, int64_t stride, int n,
                               int cout, int8_t* const* out, const int8_t* const* res) {
  const int blocks = (cout + kLanes - 1) / kLanes, valid = std::min(kLanes, cout);
  for (int b = 0; b < blocks; ++b) {
    const int at = block_at(b, cout);
    fvec v[8];
    for (int p = 0; p < n; ++p) v[p] = load_f(vals + p * stride + at);
    finish_group<Isa, HasRes>(C, V, v, n, at, valid, out, res);
  }
}

// ------------------------------------------------------------------ fill and far pixels
// The first e in [x, n) with p[e] != v, or n: 8 bytes per step (runs are long).
ADPC_INLINE int run_end(const uint8_t* p, int x, int n, uint8_t v) {
  const uint64_t pattern = 0x0101010101010101ULL * v;
  for (; x + 8 <= n; x += 8) {
    uint64_t word;
    std::memcpy(&word, p + x, 8);
    const uint64_t diff = word ^ pattern;  // little endian: byte i is bits 8i .. 8i + 7
    if (diff) return x + __builtin_ctzll(diff) / 8;
  }
  while (x < n && p[x] == v) ++x;
  return x;
}

// The fill works on runs of pixels: a run's values for all its channels are one contiguous
// stretch (NHWC), so a tap sum over a run is out[j] = sum_i t[i] * src_i[j], j over the stretch,
// with no per-pixel work. Each element's sum keeps the order of the semantics (ascending taps,
// from 0); eight vectors at a time are independent dependency chains (an add's latency is 3
// cycles, two issue per cycle). n: a multiple of kLanes.
template <int U>
ADPC_INLINE void run_sums_u(const fvec* t, const float* const* src, int taps, int64_t j, float* out) {
  fvec s[U];
  for (int u = 0; u < U; ++u) s[u] = splat(0.0f);
  for (int i = 0; i < taps; ++i) {
    const float* p = src[i] + j;
    for (int u = 0; u < U; ++u) s[u] = s[u] + t[i] * load_f(p + u * kLanes);
  }
  for (int u = 0; u < U; ++u) store_f(out + j + u * kLanes, s[u]);
}
ADPC_INLINE void run_sums(const fvec* t, const float* const* src, int taps, int64_t n, float* out) {
  int64_t j = 0;
  for (; j + 8 * kLanes <= n; j += 8 * kLanes) run_sums_u<8>(t, src, taps, j, out);
  if (j + 4 * kLanes <= n) {
    run_sums_u<4>(t, src, taps, j, out);
    j += 4 * kLanes;
  }
  switch ((n - j) / kLanes) {
    case 3: run_sums_u<3>(t, src, taps, j, out); break;
    case 2: run_sums_u<2>(t, src, taps, j, out); break;
    case 1: run_sums_u<1>(t, src, taps, j, out); break;
    default: break;
  }
}

// H row rr at the columns near pixels read (hneed != 0): h(x) = sum_dx t[dx] * kept(x + dx),
// kept = y' at active pixels and 0 elsewhere: the plane itself (the conv pass stored y' and
// zero_kept zeroed the inactive pixels these sums read), or at the image border a copy with
// zeros outside. hneed == 1 marks columns with no active pixel within R in the row, where h is
// exactly 0.
ADPC_INLINE void h_row(const QPlan& P, const fvec* tapv, int rr, float* __restrict hrow, float* __restrict kept) {
  const int R = P.R, wo = P.wo, cb = P.cb, lo = P.hlo[rr], hi = P.hhi[rr], taps = 2 * R + 1;
  const uint8_t* m = P.m8 + static_cast<int64_t>(rr) * wo;
  const uint8_t* need = P.hneed + static_cast<int64_t>(rr) * wo;
  const float* yrow = P.yp + static_cast<int64_t>(rr) * wo * cb;
  const float* src[256];
  int kept_to = lo - R;  // kept is valid for x in [.., kept_to): runs share their margins
  for (int x = lo; x < hi;) {
    const uint8_t code = need[x];
    const int e = run_end(need, x + 1, hi, code);
    float* h = hrow + static_cast<int64_t>(x) * cb;
    const int64_t n = static_cast<int64_t>(e - x) * cb;
    if (code == 1) {
      std::memset(h, 0, sizeof(float) * n);
    } else if (code == 2 && x >= R && e + R <= wo) {
      // inside the image: the plane holds y' or 0 at every pixel the sums read (ykeep)
      for (int d = 0; d < taps; ++d) src[d] = yrow + static_cast<int64_t>(x - R + d) * cb;
      run_sums(tapv, src, taps, n, h);
    } else if (code == 2) {
      // at the image border: a copy with zeros outside, kept[(x' + R) * cb + c] for x' in
      // [x - R, e + R), by runs of equal mask value
      for (int k = std::max(x - R, kept_to); k < e + R;) {
        const bool active = k >= 0 && k < wo && m[k];
        int f = e + R;  // end of this run of equal mask value (outside the image: inactive)
        if (k < 0) f = std::min(0, f);
        else if (k < wo) f = std::min(f, run_end(m, k + 1, wo, m[k]));
        float* dst = kept + static_cast<int64_t>(k + R) * cb;
        const size_t bytes = sizeof(float) * static_cast<size_t>(f - k) * cb;
        if (active) std::memcpy(dst, yrow + static_cast<int64_t>(k) * cb, bytes);
        else std::memset(dst, 0, bytes);
        k = f;
      }
      kept_to = e + R;
      for (int d = 0; d < taps; ++d) src[d] = kept + static_cast<int64_t>(x + d) * cb;  // kept(x - R + d)
      run_sums(tapv, src, taps, n, h);
    }
    x = e;
  }
}

// Rows [r0, r1) of the y' plane: 0 at the inactive pixels H sums read (ykeep == 2), so that they
// read the plane directly. Runs before the fill, which reads rows of neighbouring bands.
ADPC_INLINE void zero_kept(const QPlan& P, int r0, int r1) {
  const int wo = P.wo, cb = P.cb;
  for (int r = r0; r < r1; ++r) {
    if (P.hlo[r] >= P.hhi[r]) continue;
    const uint8_t* keep = P.ykeep + static_cast<int64_t>(r) * wo;
    float* yrow = P.yp + static_cast<int64_t>(r) * wo * cb;
    for (int x = 0; x < wo;) {
      const int e = run_end(keep, x + 1, wo, keep[x]);
      if (keep[x] == 2) std::memset(yrow + static_cast<int64_t>(x) * cb, 0, sizeof(float) * (e - x) * cb);
      x = e;
    }
  }
}

// Skipped pixels of output rows [r0, r1) (one image): the fill where an active pixel is within
// the window, the constant epilogue(0) elsewhere. H rows live in a ring (2R + 1 rows, rounded up
// to a power of two: no division), each computed just before the first output row that reads
// it (band edges recompute R rows).
template <class Isa, bool HasRes>
ADPC_INLINE void fill_band(const QPlan& P, int r0, int r1) {
  const Chain C = P.chain;
  const ChainV V(C);
  const int R = P.R, wo = P.wo, cb = P.cb, cout = P.cout;
  const int first = r0 / P.ho * P.ho, last = first + P.ho;
  const bool fill = P.fill;
  int ring_rows = 1;
  while (ring_rows < 2 * R + 1) ring_rows *= 2;
  const int ring_mask = ring_rows - 1;
  static thread_local std::vector<float> ring, kept, vrow, zero_row;
  static thread_local std::vector<int> slot_row;
  if (fill) {
    const size_t row = static_cast<size_t>(wo) * cb;
    if (ring.size() < ring_rows * row) ring.resize(ring_rows * row);
    if (kept.size() < static_cast<size_t>(wo + 2 * R) * cb) kept.resize(static_cast<size_t>(wo + 2 * R) * cb);
    if (vrow.size() < static_cast<size_t>(wo) * cb) vrow.resize(static_cast<size_t>(wo) * cb);
    slot_row.assign(ring_rows, -1);
  }
  if (zero_row.size() < static_cast<size_t>(cb)) zero_row.assign(cb, 0.0f);
  float* const ring0 = ring.data();
  float* const vb = vrow.data();
  const float* const zeros = zero_row.data();
  int* const slots = slot_row.data();
  int next = std::max(first, r0 - R);  // next H row to compute
  fvec tapv[256], row_tap[256];
  for (int i = 0; fill && i < 2 * R + 1; ++i) tapv[i] = splat(P.taps[i]);
  const float* row_h[256];
  for (int r = r0; r < r1; ++r) {
    if (P.row_active[r] == wo) continue;
    const uint8_t* cls = P.cls + static_cast<int64_t>(r) * wo;
    int8_t* out = P.out + static_cast<int64_t>(r) * wo * cout;
    const int8_t* res = HasRes ? P.residual + static_cast<int64_t>(r) * wo * cout : nullptr;
    const bool any_near = fill && P.row_near[r] > 0;
    int rows_read = 0;  // the H rows this row's window reads, ascending dy
    if (any_near) {
      for (next = std::max(next, r - R); next < std::min(last, r + R + 1); ++next) {
        if (P.hlo[next] >= P.hhi[next] || P.row_active[next] == 0) continue;  // H = 0 there
        h_row(P, tapv, next, ring0 + static_cast<int64_t>(next & ring_mask) * wo * cb, kept.data());
        slots[next & ring_mask] = next;
      }
      for (int rr = std::max(first, r - R); rr < std::min(last, r + R + 1); ++rr) {
        if (slots[rr & ring_mask] != rr) continue;
        row_tap[rows_read] = tapv[rr - r + R];
        row_h[rows_read++] = ring0 + static_cast<int64_t>(rr & ring_mask) * wo * cb;
      }
    }
    for (int x = 0; x < wo;) {
      const uint8_t kind = cls[x];
      const int e = run_end(cls, x + 1, wo, kind);  // a run of active, near or far pixels
      if (kind == 0) {
        x = e;
        continue;
      }
      const bool is_near = kind == 1;
      if (is_near) {  // V over the run: the window's H rows, ascending dy
        const float* src[256];
        for (int i = 0; i < rows_read; ++i) src[i] = row_h[i] + static_cast<int64_t>(x) * cb;
        run_sums(row_tap, src, rows_read, static_cast<int64_t>(e - x) * cb, vb);
      }
      if (is_near || HasRes) {
        for (int g = x; g < e; g += 8) {  // groups of up to 8 pixels through the epilogue
          const int n = std::min(8, e - g);
          int8_t* o[8];
          const int8_t* rs[8];
          for (int i = 0; i < n; ++i) {
            o[i] = out + static_cast<int64_t>(g + i) * cout;
            rs[i] = HasRes ? res + static_cast<int64_t>(g + i) * cout : nullptr;
          }
          if (is_near) {
            finish_values<Isa, HasRes>(C, V, vb + static_cast<int64_t>(g - x) * cb, cb, n, cout, o, rs);
          } else {  // far pixels with a residual: epilogue(0) + residual, per pixel
            finish_values<Isa, HasRes>(C, V, zeros, 0, n, cout, o, rs);
          }
        }
      } else {
        std::memcpy(out + static_cast<int64_t>(x) * cout, P.far_row + static_cast<int64_t>(x) * cout,
                    static_cast<size_t>(e - x) * cout);
      }
      x = e;
    }
  }
}

// Padded rows [pr0, pr1): the columns active windows read, with x_zp outside the image (and
// the sign bit flipped for the u8 paths).
ADPC_INLINE void copy_rows(const QPlan& P, int pr0, int pr1) {
  const int64_t pix_bytes = P.cin;
  for (int pr = pr0; pr < pr1; ++pr) {
    const int c0 = P.need_lo[pr], c1 = P.need_hi[pr];
    if (c0 >= c1) continue;
    const int image = pr / P.hp, iy = pr % P.hp - P.pad;
    uint8_t* dst = P.padded + (static_cast<int64_t>(pr) * P.wp) * pix_bytes;
    if (iy < 0 || iy >= P.h) {
      std::memset(dst + c0 * pix_bytes, P.pad_byte, (c1 - c0) * pix_bytes);
      continue;
    }
    const int in0 = std::max(c0, P.pad), in1 = std::min(c1, P.pad + P.w);
    if (c0 < in0) std::memset(dst + c0 * pix_bytes, P.pad_byte, (in0 - c0) * pix_bytes);
    if (in1 < c1) std::memset(dst + std::max(in1, c0) * pix_bytes, P.pad_byte, (c1 - std::max(in1, c0)) * pix_bytes);
    if (in0 < in1) {
      const int8_t* src = P.x + ((static_cast<int64_t>(image) * P.h + iy) * P.w + (in0 - P.pad)) * pix_bytes;
      uint8_t* d = dst + in0 * pix_bytes;
      const int64_t nbytes = (in1 - in0) * pix_bytes;
      const uint8_t flip = P.xor_byte;
      for (int64_t i = 0; i < nbytes; ++i) d[i] = static_cast<uint8_t>(src[i]) ^ flip;
    }
  }
}

// ------------------------------------------------------------------ int8 dot-product tiles
// Each tile computes acc[p][co + lane] for 8 pixels (pointers px) over all kernel rows and
// groups, and stores them at acc + p * cp + co. Weights w point at the tile's first channel.

// Portable: 8 channels (32 weight bytes per group) at a time, per pixel. The pixel's 4 bytes of a
// group are broadcast to 32 lanes, multiplied lane by lane with the weights (products fit int16)
// and summed into 32 int32 lanes; each channel's 4 lanes are added at the end. Contiguous
// loops of fixed length: compilers vectorise them with widening multiplies (NEON smull/saddw,
// SSE2 pmullw/punpck) on CPUs without a dot product.
ADPC_INLINE void tile_portable(const QPlan& P, const uint8_t* const* px, const int8_t* w, const int32_t* corr,
                               int32_t* acc) {
  for (int p = 0; p < 8; ++p) {
    int32_t lanes[32];
    for (int i = 0; i < 32; ++i) lanes[i] = 0;
    for (int ky = 0; ky < P.k; ++ky) {
      const uint8_t* s = px[p] + ky * P.rs;
      const int8_t* wr = w + static_cast<int64_t>(ky) * P.groups * P.wg;
      for (int g = 0; g < P.groups; ++g, wr += P.wg) {
        uint32_t word;
        std::memcpy(&word, s + 4 * g, 4);
        uint32_t words[8] = {word, word, word, word, word, word, word, word};
        int8_t pattern[32];
        std::memcpy(pattern, words, 32);
        for (int i = 0; i < 32; ++i) lanes[i] += static_cast<int16_t>(wr[i] * pattern[i]);
      }
    }
    for (int t = 0; t < 8; ++t)
      acc[p * P.cp + t] = corr[t] + lanes[4 * t] + lanes[4 * t + 1] + lanes[4 * t + 2] + lanes[4 * t + 3];
  }
}

ADPC_Q_NOINLINE inline void tiles_portable(const QPlan& P, const uint8_t* const* px, int32_t* acc) {
  for (int t = 0; t < P.ntiles; ++t) {
    const int co = P.tiles[t].co;
    tile_portable(P, px, P.wts + co * 4, P.chain.corr + co, acc + co);
  }
}

template <bool HasRes, bool StoreYp>
ADPC_INLINE void conv_portable_t(const QPlan& P, int64_t i0, int64_t i1, int32_t* acc) {
  for (int64_t i = i0; i < i1; i += 8) {
    tiles_portable(P, P.ptr + i, acc);
    finish_active<IsaGeneric, HasRes, StoreYp>(P, acc, P.opix + i, reinterpret_cast<float*>(acc + 8 * P.cp));
  }
}

// A thread's accumulators for one tile (8 x cp int32), followed by cp floats of scratch for the
// y' of pixels the fill does not read.
inline int32_t* acc_buffer(const QPlan& P) {
  static thread_local std::vector<int32_t> acc;
  if (acc.size() < static_cast<size_t>(9) * P.cp) acc.resize(static_cast<size_t>(9) * P.cp);
  return acc.data();
}

inline void conv_portable(const QPlan& P, int64_t i0, int64_t i1) {
  int32_t* acc = acc_buffer(P);
  if (P.residual) {
    if (P.store_yp) conv_portable_t<true, true>(P, i0, i1, acc);
    else conv_portable_t<true, false>(P, i0, i1, acc);
  } else {
    if (P.store_yp) conv_portable_t<false, true>(P, i0, i1, acc);
    else conv_portable_t<false, false>(P, i0, i1, acc);
  }
}
inline void fill_portable(const QPlan& P, int r0, int r1) {
  if (P.residual) fill_band<IsaGeneric, true>(P, r0, r1);
  else fill_band<IsaGeneric, false>(P, r0, r1);
}
inline void copy_portable(const QPlan& P, int pr0, int pr1) { copy_rows(P, pr0, pr1); }

#if defined(ADPC_Q_X86)
// AVX512-VNNI: vpdpbusd (u8 activations x s8 weights, 4 products summed into each int32 lane)
// on 256-bit vectors (8 channels; Zen 4 issues two per cycle) or 512-bit ones (16 channels, for
// wide layers: half the activation broadcasts per product).
template <int V, bool Flip>
ADPC_Q_VNNI ADPC_INLINE void tile_vnni256(const QPlan& P, const uint8_t* const* px, const int8_t* w,
                                          const int32_t* corr, int32_t* acc) {
  __m256i a[8][V];
  ADPC_Q_UNROLL(8)
  for (int p = 0; p < 8; ++p)
    ADPC_Q_UNROLL(3)
    for (int v = 0; v < V; ++v) a[p][v] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(corr + 8 * v));
  const __m256i flip = _mm256_set1_epi8(static_cast<char>(0x80));
  for (int ky = 0; ky < P.k; ++ky) {
    const uint8_t* s[8];
    ADPC_Q_UNROLL(8)
    for (int p = 0; p < 8; ++p) s[p] = px[p] + ky * P.rs;
    const int8_t* wr = w + static_cast<int64_t>(ky) * P.groups * P.wg;
    for (int g = 0; g < P.groups; ++g, wr += P.wg) {
      __m256i wv[V];
      ADPC_Q_UNROLL(3)
      for (int v = 0; v < V; ++v) wv[v] = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wr + 32 * v));
      ADPC_Q_UNROLL(8)
      for (int p = 0; p < 8; ++p) {
        int32_t b;
        std::memcpy(&b, s[p] + 4 * g, 4);
        __m256i bb = _mm256_set1_epi32(b);
        if (Flip) bb = _mm256_xor_si256(bb, flip);
        ADPC_Q_UNROLL(3)
        for (int v = 0; v < V; ++v) a[p][v] = _mm256_dpbusd_epi32(a[p][v], bb, wv[v]);
      }
    }
  }
  ADPC_Q_UNROLL(8)
  for (int p = 0; p < 8; ++p)
    ADPC_Q_UNROLL(3)
    for (int v = 0; v < V; ++v)
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + static_cast<int64_t>(p) * P.cp + 8 * v), a[p][v]);
}

template <int V, bool Flip>
ADPC_Q_VNNI ADPC_INLINE void tile_vnni512(const QPlan& P, const uint8_t* const* px, const int8_t* w,
                                          const int32_t* corr, int32_t* acc) {
  __m512i a[8][V];
  ADPC_Q_UNROLL(8)
  for (int p = 0; p < 8; ++p)
    ADPC_Q_UNROLL(3)
    for (int v = 0; v < V; ++v) a[p][v] = _mm512_loadu_si512(corr + 16 * v);
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  for (int ky = 0; ky < P.k; ++ky) {
    const uint8_t* s[8];
    ADPC_Q_UNROLL(8)
    for (int p = 0; p < 8; ++p) s[p] = px[p] + ky * P.rs;
    const int8_t* wr = w + static_cast<int64_t>(ky) * P.groups * P.wg;
    for (int g = 0; g < P.groups; ++g, wr += P.wg) {
      __m512i wv[V];
      ADPC_Q_UNROLL(3)
      for (int v = 0; v < V; ++v) wv[v] = _mm512_loadu_si512(wr + 64 * v);
      ADPC_Q_UNROLL(8)
      for (int p = 0; p < 8; ++p) {
        int32_t b;
        std::memcpy(&b, s[p] + 4 * g, 4);
        __m512i bb = _mm512_set1_epi32(b);
        if (Flip) bb = _mm512_xor_si512(bb, flip);
        ADPC_Q_UNROLL(3)
        for (int v = 0; v < V; ++v) a[p][v] = _mm512_dpbusd_epi32(a[p][v], bb, wv[v]);
      }
    }
  }
  ADPC_Q_UNROLL(8)
  for (int p = 0; p < 8; ++p)
    ADPC_Q_UNROLL(3)
    for (int v = 0; v < V; ++v) _mm512_storeu_si512(acc + static_cast<int64_t>(p) * P.cp + 16 * v, a[p][v]);
}

template <bool Flip>
ADPC_Q_VNNI ADPC_Q_NOINLINE void tiles_vnni(const QPlan& P, const uint8_t* const* px, int32_t* acc) {
  for (int t = 0; t < P.ntiles; ++t) {
    const ChannelTile& c = P.tiles[t];
    const int8_t* w = P.wts + c.co * 4;
    const int32_t* corr = P.chain.corr + c.co;
    int32_t* a = acc + c.co;
    switch (c.v + (c.lanes == 16 ? 4 : 0)) {
      case 1: tile_vnni256<1, Flip>(P, px, w, corr, a); break;
      case 2: tile_vnni256<2, Flip>(P, px, w, corr, a); break;
      case 3: tile_vnni256<3, Flip>(P, px, w, corr, a); break;
      case 5: tile_vnni512<1, Flip>(P, px, w, corr, a); break;
      case 6: tile_vnni512<2, Flip>(P, px, w, corr, a); break;
      default: tile_vnni512<3, Flip>(P, px, w, corr, a); break;
    }
  }
}

template <bool HasRes, bool StoreYp>
ADPC_Q_VNNI ADPC_INLINE void conv_vnni_t(const QPlan& P, int64_t i0, int64_t i1, int32_t* acc) {
  for (int64_t i = i0; i < i1; i += 8) {
    if (P.flip) tiles_vnni<true>(P, P.ptr + i, acc);
    else tiles_vnni<false>(P, P.ptr + i, acc);
    finish_active<IsaAvx512, HasRes, StoreYp>(P, acc, P.opix + i, reinterpret_cast<float*>(acc + 8 * P.cp));
  }
}

ADPC_Q_VNNI inline void conv_vnni(const QPlan& P, int64_t i0, int64_t i1) {
  int32_t* acc = acc_buffer(P);
  if (P.residual) {
    if (P.store_yp) conv_vnni_t<true, true>(P, i0, i1, acc);
    else conv_vnni_t<true, false>(P, i0, i1, acc);
  } else {
    if (P.store_yp) conv_vnni_t<false, true>(P, i0, i1, acc);
    else conv_vnni_t<false, false>(P, i0, i1, acc);
  }
}
ADPC_Q_VNNI inline void fill_vnni(const QPlan& P, int r0, int r1) {
  if (P.residual) fill_band<IsaAvx512, true>(P, r0, r1);
  else fill_band<IsaAvx512, false>(P, r0, r1);
}
ADPC_Q_VNNI inline void copy_vnni(const QPlan& P, int pr0, int pr1) { copy_rows(P, pr0, pr1); }

// AVX2 (no VNNI): s8 activations and weights widened to int16, vpmaddwd sums pairs of products
// into int32 lanes without saturation (vpmaddubsw would saturate at 2 x 255 x 127). 4 pixels x
// 8 channels: per pixel, lanes of `lo` hold channels 0-3 as two pair sums each, `hi` 4-7.
ADPC_Q_AVX2 ADPC_INLINE void tile_avx2_4(const QPlan& P, const uint8_t* const* px, const int8_t* w,
                                         const int32_t* corr, int32_t* acc) {
  __m256i lo[4], hi[4];
  ADPC_Q_UNROLL(4)
  for (int p = 0; p < 4; ++p) lo[p] = hi[p] = _mm256_setzero_si256();
  for (int ky = 0; ky < P.k; ++ky) {
    const uint8_t* s[4];
    ADPC_Q_UNROLL(4)
    for (int p = 0; p < 4; ++p) s[p] = px[p] + ky * P.rs;
    const int8_t* wr = w + static_cast<int64_t>(ky) * P.groups * P.wg;
    for (int g = 0; g < P.groups; ++g, wr += P.wg) {
      const __m256i wl = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wr)));
      const __m256i wh = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(wr + 16)));
      ADPC_Q_UNROLL(4)
      for (int p = 0; p < 4; ++p) {
        int32_t b;
        std::memcpy(&b, s[p] + 4 * g, 4);
        const __m256i a16 = _mm256_broadcastq_epi64(_mm_cvtepi8_epi16(_mm_cvtsi32_si128(b)));
        lo[p] = _mm256_add_epi32(lo[p], _mm256_madd_epi16(a16, wl));
        hi[p] = _mm256_add_epi32(hi[p], _mm256_madd_epi16(a16, wh));
      }
    }
  }
  ADPC_Q_UNROLL(4)
  for (int p = 0; p < 4; ++p) {
    // hadd gives channels (0 1 4 5 | 2 3 6 7); the 64-bit permute puts them in order.
    const __m256i sum = _mm256_add_epi32(_mm256_permute4x64_epi64(_mm256_hadd_epi32(lo[p], hi[p]), 0xD8),
                                         _mm256_loadu_si256(reinterpret_cast<const __m256i*>(corr)));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(acc + static_cast<int64_t>(p) * P.cp), sum);
  }
}

ADPC_Q_AVX2 ADPC_Q_NOINLINE inline void tiles_avx2(const QPlan& P, const uint8_t* const* px, int32_t* acc) {
  for (int t = 0; t < P.ntiles; ++t) {
    const int co = P.tiles[t].co;
    tile_avx2_4(P, px, P.wts + co * 4, P.chain.corr + co, acc + co);
    tile_avx2_4(P, px + 4, P.wts + co * 4, P.chain.corr + co, acc + 4 * P.cp + co);
  }
}

template <bool HasRes, bool StoreYp>
ADPC_Q_AVX2 ADPC_INLINE void conv_avx2_t(const QPlan& P, int64_t i0, int64_t i1, int32_t* acc) {
  for (int64_t i = i0; i < i1; i += 8) {
    tiles_avx2(P, P.ptr + i, acc);
    finish_active<IsaGeneric, HasRes, StoreYp>(P, acc, P.opix + i, reinterpret_cast<float*>(acc + 8 * P.cp));
  }
}

ADPC_Q_AVX2 inline void conv_avx2(const QPlan& P, int64_t i0, int64_t i1) {
  int32_t* acc = acc_buffer(P);
  if (P.residual) {
    if (P.store_yp) conv_avx2_t<true, true>(P, i0, i1, acc);
    else conv_avx2_t<true, false>(P, i0, i1, acc);
  } else {
    if (P.store_yp) conv_avx2_t<false, true>(P, i0, i1, acc);
    else conv_avx2_t<false, false>(P, i0, i1, acc);
  }
}
ADPC_Q_AVX2 inline void fill_avx2(const QPlan& P, int r0, int r1) {
  if (P.residual) fill_band<IsaGeneric, true>(P, r0, r1);
  else fill_band<IsaGeneric, false>(P, r0, r1);
}
ADPC_Q_AVX2 inline void copy_avx2(const QPlan& P, int pr0, int pr1) { copy_rows(P, pr0, pr1); }
#endif  // ADPC_Q_X86

#if defined(ADPC_Q_ARM64)
// ARMv8.2 dot product: sdot (s8 x s8, 4 products into each int32 lane), 8 pixels x V vectors
// of 4 channels (24 accumulators + 3 weight vectors + 1 broadcast of the 32 NEON registers).
template <int V>
ADPC_Q_DOT ADPC_INLINE void tile_dot(const QPlan& P, const uint8_t* const* px, const int8_t* w, const int32_t* corr,
                                     int32_t* acc) {
  int32x4_t a[8][V];
  ADPC_Q_UNROLL(8)
  for (int p = 0; p < 8; ++p)
    ADPC_Q_UNROLL(3)
    for (int v = 0; v < V; ++v) a[p][v] = vld1q_s32(corr + 4 * v);
  for (int ky = 0; ky < P.k; ++ky) {
    const uint8_t* s[8];
    ADPC_Q_UNROLL(8)
    for (int p = 0; p < 8; ++p) s[p] = px[p] + ky * P.rs;
    const int8_t* wr = w + static_cast<int64_t>(ky) * P.groups * P.wg;
    for (int g = 0; g < P.groups; ++g, wr += P.wg) {
      int8x16_t wv[V];
      ADPC_Q_UNROLL(3)
      for (int v = 0; v < V; ++v) wv[v] = vld1q_s8(wr + 16 * v);
      ADPC_Q_UNROLL(8)
      for (int p = 0; p < 8; ++p) {
        uint32_t b;
        std::memcpy(&b, s[p] + 4 * g, 4);
        const int8x16_t bb = vreinterpretq_s8_u32(vdupq_n_u32(b));
        ADPC_Q_UNROLL(3)
        for (int v = 0; v < V; ++v) a[p][v] = vdotq_s32(a[p][v], wv[v], bb);
      }
    }
  }
  ADPC_Q_UNROLL(8)
  for (int p = 0; p < 8; ++p)
    ADPC_Q_UNROLL(3)
    for (int v = 0; v < V; ++v) vst1q_s32(acc + static_cast<int64_t>(p) * P.cp + 4 * v, a[p][v]);
}

ADPC_Q_DOT ADPC_Q_NOINLINE inline void tiles_dot(const QPlan& P, const uint8_t* const* px, int32_t* acc) {
  for (int t = 0; t < P.ntiles; ++t) {
    const ChannelTile& c = P.tiles[t];
    const int8_t* w = P.wts + c.co * 4;
    const int32_t* corr = P.chain.corr + c.co;
    switch (c.v) {
      case 1: tile_dot<1>(P, px, w, corr, acc + c.co); break;
      case 2: tile_dot<2>(P, px, w, corr, acc + c.co); break;
      default: tile_dot<3>(P, px, w, corr, acc + c.co); break;
    }
  }
}

template <bool HasRes, bool StoreYp>
ADPC_Q_DOT ADPC_INLINE void conv_dot_t(const QPlan& P, int64_t i0, int64_t i1, int32_t* acc) {
  for (int64_t i = i0; i < i1; i += 8) {
    tiles_dot(P, P.ptr + i, acc);
    finish_active<IsaGeneric, HasRes, StoreYp>(P, acc, P.opix + i, reinterpret_cast<float*>(acc + 8 * P.cp));
  }
}

ADPC_Q_DOT inline void conv_dot(const QPlan& P, int64_t i0, int64_t i1) {
  int32_t* acc = acc_buffer(P);
  if (P.residual) {
    if (P.store_yp) conv_dot_t<true, true>(P, i0, i1, acc);
    else conv_dot_t<true, false>(P, i0, i1, acc);
  } else {
    if (P.store_yp) conv_dot_t<false, true>(P, i0, i1, acc);
    else conv_dot_t<false, false>(P, i0, i1, acc);
  }
}
#endif  // ADPC_Q_ARM64

// One ISA's passes.
struct QKernels {
  void (*plan)(const QMaskedConvArgs&, QWorkspace&, QPlan&);  // plan_mask
  void (*conv)(const QPlan&, int64_t, int64_t);
  void (*fill)(const QPlan&, int, int);
  void (*copy)(const QPlan&, int, int);
  bool u8;        // activations as u8 (flipped sign bit): zero-point correction uses x_zp + 128
  int lanes;      // channels per accumulator vector
  int max_v;      // vectors per tile
  int wide_from;  // cout from which 16-lane vectors are used (0: never)
};


// Output channels in tiles of up to max_v vectors (e.g. 18 -> 3 x 8 lanes; 36 -> 3 x 8 + 2 x 8;
// 144 -> 3 x (3 x 16)).
inline void make_tiles(const QKernels& K, int cout, std::vector<ChannelTile>& tiles) {
  const int lanes = (K.wide_from > 0 && cout >= K.wide_from) ? 2 * K.lanes : K.lanes;
  const int vectors = (cout + lanes - 1) / lanes;
  tiles.clear();
  for (int v = 0; v < vectors; v += K.max_v) tiles.push_back({v * lanes, std::min(K.max_v, vectors - v), lanes});
}

}  // namespace qdetail

// Scratch the caller keeps between calls, so a forward does not allocate per conv.
struct QWorkspace {
  int force_isa = -1;  // >= 0: use this QIsa (tests); it must be supported
  std::vector<const uint8_t*> ptr;
  std::vector<int32_t> opix;
  std::vector<uint8_t> padded, tail, m8, rowdil, near_, hneed, ykeep, vor, padrow, cls;
  std::vector<int32_t> row_active, row_near, hlo, hhi, act_lo, act_hi, need_lo, need_hi;
  std::vector<int8_t> far_row;
  std::vector<float> yp;
  std::vector<int32_t> corr;
  std::vector<float> mul, bias, bn_s, bn_b;
  std::vector<qdetail::ChannelTile> tiles;
  std::vector<int64_t> chunks;
};

namespace qdetail {

inline float inv(float s) { return static_cast<float>(1.0 / static_cast<double>(s)); }

// Scalars and per-channel constants of the float chain.
inline void plan_constants(const QMaskedConvArgs& a, const QKernels& K, QWorkspace& ws, QPlan& P) {
  const int cp = P.cp;
  ws.corr.assign(cp, 0);
  ws.mul.assign(cp, 0.0f);
  ws.bias.assign(cp, 0.0f);
  ws.bn_s.assign(cp, 1.0f);
  ws.bn_b.assign(cp, 0.0f);
  const int8_t* sums = P.wts + weight_bytes(a.cout, a.cin, a.k);
  const int32_t zp_eff = a.x_zp + (K.u8 ? 128 : 0);
  for (int c = 0; c < a.cout; ++c) {
    ws.corr[c] = -zp_eff * get_le32(sums + 4 * c);
    ws.mul[c] = a.x_scale * a.w_scale[c];
    if (a.bias) ws.bias[c] = a.bias[c];
    if (a.bn_scale) ws.bn_s[c] = a.bn_scale[c];
    if (a.bn_shift) ws.bn_b[c] = a.bn_shift[c];
  }
  Chain& C = P.chain;
  C.corr = ws.corr.data();
  C.mul = ws.mul.data();
  C.bias = ws.bias.data();
  C.bn_s = ws.bn_s.data();
  C.bn_b = ws.bn_b.data();
  C.inv_y = inv(a.y_scale);
  C.y_scale = a.y_scale;
  C.y_lo = static_cast<float>(-128 - a.y_zp);
  C.y_hi = static_cast<float>(127 - a.y_zp);
  C.inv_b = inv(a.b_scale);
  C.b_scale = a.b_scale;
  C.b_lo = static_cast<float>(-128 - a.b_zp);
  C.b_hi = static_cast<float>(127 - a.b_zp);
  C.r_scale = a.r_scale;
  C.r_zpf = static_cast<float>(a.r_zp);
  C.relu_floor = a.relu ? 0.0f : -FLT_MAX;
  C.inv_o = inv(a.o_scale);
  C.o_lo = static_cast<float>(-128 - a.o_zp);
  C.o_hi = static_cast<float>(127 - a.o_zp);
  C.o_zpf = static_cast<float>(a.o_zp);
}

// Byte-plane helpers (restrict parameters, so they are vectorised).
ADPC_INLINE void mask_row(uint8_t* __restrict m, const float* __restrict src, int n) {
  for (int x = 0; x < n; ++x) m[x] = src[x] != 0.0f;
}
// cls = 0 at active pixels, 2 at skipped ones (1 once found near); returns the active count.
ADPC_INLINE int classify_row(uint8_t* __restrict cls, const uint8_t* __restrict m, int n) {
  int count = 0;
  for (int x = 0; x < n; ++x) {
    count += m[x];
    cls[x] = static_cast<uint8_t>(2 - 2 * m[x]);
  }
  return count;
}
ADPC_INLINE void or_bytes(uint8_t* __restrict c, const uint8_t* __restrict s, int n) {
  for (int x = 0; x < n; ++x) c[x] = static_cast<uint8_t>(c[x] | s[x]);
}
ADPC_INLINE void add_bytes(uint8_t* __restrict c, const uint8_t* __restrict s, int n) {
  for (int x = 0; x < n; ++x) c[x] = static_cast<uint8_t>(c[x] + s[x]);
}
ADPC_INLINE void sub_bytes(uint8_t* __restrict c, const uint8_t* __restrict s, int n) {
  for (int x = 0; x < n; ++x) c[x] = static_cast<uint8_t>(c[x] - s[x]);
}
// out = count != 0 and not active; returns how many.
ADPC_INLINE int near_bytes(uint8_t* __restrict out, const uint8_t* __restrict count,
                           const uint8_t* __restrict m, int n) {
  int total = 0;
  for (int x = 0; x < n; ++x) {
    const uint8_t v = static_cast<uint8_t>((count[x] != 0) & (m[x] ^ 1));
    out[x] = v;
    total += v;
  }
  return total;
}
// 0: no near pixel reads this H value; 1: one does, and it is 0 (no active pixel within R in
// the row); 2: it must be computed.
ADPC_INLINE void compute_flags(uint8_t* __restrict out, const uint8_t* __restrict need, int n) {
  for (int x = 0; x < n; ++x) out[x] = static_cast<uint8_t>(need[x] == 2);
}
// keep (0/1: within R of a column to compute) -> 0, 1 (active) or 2 (inactive).
ADPC_INLINE void keep_codes(uint8_t* __restrict keep, const uint8_t* __restrict m, int n) {
  for (int x = 0; x < n; ++x) keep[x] = static_cast<uint8_t>(keep[x] * (2 - m[x]));
}
ADPC_INLINE void need_codes(uint8_t* __restrict out, const uint8_t* __restrict count,
                            const uint8_t* __restrict rowdil, int n) {
  for (int x = 0; x < n; ++x) out[x] = static_cast<uint8_t>((count[x] != 0) * (1 + rowdil[x]));
}

// The output-resolution mask, its row statistics and, for the fill, which skipped pixels have
// an active pixel in their window (near) and which H values they read (hneed). Byte planes: the
// horizontal dilation from runs, the vertical ones from running column counts, so the cost is a
// few (vectorised) byte operations per pixel.
ADPC_INLINE void plan_mask(const QMaskedConvArgs& a, QWorkspace& ws, QPlan& P) {
  const int wo = P.wo, rows = P.rows, step = a.mask ? a.mh / P.ho : 1;
  const size_t plane = static_cast<size_t>(rows) * wo;
  ws.m8.resize(plane);
  ws.cls.resize(plane);
  ws.row_active.assign(rows, wo);
  ws.act_lo.assign(rows, 0);
  ws.act_hi.assign(rows, wo);
  if (!a.mask) {
    std::memset(ws.m8.data(), 1, plane);
    std::memset(ws.cls.data(), 0, plane);
  }
  for (int r = 0; r < rows && a.mask; ++r) {
    const int image = r / P.ho, oy = r % P.ho;
    const float* src = a.mask + (static_cast<int64_t>(image) * a.mh + static_cast<int64_t>(oy) * step) * a.mw;
    uint8_t* m = ws.m8.data() + static_cast<int64_t>(r) * wo;
    if (step == 1) {
      mask_row(m, src, wo);
    } else {
      for (int x = 0; x < wo; ++x) m[x] = src[static_cast<int64_t>(x) * step] != 0.0f;
    }
    const int count = classify_row(ws.cls.data() + static_cast<int64_t>(r) * wo, m, wo);
    int lo = 0, hi = wo;
    if (count == 0) lo = hi = 0;
    while (lo < hi && !m[lo]) ++lo;
    while (hi > lo && !m[hi - 1]) --hi;
    ws.row_active[r] = count;
    ws.act_lo[r] = lo;
    ws.act_hi[r] = hi;
  }
  P.m8 = ws.m8.data();
  P.row_active = ws.row_active.data();
  P.cls = ws.cls.data();
  bool any_skipped = false;
  for (int r = 0; r < rows && !any_skipped; ++r) any_skipped = ws.row_active[r] < wo;
  P.fill = a.mask && a.taps && a.window > 1 && any_skipped;
  P.R = P.fill ? a.window / 2 : 0;
  P.taps = a.taps;
  ws.row_near.assign(rows, 0);
  ws.hlo.assign(rows, 0);
  ws.hhi.assign(rows, 0);
  P.row_near = ws.row_near.data();
  P.hlo = ws.hlo.data();
  P.hhi = ws.hhi.data();
  if (!P.fill) return;
  const int R = P.R;
  ws.rowdil.assign(plane, 0);
  ws.near_.resize(plane);
  ws.hneed.resize(plane);
  ws.ykeep.resize(plane);
  ws.vor.resize(wo);
  // rowdil: an active pixel within R in the same row (2R + 1 shifted ORs of a zero-padded row)
  ws.padrow.assign(static_cast<size_t>(wo) + 2 * R, 0);
  for (int r = 0; r < rows; ++r) {
    if (ws.row_active[r] == 0) continue;
    std::memcpy(ws.padrow.data() + R, ws.m8.data() + static_cast<int64_t>(r) * wo, wo);
    uint8_t* d = ws.rowdil.data() + static_cast<int64_t>(r) * wo;
    for (int dx = 0; dx <= 2 * R; ++dx) or_bytes(d, ws.padrow.data() + dx, wo);
  }
  // Rows of `src` within R of each row (same image), counted per column as the window slides.
  uint8_t* count = ws.vor.data();
  const auto slide = [&](const uint8_t* src, int r, int first, int last) {
    if (r == first) {
      std::memset(count, 0, wo);
      for (int rr = first; rr < std::min(last, r + R); ++rr) add_bytes(count, src + static_cast<int64_t>(rr) * wo, wo);
    }
    if (r + R < last) add_bytes(count, src + static_cast<int64_t>(r + R) * wo, wo);
    if (r - R - 1 >= first) sub_bytes(count, src + static_cast<int64_t>(r - R - 1) * wo, wo);
  };
  for (int r = 0; r < rows; ++r) {  // near = skipped, with rowdil within R rows
    const int first = r / P.ho * P.ho, last = first + P.ho;
    slide(ws.rowdil.data(), r, first, last);
    uint8_t* nr = ws.near_.data() + static_cast<int64_t>(r) * wo;
    ws.row_near[r] = near_bytes(nr, count, ws.m8.data() + static_cast<int64_t>(r) * wo, wo);
    sub_bytes(ws.cls.data() + static_cast<int64_t>(r) * wo, nr, wo);  // near: 2 -> 1
  }
  for (int r = 0; r < rows; ++r) {  // hneed: the H values V sums read (near within R rows)
    const int first = r / P.ho * P.ho, last = first + P.ho;
    slide(ws.near_.data(), r, first, last);
    uint8_t* hn = ws.hneed.data() + static_cast<int64_t>(r) * wo;
    need_codes(hn, count, ws.rowdil.data() + static_cast<int64_t>(r) * wo, wo);
    int lo = 0, hi = wo;
    while (lo < hi && !hn[lo]) ++lo;
    while (hi > lo && !hn[hi - 1]) --hi;
    ws.hlo[r] = lo;
    ws.hhi[r] = hi;
    // ykeep: the pixels H sums of this row read (within R of a column to compute): 1 active
    // (the conv pass stores its y'), 2 inactive (the plane is zeroed there before the fill).
    uint8_t* keep = ws.ykeep.data() + static_cast<int64_t>(r) * wo;
    std::memset(keep, 0, wo);
    if (lo >= hi) continue;
    uint8_t* pad = ws.padrow.data();
    std::memset(pad, 0, static_cast<size_t>(wo) + 2 * R);
    compute_flags(pad + R, hn, wo);
    for (int dx = 0; dx <= 2 * R; ++dx) or_bytes(keep, pad + dx, wo);
    keep_codes(keep, ws.m8.data() + static_cast<int64_t>(r) * wo, wo);
  }
  P.hneed = ws.hneed.data();
  P.ykeep = ws.ykeep.data();
}

// The byte-plane work of plan_mask, compiled for each ISA (it is a few byte operations per pixel).
inline void plan_portable(const QMaskedConvArgs& a, QWorkspace& ws, QPlan& P) { plan_mask(a, ws, P); }
#if defined(ADPC_Q_X86)
ADPC_Q_AVX2 inline void plan_avx2(const QMaskedConvArgs& a, QWorkspace& ws, QPlan& P) { plan_mask(a, ws, P); }
ADPC_Q_VNNI inline void plan_vnni(const QMaskedConvArgs& a, QWorkspace& ws, QPlan& P) { plan_mask(a, ws, P); }
#endif

inline QKernels kernels(QIsa isa) {
  switch (isa) {
#if defined(ADPC_Q_X86)
    case QIsa::kAvx512Vnni: return {plan_vnni, conv_vnni, fill_vnni, copy_vnni, true, 8, 3, 128};
    case QIsa::kAvx2: return {plan_avx2, conv_avx2, fill_avx2, copy_avx2, false, 8, 1, 0};
#endif
#if defined(ADPC_Q_ARM64)
    case QIsa::kNeonDot: return {plan_portable, conv_dot, fill_portable, copy_portable, false, 4, 3, 0};
#endif
    default: return {plan_portable, conv_portable, fill_portable, copy_portable, false, 8, 1, 0};
  }
}

// The active pixel list: pointers to each window's top-left in the buffer the tiles read (the
// padded copy, or the input itself for 1x1 convs without padding), padded to a multiple of 8.
inline void plan_pixels(const QMaskedConvArgs& a, const QKernels& K, QWorkspace& ws, QPlan& P) {
  const int wo = P.wo, s = a.stride;
  const bool direct = a.k == 1 && a.pad == 0;
  int64_t total = 0;
  for (int r = 0; r < P.rows; ++r) total += ws.row_active[r];
  const int64_t count = (total + 7) / 8 * 8;
  ws.ptr.resize(count);
  ws.opix.resize(count);
  P.hp = a.h + 2 * a.pad;
  P.wp = a.w + 2 * a.pad;
  const uint8_t* base;
  if (direct) {
    base = reinterpret_cast<const uint8_t*>(a.x);
    P.rs = static_cast<int64_t>(a.w) * a.cin;
  } else {
    const size_t bytes = static_cast<size_t>(a.n) * P.hp * P.wp * a.cin + 64;  // + read slack
    if (ws.padded.size() < bytes) ws.padded.resize(bytes);
    base = ws.padded.data();
    P.rs = static_cast<int64_t>(P.wp) * a.cin;
  }
  P.padded = direct ? nullptr : ws.padded.data();
  P.flip = direct && K.u8;
  // Direct 1x1: the last group of the last pixels may read up to 3 bytes past the input; those
  // pixels read a copy of the input's end followed by zeros instead.
  const int64_t in_bytes = static_cast<int64_t>(a.n) * a.h * a.w * a.cin, span = 4LL * P.groups;
  const int64_t tail_from = std::max<int64_t>(0, in_bytes - span);
  const bool tail = direct && span > a.cin;
  if (tail) {
    ws.tail.assign(static_cast<size_t>(2 * span + 64), 0);
    std::memcpy(ws.tail.data(), a.x + tail_from, static_cast<size_t>(in_bytes - tail_from));
  }
  int64_t i = 0;
  for (int r = 0; r < P.rows; ++r) {
    if (ws.row_active[r] == 0) continue;
    const int image = r / P.ho, oy = r % P.ho;
    const uint8_t* m = ws.m8.data() + static_cast<int64_t>(r) * wo;
    const int64_t row_pix = static_cast<int64_t>(r) * wo;
    const int64_t row_off = direct ? (static_cast<int64_t>(image) * a.h + static_cast<int64_t>(oy) * s) * a.w * a.cin
                                   : (static_cast<int64_t>(image) * P.hp + static_cast<int64_t>(oy) * s) * P.rs;
    const int64_t dx = static_cast<int64_t>(s) * a.cin;
    for (int x = ws.act_lo[r]; x < ws.act_hi[r]; ++x) {
      if (!m[x]) continue;
      const int64_t off = row_off + x * dx;
      ws.ptr[i] = (tail && off + span > in_bytes) ? ws.tail.data() + (off - tail_from) : base + off;
      ws.opix[i] = static_cast<int32_t>(row_pix + x);
      ++i;
    }
  }
  for (; i < count; ++i) {  // repeat the last pixel: same task, same values written twice
    ws.ptr[i] = ws.ptr[i - 1];
    ws.opix[i] = ws.opix[i - 1];
  }
  P.ptr = ws.ptr.data();
  P.opix = ws.opix.data();
  P.count = count;
  if (direct) return;
  // Padded columns each padded row must hold: the windows of the active pixels (+1 column so
  // the last group's read slack is initialised too).
  const int prows = a.n * P.hp;
  ws.need_lo.assign(prows, P.wp);
  ws.need_hi.assign(prows, 0);
  for (int r = 0; r < P.rows; ++r) {
    if (ws.row_active[r] == 0) continue;
    const int image = r / P.ho, oy = r % P.ho;
    const int lo = ws.act_lo[r] * s, hi = std::min(P.wp, (ws.act_hi[r] - 1) * s + a.k + 1);
    for (int ky = 0; ky < a.k; ++ky) {
      const int pr = image * P.hp + oy * s + ky;
      ws.need_lo[pr] = std::min(ws.need_lo[pr], lo);
      ws.need_hi[pr] = std::max(ws.need_hi[pr], hi);
    }
  }
  P.need_lo = ws.need_lo.data();
  P.need_hi = ws.need_hi.data();
  P.x = a.x;
  const uint8_t zp = static_cast<uint8_t>(static_cast<int8_t>(a.x_zp));
  P.xor_byte = K.u8 ? 0x80 : 0x00;
  P.pad_byte = zp ^ P.xor_byte;
}

}  // namespace qdetail

// The whole int8 masked conv (semantics at the top of this file). `threads` only sizes the
// work split; `par` runs it. Returns 0, or the QArg of the first bad argument (nothing written).
template <typename Par>
int qmasked_conv2d(const QMaskedConvArgs& a, QWorkspace& ws, int threads, Par&& par) {
  using namespace qdetail;
  if (const int bad = qcheck_args(a, threads)) return bad;
  const QIsa isa = ws.force_isa >= 0 ? static_cast<QIsa>(ws.force_isa) : qisa_default();
  const QKernels K = kernels(isa);
  QPlan P{};
  P.n = a.n; P.h = a.h; P.w = a.w; P.cin = a.cin; P.cout = a.cout;
  P.k = a.k; P.stride = a.stride; P.pad = a.pad;
  P.ho = conv_out_size(a.h, a.k, a.stride, a.pad);
  P.wo = conv_out_size(a.w, a.k, a.stride, a.pad);
  P.rows = a.n * P.ho;
  P.cp = qpadded_channels(a.cout);
  P.cb = (a.cout + 7) / 8 * 8;
  P.groups = qgroups(a.cin, a.k);
  P.wg = static_cast<int64_t>(P.cp) * 4;
  P.wts = a.packed + kQHeaderBytes;
  P.residual = a.residual;
  P.out = a.out;
  P.acc_out = a.acc_out;
  make_tiles(K, a.cout, ws.tiles);
  P.tiles = ws.tiles.data();
  P.ntiles = static_cast<int>(ws.tiles.size());
  plan_constants(a, K, ws, P);
  K.plan(a, ws, P);
  plan_pixels(a, K, ws, P);
  P.store_yp = P.fill;
  if (P.store_yp) {
    const size_t floats = static_cast<size_t>(P.rows) * P.wo * P.cb;
    if (ws.yp.size() < floats) ws.yp.resize(floats);
    P.yp = ws.yp.data();
  }
  const int T = std::max(1, threads);
  // 1. the padded input rows active windows read
  if (P.padded) {
    const int prows = a.n * P.hp, tasks = std::min(prows, T == 1 ? 1 : 2 * T);
    par(tasks, [&](int t) { K.copy(P, static_cast<int>(static_cast<int64_t>(prows) * t / tasks),
                                   static_cast<int>(static_cast<int64_t>(prows) * (t + 1) / tasks)); });
  }
  // 2. active pixels, finished (conv, Q/DQ, epilogue), in chunks of whole tiles
  if (P.count > 0) {
    const int64_t tiles = P.count / 8;
    const int tasks = static_cast<int>(std::min<int64_t>(tiles, T == 1 ? 1 : 4 * T));
    par(tasks, [&](int t) { K.conv(P, tiles * t / tasks * 8, tiles * (t + 1) / tasks * 8); });
  }
  // 3. skipped pixels: fill or constant, then the epilogue
  bool any_skipped = false;
  for (int r = 0; r < P.rows && !any_skipped; ++r) any_skipped = P.row_active[r] < P.wo;
  if (!any_skipped) return kQOk;
  if (!a.residual) {  // a far skipped pixel's output: the epilogue of 0, the same for every pixel
    ws.far_row.resize(static_cast<size_t>(P.wo) * a.cout);
    const std::vector<float> zeros(P.cb, 0.0f);
    int8_t* far = ws.far_row.data();
    const int8_t* none = nullptr;
    finish_values<IsaGeneric, false>(P.chain, ChainV(P.chain), zeros.data(), 0, 1, a.cout, &far, &none);
    for (int x = 1; x < P.wo; ++x)
      std::memcpy(ws.far_row.data() + static_cast<int64_t>(x) * a.cout, ws.far_row.data(), a.cout);
    P.far_row = ws.far_row.data();
  }
  const int split = T == 1 ? 1 : std::max(1, 2 * T / a.n);
  const int per_band = std::max(std::min(P.ho, 8), (P.ho + split - 1) / split);
  const int bands = (P.ho + per_band - 1) / per_band;
  if (P.fill) {
    const int tasks = std::min(P.rows, T == 1 ? 1 : 2 * T);
    par(tasks, [&](int t) { zero_kept(P, P.rows * t / tasks, P.rows * (t + 1) / tasks); });
  }
  par(a.n * bands, [&](int b) {
    const int r0 = b / bands * P.ho + b % bands * per_band;
    K.fill(P, r0, std::min(b / bands * P.ho + P.ho, r0 + per_band));
  });
  return kQOk;
}

}  // namespace adpc

#if !defined(__clang__)
#pragma GCC pop_options
#endif
