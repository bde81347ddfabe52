// Exactness of the int8 masked-conv core against a straightforward dense reference, with no
// dependencies, so the same check runs natively and cross-compiled for aarch64 under qemu-user.
//
// The reference computes steps 1-5 of qmasked_conv.h densely, one pixel and channel at a time:
// the accumulator in int64, then the float32 chain in the documented order (the fill as its
// separable H then V sums over the whole window, zeros included). Every case runs on every
// instruction-set path this machine supports, with 1 and several threads, and must give:
//   - accumulators of active pixels equal to the int64 reference, bit for bit;
//   - outputs equal to the reference at every active and far skipped pixel;
//   - at filled pixels at most 1 LSB off (float order), counted and reported.
// Usage: test_qcore [path ...]   (paths: portable avx2 avx512vnni neondot; default all available)
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "qmasked_conv.h"

// The reference must not be contracted into FMAs either (GCC does so by default on aarch64).
#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#else
#pragma GCC optimize("fp-contract=off")
#endif

namespace {

struct Case {
  int n, h, w, cin, cout, k, stride;
  const char* mask_kind;  // zeros ones scattered clustered pixel null
  int step, window;       // mask resolution step, fill window (0: no taps)
  bool bias, bn, residual, relu, pow2;
  bool tight = false;  // scales that saturate many values (the clamps)
};

struct Data {
  adpc::QMaskedConvArgs a;
  std::vector<int8_t> x, w, packed, residual;
  std::vector<float> w_scale, bias, mask, taps, bn_s, bn_b;
  int ho = 0, wo = 0;
};

std::vector<float> make_mask(const Case& c, int ho, int wo, std::mt19937& rng) {
  const int mh = ho * c.step, mw = wo * c.step;
  std::vector<float> m(static_cast<size_t>(c.n) * mh * mw, 0.0f);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  const std::string kind(c.mask_kind);
  for (int i = 0; i < c.n; ++i) {
    const float cy = u(rng) * ho, cx = u(rng) * wo, r = (0.2f + 0.3f * u(rng)) * std::max(ho, wo);
    const float cy2 = u(rng) * ho, cx2 = u(rng) * wo;
    const int py = static_cast<int>(u(rng) * ho) % ho, px = static_cast<int>(u(rng) * wo) % wo;
    for (int y = 0; y < mh; ++y)
      for (int x = 0; x < mw; ++x) {
        float& v = m[(static_cast<size_t>(i) * mh + y) * mw + x];
        const float oy = static_cast<float>(y / c.step), ox = static_cast<float>(x / c.step);
        if (y % c.step || x % c.step) {
          v = u(rng) < 0.5f ? 1.0f : 0.0f;  // never sampled: noise that must not matter
          continue;
        }
        if (kind == "ones") v = 1.0f;
        else if (kind == "scattered") v = u(rng) < 0.3f ? 1.0f : 0.0f;
        else if (kind == "clustered")
          v = ((oy - cy) * (oy - cy) + (ox - cx) * (ox - cx) < r * r ||
               (oy - cy2) * (oy - cy2) + (ox - cx2) * (ox - cx2) < 0.3f * r * r) ? 1.0f : 0.0f;
        else if (kind == "pixel") v = (y / c.step == py && x / c.step == px) ? 1.0f : 0.0f;
      }
  }
  return m;
}

int rne_clamp(float t, int zp) {  // clamp(rne(t) + zp, -128, 127)
  float r = std::nearbyint(t);   // default rounding mode: half to even
  r = std::min(std::max(r, -1000.0f), 1000.0f);
  return std::min(127, std::max(-128, static_cast<int>(r) + zp));
}

float inv(float s) { return static_cast<float>(1.0 / static_cast<double>(s)); }

// Steps 1-5, densely. acc: [pix][cout]; kind: 0 active, 1 filled (near), 2 far skipped.
void reference(const Data& d, std::vector<int64_t>& acc, std::vector<int8_t>& out, std::vector<uint8_t>& kind) {
  const adpc::QMaskedConvArgs& a = d.a;
  const int ho = d.ho, wo = d.wo, C = a.cout, R = a.taps ? a.window / 2 : 0;
  const size_t pixels = static_cast<size_t>(a.n) * ho * wo;
  acc.assign(pixels * C, 0);
  std::vector<float> kept(pixels * C), yp(pixels * C);
  std::vector<uint8_t> m(pixels, 1);
  const int step = a.mask ? a.mh / ho : 1;
  for (int i = 0; i < a.n; ++i)
    for (int oy = 0; oy < ho; ++oy)
      for (int ox = 0; ox < wo; ++ox) {
        const size_t p = (static_cast<size_t>(i) * ho + oy) * wo + ox;
        if (a.mask) m[p] = a.mask[(static_cast<size_t>(i) * a.mh + oy * step) * a.mw + ox * step] != 0.0f;
        for (int o = 0; o < C; ++o) {
          int64_t s = 0;
          for (int ky = 0; ky < a.k; ++ky)
            for (int kx = 0; kx < a.k; ++kx) {
              const int iy = oy * a.stride - a.pad + ky, ix = ox * a.stride - a.pad + kx;
              if (iy < 0 || iy >= a.h || ix < 0 || ix >= a.w) continue;
              for (int c = 0; c < a.cin; ++c)
                s += (static_cast<int64_t>(d.x[((static_cast<size_t>(i) * a.h + iy) * a.w + ix) * a.cin + c]) - a.x_zp) *
                     d.w[((static_cast<size_t>(o) * a.cin + c) * a.k + ky) * a.k + kx];
            }
          acc[p * C + o] = s;
          float y = static_cast<float>(static_cast<int32_t>(s)) * (a.x_scale * a.w_scale[o]);
          if (a.bias) y = y + a.bias[o];
          const int qy = rne_clamp(y * inv(a.y_scale), a.y_zp);
          yp[p * C + o] = static_cast<float>(qy - a.y_zp) * a.y_scale;
          kept[p * C + o] = m[p] ? yp[p * C + o] : 0.0f;
        }
      }
  // Separable fill of kept: H along rows, then V along columns, ascending taps, zero padding.
  std::vector<float> hsum(pixels * C, 0.0f), vsum(pixels * C, 0.0f);
  for (int i = 0; i < a.n && R > 0; ++i)
    for (int oy = 0; oy < ho; ++oy)
      for (int ox = 0; ox < wo; ++ox)
        for (int o = 0; o < C; ++o) {
          float s = 0.0f;
          for (int dx = -R; dx <= R; ++dx) {
            const int xx = ox + dx;
            const float v = (xx < 0 || xx >= wo) ? 0.0f : kept[((static_cast<size_t>(i) * ho + oy) * wo + xx) * C + o];
            s = s + a.taps[dx + R] * v;
          }
          hsum[((static_cast<size_t>(i) * ho + oy) * wo + ox) * C + o] = s;
        }
  for (int i = 0; i < a.n && R > 0; ++i)
    for (int oy = 0; oy < ho; ++oy)
      for (int ox = 0; ox < wo; ++ox)
        for (int o = 0; o < C; ++o) {
          float s = 0.0f;
          for (int dy = -R; dy <= R; ++dy) {
            const int yy = oy + dy;
            const float v = (yy < 0 || yy >= ho) ? 0.0f : hsum[((static_cast<size_t>(i) * ho + yy) * wo + ox) * C + o];
            s = s + a.taps[dy + R] * v;
          }
          vsum[((static_cast<size_t>(i) * ho + oy) * wo + ox) * C + o] = s;
        }
  out.assign(pixels * C, 0);
  kind.assign(pixels, 0);
  for (int i = 0; i < a.n; ++i)
    for (int oy = 0; oy < ho; ++oy)
      for (int ox = 0; ox < wo; ++ox) {
        const size_t p = (static_cast<size_t>(i) * ho + oy) * wo + ox;
        bool near = false;  // an active pixel within the window
        for (int dy = -R; dy <= R && !m[p]; ++dy)
          for (int dx = -R; dx <= R; ++dx) {
            const int yy = oy + dy, xx = ox + dx;
            if (yy >= 0 && yy < ho && xx >= 0 && xx < wo && m[(static_cast<size_t>(i) * ho + yy) * wo + xx]) near = true;
          }
        kind[p] = m[p] ? 0 : near ? 1 : 2;
        for (int o = 0; o < C; ++o) {
          float v = m[p] ? yp[p * C + o] : vsum[p * C + o];  // = kept + fill * (1 - m)
          if (a.bn_scale) v = v * a.bn_scale[o];
          if (a.bn_shift) v = v + a.bn_shift[o];
          if (a.residual) {
            const int qb = rne_clamp(v * inv(a.b_scale), a.b_zp);
            v = static_cast<float>(qb - a.b_zp) * a.b_scale +
                static_cast<float>(a.residual[p * C + o] - a.r_zp) * a.r_scale;
          }
          if (a.relu) v = std::max(v, 0.0f);
          out[p * C + o] = static_cast<int8_t>(rne_clamp(v * inv(a.o_scale), a.o_zp));
        }
      }
}

float stddev(const std::vector<float>& v) {
  double s = 0, s2 = 0;
  for (float f : v) {
    s += f;
    s2 += static_cast<double>(f) * f;
  }
  const double n = std::max<size_t>(1, v.size()), mean = s / n;
  return static_cast<float>(std::sqrt(std::max(1e-12, s2 / n - mean * mean)));
}

// Random data with scales that use the int8 range: a few percent of values saturate.
void make_data(const Case& c, std::mt19937& rng, Data& d) {
  std::uniform_int_distribution<int> q(-128, 127), wq(-127, 127), zp(-30, 30);
  std::uniform_real_distribution<float> u(0.5f, 1.5f);
  std::normal_distribution<float> g(0.0f, 1.0f);
  adpc::QMaskedConvArgs& a = d.a;
  a = adpc::QMaskedConvArgs{};
  a.n = c.n; a.h = c.h; a.w = c.w; a.cin = c.cin; a.cout = c.cout; a.k = c.k; a.stride = c.stride;
  a.pad = c.k / 2;
  d.ho = adpc::conv_out_size(c.h, c.k, c.stride, a.pad);
  d.wo = adpc::conv_out_size(c.w, c.k, c.stride, a.pad);
  d.x.resize(static_cast<size_t>(c.n) * c.h * c.w * c.cin);
  // pow2: small values and binary scales, so that every quantisation meets exact ties.
  std::uniform_int_distribution<int> small(-8, 8), tiny(-2, 2);
  a.x_zp = c.pow2 ? 3 : zp(rng);
  for (auto& v : d.x) v = static_cast<int8_t>(c.pow2 ? small(rng) + a.x_zp : q(rng));
  d.w.resize(static_cast<size_t>(c.cout) * c.cin * c.k * c.k);
  for (auto& v : d.w) v = static_cast<int8_t>(c.pow2 ? tiny(rng) : wq(rng));
  if (c.cin % 2 && !c.pow2) d.w[0] = -128;  // the full s8 range, for the u8 x s8 path
  const float fan = std::sqrt(static_cast<float>(c.cin * c.k * c.k));
  a.x_scale = c.pow2 ? 1.0f / 64 : 0.02f * u(rng);
  d.w_scale.resize(c.cout);
  for (auto& v : d.w_scale) v = c.pow2 ? 1.0f / 64 : u(rng) / (127.0f * fan);
  d.bias.resize(c.cout);
  for (auto& v : d.bias) v = c.pow2 ? static_cast<float>(tiny(rng)) / 4096 : 0.5f * g(rng);
  d.bn_s.resize(c.cout);
  d.bn_b.resize(c.cout);
  for (auto& v : d.bn_s) v = c.pow2 ? 0.5f : (g(rng) < -1.5f ? -1.0f : 1.0f) * u(rng);
  for (auto& v : d.bn_b) v = c.pow2 ? static_cast<float>(small(rng)) / 8192 : 0.3f * g(rng);
  d.taps.resize(std::max(1, c.window));
  double sum = 0;
  for (int i = 0; i < c.window; ++i) {
    const float dd = static_cast<float>(i - c.window / 2);
    d.taps[i] = std::exp(-0.36f * dd * dd);
    sum += d.taps[i];
  }
  const float norm = static_cast<float>(std::sqrt(sum * sum - 1.0 + 1e-5));
  for (auto& v : d.taps) v /= norm;
  d.mask = make_mask(c, d.ho, d.wo, rng);
  d.residual.resize(static_cast<size_t>(c.n) * d.ho * d.wo * c.cout);
  for (auto& v : d.residual) v = static_cast<int8_t>(c.pow2 ? 4 * small(rng) : q(rng));
  d.packed.resize(static_cast<size_t>(adpc::qpacked_size(c.cout, c.cin, c.k)));
  if (adpc::qpack_weight(d.w.data(), c.cout, c.cin, c.k, d.packed.data()) != 0) std::abort();
  a.x = d.x.data();
  a.packed = d.packed.data();
  a.w_scale = d.w_scale.data();
  a.bias = c.bias ? d.bias.data() : nullptr;
  const bool null_mask = std::string(c.mask_kind) == "null";
  a.mask = null_mask ? nullptr : d.mask.data();
  a.mh = d.ho * c.step;
  a.mw = d.wo * c.step;
  a.taps = c.window > 0 ? d.taps.data() : nullptr;
  a.window = c.window;
  a.bn_scale = c.bn ? d.bn_s.data() : nullptr;
  a.bn_shift = c.bn ? d.bn_b.data() : nullptr;
  a.residual = c.residual ? d.residual.data() : nullptr;
  a.relu = c.relu;
  // Scales from the data: provisional ones, then set from the reference's value spread.
  a.y_scale = a.b_scale = a.o_scale = a.r_scale = 1.0f;
  a.y_zp = a.b_zp = a.o_zp = a.r_zp = 0;
  std::vector<int64_t> acc;
  std::vector<int8_t> out;
  std::vector<uint8_t> kind;
  if (c.pow2) {  // y * inv(y_scale) = acc / 2 + bias * 2048, then r / 2 + j / 2, ...: ties
    a.y_scale = 1.0f / 2048;
    a.y_zp = 3;
    a.b_scale = 1.0f / 4096;
    a.b_zp = -5;
    a.r_scale = 1.0f / 8192;
    a.r_zp = 7;
    a.o_scale = 1.0f / 4096;
    a.o_zp = c.relu ? -100 : 1;
    return;
  }
  std::vector<float> ys;
  for (int o = 0; o < c.cout; ++o)
    for (int t = 0; t < 64; ++t) {
      int64_t s = 0;
      for (int j = 0; j < c.cin * c.k * c.k; ++j) s += static_cast<int64_t>(q(rng) - a.x_zp) * d.w[o * c.cin * c.k * c.k + j];
      ys.push_back(static_cast<float>(s) * a.x_scale * d.w_scale[o] + (a.bias ? a.bias[o] : 0.0f));
    }
  const float sy = stddev(ys) * (c.tight ? 0.3f : 1.0f);
  a.y_scale = sy / 40.0f;
  a.y_zp = zp(rng);
  a.b_scale = sy * 1.2f / 40.0f;
  a.b_zp = zp(rng);
  a.r_scale = sy / 50.0f;
  a.r_zp = zp(rng);
  a.o_scale = sy * 1.5f / 40.0f;
  a.o_zp = c.relu ? -128 + zp(rng) / 3 + 10 : zp(rng);
}

// A real thread split: tasks run on `threads` std::threads.
struct Threads {
  int threads;
  template <typename Fn>
  void operator()(int tasks, Fn&& fn) const {
    std::atomic<int> next{0};
    auto work = [&] {
      for (int i = next++; i < tasks; i = next++) fn(i);
    };
    std::vector<std::thread> pool;
    for (int t = 1; t < threads; ++t) pool.emplace_back(work);
    work();
    for (auto& t : pool) t.join();
  }
};

struct Tally {
  int failed = 0, runs = 0;
  long fill_pixels = 0, fill_off = 0;
};

bool run_case(const Case& c, std::mt19937& rng, const std::vector<adpc::QIsa>& isas, Tally& tally) {
  Data d;
  make_data(c, rng, d);
  std::vector<int64_t> acc_ref;
  std::vector<int8_t> out_ref;
  std::vector<uint8_t> kind;
  reference(d, acc_ref, out_ref, kind);
  const int C = c.cout;
  long saturated = 0;
  for (int8_t v : out_ref) saturated += (v == 127 || v == -128);
  bool ok = true;
  for (adpc::QIsa isa : isas) {
    for (int threads : {1, 2 + tally.runs % 2}) {
      ++tally.runs;
      std::vector<int8_t> out(out_ref.size(), 77);
      std::vector<int32_t> acc(acc_ref.size(), 0x5a5a5a5a);
      adpc::QMaskedConvArgs a = d.a;
      a.out = out.data();
      a.acc_out = acc.data();
      adpc::QWorkspace ws;
      ws.force_isa = static_cast<int>(isa);
      const int code = adpc::qmasked_conv2d(a, ws, threads, Threads{threads});
      long acc_bad = 0, bad_active = 0, bad_far = 0, off_fill = 0, worst_fill = 0, fills = 0, actives = 0;
      for (size_t p = 0; p < kind.size(); ++p) {
        fills += kind[p] == 1;
        actives += kind[p] == 0;
        for (int o = 0; o < C; ++o) {
          const size_t i = p * C + o;
          const int diff = std::abs(out[i] - out_ref[i]);
          if (kind[p] == 0 && acc[i] != acc_ref[i]) ++acc_bad;
          if (kind[p] == 0 && diff) ++bad_active;
          if (kind[p] == 2 && diff) ++bad_far;
          if (kind[p] == 1 && diff) {
            ++off_fill;
            worst_fill = std::max<long>(worst_fill, diff);
          }
        }
      }
      tally.fill_pixels += fills * C;
      tally.fill_off += off_fill;
      const bool good = code == 0 && acc_bad == 0 && bad_active == 0 && bad_far == 0 && worst_fill <= 1;
      ok = ok && good;
      std::printf("%s %-10s t%d n%d %dx%d %d->%d k%d s%d mask=%s step%d win%d bias%d bn%d res%d relu%d pow2%d tight%d: "
                  "active %ld fill %ld, acc mismatches %ld, out mismatches active %ld far %ld fill %ld "
                  "(max %ld LSB), saturated %ld\n",
                  good ? "ok  " : "FAIL", adpc::qisa_name(isa), threads, c.n, c.h, c.w, c.cin, c.cout, c.k,
                  c.stride, c.mask_kind, c.step, c.window, c.bias, c.bn, c.residual, c.relu, c.pow2, c.tight, actives,
                  fills, acc_bad, bad_active, bad_far, off_fill, worst_fill, saturated);
    }
  }
  return ok;
}

// Argument checks of the C++ entry (the C ABI maps them one to one).
bool check_arguments(std::mt19937& rng) {
  Case c{1, 8, 8, 8, 8, 3, 1, "clustered", 2, 7, true, true, true, true, false};
  Data d;
  make_data(c, rng, d);
  std::vector<int8_t> out(static_cast<size_t>(d.ho) * d.wo * c.cout);
  d.a.out = out.data();
  auto code = [&](auto edit, int threads = 1) {
    adpc::QMaskedConvArgs a = d.a;
    edit(a);
    adpc::QWorkspace ws;
    return adpc::qmasked_conv2d(a, ws, threads, Threads{1});
  };
  struct Expect {
    const char* what;
    int got, want;
  };
  float bad_w[8] = {1, 1, 1, 0, 1, 1, 1, 1};
  std::vector<int8_t> other(d.packed);
  other[8] = 9;  // cin in the header
  const Expect checks[] = {
      {"valid", code([](auto&) {}), adpc::kQOk},
      {"n", code([](auto& a) { a.n = 0; }), adpc::kQN},
      {"h", code([](auto& a) { a.h = -1; }), adpc::kQH},
      {"cin", code([](auto& a) { a.cin = 0; }), adpc::kQCin},
      {"k", code([](auto& a) { a.k = 0; }), adpc::kQK},
      {"stride", code([](auto& a) { a.stride = 0; }), adpc::kQStride},
      {"pad", code([](auto& a) { a.pad = -1; }), adpc::kQPad},
      {"x", code([](auto& a) { a.x = nullptr; }), adpc::kQX},
      {"x_scale", code([](auto& a) { a.x_scale = 0.0f; }), adpc::kQXScale},
      {"x_zp", code([](auto& a) { a.x_zp = 128; }), adpc::kQXZp},
      {"packed", code([&](auto& a) { a.packed = other.data(); }), adpc::kQPacked},
      {"w_scale", code([&](auto& a) { a.w_scale = bad_w; }), adpc::kQWScale},
      {"mh", code([](auto& a) { a.mh += 1; }), adpc::kQMh},
      {"mw", code([](auto& a) { a.mw = a.mw / 2; }), adpc::kQMw},
      {"y_scale", code([](auto& a) { a.y_scale = -1.0f; }), adpc::kQYScale},
      {"y_zp", code([](auto& a) { a.y_zp = -129; }), adpc::kQYZp},
      {"window", code([](auto& a) { a.window = 4; }), adpc::kQWindow},
      {"r_scale", code([](auto& a) { a.r_scale = 0.0f; }), adpc::kQRScale},
      {"b_zp", code([](auto& a) { a.b_zp = 200; }), adpc::kQBZp},
      {"o_scale", code([](auto& a) { a.o_scale = INFINITY; }), adpc::kQOScale},
      {"out", code([](auto& a) { a.out = nullptr; }), adpc::kQOut},
      {"threads", code([](auto&) {}, 0), adpc::kQThreads},
  };
  bool ok = true;
  for (const Expect& e : checks) {
    if (e.got != e.want) {
      std::printf("FAIL argument check %s: got %d, want %d\n", e.what, e.got, e.want);
      ok = false;
    }
  }
  std::printf("%s argument checks (%zu)\n", ok ? "ok  " : "FAIL", sizeof checks / sizeof checks[0]);
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<adpc::QIsa> isas;
  for (int i = 0; i < adpc::kQIsaCount; ++i) {
    const auto isa = static_cast<adpc::QIsa>(i);
    bool wanted = argc == 1;
    for (int j = 1; j < argc; ++j) wanted = wanted || std::strcmp(argv[j], adpc::qisa_name(isa)) == 0;
    if (wanted && adpc::qisa_supported(isa)) isas.push_back(isa);
  }
  std::printf("paths:");
  for (auto isa : isas) std::printf(" %s", adpc::qisa_name(isa));
  std::printf(" (default here: %s)\n", adpc::qisa_name(adpc::qisa_default()));
  struct Shape {
    int n, h, w, cin, cout, k, stride;
    bool bias;
  };
  const Shape shapes[] = {
      {1, 13, 17, 18, 18, 3, 1, false},   // branch BasicBlocks, odd sizes
      {2, 10, 9, 36, 36, 3, 1, false},
      {1, 9, 11, 72, 72, 3, 1, false},
      {1, 7, 6, 144, 144, 3, 1, false},
      {1, 15, 13, 36, 72, 3, 2, false},   // stride-2 transitions / fuse down-samplings
      {1, 12, 17, 18, 36, 3, 2, false},
      {1, 9, 8, 256, 36, 3, 2, false},
      {1, 8, 11, 256, 18, 3, 1, false},   // the stage-1 -> branch transition
      {1, 12, 10, 36, 18, 1, 1, false},   // fuse 1x1
      {2, 7, 9, 144, 72, 1, 1, false},
      {1, 6, 7, 270, 270, 1, 1, false},   // head 1x1 (last layer of the exit)
      {1, 8, 13, 64, 19, 1, 1, true},     // class conv with bias
      {1, 5, 3, 5, 3, 3, 1, true},        // tiny: fewer pixels than a tile, cin < 4 bytes a group
      {1, 1, 1, 3, 20, 1, 1, true},       // one pixel, 1x1: reads past the input's end
  };
  const char* kinds[] = {"zeros", "ones", "scattered", "clustered", "pixel", "null"};
  const int steps[] = {1, 4, 2};
  const int windows[] = {7, 5, 0, 3};
  std::mt19937 rng(11);
  Tally tally;
  int index = 0;
  for (const Shape& s : shapes) {
    for (const char* kind : kinds) {
      const unsigned i = static_cast<unsigned>(index++) * 2654435761u >> 8;  // options vary per case
      Case c{s.n, s.h, s.w, s.cin, s.cout, s.k, s.stride, kind, steps[i % 3], windows[i / 3 % 4],
             s.bias || i / 12 % 3 == 0, i / 36 % 3 != 1, i / 108 % 2 == 0, i / 216 % 4 != 3, false};
      if (std::string(kind) == "scattered" || std::string(kind) == "clustered") c.window = 7;
      c.tight = i / 864 % 4 == 0;
      tally.failed += run_case(c, rng, isas, tally) ? 0 : 1;
    }
  }
  // Round-half-to-even at every quantisation (binary scales make ties frequent).
  for (const char* kind : {"scattered", "clustered"})
    for (bool res : {false, true}) {
      Case c{1, 11, 14, 18, 18, 3, 1, kind, 1, 7, true, true, res, !res, true};
      tally.failed += run_case(c, rng, isas, tally) ? 0 : 1;
    }
  tally.failed += check_arguments(rng) ? 0 : 1;
  std::printf("filled outputs off by 1 LSB: %ld of %ld\n", tally.fill_off, tally.fill_pixels);
  std::printf("%d runs, %d failed\n", tally.runs, tally.failed);
  return tally.failed ? 1 : 0;
}
