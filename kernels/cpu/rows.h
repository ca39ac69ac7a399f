/* rows.h: how the kernels see their arrays, in place, whatever the view.
 *
 * kk_rows describes a strided array as a batch of rows without copying it:
 * the leading (batch) axes and the row axes each keep their own shape and
 * strides, so a view whose rows are not one stride apart (logits[:, :-1] of
 * a [B, T, V] array, a transposed or broadcast array, a slice of a
 * memory-mapped file) and a row that is itself strided or spans several
 * axes (a reduction over more than one axis) are read where they lie.
 * Rows are read chunk by chunk through the loader of real_load.inc: a
 * contiguous row of the working precision in place, anything else gathered
 * (and converted) into an L1 buffer, never a full copy.
 *
 * Strides are in elements (any sign; 0 repeats an element, as a
 * broadcast).  The caller (_cpu.pyx) describes NumPy arrays, whose elements
 * all lie inside their buffers: it drops axes of length 1, merges axes
 * that are contiguous with each other and checks that the data is aligned
 * and every stride a whole number of elements.  An output (softmax) is
 * described the same way; its data is written.
 *
 * The elements of a row are taken in C order over its axes: element i of a
 * row is where the row's index tuple unravelled from i points, so a row
 * gives the same bits whatever its memory layout.
 */
#ifndef KLKIT_ROWS_H
#define KLKIT_ROWS_H

#include <stdint.h>
#include "klkit/codes.h"

/* axes of each part after merging (_cpu.pyx copies views with more) */
enum { KK_MAX_DIMS = 8 };

typedef struct {
    const char *data;                   /* the first element */
    int dtype;                          /* enum kk_dtype */
    int lead_ndim, row_ndim;            /* lead_ndim >= 0, row_ndim >= 1 */
    int64_t lead_shape[KK_MAX_DIMS], lead_step[KK_MAX_DIMS];
    int64_t row_shape[KK_MAX_DIMS], row_step[KK_MAX_DIMS];
    int64_t n_rows, n;                  /* products of the two shapes */
} kk_rows;

/* One row of a batch: its first element and the batch it belongs to. */
typedef struct {
    const char *p;
    const kk_rows *a;
} kk_row;

/* bytes per element of a dtype code */
static inline int kk_itemsize(int dtype)
{
    return dtype == KK_F64 ? 8 : dtype == KK_F32 ? 4 : dtype == KK_BOOL ? 1 : 2;
}

/* whether each row is one run of unit stride (read in place) */
static inline int kk_rows_contiguous(const kk_rows *a)
{
    return a->row_ndim == 1 && a->row_step[0] == 1;
}

/* row r of the batch (its index unravelled over the leading shape) */
static inline kk_row kk_row_at(const kk_rows *a, int64_t r)
{
    int64_t off = 0;
    if (a->lead_ndim == 1) {
        off = r * a->lead_step[0];
    } else {
        for (int d = a->lead_ndim - 1; d >= 0; d--) {
            off += (r % a->lead_shape[d]) * a->lead_step[d];
            r /= a->lead_shape[d];
        }
    }
    kk_row row = { a->data + off * kk_itemsize(a->dtype), a };
    return row;
}

/* the offset in elements of element i of a row from the row's start */
static inline int64_t kk_row_offset(const kk_rows *a, int64_t i)
{
    int64_t off = 0;
    for (int d = a->row_ndim - 1; d >= 0; d--) {
        off += (i % a->row_shape[d]) * a->row_step[d];
        i /= a->row_shape[d];
    }
    return off;
}

/* the address of element i of a row */
static inline const char *kk_row_elem(kk_row row, int64_t i)
{
    return row.p + kk_row_offset(row.a, i) * kk_itemsize(row.a->dtype);
}

/* A packed 1-D array seen as its sequences: the row of n elements that
 * starts at element `start` (kk_rows with one row axis, no leading one). */
static inline kk_row kk_span_at(const kk_rows *a, int64_t start)
{
    kk_row row = { a->data + start * a->row_step[0] * kk_itemsize(a->dtype), a };
    return row;
}

#endif
