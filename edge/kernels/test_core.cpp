// Exactness of the masked-conv core against a dense reference, with no dependencies, so the
// same check runs natively and cross-compiled for aarch64 under qemu-user.
//
// Reference (SPEC.md section 4): y = conv(x) + b on every pixel, kept = y * m,
// out = kept + fill(kept) * (1 - m) with the 2-D kernel t t^T (centre 0), then
// out * scale + shift + residual, ReLU.
#include <cmath>
#include <cstdio>
#include <functional>
#include <random>
#include <vector>

#include "masked_conv.h"

namespace {

struct Case {
  int n, h, w, cin, cout, k, stride, window;
  const char* mask_kind;  // "zeros" "ones" "scattered" "clustered" "boundary"
  bool bias, epilogue, residual, relu;
};

std::vector<float> make_mask(const char* kind, int n, int ho, int wo, std::mt19937& rng) {
  std::vector<float> m(static_cast<size_t>(n) * ho * wo, 0.0f);
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  const std::string k(kind);
  for (int i = 0; i < n; ++i) {
    const float cy = u(rng) * ho, cx = u(rng) * wo, r = (0.2f + 0.3f * u(rng)) * std::max(ho, wo);
    for (int y = 0; y < ho; ++y)
      for (int x = 0; x < wo; ++x) {
        float& v = m[(static_cast<size_t>(i) * ho + y) * wo + x];
        if (k == "ones") v = 1.0f;
        else if (k == "scattered") v = u(rng) < 0.3f ? 1.0f : 0.0f;
        else if (k == "clustered") v = (y - cy) * (y - cy) + (x - cx) * (x - cx) < r * r ? 1.0f : 0.0f;
        else if (k == "boundary") v = std::fabs(std::sin(0.37f * x + 0.21f * y * y / (ho + 1))) < 0.2f ? 1.0f : 0.0f;
      }
  }
  return m;
}

void reference(const adpc::MaskedConvArgs& a, const std::vector<float>& oihw, std::vector<float>& out) {
  const int C = a.cout, R = a.window / 2;
  std::vector<float> y(static_cast<size_t>(a.n) * a.ho * a.wo * C);
  for (int i = 0; i < a.n; ++i)
    for (int oy = 0; oy < a.ho; ++oy)
      for (int ox = 0; ox < a.wo; ++ox)
        for (int o = 0; o < C; ++o) {
          double s = a.bias ? a.bias[o] : 0.0;
          for (int ky = 0; ky < a.k; ++ky)
            for (int kx = 0; kx < a.k; ++kx) {
              const int iy = oy * a.stride - a.pad + ky, ix = ox * a.stride - a.pad + kx;
              if (iy < 0 || iy >= a.h || ix < 0 || ix >= a.w) continue;
              for (int c = 0; c < a.cin; ++c)
                s += static_cast<double>(a.x[((static_cast<size_t>(i) * a.h + iy) * a.w + ix) * a.cin + c]) *
                     oihw[((static_cast<size_t>(o) * a.cin + c) * a.k + ky) * a.k + kx];
            }
          const size_t p = (static_cast<size_t>(i) * a.ho + oy) * a.wo + ox;
          y[p * C + o] = static_cast<float>(s) * a.mask[p];
        }
  out.assign(y.size(), 0.0f);
  for (int i = 0; i < a.n; ++i)
    for (int oy = 0; oy < a.ho; ++oy)
      for (int ox = 0; ox < a.wo; ++ox) {
        const size_t p = (static_cast<size_t>(i) * a.ho + oy) * a.wo + ox;
        for (int o = 0; o < C; ++o) {
          double v = y[p * C + o];
          if (a.mask[p] == 0.0f && a.taps) {
            for (int dy = -R; dy <= R; ++dy)
              for (int dx = -R; dx <= R; ++dx) {
                const int yy = oy + dy, xx = ox + dx;
                if ((dy == 0 && dx == 0) || yy < 0 || yy >= a.ho || xx < 0 || xx >= a.wo) continue;
                v += static_cast<double>(a.taps[dy + R]) * a.taps[dx + R] *
                     y[((static_cast<size_t>(i) * a.ho + yy) * a.wo + xx) * C + o];
              }
          }
          if (a.scale) v = v * a.scale[o];
          if (a.shift) v += a.shift[o];
          if (a.residual) v += a.residual[p * C + o];
          if (a.relu && v < 0) v = 0;
          out[p * C + o] = static_cast<float>(v);
        }
      }
}

bool run_case(const Case& c, std::mt19937& rng, int threads) {
  std::normal_distribution<float> g(0.0f, 1.0f);
  const int pad = c.k / 2;
  adpc::MaskedConvArgs a;
  a.n = c.n; a.h = c.h; a.w = c.w; a.cin = c.cin; a.cout = c.cout; a.k = c.k; a.stride = c.stride;
  a.pad = pad; a.ho = adpc::conv_out_size(c.h, c.k, c.stride, pad);
  a.wo = adpc::conv_out_size(c.w, c.k, c.stride, pad); a.cout_pad = adpc::padded_channels(c.cout);
  std::vector<float> x(static_cast<size_t>(c.n) * c.h * c.w * c.cin), oihw(static_cast<size_t>(c.cout) * c.cin * c.k * c.k);
  for (auto& v : x) v = g(rng);
  for (auto& v : oihw) v = g(rng) / std::sqrt(static_cast<float>(c.cin * c.k * c.k));
  std::vector<float> packed(static_cast<size_t>(c.k) * c.k * c.cin * a.cout_pad);
  adpc::pack_weight(oihw.data(), c.cout, c.cin, c.k, packed.data());
  std::vector<float> bias(c.cout), scale(c.cout), shift(c.cout), taps(c.window);
  for (auto& v : bias) v = g(rng);
  for (auto& v : scale) v = 1.0f + 0.3f * g(rng);
  for (auto& v : shift) v = g(rng);
  const float lambda = 0.5f, norm_r = 0.0f;
  (void)norm_r;
  double sum = 0;
  for (int i = 0; i < c.window; ++i) {
    const float d = static_cast<float>(i - c.window / 2);
    taps[i] = std::exp(-lambda * lambda * d * d);
    sum += taps[i];
  }
  const float norm = static_cast<float>(std::sqrt(sum * sum - 1.0 + 1e-5));
  for (auto& v : taps) v /= norm;
  std::vector<float> mask = make_mask(c.mask_kind, c.n, a.ho, a.wo, rng);
  std::vector<float> residual(static_cast<size_t>(c.n) * a.ho * a.wo * c.cout);
  for (auto& v : residual) v = g(rng);
  std::vector<float> out(residual.size(), -12345.0f), expect;
  a.x = x.data(); a.weight = packed.data(); a.bias = c.bias ? bias.data() : nullptr;
  a.mask = mask.data(); a.taps = c.window > 0 ? taps.data() : nullptr; a.window = c.window;
  a.scale = c.epilogue ? scale.data() : nullptr; a.shift = c.epilogue ? shift.data() : nullptr;
  a.residual = c.residual ? residual.data() : nullptr; a.relu = c.relu; a.out = out.data();
  adpc::Workspace ws;
  auto serial = [](int tasks, const std::function<void(int)>& fn) {
    for (int i = 0; i < tasks; ++i) fn(i);
  };
  adpc::masked_conv2d(a, ws, threads, serial);
  reference(a, oihw, expect);
  double worst = 0;
  for (size_t i = 0; i < out.size(); ++i) {
    const double err = std::fabs(out[i] - expect[i]) / std::max(1.0, std::fabs(static_cast<double>(expect[i])));
    worst = std::max(worst, err);
  }
  const bool ok = worst <= 1e-5;
  std::printf("%s n%d %dx%d cin%d cout%d k%d s%d win%d mask=%s bias%d epi%d res%d relu%d: max rel err %.2e\n",
              ok ? "ok  " : "FAIL", c.n, c.h, c.w, c.cin, c.cout, c.k, c.stride, c.window, c.mask_kind,
              c.bias, c.epilogue, c.residual, c.relu, worst);
  return ok;
}

}  // namespace

int main() {
  std::mt19937 rng(7);
  const char* kinds[] = {"zeros", "ones", "scattered", "clustered", "boundary"};
  std::vector<Case> cases;
  for (const char* kind : kinds) {
    cases.push_back({1, 17, 23, 18, 18, 3, 1, 7, kind, false, true, true, true});   // branch block
    cases.push_back({2, 16, 20, 36, 36, 3, 1, 7, kind, false, true, false, true});
    cases.push_back({1, 15, 13, 18, 36, 3, 2, 7, kind, false, true, false, true});  // stride 2, odd
    cases.push_back({1, 9, 11, 72, 144, 3, 2, 7, kind, false, true, false, false});
    cases.push_back({1, 12, 10, 144, 18, 1, 1, 7, kind, false, true, false, false}); // fuse 1x1
    cases.push_back({1, 8, 16, 270, 19, 1, 1, 5, kind, true, false, false, false});  // head class conv
    cases.push_back({1, 6, 7, 5, 3, 3, 1, 0, kind, true, false, false, false});      // no fill
  }
  int failed = 0;
  for (size_t i = 0; i < cases.size(); ++i) failed += run_case(cases[i], rng, 1 + static_cast<int>(i % 3)) ? 0 : 1;
  std::printf("%zu cases, %d failed\n", cases.size(), failed);
  return failed ? 1 : 0;
}
