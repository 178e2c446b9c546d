#include "targets/cpu/kernel_disk_cache.h"

#include <dlfcn.h>
#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <stdexcept>
#include <vector>

#include "targets/common/build_steps.h"
#include "targets/common/cache_entry.h"
#include "targets/common/sha256.h"
#include "targets/cpu/attention_driver.h"

namespace tessera::cpu {

// The SHA-256 of the sources that generate kernels (targets/cpu, targets/common), written by CMake: a kernel
// built by a different version of them is never loaded.
extern const char kKernelSourceFingerprint[];

namespace {

namespace fs = std::filesystem;

constexpr std::string_view kEntryTag = "tessera-cpu-kernel-cache v1 ";
constexpr const char* kEntryFunction = "tessera_kernel";

using HalideMalloc = void* (*)(void*, size_t);
using HalideFree = void (*)(void*, void*);

// Intermediate buffers come from the driver's per-thread block cache, as for JIT kernels (attention_driver.h).
void* reusing_malloc(void*, size_t size) { return tessera_cpu_driver::block_cache::allocate(size); }
void reusing_free(void*, void* data) { tessera_cpu_driver::block_cache::release(data); }

std::string c_compiler() {
  if (const char* cc = std::getenv("CC"); cc != nullptr && *cc != '\0') return cc;
  return TESSERA_C_COMPILER;
}

// Whether `program` (a path, or a name looked up on $PATH) can be run: without a compiler to link with, a kernel
// is compiled in memory right away rather than compiled for the cache first and then again.
bool runnable(const std::string& program) {
  if (program.find('/') != std::string::npos) return targets::is_executable_file(program);
  const std::vector<fs::path> directories = targets::path_directories();
  return std::any_of(directories.begin(), directories.end(),
                     [&](const fs::path& dir) { return targets::is_executable_file(dir / program); });
}

// Stores the file `built` as the cache entry `name` of `dir`. An entry's content ends with a newline before its
// trailer; a linker or loader ignores bytes past an object's sections.
void store_entry(const fs::path& built, const fs::path& dir, const std::string& name) {
  const std::optional<std::string> bytes = targets::read_regular_file(built);
  if (!bytes) throw std::runtime_error("cannot read " + built.string());
  if (std::string failure = targets::write_cache_entry(dir, name, name, *bytes + "\n", kEntryTag); !failure.empty()) {
    throw std::runtime_error(failure);
  }
}

// Halide's runtime for the kernels' target, compiled once per cache (compiling it costs as much as a kernel).
fs::path runtime_object(const fs::path& dir, const Halide::Target& kernel_target) {
  const std::string target = kernel_target.to_string();
  const std::string name = "runtime-" + targets::sha256_hex(std::string(kEntryTag) + target).substr(0, 16) + ".o";
  const fs::path path = dir / name;
  if (targets::read_cache_entry(path, name, kEntryTag)) return path;
  const targets::ScratchDirectory work(dir / ".build-");
  const fs::path object = work.path() / "runtime.o";
  Halide::compile_standalone_runtime(object.string(), kernel_target);
  store_entry(object, dir, name);
  return path;
}

// Compiles the pipeline with its Halide runtime into a shared object and stores it as the entry `name`.
void build_entry(const std::function<std::shared_ptr<AttentionPipeline>()>& build, const Halide::Target& target,
                 const fs::path& dir, const std::string& name) {
  fs::create_directories(dir);
  const targets::ScratchDirectory work(dir / ".build-");
  const fs::path object = work.path() / "kernel.o", library = work.path() / "kernel.so", log = work.path() / "log";
  const fs::path runtime = runtime_object(dir, target);
  std::shared_ptr<AttentionPipeline> kernel = build();
  kernel->pipeline.compile_to_object(object.string(), kernel_arguments(*kernel), kEntryFunction,
                                     target.with_feature(Halide::Target::NoRuntime));
  // Each library carries its own copy of the runtime and binds to it (-Bsymbolic), whatever else is loaded.
  targets::run_build_step(fmt::format("{} -shared -Wl,-Bsymbolic -o {} {} {} -lm -lpthread -ldl > {} 2>&1",
                                      targets::shell_quote(c_compiler()), targets::shell_quote(library.string()),
                                      targets::shell_quote(object.string()), targets::shell_quote(runtime.string()),
                                      targets::shell_quote(log.string())),
                          "linking a CPU kernel", log);
  store_entry(library, dir, name);
}

// What the last kernel to fail on this thread said: Halide's runtime reports through the handler on the thread
// that runs the kernel, before the kernel returns its error code.
std::string& kernel_error_message() {
  thread_local std::string message;
  return message;
}

void record_kernel_error(void*, const char* message) { kernel_error_message() = message; }

// The kernel of a verified entry, or nullptr (`why` says why) when the entry is missing, damaged or unloadable.
std::shared_ptr<const SharedObjectKernel> load_entry(const fs::path& path, const std::string& name, std::string& why) {
  if (!targets::read_cache_entry(path, name, kEntryTag)) {
    why = "no valid entry " + path.string();
    return nullptr;
  }
  void* handle = ::dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    const char* error = ::dlerror();
    why = fmt::format("cannot load {}: {}", path.string(), error != nullptr ? error : "unknown error");
    return nullptr;
  }
  std::shared_ptr<void> library(handle, [](void* h) { ::dlclose(h); });
  const std::string argv_name = std::string(kEntryFunction) + "_argv";
  auto entry = reinterpret_cast<SharedObjectKernel::Entry>(::dlsym(handle, argv_name.c_str()));
  auto set_malloc = reinterpret_cast<HalideMalloc (*)(HalideMalloc)>(::dlsym(handle, "halide_set_custom_malloc"));
  auto set_free = reinterpret_cast<HalideFree (*)(HalideFree)>(::dlsym(handle, "halide_set_custom_free"));
  auto set_error =
      reinterpret_cast<halide_error_handler_t (*)(halide_error_handler_t)>(::dlsym(handle, "halide_set_error_handler"));
  if (entry == nullptr || set_malloc == nullptr || set_free == nullptr || set_error == nullptr) {
    why = fmt::format("{} lacks {} or Halide's runtime", path.string(), argv_name);
    return nullptr;
  }
  set_malloc(reusing_malloc);
  set_free(reusing_free);
  set_error(record_kernel_error);
  std::error_code ignored;  // recently used: the last to be trimmed
  fs::last_write_time(path, fs::file_time_type::clock::now(), ignored);
  return std::make_shared<const SharedObjectKernel>(std::move(library), entry);
}

}  // namespace

int SharedObjectKernel::operator()(void** arguments) const {
  if (int code = entry_(arguments); code != 0) {
    throw std::runtime_error(
        fmt::format("tessera internal error: a CPU kernel failed (Halide error {}): {}", code, kernel_error_message()));
  }
  return 0;
}

std::string default_cpu_kernel_cache_dir() {
  if (const char* dir = std::getenv("TESSERA_CPU_KERNEL_CACHE"); dir != nullptr) return dir;
  return targets::default_cache_dir("cpu");
}

std::string cpu_kernel_cache_name(const AttentionPipelineKey& key) {
  const std::string key_text = key.str();
  targets::Sha256 sha;
  for (const std::string_view field :
       {kEntryTag, std::string_view(kKernelSourceFingerprint), std::string_view(key_text)}) {
    sha.update(fmt::format("{}:", field.size()));  // length-prefixed: no two different inputs serialise alike
    sha.update(field);
  }
  return sha.hex() + ".so";
}

void trim_cpu_kernel_cache(const std::string& dir, uintmax_t max_bytes) {
  struct Entry {
    fs::file_time_type used;
    uintmax_t bytes;
    fs::path path;
  };
  std::vector<Entry> entries;
  uintmax_t total = 0;
  std::error_code error;
  for (const fs::directory_entry& file : fs::directory_iterator(dir, error)) {
    std::error_code e;
    if (file.path().extension() != ".so" || !file.is_regular_file(e)) continue;
    const uintmax_t bytes = file.file_size(e);
    const fs::file_time_type used = file.last_write_time(e);
    if (e) continue;
    entries.push_back({used, bytes, file.path()});
    total += bytes;
  }
  if (error || total <= max_bytes) return;
  std::sort(entries.begin(), entries.end(), [](const Entry& a, const Entry& b) { return a.used < b.used; });
  for (const Entry& entry : entries) {
    if (total <= max_bytes / 4 * 3) break;
    // A library another process has loaded stays mapped there; that process's next load rebuilds it.
    if (fs::remove(entry.path, error)) total -= entry.bytes;
  }
}

std::shared_ptr<const SharedObjectKernel> load_or_build_cached_kernel(
    const AttentionPipelineKey& key, const std::function<std::shared_ptr<AttentionPipeline>()>& build,
    const std::string& dir, std::string& why) {
  if (dir.empty()) {
    why = "no kernel cache directory";
    return nullptr;
  }
  const std::string name = cpu_kernel_cache_name(key);
  const fs::path path = fs::path(dir) / name;
  if (auto kernel = load_entry(path, name, why)) return kernel;
  if (!runnable(c_compiler())) {
    why = fmt::format("no C compiler ({}) to link kernels with", c_compiler());
    return nullptr;
  }
  try {
    build_entry(build, Halide::Target(key.target), dir, name);
    trim_cpu_kernel_cache(dir, kCpuKernelCacheBytes);
  } catch (const std::exception& e) {  // a compiler, directory or disk problem: the caller compiles in memory
    why = e.what();
    return nullptr;
  }
  return load_entry(path, name, why);
}

}  // namespace tessera::cpu
