/* The decode step's device-side state update (serl_decode_advance): a few integers per row, so one
 * thread; what matters is that it runs where the state lives, not its speed. */
#include "internal.h"

SERL_API int32_t serl_decode_advance(void *ctxp, const serl_decode_advance_args *a) {
    SERL_ENTER(ctxp, a, serl_decode_advance_args);
    SERL_CHECK(serl_check_decode_advance(ctx, a));
    const int64_t cells = (int64_t)a->n * a->max_blocks;
    if (a->patch) {
        const int k = a->patch[0] < a->max_patch ? a->patch[0] : a->max_patch;
        for (int i = 0; i < k; i++) {
            const int64_t at = a->patch[1 + 2 * i];
            if (at >= 0 && at < cells) a->table[at] = a->patch[2 + 2 * i];
        }
        a->patch[0] = 0;
    }
    const int bs = a->block_size;
    for (int r = 0; r < a->n; r++) {
        const int32_t t = a->tokens[r], p = a->pos[r] + 1, bi = p / bs;
        a->ids[r] = t;
        a->pos[r] = p;
        a->seq_lens[r] = p + 1;
        a->slots[r] = p >= 0 && bi < a->max_blocks ? a->table[(int64_t)r * a->max_blocks + bi] * bs + p % bs : -1;
        const int32_t s = a->steps[r];
        if (a->hist && s >= 0 && s < a->ld_hist) a->hist[(int64_t)r * a->ld_hist + s] = t;
        a->steps[r] = s + 1;
        if (a->ban_rows) a->ban_rows[r] = s + 1 < a->min_new[r];
    }
    return SERL_OK;
}
