#include "targets/cpu/compiled_kernel.h"

#include <fmt/format.h>

#include <array>
#include <map>
#include <mutex>
#include <stdexcept>
#include <string>
#include <tuple>
#include <vector>

namespace tessera::cpu {

namespace {

// Intermediate buffers come from the driver's per-thread block cache (see attention_driver.h).
void* reusing_malloc(Halide::JITUserContext*, size_t size) { return tessera_cpu_driver::block_cache::allocate(size); }
void reusing_free(Halide::JITUserContext*, void* data) { tessera_cpu_driver::block_cache::release(data); }

// Runs a JIT pipeline for the driver's calls of one attention() call. Halide::Buffer wraps the driver's
// halide_buffer_t without copying. The inputs of a view are the same for all its calls, so their ParamMap is
// built once per view and key range (measured: rebuilding it per call cost ~10% on strided(128) at N=16384,
// 128 views); the calls of one view take a few key ranges, the same for every head.
tessera_cpu_driver::Kernel jit_kernel(std::shared_ptr<const AttentionPipeline> kernel, const Halide::Target& target) {
  struct PerView {
    std::mutex mutex;
    std::map<std::tuple<size_t, int32_t, int32_t>, std::unique_ptr<Halide::ParamMap>> params;
  };
  auto state = std::make_shared<PerView>();
  return [kernel, state, target](const tessera_cpu_driver::KernelCall& c) {
    const AttentionPipeline& k = *kernel;
    const Halide::ParamMap* view_params = nullptr;
    {
      std::lock_guard<std::mutex> lock(state->mutex);
      std::unique_ptr<Halide::ParamMap>& params = state->params[{c.view, c.keys_begin, c.keys_end}];
      if (!params) {
        params = std::make_unique<Halide::ParamMap>();
        params->set(k.q, Halide::Buffer<>(*c.q));
        params->set(k.k, Halide::Buffer<>(*c.k));
        params->set(k.v, Halide::Buffer<>(*c.v));
        params->set(k.acc_in, Halide::Buffer<>(*c.acc_in));
        params->set(k.max_in, Halide::Buffer<>(*c.max_in));
        params->set(k.sum_in, Halide::Buffer<>(*c.sum_in));
        params->set(k.full_chunks, Halide::Buffer<>(*c.full_chunks));
        params->set(k.partial_chunks, Halide::Buffer<>(*c.partial_chunks));
        params->set(k.full_counts, Halide::Buffer<>(*c.full_counts));
        params->set(k.partial_counts, Halide::Buffer<>(*c.partial_counts));
        params->set(k.max_full, c.max_full);
        params->set(k.max_partial, c.max_partial);
        params->set(k.heads, c.heads);
        params->set(k.group, c.group);
        params->set(k.n_queries, c.n_queries);
        params->set(k.m_keys, c.m_keys);
        params->set(k.key_origin, c.key_origin);
        params->set(k.keys_begin, c.keys_begin);
        params->set(k.keys_end, c.keys_end);
        params->set(k.scale, c.scale);
        size_t n = 0;
        for (const auto& [name, img] : k.tensors) params->set(img, Halide::Buffer<>(*c.tensors[n++]));
        n = 0;
        for (const auto& [name, param] : k.symbols) params->set(param, c.symbols[n++]);
      }
      view_params = params.get();
    }
    Halide::Buffer<float> acc(*c.acc_out), max(*c.max_out), sum(*c.sum_out);
    const_cast<Halide::Pipeline&>(k.pipeline).realize(Halide::Realization({acc, max, sum}), target, *view_params);
    return 0;
  };
}

// Calls a kernel of the disk cache through Halide's argv entry point: buffers by pointer, scalars by address.
tessera_cpu_driver::Kernel loaded_kernel(std::shared_ptr<const CompiledKernel> kernel) {
  return [kernel](const tessera_cpu_driver::KernelCall& c) {
    constexpr size_t kFixed = 20, kOutputs = 3;
    const size_t count = kFixed + kernel->tensors + kernel->symbols + kOutputs;
    std::array<void*, 64> fixed_storage{};
    std::vector<void*> more;
    void** args = fixed_storage.data();
    if (count > fixed_storage.size()) {
      more.resize(count);
      args = more.data();
    }
    auto buffer = [](const halide_buffer_t* b) { return static_cast<void*>(const_cast<halide_buffer_t*>(b)); };
    auto scalar = [](const auto& value) {
      return static_cast<void*>(const_cast<std::remove_cvref_t<decltype(value)>*>(&value));
    };
    size_t n = 0;
    for (const halide_buffer_t* b : {c.q, c.k, c.v, c.acc_in, c.max_in, c.sum_in, c.full_chunks, c.partial_chunks,
                                     c.full_counts, c.partial_counts}) {
      args[n++] = buffer(b);
    }
    for (const int32_t* value : {&c.max_full, &c.max_partial, &c.heads, &c.group, &c.n_queries, &c.m_keys,
                                 &c.key_origin, &c.keys_begin, &c.keys_end}) {
      args[n++] = scalar(*value);
    }
    args[n++] = scalar(c.scale);
    for (size_t t = 0; t < kernel->tensors; ++t) args[n++] = buffer(c.tensors[t]);
    for (size_t s = 0; s < kernel->symbols; ++s) args[n++] = scalar(c.symbols[s]);
    for (halide_buffer_t* b : {c.acc_out, c.max_out, c.sum_out}) args[n++] = b;
    return (*kernel->loaded)(args);
  };
}

}  // namespace

std::shared_ptr<const CompiledKernel> compiled_kernel(const ir::Pattern& pattern, const AttentionPipelineKey& key) {
  static std::mutex mutex;
  static std::map<std::string, std::shared_ptr<const CompiledKernel>> cache;
  const std::string cache_key = key.str();
  std::lock_guard<std::mutex> lock(mutex);
  if (auto it = cache.find(cache_key); it != cache.end()) return it->second;
  auto kernel = std::make_shared<CompiledKernel>();
  kernel->tensors = pattern.inputs.size();
  kernel->symbols = key.symbols.size();
  std::string why;
  kernel->loaded = load_or_build_cached_kernel(
      key, [&] { return build_attention_pipeline(pattern, key); }, default_cpu_kernel_cache_dir(), why);
  if (!kernel->loaded) {
    std::shared_ptr<AttentionPipeline> p = build_attention_pipeline(pattern, key);
    p->pipeline.jit_handlers().custom_malloc = reusing_malloc;
    p->pipeline.jit_handlers().custom_free = reusing_free;
    kernel->target = Halide::Target(key.target);
    p->pipeline.compile_jit(kernel->target);
    kernel->jit = std::move(p);
  }
  return cache.emplace(cache_key, std::move(kernel)).first->second;
}

tessera_cpu_driver::Kernel driver_kernel(std::shared_ptr<const CompiledKernel> kernel) {
  if (kernel->loaded) return loaded_kernel(std::move(kernel));
  return jit_kernel(kernel->jit, kernel->target);
}

}  // namespace tessera::cpu
