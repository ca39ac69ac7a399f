/* klkit/codes.h: the integer codes the Python layer passes to the kernels:
 * element type, input kind, divergence op, segment reduction, KL
 * estimator and reduction state type.  Defined once for the CPU entry points (klkit_cpu.h, whose
 * enums _cpu.pyx reads) and for the math headers that switch on them
 * (segment.h). */
#ifndef KLKIT_CODES_H
#define KLKIT_CODES_H

/* element types; KK_BOOL (one byte, 0 or not) only for segment masks */
enum kk_dtype { KK_F16 = 0, KK_BF16 = 1, KK_F32 = 2, KK_F64 = 3, KK_BOOL = 4 };
enum kk_kind { KK_LOGITS = 0, KK_LOGPROBS = 1 };
enum kk_divop { KK_ENTROPY = 0, KK_XENT = 1, KK_KL = 2, KK_JS = 3 };
enum kk_segop { KK_SEG_SUM = 0, KK_SEG_MEAN = 1, KK_SEG_MAX = 2, KK_SEG_LSE = 3 };
enum kk_est { KK_EST_NONE = 0, KK_EST_K1 = 1, KK_EST_K2 = 2, KK_EST_K3 = 3, KK_EST_ABS = 4 };
/* reduction state types (the state entry points, states.c) */
enum kk_state { KK_STATE_LSE = 0, KK_STATE_ENTROPY = 1, KK_STATE_KL = 2, KK_STATE_SEG = 3,
                KK_STATE_XENT = 4 };

#endif
