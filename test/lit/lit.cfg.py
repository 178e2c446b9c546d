# lit configuration shared by every suite under test/lit (each suite directory is run as one ctest test).
import os
import lit.formats

config.name = "tessera"
config.test_format = lit.formats.ShTest(execute_external=False)
config.suffixes = [".test", ".attn"]
config.excludes = ["Inputs"]

site_config = lit_config.params.get("site_config")
if site_config:
    lit_config.load_config(config, site_config)

config.test_source_root = os.path.dirname(__file__)
config.test_exec_root = os.path.join(config.tessera_binary_dir, "test", "lit-out")

config.substitutions.append(("%tessera", os.path.join(config.tessera_binary_dir, "tessera")))
config.substitutions.append(("FileCheck", config.filecheck))
# A python3 with numpy (the system one, python3-numpy): a python3 earlier on PATH (pyenv) may lack it.
config.substitutions.append(("%python", config.python))
config.substitutions.append(("%nvcc", config.nvcc))
config.substitutions.append(("%examples", os.path.join(config.tessera_source_dir, "examples")))
# The instruction set the CPU defaults are chosen for (cpu::default_schedule): "avx512" or "avx2", for check
# prefixes of lines that name default register tiles.
try:
    with open("/proc/cpuinfo") as cpuinfo:
        isa = "avx512" if " avx512f" in cpuinfo.read() else "avx2"
except OSError:
    isa = "avx2"
config.substitutions.append(("%isa", isa))
config.environment["TERM"] = "dumb"
# Commands read the tuning cache under $XDG_CACHE_HOME: the user's own tuned schedules must not reach the tests.
config.environment["XDG_CACHE_HOME"] = os.path.join(config.test_exec_root, "xdg-cache")
# CPU kernels compiled by one test are loaded by the next: the cache the unit tests share (test/CMakeLists.txt).
config.environment["TESSERA_CPU_KERNEL_CACHE"] = config.kernel_cache

# A machine with an NVIDIA GPU and driver: the GPU-only tests run there, the "no CUDA device" tests elsewhere.
if os.path.exists("/dev/nvidiactl") or os.path.exists("/dev/nvidia0"):
    config.available_features.add("cuda-gpu")
