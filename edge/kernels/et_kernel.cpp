// ExecuTorch binding of the masked-conv core: `adpc::masked_conv2d.out`, registered when this
// library is loaded (before the program's methods are loaded). Runs on ExecuTorch's own thread
// pool, the one XNNPACK uses, so one thread setting governs both.
#include <executorch/extension/kernel_util/make_boxed_from_unboxed_functor.h>
#include <executorch/runtime/kernel/kernel_includes.h>
#include <executorch/runtime/kernel/thread_parallel_interface.h>

#include <optional>

#include "masked_conv.h"
#include "qmasked_conv.h"

namespace {

using executorch::aten::ScalarType;
using executorch::aten::Tensor;
using executorch::runtime::Error;
using executorch::runtime::KernelRuntimeContext;

// Activations must be channels-last (dim order 0,2,3,1); with one channel both orders coincide.
bool channels_last(const Tensor& t) {
  if (t.dim() != 4) return false;
  const auto order = t.dim_order();
  const bool nhwc = order[0] == 0 && order[1] == 2 && order[2] == 3 && order[3] == 1;
  return nhwc || t.size(1) == 1;
}

const float* data_or_null(const std::optional<Tensor>& t) {
  return t.has_value() ? t->const_data_ptr<float>() : nullptr;
}

Tensor& masked_conv2d_out(KernelRuntimeContext& ctx, const Tensor& x, const Tensor& weight,
                          const std::optional<Tensor>& bias, const Tensor& mask,
                          const std::optional<Tensor>& taps, int64_t stride, int64_t padding,
                          int64_t out_channels, const std::optional<Tensor>& scale,
                          const std::optional<Tensor>& shift, const std::optional<Tensor>& residual,
                          bool relu, Tensor& out) {
  ET_KERNEL_CHECK_MSG(ctx, x.scalar_type() == ScalarType::Float && out.scalar_type() == ScalarType::Float,
                      InvalidArgument, out, "adpc::masked_conv2d runs fp32 only");
  ET_KERNEL_CHECK_MSG(ctx, channels_last(x) && channels_last(out) &&
                               (!residual.has_value() || channels_last(*residual)),
                      InvalidArgument, out,
                      "adpc::masked_conv2d needs channels-last activations (export in sparse mode)");
  ET_KERNEL_CHECK_MSG(ctx, weight.dim() == 4 && weight.size(2) == x.size(1) &&
                               weight.size(3) % adpc::kChannelAlign == 0,
                      InvalidArgument, out, "adpc::masked_conv2d: weight is not packed [k,k,Cin,Cout_pad]");
  adpc::MaskedConvArgs a;
  a.n = static_cast<int>(x.size(0));
  a.cin = static_cast<int>(x.size(1));
  a.h = static_cast<int>(x.size(2));
  a.w = static_cast<int>(x.size(3));
  a.k = static_cast<int>(weight.size(0));
  a.cout_pad = static_cast<int>(weight.size(3));
  a.cout = static_cast<int>(out_channels);
  a.stride = static_cast<int>(stride);
  a.pad = static_cast<int>(padding);
  a.ho = adpc::conv_out_size(a.h, a.k, a.stride, a.pad);
  a.wo = adpc::conv_out_size(a.w, a.k, a.stride, a.pad);
  ET_KERNEL_CHECK_MSG(ctx, out.size(0) == a.n && out.size(1) == a.cout && out.size(2) == a.ho &&
                               out.size(3) == a.wo && mask.numel() == static_cast<ssize_t>(a.n) * a.ho * a.wo,
                      InvalidArgument, out, "adpc::masked_conv2d: output or mask has the wrong size");
  a.x = x.const_data_ptr<float>();
  a.weight = weight.const_data_ptr<float>();
  a.bias = data_or_null(bias);
  a.mask = mask.const_data_ptr<float>();
  a.taps = data_or_null(taps);
  a.window = taps.has_value() ? static_cast<int>(taps->numel()) : 0;
  a.scale = data_or_null(scale);
  a.shift = data_or_null(shift);
  a.residual = data_or_null(residual);
  a.relu = relu;
  a.out = out.mutable_data_ptr<float>();
  static thread_local adpc::Workspace ws;
  const int threads = static_cast<int>(executorch::extension::get_thread_count());
  adpc::masked_conv2d(a, ws, threads, [](int tasks, auto&& fn) {
    executorch::extension::parallel_for(0, tasks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) fn(static_cast<int>(i));
    });
  });
  return out;
}

template <typename T>
const T* ptr_or_null(const std::optional<Tensor>& t) {
  return t.has_value() ? t->const_data_ptr<T>() : nullptr;
}

bool float_vector(const std::optional<Tensor>& t, int64_t n) {
  return !t.has_value() || (t->scalar_type() == ScalarType::Float && t->numel() == n);
}

// The int8 chain of one masked conv (edge/kernels/qtorch_op.py has the semantics): int8 NHWC
// in and out, the weight packed once at export (qmasked_conv.h documents the layout).
Tensor& qmasked_conv2d_out(KernelRuntimeContext& ctx, const Tensor& x, double x_scale,
                           int64_t x_zp, const Tensor& weight, int64_t out_channels,
                           int64_t kernel, const Tensor& w_scale,
                           const std::optional<Tensor>& bias, const std::optional<Tensor>& mask,
                           const std::optional<Tensor>& taps, int64_t stride, int64_t padding,
                           double y_scale, int64_t y_zp, const std::optional<Tensor>& bn_scale,
                           const std::optional<Tensor>& bn_shift,
                           const std::optional<Tensor>& residual, double r_scale, int64_t r_zp,
                           double b_scale, int64_t b_zp, bool relu, double o_scale, int64_t o_zp,
                           Tensor& out) {
  const bool int8 = x.scalar_type() == ScalarType::Char && weight.scalar_type() == ScalarType::Char &&
                    out.scalar_type() == ScalarType::Char &&
                    (!residual.has_value() || residual->scalar_type() == ScalarType::Char);
  ET_KERNEL_CHECK_MSG(ctx, int8 && x.dim() == 4 && weight.dim() == 1 && out.dim() == 4,
                      InvalidArgument, out,
                      "adpc::qmasked_conv2d takes int8 4-D activations and a packed int8 weight");
  ET_KERNEL_CHECK_MSG(ctx, channels_last(x) && channels_last(out) &&
                               (!residual.has_value() || channels_last(*residual)),
                      InvalidArgument, out,
                      "adpc::qmasked_conv2d needs channels-last activations (export in sparse mode)");
  ET_KERNEL_CHECK_MSG(ctx, stride > 0 && padding >= 0 && kernel > 0 && out_channels > 0 &&
                               kernel <= adpc::kQMaxKernel && out_channels <= adpc::kQMaxChannels &&
                               x.size(1) <= adpc::kQMaxChannels,
                      InvalidArgument, out, "adpc::qmasked_conv2d: bad stride, padding or weight size");
  // the packed weight must hold exactly a [out_channels, Cin, kernel, kernel] conv (its header
  // is checked against the same sizes by the core), so nothing is read past its end
  ET_KERNEL_CHECK_MSG(ctx, weight.numel() == adpc::qpacked_size(static_cast<int>(out_channels),
                                                                static_cast<int>(x.size(1)),
                                                                static_cast<int>(kernel)),
                      InvalidArgument, out, "adpc::qmasked_conv2d: the packed weight has the wrong size");
  adpc::QMaskedConvArgs a;
  a.n = static_cast<int>(x.size(0));
  a.cin = static_cast<int>(x.size(1));
  a.h = static_cast<int>(x.size(2));
  a.w = static_cast<int>(x.size(3));
  a.cout = static_cast<int>(out_channels);
  a.k = static_cast<int>(kernel);
  a.stride = static_cast<int>(stride);
  a.pad = static_cast<int>(padding);
  const int ho = adpc::conv_out_size(a.h, a.k, a.stride, a.pad);
  const int wo = adpc::conv_out_size(a.w, a.k, a.stride, a.pad);
  ET_KERNEL_CHECK_MSG(ctx, ho > 0 && wo > 0 && out.size(0) == a.n && out.size(1) == a.cout &&
                               out.size(2) == ho && out.size(3) == wo &&
                               (!residual.has_value() || residual->numel() == out.numel()),
                      InvalidArgument, out, "adpc::qmasked_conv2d: output or residual has the wrong size");
  ET_KERNEL_CHECK_MSG(ctx, float_vector(w_scale, a.cout) && float_vector(bias, a.cout) &&
                               float_vector(bn_scale, a.cout) && float_vector(bn_shift, a.cout) &&
                               (!taps.has_value() || taps->scalar_type() == ScalarType::Float),
                      InvalidArgument, out, "adpc::qmasked_conv2d: a per-channel vector has the wrong type or length");
  if (mask.has_value()) {
    ET_KERNEL_CHECK_MSG(ctx, mask->scalar_type() == ScalarType::Float && mask->dim() == 4 &&
                                 mask->size(0) == a.n && mask->size(1) == 1,
                        InvalidArgument, out, "adpc::qmasked_conv2d: the mask must be float N x 1 x H x W");
    a.mask = mask->const_data_ptr<float>();
    a.mh = static_cast<int>(mask->size(2));
    a.mw = static_cast<int>(mask->size(3));
  }
  a.x = x.const_data_ptr<int8_t>();
  a.x_scale = static_cast<float>(x_scale);
  a.x_zp = static_cast<int>(x_zp);
  a.packed = weight.const_data_ptr<int8_t>();
  a.w_scale = w_scale.const_data_ptr<float>();
  a.bias = ptr_or_null<float>(bias);
  a.y_scale = static_cast<float>(y_scale);
  a.y_zp = static_cast<int>(y_zp);
  a.taps = ptr_or_null<float>(taps);
  a.window = taps.has_value() ? static_cast<int>(taps->numel()) : 0;
  a.bn_scale = ptr_or_null<float>(bn_scale);
  a.bn_shift = ptr_or_null<float>(bn_shift);
  a.residual = ptr_or_null<int8_t>(residual);
  a.r_scale = static_cast<float>(r_scale);
  a.r_zp = static_cast<int>(r_zp);
  a.b_scale = static_cast<float>(b_scale);
  a.b_zp = static_cast<int>(b_zp);
  a.o_scale = static_cast<float>(o_scale);
  a.o_zp = static_cast<int>(o_zp);
  a.out = out.mutable_data_ptr<int8_t>();
  a.relu = relu ? 1 : 0;
  static thread_local adpc::QWorkspace ws;
  const int threads = static_cast<int>(executorch::extension::get_thread_count());
  const int code = adpc::qmasked_conv2d(a, ws, threads, [](int tasks, auto&& fn) {
    executorch::extension::parallel_for(0, tasks, 1, [&](int64_t begin, int64_t end) {
      for (int64_t i = begin; i < end; ++i) fn(static_cast<int>(i));
    });
  });
  ET_KERNEL_CHECK_MSG(ctx, code == 0, InvalidArgument, out,
                      "adpc::qmasked_conv2d: argument %d is invalid", code);
  return out;
}

}  // namespace

EXECUTORCH_LIBRARY(adpc, "masked_conv2d.out", masked_conv2d_out);
EXECUTORCH_LIBRARY(adpc, "qmasked_conv2d.out", qmasked_conv2d_out);
