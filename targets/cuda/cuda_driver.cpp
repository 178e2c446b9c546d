// The driver API through dlopen: the function table, the process-wide context, and the RAII wrappers.
#include "targets/cuda/cuda_driver.h"

#include <dlfcn.h>
#include <fmt/format.h>

#include <array>
#include <limits>
#include <memory>
#include <utility>

namespace tessera::cuda {

namespace {

// The driver ABI, declared here rather than taken from cuda.h so that building needs no driver headers either.
// Values and prototypes as in CUDA 13.0's cuda.h; the driver keeps them stable across versions.
using CUresult = int;
using CUdevice = int;
using CUdeviceptr = unsigned long long;
using CUcontext = struct CUctx_st*;
using CUmodule = struct CUmod_st*;
using CUfunction = struct CUfunc_st*;
using CUstream = struct CUstream_st*;
using CUevent = struct CUevent_st*;

constexpr CUresult CUDA_SUCCESS = 0;
constexpr CUresult CUDA_ERROR_INVALID_VALUE = 1;
constexpr CUresult CUDA_ERROR_UNSUPPORTED_PTX_VERSION = 222;
constexpr int CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT = 16;
constexpr int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75;
constexpr int CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76;
constexpr int CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN = 97;
constexpr int CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES = 8;
constexpr unsigned CU_EVENT_DEFAULT = 0;
constexpr size_t kDefaultSharedBytes = 48 * 1024;  // what a kernel gets without opting in

// The driver functions Tessera calls. Each member is loaded from the exported symbol its comment names: the
// versioned one where cuda.h #defines the plain name to it, since the plain symbols keep their old ABI (32-bit
// sizes and pointers for cuMemAlloc and friends).
struct DriverApi {
  CUresult (*cuInit)(unsigned flags);
  CUresult (*cuDriverGetVersion)(int* version);
  CUresult (*cuGetErrorString)(CUresult error, const char** text);
  CUresult (*cuGetErrorName)(CUresult error, const char** text);
  CUresult (*cuDeviceGetCount)(int* count);
  CUresult (*cuDeviceGet)(CUdevice* device, int ordinal);
  CUresult (*cuDeviceGetAttribute)(int* value, int attribute, CUdevice device);
  CUresult (*cuDeviceGetName)(char* name, int length, CUdevice device);
  CUresult (*cuDevicePrimaryCtxRetain)(CUcontext* context, CUdevice device);
  CUresult (*cuCtxSetCurrent)(CUcontext context);
  CUresult (*cuCtxSynchronize)();
  CUresult (*cuMemAlloc)(CUdeviceptr* pointer, size_t bytes);                           // cuMemAlloc_v2
  CUresult (*cuMemFree)(CUdeviceptr pointer);                                           // cuMemFree_v2
  CUresult (*cuMemcpyHtoD)(CUdeviceptr destination, const void* source, size_t bytes);  // cuMemcpyHtoD_v2
  CUresult (*cuMemcpyDtoH)(void* destination, CUdeviceptr source, size_t bytes);        // cuMemcpyDtoH_v2
  CUresult (*cuMemsetD8)(CUdeviceptr destination, unsigned char value, size_t count);   // cuMemsetD8_v2
  CUresult (*cuModuleLoadData)(CUmodule* module, const void* image);
  CUresult (*cuModuleUnload)(CUmodule module);
  CUresult (*cuModuleGetFunction)(CUfunction* function, CUmodule module, const char* name);
  CUresult (*cuFuncSetAttribute)(CUfunction function, int attribute, int value);
  CUresult (*cuLaunchKernel)(CUfunction function, unsigned grid_x, unsigned grid_y, unsigned grid_z, unsigned block_x,
                             unsigned block_y, unsigned block_z, unsigned shared_bytes, CUstream stream, void** params,
                             void** extra);
  CUresult (*cuEventCreate)(CUevent* event, unsigned flags);
  CUresult (*cuEventRecord)(CUevent event, CUstream stream);
  CUresult (*cuEventSynchronize)(CUevent event);
  CUresult (*cuEventElapsedTime)(float* milliseconds, CUevent start, CUevent end);  // _v2 where the driver has it
  CUresult (*cuEventDestroy)(CUevent event);                                        // cuEventDestroy_v2
};

struct LoadedDriver {
  DriverApi api{};
  std::string failure;  // why the driver cannot be used; empty when api is complete
};

// Points `function` at `symbol`; false if the driver does not export it. The cast from the object pointer dlsym
// returns is what POSIX requires to work.
template <typename Function>
bool load_symbol(void* library, const char* symbol, Function*& function) {
  void* address = ::dlsym(library, symbol);
  function = reinterpret_cast<Function*>(address);
  return address != nullptr;
}

LoadedDriver load_driver() {
  LoadedDriver driver;
  // Never dlclosed: contexts, modules and buffers may outlive any owner we could give the handle.
  void* library = ::dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
  if (library == nullptr) {
    const char* error = ::dlerror();
    driver.failure = fmt::format("cannot load the NVIDIA driver library libcuda.so.1 ({})",
                                 error != nullptr ? error : "unknown error");
    return driver;
  }
  DriverApi& api = driver.api;
  std::string missing;
  auto need = [&](const char* symbol, auto*& function) {
    if (!load_symbol(library, symbol, function)) missing += fmt::format("{}{}", missing.empty() ? "" : ", ", symbol);
  };
  need("cuInit", api.cuInit);
  need("cuDriverGetVersion", api.cuDriverGetVersion);
  need("cuGetErrorString", api.cuGetErrorString);
  need("cuGetErrorName", api.cuGetErrorName);
  need("cuDeviceGetCount", api.cuDeviceGetCount);
  need("cuDeviceGet", api.cuDeviceGet);
  need("cuDeviceGetAttribute", api.cuDeviceGetAttribute);
  need("cuDeviceGetName", api.cuDeviceGetName);
  need("cuDevicePrimaryCtxRetain", api.cuDevicePrimaryCtxRetain);
  need("cuCtxSetCurrent", api.cuCtxSetCurrent);
  need("cuCtxSynchronize", api.cuCtxSynchronize);
  need("cuMemAlloc_v2", api.cuMemAlloc);
  need("cuMemFree_v2", api.cuMemFree);
  need("cuMemcpyHtoD_v2", api.cuMemcpyHtoD);
  need("cuMemcpyDtoH_v2", api.cuMemcpyDtoH);
  need("cuMemsetD8_v2", api.cuMemsetD8);
  need("cuModuleLoadData", api.cuModuleLoadData);
  need("cuModuleUnload", api.cuModuleUnload);
  need("cuModuleGetFunction", api.cuModuleGetFunction);
  need("cuFuncSetAttribute", api.cuFuncSetAttribute);
  need("cuLaunchKernel", api.cuLaunchKernel);
  need("cuEventCreate", api.cuEventCreate);
  need("cuEventRecord", api.cuEventRecord);
  need("cuEventSynchronize", api.cuEventSynchronize);
  need("cuEventDestroy_v2", api.cuEventDestroy);
  // cuEventElapsedTime_v2 is new in CUDA 12.8 drivers, with the same prototype; older ones have only the first.
  if (!load_symbol(library, "cuEventElapsedTime_v2", api.cuEventElapsedTime)) {
    need("cuEventElapsedTime", api.cuEventElapsedTime);
  }
  if (!missing.empty()) {
    driver.failure = fmt::format("libcuda.so.1 lacks {} (the NVIDIA driver is too old)", missing);
  }
  return driver;
}

const LoadedDriver& loaded_driver() {
  static const LoadedDriver driver = load_driver();
  return driver;
}

// Only after CudaContext::get() has succeeded, when the table is known to be complete.
const DriverApi& api() { return loaded_driver().api; }

std::string describe(CUresult code) {
  const DriverApi& driver = api();
  const char* text = nullptr;
  const char* name = nullptr;
  if (driver.cuGetErrorString == nullptr || driver.cuGetErrorString(code, &text) != CUDA_SUCCESS) text = nullptr;
  if (driver.cuGetErrorName == nullptr || driver.cuGetErrorName(code, &name) != CUDA_SUCCESS) name = nullptr;
  if (text == nullptr) return fmt::format("unknown error {}", code);
  return name != nullptr ? fmt::format("{} ({})", text, name) : std::string(text);
}

void check(CUresult code, const std::string& call) {
  if (code != CUDA_SUCCESS) throw CudaError(call, code, describe(code));
}

// What CudaContext::get() makes its context from.
struct DeviceProbe {
  CUcontext context = nullptr;  // null when there is no usable device
  std::string failure;          // then NoCudaDevice's reason
  CudaArch arch;
  std::string name;
  int multiprocessors = 0;
  size_t max_shared_bytes = 0;
  int driver_version = 0;
};

DeviceProbe probe_device() {
  DeviceProbe state;
  const LoadedDriver& driver = loaded_driver();
  if (!driver.failure.empty()) {
    state.failure = driver.failure;
    return state;
  }
  const DriverApi& cu = driver.api;
  // Any failure while finding the device means the same to callers, no device, so each becomes the reason.
  auto ok = [&](CUresult code, const char* call) {
    if (code == CUDA_SUCCESS) return true;
    state.failure = fmt::format("{} failed: {}", call, describe(code));
    return false;
  };
  int count = 0, version = 0;
  if (!ok(cu.cuInit(0), "cuInit") || !ok(cu.cuDriverGetVersion(&version), "cuDriverGetVersion") ||
      !ok(cu.cuDeviceGetCount(&count), "cuDeviceGetCount")) {
    return state;
  }
  if (count == 0) {
    state.failure = "the driver reports no devices";
    return state;
  }
  CUdevice device = 0;
  int major = 0, minor = 0, multiprocessors = 0, max_shared = 0;
  std::array<char, 256> name{};
  if (!ok(cu.cuDeviceGet(&device, 0), "cuDeviceGet") ||
      !ok(cu.cuDeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device),
          "cuDeviceGetAttribute") ||
      !ok(cu.cuDeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device),
          "cuDeviceGetAttribute") ||
      !ok(cu.cuDeviceGetAttribute(&multiprocessors, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, device),
          "cuDeviceGetAttribute") ||
      !ok(cu.cuDeviceGetAttribute(&max_shared, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, device),
          "cuDeviceGetAttribute") ||
      !ok(cu.cuDeviceGetName(name.data(), static_cast<int>(name.size()) - 1, device), "cuDeviceGetName")) {
    return state;
  }
  if (major < 8) {
    state.failure = fmt::format("device 0 ({}) is sm_{}{}; Tessera needs sm_80 or newer", name.data(), major, minor);
    return state;
  }
  CUcontext context = nullptr;
  if (!ok(cu.cuDevicePrimaryCtxRetain(&context, device), "cuDevicePrimaryCtxRetain")) return state;
  state.context = context;
  state.arch = CudaArch{major, minor, major == 9};
  state.name = name.data();
  state.multiprocessors = multiprocessors;
  state.max_shared_bytes = static_cast<size_t>(max_shared);
  state.driver_version = version;
  return state;
}

// Makes the context current on this thread, once per thread (the primary context is the only one Tessera uses,
// and the runtime API uses it too, so nothing else should replace it). Returns the function table.
const DriverApi& current() {
  CudaContext::get();
  return api();
}

}  // namespace

NoCudaDevice::NoCudaDevice(const std::string& reason) : std::runtime_error("no CUDA device: " + reason) {}

CudaError::CudaError(const std::string& call, int code, const std::string& description)
    : std::runtime_error(fmt::format("CUDA error in {}: {}", call, description)), code_(code) {}

bool cuda_device_available() {
  try {
    CudaContext::get();
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

CudaContext::CudaContext(Key, void* context, CudaArch arch, std::string name, int multiprocessors,
                         size_t max_shared_bytes, int driver_version)
    : context_(context),
      arch_(arch),
      name_(std::move(name)),
      multiprocessors_(multiprocessors),
      max_shared_bytes_(max_shared_bytes),
      driver_version_(driver_version) {}

CudaContext& CudaContext::get() {
  // Probed once, success or not: a machine without a device stays without one, and retrying cuInit on every
  // call would make cuda_device_available() slow for CPU-only users.
  struct State {
    std::unique_ptr<CudaContext> context;
    std::string failure;
  };
  static const State state = [] {
    DeviceProbe probe = probe_device();
    if (probe.context == nullptr) return State{nullptr, std::move(probe.failure)};
    return State{std::make_unique<CudaContext>(Key{}, probe.context, probe.arch, std::move(probe.name),
                                               probe.multiprocessors, probe.max_shared_bytes, probe.driver_version),
                 ""};
  }();
  if (!state.context) throw NoCudaDevice(state.failure);
  CudaContext& context = *state.context;
  thread_local bool is_current = false;
  if (!is_current) {
    check(api().cuCtxSetCurrent(static_cast<CUcontext>(context.context_)), "cuCtxSetCurrent");
    is_current = true;
  }
  return context;
}

// --- DeviceBuffer -----------------------------------------------------------------------------------------------

DeviceBuffer::DeviceBuffer(size_t bytes) : size_(bytes) {
  if (bytes == 0) return;  // cuMemAlloc refuses zero bytes
  CUdeviceptr pointer = 0;
  check(current().cuMemAlloc(&pointer, bytes), fmt::format("cuMemAlloc_v2 ({} bytes)", bytes));
  ptr_ = pointer;
}

DeviceBuffer::~DeviceBuffer() { release(); }

DeviceBuffer::DeviceBuffer(DeviceBuffer&& other) noexcept
    : ptr_(std::exchange(other.ptr_, 0)), size_(std::exchange(other.size_, 0)) {}

DeviceBuffer& DeviceBuffer::operator=(DeviceBuffer&& other) noexcept {
  if (this != &other) {
    release();
    ptr_ = std::exchange(other.ptr_, 0);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

void DeviceBuffer::release() noexcept {
  if (ptr_ == 0) return;
  // A buffer exists only if get() once succeeded, so this cannot throw NoCudaDevice; a failure to free (the
  // context already torn down at exit, a sticky error) has nowhere to go from a destructor.
  try {
    current().cuMemFree(ptr_);
  } catch (const std::exception&) {
  }
  ptr_ = 0;
}

void DeviceBuffer::upload(const void* host, size_t bytes) {
  if (bytes > size_) {
    throw std::out_of_range(fmt::format("DeviceBuffer::upload: {} bytes into a buffer of {}", bytes, size_));
  }
  if (bytes == 0) return;
  check(current().cuMemcpyHtoD(ptr_, host, bytes), fmt::format("cuMemcpyHtoD_v2 ({} bytes)", bytes));
}

void DeviceBuffer::download(void* host, size_t bytes) const {
  if (bytes > size_) {
    throw std::out_of_range(fmt::format("DeviceBuffer::download: {} bytes from a buffer of {}", bytes, size_));
  }
  if (bytes == 0) return;
  check(current().cuMemcpyDtoH(host, ptr_, bytes), fmt::format("cuMemcpyDtoH_v2 ({} bytes)", bytes));
}

void DeviceBuffer::zero() {
  if (size_ == 0) return;
  check(current().cuMemsetD8(ptr_, 0, size_), fmt::format("cuMemsetD8_v2 ({} bytes)", size_));
}

// --- CudaModule -------------------------------------------------------------------------------------------------

CudaModule CudaModule::load(const std::string& ptx) {
  const DriverApi& cu = current();
  CUmodule module = nullptr;
  // c_str(): the driver finds the end of PTX text by its terminating NUL.
  const CUresult code = cu.cuModuleLoadData(&module, ptx.c_str());
  if (code == CUDA_ERROR_UNSUPPORTED_PTX_VERSION) {
    const int version = CudaContext::get().driver_version();
    throw CudaError("cuModuleLoadData", code,
                    fmt::format("{}; the PTX is from NVRTC {} and the driver supports CUDA {}.{}: update the NVIDIA "
                                "driver",
                                describe(code), nvrtc_version(), version / 1000, version % 1000 / 10));
  }
  check(code, "cuModuleLoadData");
  return CudaModule(module);
}

CudaModule::~CudaModule() { release(); }

CudaModule::CudaModule(CudaModule&& other) noexcept : module_(std::exchange(other.module_, nullptr)) {}

CudaModule& CudaModule::operator=(CudaModule&& other) noexcept {
  if (this != &other) {
    release();
    module_ = std::exchange(other.module_, nullptr);
  }
  return *this;
}

void CudaModule::release() noexcept {
  if (module_ == nullptr) return;
  try {
    current().cuModuleUnload(static_cast<CUmodule>(module_));
  } catch (const std::exception&) {
  }
  module_ = nullptr;
}

void* CudaModule::function(const std::string& name) const {
  CUfunction function = nullptr;
  check(current().cuModuleGetFunction(&function, static_cast<CUmodule>(module_), name.c_str()),
        fmt::format("cuModuleGetFunction (kernel '{}')", name));
  return function;
}

// --- launching and timing ---------------------------------------------------------------------------------------

void launch_kernel(void* function, Dim3 grid, Dim3 block, size_t shared_bytes, void** args) {
  const DriverApi& cu = current();
  const std::string shape = fmt::format("grid {}x{}x{}, block {}x{}x{}, {} bytes of shared memory", grid.x, grid.y,
                                        grid.z, block.x, block.y, block.z, shared_bytes);
  const auto kernel = static_cast<CUfunction>(function);
  if (shared_bytes > kDefaultSharedBytes) {
    const CudaContext& context = CudaContext::get();
    if (shared_bytes > context.max_shared_bytes_per_block() ||
        shared_bytes > static_cast<size_t>(std::numeric_limits<int>::max())) {
      throw CudaError("cuLaunchKernel", CUDA_ERROR_INVALID_VALUE,
                      fmt::format("the kernel asks for {} bytes of shared memory per block; {} allows at most {}",
                                  shared_bytes, context.device_name(), context.max_shared_bytes_per_block()));
    }
    // Set on every launch rather than remembered per function: it costs about a microsecond, and a function
    // handle can be reused by another kernel once its module is unloaded.
    check(
        cu.cuFuncSetAttribute(kernel, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, static_cast<int>(shared_bytes)),
        fmt::format("cuFuncSetAttribute (MAX_DYNAMIC_SHARED_SIZE_BYTES = {})", shared_bytes));
  }
  check(cu.cuLaunchKernel(kernel, grid.x, grid.y, grid.z, block.x, block.y, block.z,
                          static_cast<unsigned>(shared_bytes), nullptr, args, nullptr),
        fmt::format("cuLaunchKernel ({})", shape));
}

void synchronize() { check(current().cuCtxSynchronize(), "cuCtxSynchronize"); }

CudaTimer::CudaTimer() {
  const DriverApi& cu = current();
  CUevent start = nullptr, stop = nullptr;
  check(cu.cuEventCreate(&start, CU_EVENT_DEFAULT), "cuEventCreate");
  start_ = start;
  if (const CUresult code = cu.cuEventCreate(&stop, CU_EVENT_DEFAULT); code != CUDA_SUCCESS) {
    cu.cuEventDestroy(start);
    check(code, "cuEventCreate");
  }
  stop_ = stop;
}

CudaTimer::~CudaTimer() {
  try {
    const DriverApi& cu = current();
    cu.cuEventDestroy(static_cast<CUevent>(start_));
    cu.cuEventDestroy(static_cast<CUevent>(stop_));
  } catch (const std::exception&) {
  }
}

void CudaTimer::start() { check(current().cuEventRecord(static_cast<CUevent>(start_), nullptr), "cuEventRecord"); }

double CudaTimer::stop() {
  const DriverApi& cu = current();
  check(cu.cuEventRecord(static_cast<CUevent>(stop_), nullptr), "cuEventRecord");
  check(cu.cuEventSynchronize(static_cast<CUevent>(stop_)), "cuEventSynchronize");
  float milliseconds = 0;
  check(cu.cuEventElapsedTime(&milliseconds, static_cast<CUevent>(start_), static_cast<CUevent>(stop_)),
        "cuEventElapsedTime");
  return milliseconds;
}

}  // namespace tessera::cuda
