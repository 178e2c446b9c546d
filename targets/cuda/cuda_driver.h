// The CUDA driver API, as much of it as Tessera uses, loaded with dlopen("libcuda.so.1") on first use. Tessera
// therefore builds, links and starts on machines without the NVIDIA driver (build machines, CI, CPU-only
// users); there, CudaContext::get() throws NoCudaDevice and cuda_device_available() is false.
//
// Every call works on the primary context of device 0, made current on whichever thread makes the call, so the
// objects here can be used from any thread (not concurrently with themselves). Errors name the driver call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>

#include "targets/cuda/nvrtc_compiler.h"

namespace tessera::cuda {

// No usable CUDA device: no driver, no device, or one older than sm_80. what() is "no CUDA device: <reason>".
class NoCudaDevice : public std::runtime_error {
 public:
  explicit NoCudaDevice(const std::string& reason);
};

// A driver call failed: "CUDA error in <call>: <the driver's description>".
class CudaError : public std::runtime_error {
 public:
  CudaError(const std::string& call, int code, const std::string& description);
  int code() const { return code_; }  // the CUresult

 private:
  int code_;
};

// Whether CudaContext::get() would succeed. Never throws.
bool cuda_device_available();

// The primary context of device 0, for the whole process.
class CudaContext {
  // Only get() makes a context: the constructor is public for std::make_unique, but needs a Key.
  class Key {
    Key() = default;
    friend class CudaContext;
  };

 public:
  // Loads the driver and retains the context on first use; throws NoCudaDevice (every time) if that failed.
  // Makes the context current on the calling thread.
  static CudaContext& get();

  // The device's compute capability; sm_9x is reported as the "a" variant, since Tessera's sm_90 kernels use
  // wgmma, which exists only there.
  CudaArch arch() const { return arch_; }
  std::string device_name() const { return name_; }
  int multiprocessor_count() const { return multiprocessors_; }
  // Dynamic shared memory a kernel may use per block after opting in (launch_kernel opts in).
  size_t max_shared_bytes_per_block() const { return max_shared_bytes_; }
  int driver_version() const { return driver_version_; }  // e.g. 13000 for CUDA 13.0

  CudaContext(Key, void* context, CudaArch arch, std::string name, int multiprocessors, size_t max_shared_bytes,
              int driver_version);
  CudaContext(const CudaContext&) = delete;
  CudaContext& operator=(const CudaContext&) = delete;

 private:
  void* context_;  // CUcontext; never released: the driver tears it down at exit, after any static buffers
  CudaArch arch_;
  std::string name_;
  int multiprocessors_;
  size_t max_shared_bytes_;
  int driver_version_;
};

// Device memory, freed on destruction. A zero-byte buffer allocates nothing and has ptr() == 0.
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t bytes);
  ~DeviceBuffer();
  DeviceBuffer(DeviceBuffer&& other) noexcept;
  DeviceBuffer& operator=(DeviceBuffer&& other) noexcept;
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;

  size_t size() const { return size_; }
  uint64_t ptr() const { return ptr_; }  // a CUdeviceptr, as a kernel argument takes it

  // Copy `bytes` (at most size(), else std::out_of_range) from / to the start of the buffer; synchronous.
  void upload(const void* host, size_t bytes);
  void download(void* host, size_t bytes) const;
  void zero();

 private:
  void release() noexcept;

  uint64_t ptr_ = 0;
  size_t size_ = 0;
};

// A loaded module (PTX JIT-compiled by the driver for the current device), unloaded on destruction.
class CudaModule {
 public:
  // Throws CudaError; a driver older than the NVRTC that made the PTX reports that in the message.
  static CudaModule load(const std::string& ptx);
  ~CudaModule();
  CudaModule(CudaModule&& other) noexcept;
  CudaModule& operator=(CudaModule&& other) noexcept;
  CudaModule(const CudaModule&) = delete;
  CudaModule& operator=(const CudaModule&) = delete;

  // The kernel `name` (an extern "C" name), valid while this module lives; throws CudaError naming it.
  void* function(const std::string& name) const;

 private:
  explicit CudaModule(void* module) : module_(module) {}
  void release() noexcept;

  void* module_ = nullptr;  // CUmodule
};

struct Dim3 {
  unsigned x = 1, y = 1, z = 1;
};

// Launches `function` on the default stream, asynchronously; `args` points to each kernel argument in turn.
// Opts the kernel in to shared_bytes of dynamic shared memory when that is above the default 48 KiB; asking for
// more than the device has throws CudaError saying both numbers.
void launch_kernel(void* function, Dim3 grid, Dim3 block, size_t shared_bytes, void** args);

// Waits for all work on the context; reports errors of earlier asynchronous launches.
void synchronize();

// Times work on the default stream with CUDA events.
class CudaTimer {
 public:
  CudaTimer();
  ~CudaTimer();
  CudaTimer(const CudaTimer&) = delete;
  CudaTimer& operator=(const CudaTimer&) = delete;

  void start();
  double stop();  // waits for the work since start(); returns its duration in milliseconds

 private:
  void* start_ = nullptr;  // CUevent
  void* stop_ = nullptr;
};

}  // namespace tessera::cuda
