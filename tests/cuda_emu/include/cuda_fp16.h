/* __half for the host emulation: storage and the conversions the kernels use */
#ifndef KK_EMU_CUDA_FP16_H
#define KK_EMU_CUDA_FP16_H
#include <cstdint>
#include "klkit/expm.h"

struct __half { uint16_t bits; };
inline float __half2float(__half h) { return kk_f16_to_f32(h.bits); }
inline __half __float2half_rn(float f) { return __half{ kk_f32_to_f16(f) }; }
#endif
