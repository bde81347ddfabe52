// C ABI of the masked-conv cores (fp32: masked_conv.h, int8: qmasked_conv.h), for the PyTorch
// binding (ctypes) and the exactness tests.
//
// Threads: a small persistent pool. Idle workers spin for at most kSpinMicros (one conv issues
// three parallel passes microseconds apart; waking a sleeping thread costs more than a fill
// pass), then sleep on a condition variable: long spinning would slow down whatever runs
// between our convs (TOOLCHAIN.md).
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "masked_conv.h"
#include "qmasked_conv.h"

namespace {

constexpr int kSpinMicros = 100;

inline void relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  asm volatile("yield");
#endif
}

class Pool {
 public:
  ~Pool() { resize(1); }

  // Run fn(i) for i in [0, tasks) on `threads` threads (the caller is one of them).
  void run(int threads, int tasks, const std::function<void(int)>& fn) {
    if (threads <= 1 || tasks <= 1) {
      for (int i = 0; i < tasks; ++i) fn(i);
      return;
    }
    resize(threads);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      job_ = &fn;
      tasks_ = tasks;
      next_.store(0);
      busy_ = static_cast<int>(workers_.size());
      generation_.fetch_add(1);
    }
    wake_.notify_all();
    drain(fn, tasks);
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [this] { return busy_ == 0; });
    job_ = nullptr;
  }

 private:
  void drain(const std::function<void(int)>& fn, int tasks) {
    for (int i = next_.fetch_add(1); i < tasks; i = next_.fetch_add(1)) fn(i);
  }

  void resize(int threads) {
    const size_t want = static_cast<size_t>(threads > 1 ? threads - 1 : 0);
    if (workers_.size() == want) return;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
      generation_.fetch_add(1);
    }
    wake_.notify_all();
    for (auto& t : workers_) t.join();
    workers_.clear();
    stop_ = false;
    const uint64_t start = generation_.load();  // workers react to the next job, even if they start late
    for (size_t i = 0; i < want; ++i) workers_.emplace_back([this, start] { work(start); });
  }

  void work(uint64_t seen) {
    for (;;) {
      const std::function<void(int)>* job;
      int tasks;
      const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(kSpinMicros);
      for (int i = 0; generation_.load(std::memory_order_acquire) == seen; ++i) {
        relax();
        if ((i & 63) == 0 && std::chrono::steady_clock::now() > until) break;
      }
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
        if (stop_) return;
        seen = generation_;
        job = job_;
        tasks = tasks_;
      }
      if (job) drain(*job, tasks);
      std::lock_guard<std::mutex> lock(mutex_);
      if (--busy_ == 0) done_.notify_one();
    }
  }

  std::vector<std::thread> workers_;
  std::mutex mutex_;
  std::condition_variable wake_, done_;
  const std::function<void(int)>* job_ = nullptr;
  int tasks_ = 0;
  int busy_ = 0;
  bool stop_ = false;
  std::atomic<uint64_t> generation_{0};
  std::atomic<int> next_{0};
};

Pool& pool() {
  static Pool p;
  return p;
}

}  // namespace

extern "C" {

// 2: adds the int8 entry points (adpc_qpacked_size, adpc_qpack_weight, adpc_qmasked_conv2d).
int adpc_abi_version() { return 2; }

// Returns 0 on success, a positive code naming the bad argument otherwise.
int adpc_masked_conv2d(int n, int h, int w, int cin, int cout, int cout_pad, int k, int stride,
                       int pad, const float* x, const float* weight, const float* bias,
                       const float* mask, const float* taps, int window, const float* scale,
                       const float* shift, const float* residual, int relu, float* out,
                       int threads) {
  if (n <= 0 || h <= 0 || w <= 0 || cin <= 0 || cout <= 0 || k <= 0 || stride <= 0 || pad < 0)
    return 1;
  if (cout_pad < cout || cout_pad % adpc::kChannelAlign != 0) return 2;
  if (taps && (window <= 0 || window % 2 == 0)) return 3;
  adpc::MaskedConvArgs a;
  a.n = n; a.h = h; a.w = w; a.cin = cin; a.cout = cout; a.cout_pad = cout_pad;
  a.k = k; a.stride = stride; a.pad = pad;
  a.ho = adpc::conv_out_size(h, k, stride, pad);
  a.wo = adpc::conv_out_size(w, k, stride, pad);
  if (a.ho <= 0 || a.wo <= 0) return 4;
  a.x = x; a.weight = weight; a.bias = bias; a.mask = mask; a.taps = taps; a.window = window;
  a.scale = scale; a.shift = shift; a.residual = residual; a.relu = relu != 0; a.out = out;
  static thread_local adpc::Workspace ws;
  adpc::masked_conv2d(a, ws, threads, [threads](int tasks, const std::function<void(int)>& fn) {
    pool().run(threads, tasks, fn);
  });
  return 0;
}

void adpc_pack_weight(const float* oihw, int cout, int cin, int k, float* packed) {
  adpc::pack_weight(oihw, cout, cin, k, packed);
}

// ---------------------------------------------------------------------------------- int8
// Bytes of the packed int8 weight; -1, -2 or -3 (minus the argument's position) when cout,
// cin or k is out of range.
long adpc_qpacked_size(int cout, int cin, int k) {
  if (cout <= 0 || cout > adpc::kQMaxChannels) return -1;
  if (cin <= 0 || cin > adpc::kQMaxChannels) return -2;
  if (k <= 0 || k > adpc::kQMaxKernel) return -3;
  return static_cast<long>(adpc::qpacked_size(cout, cin, k));
}

// OIHW int8 -> the machine-independent packed layout (qmasked_conv.h). 0 or a bad argument's
// 1-based position.
int adpc_qpack_weight(const int8_t* oihw, int cout, int cin, int k, int8_t* packed) {
  return adpc::qpack_weight(oihw, cout, cin, k, packed);
}

// The int8 masked conv (semantics: qmasked_conv.h). Returns 0, or the 1-based position of the
// first bad argument in this signature (nothing is written then).
int adpc_qmasked_conv2d(int n, int h, int w, int cin, int cout, int k, int stride, int pad,
                        const int8_t* x, float x_scale, int x_zp,
                        const int8_t* packed, const float* w_scale, const float* bias,
                        const float* mask, int mh, int mw,
                        float y_scale, int y_zp,
                        const float* taps, int window,
                        const float* bn_scale, const float* bn_shift,
                        const int8_t* residual, float r_scale, int r_zp, float b_scale, int b_zp,
                        int relu, float o_scale, int o_zp,
                        int8_t* out, int threads) {
  adpc::QMaskedConvArgs a;
  a.n = n; a.h = h; a.w = w; a.cin = cin; a.cout = cout; a.k = k; a.stride = stride; a.pad = pad;
  a.x = x; a.x_scale = x_scale; a.x_zp = x_zp;
  a.packed = packed; a.w_scale = w_scale; a.bias = bias;
  a.mask = mask; a.mh = mh; a.mw = mw;
  a.y_scale = y_scale; a.y_zp = y_zp;
  a.taps = taps; a.window = window;
  a.bn_scale = bn_scale; a.bn_shift = bn_shift;
  a.residual = residual; a.r_scale = r_scale; a.r_zp = r_zp; a.b_scale = b_scale; a.b_zp = b_zp;
  a.relu = relu; a.o_scale = o_scale; a.o_zp = o_zp;
  a.out = out;
  static thread_local adpc::QWorkspace ws;
  return adpc::qmasked_conv2d(a, ws, threads, [threads](int tasks, const std::function<void(int)>& fn) {
    pool().run(threads, tasks, fn);
  });
}

}  // extern "C"
