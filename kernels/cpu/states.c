/* states.c: the combines and values of the reduction states, over arrays
 * of them, for the state entry points (klkit_entries.h: kk_lse_states,
 * kk_div_states, kk_seg_states).
 *
 * Compiled once per instruction set like the row loops (KK_ISA), so that a
 * state combined here goes through the same instructions as inside the
 * kernels (kk_exp with or without FMA): pieces combined here give the
 * kernels' own bits where the pieces are the kernels' own.  The math is
 * the headers' (lse.h, divergence.h, segment.h).
 */
#include <math.h>
#include <stdint.h>
#include "klkit/divergence.h"
#include "klkit/lse.h"
#include "klkit/segment.h"
#include "klkit_cpu.h"

void KK_FN(kk_state_combine)(int kind, int op, double inv_temp, int64_t n, const void *a,
                             const void *b, void *out)
{
    for (int64_t i = 0; i < n; i++) {
        switch (kind) {
        case KK_STATE_LSE:
            ((kk_lse_t *)out)[i] = kk_lse_combine(((const kk_lse_t *)a)[i],
                                                  ((const kk_lse_t *)b)[i]);
            break;
        case KK_STATE_ENTROPY:
            ((kk_ent_t *)out)[i] = kk_ent_combine(((const kk_ent_t *)a)[i],
                                                  ((const kk_ent_t *)b)[i]);
            break;
        case KK_STATE_XENT:
            ((kk_xent_t *)out)[i] = kk_xent_combine(((const kk_xent_t *)a)[i],
                                                    ((const kk_xent_t *)b)[i]);
            break;
        case KK_STATE_KL:   /* the Q mass of P = 0 pieces joins A once m is known */
            ((kk_kl_t *)out)[i] = kk_kl_finish(kk_kl_combine(((const kk_kl_t *)a)[i],
                                                             ((const kk_kl_t *)b)[i], inv_temp),
                                               inv_temp);
            break;
        default:
            ((kk_seg_t *)out)[i] = kk_seg_combine(op, ((const kk_seg_t *)a)[i],
                                                  ((const kk_seg_t *)b)[i]);
        }
    }
}

void KK_FN(kk_state_values)(int kind, int op, double inv_temp, double eps, int64_t n,
                            const void *states, const int64_t *counts, double empty,
                            double *out)
{
    for (int64_t i = 0; i < n; i++) {
        switch (kind) {
        case KK_STATE_LSE:
            out[i] = kk_lse_value(((const kk_lse_t *)states)[i]);
            break;
        case KK_STATE_ENTROPY:
            out[i] = kk_ent_value(((const kk_ent_t *)states)[i]);
            break;
        case KK_STATE_XENT:
            out[i] = kk_xent_value(((const kk_xent_t *)states)[i]);
            break;
        case KK_STATE_KL:
            out[i] = kk_kl_state_value(((const kk_kl_t *)states)[i], inv_temp, eps);
            break;
        default:
            out[i] = kk_seg_value(op, ((const kk_seg_t *)states)[i], counts[i], empty);
        }
    }
}
