// Block-sparse masked convolution: the one C++ core behind every binding.
//
// Semantics (SPEC.md section 4, ADP-C): y = conv(x) + bias is computed only where the mask is 1
// ("active"); a skipped pixel gets the RBF fill of the active neighbours,
// fill(p) = sum_{d != 0} t[dy] t[dx] y(p + d) over active p + d, and 0 when no active pixel is
// in its window. No mask dilation is needed: a skipped pixel's value is the fill, never the
// true conv. An optional epilogue (per-channel scale/shift = folded BN, residual add, ReLU)
// then runs on every pixel, exactly as BN/add/ReLU run on the whole map in the reference.
//
// Layout: activations NHWC (channels last), fp32. Weights packed [k][k][cin][cout_pad] with
// cout_pad a multiple of 8 (zero padding), so the innermost loop runs over output channels.
//
// Portable C++17: no intrinsics. The hot loops are written with compile-time tile sizes so the
// compiler vectorises them for whatever ISA it targets (NEON on aarch64; on x86-64 the
// bindings compile clones for AVX-512/AVX2/baseline and pick one at load time).
//
// Threading is the caller's: every entry point takes a `Parallel` callable
// `par(num_tasks, fn)` that must call fn(i) once for each i in [0, num_tasks). The ExecuTorch
// binding passes ExecuTorch's pool, the C API its own.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__GNUC__)
#define ADPC_INLINE inline __attribute__((always_inline))
#else
#define ADPC_INLINE inline
#endif

#ifndef ADPC_CLONES
#if defined(__x86_64__) && defined(__GNUC__) && !defined(ADPC_NO_CLONES)
#define ADPC_CLONES __attribute__((target_clones("avx512f", "arch=x86-64-v3", "default")))
#else
#define ADPC_CLONES
#endif
#endif
// target_clones does not apply to templates: they get the attribute's single-target form
// through the non-template dispatchers that call them (inlined there).
#define ADPC_CLONES_T ADPC_INLINE

namespace adpc {

constexpr int kChannelAlign = 8;
constexpr int kMaxRun = 64;  // pixels per work item: long rows are split for load balance

struct MaskedConvArgs {
  int n = 0, h = 0, w = 0, cin = 0;   // input, NHWC
  int ho = 0, wo = 0, cout = 0;       // output, NHWC
  int cout_pad = 0;                   // packed weight's last dim (multiple of kChannelAlign)
  int k = 3, stride = 1, pad = 1;
  const float* x = nullptr;           // [n][h][w][cin]
  const float* weight = nullptr;      // [k][k][cin][cout_pad]
  const float* bias = nullptr;        // [cout] or null
  const float* mask = nullptr;        // [n][ho][wo], 1 = compute, 0 = skip
  const float* taps = nullptr;        // [window] 1-D fill taps t (2-D kernel = t t^T), or null
  int window = 0;
  const float* scale = nullptr;       // [cout] or null (epilogue: y * scale + shift)
  const float* shift = nullptr;       // [cout] or null
  const float* residual = nullptr;    // [n][ho][wo][cout] or null
  bool relu = false;
  float* out = nullptr;               // [n][ho][wo][cout]
};

inline int conv_out_size(int in, int k, int stride, int pad) { return (in + 2 * pad - k) / stride + 1; }
inline int padded_channels(int c) { return (c + kChannelAlign - 1) / kChannelAlign * kChannelAlign; }

// Half-open run of active pixels [x0, x1) in output row `row` (= image * ho + oy).
struct Run {
  int32_t row, x0, x1;
};

// Row runs of active pixels, split at kMaxRun; plus, per output row, the span
// [first active, last active + 1) (empty span: lo == hi).
struct RunList {
  std::vector<Run> runs;
  std::vector<int32_t> span_lo, span_hi, row_active;
  int64_t active = 0;

  void build(const float* mask, int rows, int width) {
    runs.clear();
    span_lo.assign(rows, 0);
    span_hi.assign(rows, 0);
    row_active.assign(rows, 0);
    active = 0;
    for (int r = 0; r < rows; ++r) {
      const float* m = mask + static_cast<int64_t>(r) * width;
      int x = 0;
      bool first = true;
      while (x < width) {
        while (x < width && m[x] == 0.0f) ++x;
        if (x >= width) break;
        int end = x;
        while (end < width && m[end] != 0.0f) ++end;
        if (first) span_lo[r] = x;
        first = false;
        span_hi[r] = end;
        active += end - x;
        row_active[r] += end - x;
        for (int s = x; s < end; s += kMaxRun) runs.push_back({r, s, std::min(end, s + kMaxRun)});
        x = end;
      }
    }
  }
};

namespace detail {

// Zero row for out-of-image taps, large enough for any cin of the model.
inline const float* zeros(int cin) {
  static thread_local std::vector<float> z;
  if (static_cast<int>(z.size()) < cin) z.assign(cin, 0.0f);
  return z.data();
}

// P output pixels x T output channels, accumulated in registers over all taps and cin.
template <int P, int T>
ADPC_INLINE void conv_tile(const MaskedConvArgs& a, int image, int oy, int ox, int co,
                      float* __restrict out) {
  float acc[P][T];
  for (int p = 0; p < P; ++p)
    for (int t = 0; t < T; ++t) acc[p][t] = 0.0f;
  const float* zero = zeros(a.cin);
  const int64_t img = static_cast<int64_t>(image) * a.h;
  for (int ky = 0; ky < a.k; ++ky) {
    const int iy = oy * a.stride - a.pad + ky;
    const bool row_in = iy >= 0 && iy < a.h;
    const float* xrow = a.x + (img + (row_in ? iy : 0)) * a.w * a.cin;
    for (int kx = 0; kx < a.k; ++kx) {
      const float* src[P];
      for (int p = 0; p < P; ++p) {
        const int ix = (ox + p) * a.stride - a.pad + kx;
        src[p] = (row_in && ix >= 0 && ix < a.w) ? xrow + static_cast<int64_t>(ix) * a.cin : zero;
      }
      const float* wtap = a.weight + static_cast<int64_t>(ky * a.k + kx) * a.cin * a.cout_pad + co;
      for (int ci = 0; ci < a.cin; ++ci) {
        const float* __restrict wr = wtap + static_cast<int64_t>(ci) * a.cout_pad;
        for (int p = 0; p < P; ++p) {
          const float v = src[p][ci];
          for (int t = 0; t < T; ++t) acc[p][t] += v * wr[t];
        }
      }
    }
  }
  const int valid = std::min(T, a.cout - co);
  for (int p = 0; p < P; ++p) {
    float* o = out + static_cast<int64_t>(p) * a.cout + co;
    for (int t = 0; t < valid; ++t) o[t] = acc[p][t] + (a.bias ? a.bias[co + t] : 0.0f);
  }
}

template <int P, int T>
ADPC_INLINE void conv_pixels(const MaskedConvArgs& a, int image, int oy, int x0, int x1, int co,
                             float* out_row) {
  int x = x0;
  for (; x + P <= x1; x += P) conv_tile<P, T>(a, image, oy, x, co, out_row + static_cast<int64_t>(x) * a.cout);
  if (P > 4)
    for (; x + 4 <= x1; x += 4) conv_tile<4, T>(a, image, oy, x, co, out_row + static_cast<int64_t>(x) * a.cout);
  for (; x < x1; ++x) conv_tile<1, T>(a, image, oy, x, co, out_row + static_cast<int64_t>(x) * a.cout);
}

// Output channels are split into tiles of up to 48 that keep 8 pixels x T accumulators in
// registers (24 vector registers with AVX-512); narrow layers take the whole width at once.
ADPC_INLINE void conv_width(const MaskedConvArgs& a, int image, int oy, int x0, int x1, int co,
                            int width, float* out_row) {
  switch (width) {
    case 8: conv_pixels<8, 8>(a, image, oy, x0, x1, co, out_row); break;
    case 16: conv_pixels<8, 16>(a, image, oy, x0, x1, co, out_row); break;
    case 24: conv_pixels<8, 24>(a, image, oy, x0, x1, co, out_row); break;
    case 32: conv_pixels<8, 32>(a, image, oy, x0, x1, co, out_row); break;
    case 40: conv_pixels<8, 40>(a, image, oy, x0, x1, co, out_row); break;
    default: conv_pixels<8, 48>(a, image, oy, x0, x1, co, out_row); break;
  }
}

ADPC_CLONES
inline void conv_run(const MaskedConvArgs& a, const Run& run) {
  const int image = run.row / a.ho, oy = run.row % a.ho;
  float* out_row = a.out + static_cast<int64_t>(run.row) * a.wo * a.cout;
  for (int co = 0; co < a.cout_pad; co += 48)
    conv_width(a, image, oy, run.x0, run.x1, co, std::min(48, a.cout_pad - co), out_row);
}

// The fill and epilogue passes touch every pixel with a few operations per channel, so their
// channel loops are compiled for the model's channel counts (CT > 0; CT = 0: any count).
template <int CT>
ADPC_INLINE int channels(const MaskedConvArgs& a) { return CT > 0 ? CT : a.cout; }

// Horizontal fill pass of row r over [lo, hi): h[x] = sum_d t[d] * y(r, x + d) over active
// x + d, accumulated by scattering each active pixel into its 2R + 1 neighbours.
template <int CT>
ADPC_INLINE void fill_row_h(const MaskedConvArgs& a, const RunList& rl, int first_run, int r,
                            float* hrow, int lo, int hi) {
  const int R = a.window / 2, C = channels<CT>(a);
  const float* y = a.out + static_cast<int64_t>(r) * a.wo * C;
  std::memset(hrow + static_cast<int64_t>(lo) * C, 0, sizeof(float) * (hi - lo) * C);
  for (size_t i = first_run; i < rl.runs.size() && rl.runs[i].row == r; ++i) {
    for (int xs = rl.runs[i].x0; xs < rl.runs[i].x1; ++xs) {
      const float* __restrict src = y + static_cast<int64_t>(xs) * C;
      const int d0 = std::max(-R, xs - (a.wo - 1)), d1 = std::min(R, xs);
      for (int d = d0; d <= d1; ++d) {  // pixel xs - d receives t[d] * y(xs)
        const float t = a.taps[d + R];
        float* __restrict h = hrow + static_cast<int64_t>(xs - d) * C;
        for (int c = 0; c < C; ++c) h[c] += t * src[c];
      }
    }
  }
}

template <int CT>
ADPC_INLINE void epilogue_row(const MaskedConvArgs& a, float* __restrict out,
                              const float* __restrict res, int width) {
  const int C = channels<CT>(a);
  const int64_t n = static_cast<int64_t>(width) * C;
  const float* __restrict scale = a.scale;
  const float* __restrict shift = a.shift;
  if (scale && shift) {
    for (int x = 0; x < width; ++x) {
      float* __restrict o = out + static_cast<int64_t>(x) * C;
      for (int c = 0; c < C; ++c) o[c] = o[c] * scale[c] + shift[c];
    }
  } else if (scale) {
    for (int x = 0; x < width; ++x) {
      float* __restrict o = out + static_cast<int64_t>(x) * C;
      for (int c = 0; c < C; ++c) o[c] *= scale[c];
    }
  } else if (shift) {
    for (int x = 0; x < width; ++x) {
      float* __restrict o = out + static_cast<int64_t>(x) * C;
      for (int c = 0; c < C; ++c) o[c] += shift[c];
    }
  }
  if (res)
    for (int64_t i = 0; i < n; ++i) out[i] += res[i];
  if (a.relu)
    for (int64_t i = 0; i < n; ++i) out[i] = out[i] > 0.0f ? out[i] : 0.0f;
}

// Skipped pixels of output row r: the vertical fill from the H rows of the window (0 where no
// active pixel is near). It writes skipped pixels only, which no H row reads.
template <int CT>
ADPC_INLINE void finish_row(const MaskedConvArgs& a, const RunList& rl, const uint8_t* needs_fill,
                            const float* ring, int ring_rows, int h0, int r) {
  const int R = a.window / 2, C = channels<CT>(a);
  const int image = r / a.ho, oy = r % a.ho;
  const float* m = a.mask + static_cast<int64_t>(r) * a.wo;
  float* out = a.out + static_cast<int64_t>(r) * a.wo * C;
  if (rl.row_active[r] < a.wo) {
    for (int x = 0; x < a.wo; ++x)
      if (m[x] == 0.0f) std::memset(out + static_cast<int64_t>(x) * C, 0, sizeof(float) * C);
    for (int dy = -R; a.taps && dy <= R; ++dy) {
      const int yy = oy + dy;
      if (yy < 0 || yy >= a.ho) continue;
      const int rr = image * a.ho + yy;
      if (rl.span_lo[rr] >= rl.span_hi[rr] || !needs_fill[rr]) continue;
      const int lo = std::max(0, rl.span_lo[rr] - R), hi = std::min(a.wo, rl.span_hi[rr] + R);
      const float t = a.taps[dy + R];
      const float* hrow = ring + static_cast<int64_t>((rr - h0) % ring_rows) * a.wo * C;
      for (int x = lo; x < hi; ++x) {
        if (m[x] != 0.0f) continue;
        float* __restrict o = out + static_cast<int64_t>(x) * C;
        const float* __restrict h = hrow + static_cast<int64_t>(x) * C;
        for (int c = 0; c < C; ++c) o[c] += t * h[c];
      }
    }
  }
}

template <int CT>
ADPC_INLINE void epilogue_of_row(const MaskedConvArgs& a, int r) {
  const int C = channels<CT>(a);
  epilogue_row<CT>(a, a.out + static_cast<int64_t>(r) * a.wo * C,
                   a.residual ? a.residual + static_cast<int64_t>(r) * a.wo * C : nullptr, a.wo);
}

// One band of output rows [r0, r1) of one image: horizontal fill of the rows its vertical
// window reads (the band plus R rows each side, recomputed at band edges), then the vertical
// fill and epilogue of its rows. A whole-map H buffer made the fill memory-bound (no gain
// from a second thread); bands with a ring of H rows stay in cache.
template <int CT>
ADPC_CLONES_T void fill_band(const MaskedConvArgs& a, const RunList& rl,
                             const std::vector<int32_t>& row_first_run, const uint8_t* needs_fill,
                             int r0, int r1, bool deferred) {
  const int R = a.window / 2, C = channels<CT>(a);
  if (deferred) {  // second pass: only the epilogue of rows next to a shared band edge
    const int first = (r0 / a.ho) * a.ho, last = first + a.ho;
    if (!a.taps || a.window <= 1) return;
    for (int r = r0; r < r1; ++r)
      if ((r0 > first && r < r0 + R) || (r1 < last && r >= r1 - R)) epilogue_of_row<CT>(a, r);
    return;
  }
  const int image = r0 / a.ho, first = image * a.ho, last = first + a.ho;
  const int h0 = std::max(first, r0 - R), h1 = std::min(last, r1 + R);
  // H rows live in a ring of 2R + 1 rows: row rr is computed just before the first output row
  // that reads it, so the working set stays in cache.
  const int ring_rows = 2 * R + 1;
  static thread_local std::vector<float> ring;
  const bool fill = a.taps && a.window > 1;
  if (fill && ring.size() < static_cast<size_t>(ring_rows) * a.wo * C)
    ring.resize(static_cast<size_t>(ring_rows) * a.wo * C);
  int next = h0;  // next H row to compute
  for (int r = r0; r < r1; ++r) {
    for (; fill && next < std::min(h1, r + R + 1); ++next) {
      if (rl.span_lo[next] >= rl.span_hi[next] || !needs_fill[next]) continue;
      const int lo = std::max(0, rl.span_lo[next] - R), hi = std::min(a.wo, rl.span_hi[next] + R);
      fill_row_h<CT>(a, rl, row_first_run[next], next,
                     ring.data() + static_cast<int64_t>((next - h0) % ring_rows) * a.wo * C, lo, hi);
    }
    finish_row<CT>(a, rl, needs_fill, ring.data(), ring_rows, h0, r);
    // The epilogue rewrites active pixels in place: rows a neighbouring band reads raw for its
    // H rows (within R of a shared edge) wait for the second pass.
    const bool shared_top = r0 > first && r < r0 + R, shared_bottom = r1 < last && r >= r1 - R;
    if (!(fill && (shared_top || shared_bottom)) || deferred) epilogue_of_row<CT>(a, r);
  }
}

// Channel counts of W18-Small-v2 (branches, heads, classes) get compiled loops.
ADPC_CLONES
inline void dispatch_band(const MaskedConvArgs& a, const RunList& rl,
                          const std::vector<int32_t>& row_first_run, const uint8_t* needs_fill,
                          int r0, int r1, bool deferred) {
  switch (a.cout) {
#define ADPC_CASE(n) case n: fill_band<n>(a, rl, row_first_run, needs_fill, r0, r1, deferred); return;
    ADPC_CASE(18) ADPC_CASE(19) ADPC_CASE(36) ADPC_CASE(64) ADPC_CASE(72) ADPC_CASE(144)
    ADPC_CASE(270)
#undef ADPC_CASE
    default: fill_band<0>(a, rl, row_first_run, needs_fill, r0, r1, deferred);
  }
}

}  // namespace detail

// Scratch the caller keeps between calls (run lists, fill bookkeeping), so a forward
// does not allocate per conv.
struct Workspace {
  RunList runs;
  std::vector<int32_t> task_begin;
  std::vector<uint8_t> needs_fill;
  std::vector<int32_t> row_first_run;
};

// Split runs into about `tasks` groups of equal pixel count (threads split by pixels, not runs).
inline void balance(const RunList& rl, int tasks, std::vector<int32_t>& begin) {
  begin.assign(1, 0);
  const int64_t total = std::max<int64_t>(rl.active, 1);
  int64_t acc = 0;
  for (size_t i = 0; i < rl.runs.size(); ++i) {
    acc += rl.runs[i].x1 - rl.runs[i].x0;
    if (acc * tasks >= total * static_cast<int64_t>(begin.size()) && i + 1 < rl.runs.size())
      begin.push_back(static_cast<int32_t>(i + 1));
  }
  begin.push_back(static_cast<int32_t>(rl.runs.size()));
}

// The whole masked conv. `threads` only sizes the work split; `par` runs it.
template <typename Parallel>
void masked_conv2d(const MaskedConvArgs& a, Workspace& ws, int threads, Parallel&& par) {
  const int rows = a.n * a.ho;
  ws.runs.build(a.mask, rows, a.wo);
  const int tasks = std::max(1, threads) * 4;
  balance(ws.runs, tasks, ws.task_begin);
  const int groups = static_cast<int>(ws.task_begin.size()) - 1;
  par(groups, [&](int g) {
    for (int i = ws.task_begin[g]; i < ws.task_begin[g + 1]; ++i) detail::conv_run(a, ws.runs.runs[i]);
  });
  const bool fill = a.taps && a.window > 1;
  ws.needs_fill.assign(rows, 0);
  ws.row_first_run.assign(rows, 0);
  for (size_t i = ws.runs.runs.size(); i-- > 0;) ws.row_first_run[ws.runs.runs[i].row] = static_cast<int32_t>(i);
  if (fill) {
    // H of row r is read only by skipped pixels within R rows of it (same image).
    const int R = a.window / 2;
    for (int r = 0; r < rows; ++r) {
      if (ws.runs.row_active[r] == a.wo) continue;
      const int image = r / a.ho, oy = r % a.ho;
      for (int yy = std::max(0, oy - R); yy <= std::min(a.ho - 1, oy + R); ++yy)
        ws.needs_fill[image * a.ho + yy] = 1;
    }
  }
  // Bands of output rows inside one image, two per thread, at least 16 rows (halo cost).
  const int split = std::max(1, std::max(1, threads) * 2 / std::max(1, a.n));
  const int per_image = std::min(a.ho, std::max(16, (a.ho + split - 1) / split));
  const int bands_per_image = (a.ho + per_image - 1) / per_image;
  const auto band = [&](int b, bool deferred) {
    const int image = b / bands_per_image, i = b % bands_per_image;
    const int r0 = image * a.ho + i * per_image;
    const int r1 = std::min(image * a.ho + a.ho, r0 + per_image);
    detail::dispatch_band(a, ws.runs, ws.row_first_run, ws.needs_fill.data(), r0, r1, deferred);
  };
  par(a.n * bands_per_image, [&](int b) { band(b, false); });
  if (fill && bands_per_image > 1) par(a.n * bands_per_image, [&](int b) { band(b, true); });
}

// Pack an OIHW weight into [k][k][cin][cout_pad] (zeros in the padding).
inline void pack_weight(const float* oihw, int cout, int cin, int k, float* packed) {
  const int cp = padded_channels(cout);
  std::memset(packed, 0, sizeof(float) * static_cast<size_t>(k) * k * cin * cp);
  for (int o = 0; o < cout; ++o)
    for (int i = 0; i < cin; ++i)
      for (int ky = 0; ky < k; ++ky)
        for (int kx = 0; kx < k; ++kx)
          packed[((static_cast<int64_t>(ky) * k + kx) * cin + i) * cp + o] =
              oihw[((static_cast<int64_t>(o) * cin + i) * k + ky) * k + kx];
}

}  // namespace adpc
