/* __nv_bfloat16 for the host emulation */
#ifndef KK_EMU_CUDA_BF16_H
#define KK_EMU_CUDA_BF16_H
#include <cstdint>
#include "klkit/expm.h"

struct __nv_bfloat16 { uint16_t bits; };
inline float __bfloat162float(__nv_bfloat16 h) { return kk_bf16_to_f32(h.bits); }
inline __nv_bfloat16 __float2bfloat16_rn(float f) { return __nv_bfloat16{ kk_f32_to_bf16(f) }; }
#endif
