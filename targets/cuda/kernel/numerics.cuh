// Scalar conversions of the kernel's 16-bit element types that need no PTX (so the host, the emulator and the
// GPU compute them alike), and the constants of the log2-domain softmax.
#pragma once

#include "platform.cuh"

namespace tessera_cuda {

TESSERA_HD float bits_to_float(u32 bits) {
  union {
    u32 u;
    float f;
  } v{bits};
  return v.f;
}

TESSERA_HD float bf16_bits_to_float(u16 bits) { return bits_to_float(static_cast<u32>(bits) << 16); }

// IEEE binary16 -> binary32, exact (subnormals, infinities and NaN included).
TESSERA_HD float f16_bits_to_float(u16 bits) {
  const u32 sign = static_cast<u32>(bits & 0x8000u) << 16;
  const u32 exponent = (bits >> 10) & 0x1fu;
  u32 mantissa = bits & 0x3ffu;
  if (exponent == 0x1fu) return bits_to_float(sign | 0x7f800000u | (mantissa << 13));
  if (exponent != 0) return bits_to_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
  if (mantissa == 0) return bits_to_float(sign);
  // Subnormal: normalise the mantissa.
  u32 e = 113u;
  while ((mantissa & 0x400u) == 0) {
    mantissa <<= 1;
    --e;
  }
  return bits_to_float(sign | (e << 23) | ((mantissa & 0x3ffu) << 13));
}

TESSERA_HD float minus_infinity() { return bits_to_float(0xff800000u); }
TESSERA_HD float quiet_nan() { return bits_to_float(0x7fc00000u); }

inline constexpr float kLog2e = 1.4426950408889634f;
inline constexpr float kLn2 = 0.6931471805599453f;

}  // namespace tessera_cuda
