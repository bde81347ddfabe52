// ExecuTorch binding of the masked-conv core: `adpc::masked_conv2d.out`, registered when this
// library is loaded (before the program's methods are loaded). Runs on ExecuTorch's own thread
// pool, the one XNNPACK uses, so one thread setting governs both.
#include <executorch/extension/kernel_util/make_boxed_from_unboxed_functor.h>
#include <executorch/runtime/kernel/kernel_includes.h>
#include <executorch/runtime/kernel/thread_parallel_interface.h>

#include <optional>

#include "masked_conv.h"

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

}  // namespace

EXECUTORCH_LIBRARY(adpc, "masked_conv2d.out", masked_conv2d_out);
