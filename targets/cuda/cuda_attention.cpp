#include "targets/cuda/cuda_attention.h"

#include <map>
#include <memory>
#include <mutex>

#include "targets/cuda/cuda_driver.h"
#include "targets/cuda/kernel_headers.h"
#include "targets/cuda/nvrtc_compiler.h"

namespace tessera::cuda {
namespace {

class GpuMemory : public DeviceMemory {
 public:
  explicit GpuMemory(size_t bytes) : buffer_(bytes) {}
  void* address() const override { return reinterpret_cast<void*>(static_cast<uintptr_t>(buffer_.ptr())); }
  void upload(const void* host, size_t bytes) override { buffer_.upload(host, bytes); }
  void download(void* host, size_t bytes) const override { buffer_.download(host, bytes); }

 private:
  DeviceBuffer buffer_;
};

// Loaded modules are kept for the process's lifetime, by source text: a pattern's kernels compile once.
class GpuDevice : public AttentionDevice {
 public:
  GpuDevice(CudaContext& context, std::string cache_dir) : context_(context), cache_dir_(std::move(cache_dir)) {}

  std::unique_ptr<DeviceMemory> allocate(size_t bytes) override { return std::make_unique<GpuMemory>(bytes); }

  void load(const KernelSource& source) override {
    static std::mutex mutex;
    static std::map<std::string, std::unique_ptr<CudaModule>> modules;
    std::lock_guard<std::mutex> lock(mutex);
    std::unique_ptr<CudaModule>& module = modules[source.text];
    if (!module) {
      NvrtcSource nvrtc;
      nvrtc.name = "tessera_attention.cu";
      nvrtc.text = source.text;
      for (const KernelHeader& header : kernel_headers()) nvrtc.headers.emplace_back(header.name, header.text);
      const NvrtcResult ptx = compile_to_ptx(nvrtc, context_.arch(), cache_dir_);
      module = std::make_unique<CudaModule>(CudaModule::load(ptx.ptx));
    }
    module_ = module.get();
  }

  void launch_attention(const std::string& kernel, unsigned grid_x, unsigned grid_y, unsigned threads,
                        size_t shared_bytes, const tessera_cuda::KernelParams& params) override {
    tessera_cuda::KernelParams copy = params;
    void* args[] = {&copy};
    launch_kernel(module_->function(kernel), Dim3{grid_x, grid_y, 1}, Dim3{threads, 1, 1}, shared_bytes, args);
  }

  void launch_merge(unsigned grid_x, const tessera_cuda::MergeParams& params) override {
    tessera_cuda::MergeParams copy = params;
    void* args[] = {&copy};
    launch_kernel(module_->function("tessera_merge_slots"), Dim3{grid_x, 1, 1},
                  Dim3{static_cast<unsigned>(tessera_cuda::kMergeThreads), 1, 1}, 0, args);
  }

  void launch_fill(unsigned grid_x, float* data, long long count, float value) override {
    void* args[] = {&data, &count, &value};
    launch_kernel(module_->function("tessera_fill"), Dim3{grid_x, 1, 1},
                  Dim3{static_cast<unsigned>(tessera_cuda::kFillThreads), 1, 1}, 0, args);
  }

  void synchronize() override { cuda::synchronize(); }
  int64_t multiprocessors() const override { return context_.multiprocessor_count(); }
  bool wgmma() const override { return context_.arch().major == 9 && context_.arch().accelerated; }

 private:
  CudaContext& context_;
  std::string cache_dir_;
  CudaModule* module_ = nullptr;
};

std::string cache_dir_of(const CudaOptions& options) {
  std::string dir = options.kernel_cache_dir.empty() ? default_kernel_cache_dir() : options.kernel_cache_dir;
  return dir == "none" ? std::string() : dir;
}

}  // namespace

runtime::Tensor attention(const ir::Pattern& pattern, const targets::AttentionInputs& inputs,
                          const CudaOptions& options) {
  CudaContext& context = CudaContext::get();  // "no CUDA device" before any other work
  GpuDevice device(context, cache_dir_of(options));
  return run_attention(device, pattern, inputs, options.attention);
}

struct PreparedCudaCall::State {
  CudaContext& context;
  GpuDevice device;
  PreparedAttention prepared;
  CudaTimer timer;

  State(CudaContext& c, const std::string& cache_dir, const ir::Pattern& pattern,
        const targets::AttentionInputs& inputs, const CudaAttentionOptions& options)
      : context(c), device(c, cache_dir), prepared(device, pattern, inputs, options) {}
};

PreparedCudaCall::PreparedCudaCall(const ir::Pattern& pattern, const targets::AttentionInputs& inputs,
                                   const CudaOptions& options)
    : state_(std::make_unique<State>(CudaContext::get(), cache_dir_of(options), pattern, inputs, options.attention)) {}

PreparedCudaCall::~PreparedCudaCall() = default;

void PreparedCudaCall::enqueue() { state_->prepared.enqueue(); }

double PreparedCudaCall::time_ms() {
  state_->timer.start();
  state_->prepared.enqueue();
  return state_->timer.stop();
}

runtime::Tensor PreparedCudaCall::result() { return state_->prepared.result(); }

const KernelConfig& PreparedCudaCall::config() const { return state_->prepared.config(); }

std::string PreparedCudaCall::device_name() const { return state_->context.device_name(); }

TimedAttention time_attention(const ir::Pattern& pattern, const targets::AttentionInputs& inputs,
                              const CudaOptions& options, int64_t warmup, int64_t runs) {
  PreparedCudaCall call(pattern, inputs, options);
  TimedAttention timed;
  timed.device = call.device_name();
  timed.schedule = options.attention.schedule;
  timed.schedule.block_m = call.config().block_m;
  timed.schedule.block_n = call.config().block_n;
  timed.schedule.stages = call.config().stages;
  for (int64_t w = 0; w < warmup; ++w) call.enqueue();
  for (int64_t r = 0; r < runs; ++r) timed.ms.push_back(call.time_ms());
  timed.out = call.result();
  return timed;
}

}  // namespace tessera::cuda
