#include "targets/cuda/emulation/emulated_device.h"

#include <dlfcn.h>
#include <fmt/format.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <stdexcept>

#include "compiler/tuner/tune_cache.h"
#include "targets/common/build_steps.h"
#include "targets/cuda/emulation/warp_emulator.h"
#include "targets/cuda/kernel_headers.h"

namespace tessera::cuda::emulation {
namespace {

class HostMemory : public DeviceMemory {
 public:
  explicit HostMemory(size_t bytes) : data_(std::make_unique<std::byte[]>(bytes)) {
    // Fresh device memory is not zeroed: a pattern of NaN bytes makes reads of unwritten memory visible.
    std::memset(data_.get(), 0xff, bytes);
  }
  void* address() const override { return data_.get(); }
  void upload(const void* host, size_t bytes) override { std::memcpy(data_.get(), host, bytes); }
  void download(void* host, size_t bytes) const override { std::memcpy(host, data_.get(), bytes); }

 private:
  std::unique_ptr<std::byte[]> data_;
};

}  // namespace

EmulatedDevice::EmulatedDevice(std::string compiler, std::string source_root, std::string work_dir, bool wgmma)
    : compiler_(std::move(compiler)),
      source_root_(std::move(source_root)),
      work_dir_(std::move(work_dir)),
      wgmma_(wgmma) {}

EmulatedDevice::~EmulatedDevice() {
  for (auto& [hash, library] : libraries_) dlclose(library);
}

std::unique_ptr<DeviceMemory> EmulatedDevice::allocate(size_t bytes) { return std::make_unique<HostMemory>(bytes); }

void EmulatedDevice::load(const KernelSource& source) {
  std::string everything = source.text;
  for (const KernelHeader& header : kernel_headers()) everything += header.text;
  const std::string key = tuner::hash_text(everything);
  if (auto it = libraries_.find(key); it != libraries_.end()) {
    library_ = it->second;
    return;
  }
  namespace fs = std::filesystem;
  const fs::path dir = fs::path(work_dir_) / key;
  const fs::path library_path = dir / "kernels.so";
  if (!fs::exists(library_path)) {
    // Test processes run in parallel and may build the same source: each builds in a directory of its own and
    // renames the finished library into place (the same bytes whichever rename lands last).
    const fs::path build = dir / fmt::format("build-{}", ::getpid());
    fs::create_directories(build / "include");
    write_kernel_headers((build / "include").string());
    std::ofstream(build / "kernels.cpp") << source.text;
    using targets::shell_quote;
    const std::string command =
        fmt::format("{} -std=c++20 -O1 -fPIC -shared -DTESSERA_CUDA_EMULATION -I{} -I{} {} -o {} > {} 2>&1",
                    shell_quote(compiler_), shell_quote((build / "include").string()), shell_quote(source_root_),
                    shell_quote((build / "kernels.cpp").string()), shell_quote((build / "kernels.so").string()),
                    shell_quote((build / "compile.log").string()));
    targets::run_build_step(command, "compiling the emulated kernels", build / "compile.log");
    fs::rename(build / "kernels.so", library_path);
    std::error_code ignored;
    fs::remove_all(build, ignored);
  }
  void* library = dlopen(library_path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (library == nullptr) throw std::runtime_error(fmt::format("dlopen {}: {}", library_path.string(), dlerror()));
  libraries_[key] = library;
  library_ = library;
}

void* EmulatedDevice::symbol(const std::string& name) const {
  if (library_ == nullptr) throw std::logic_error("tessera internal error: launch before load");
  void* f = dlsym(library_, name.c_str());
  if (f == nullptr) throw std::runtime_error(fmt::format("no kernel '{}' in the emulated library", name));
  return f;
}

void EmulatedDevice::launch_attention(const std::string& kernel, unsigned grid_x, unsigned grid_y, unsigned threads,
                                      size_t shared_bytes, const tessera_cuda::KernelParams& params) {
  auto* f = reinterpret_cast<void (*)(tessera_cuda::KernelParams)>(symbol(kernel));
  tessera_cuda::emulation::LaunchShape shape;
  shape.grid_x = grid_x;
  shape.grid_y = grid_y;
  shape.threads = threads;
  shape.shared_bytes = shared_bytes;
  tessera_cuda::emulation::launch(shape, [&] { f(params); });
}

void EmulatedDevice::launch_merge(unsigned grid_x, const tessera_cuda::MergeParams& params) {
  auto* f = reinterpret_cast<void (*)(tessera_cuda::MergeParams)>(symbol("tessera_merge_slots"));
  tessera_cuda::emulation::LaunchShape shape;
  shape.grid_x = grid_x;
  shape.threads = tessera_cuda::kMergeThreads;
  tessera_cuda::emulation::launch(shape, [&] { f(params); });
}

void EmulatedDevice::launch_fill(unsigned grid_x, float* data, long long count, float value) {
  auto* f = reinterpret_cast<void (*)(float*, long long, float)>(symbol("tessera_fill"));
  tessera_cuda::emulation::LaunchShape shape;
  shape.grid_x = grid_x;
  shape.threads = tessera_cuda::kFillThreads;
  tessera_cuda::emulation::launch(shape, [&] { f(data, count, value); });
}

}  // namespace tessera::cuda::emulation
