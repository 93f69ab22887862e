/* The SIMT emulator's stand-in for CUB's DeviceRadixSort::SortPairs (the only CUB call serl makes,
 * csrc/cuda/embedding.cu): CUB's headers are device code g++ cannot compile. Same contract: a first
 * call with d_temp_storage == NULL sizes the temporary storage; the sort is stable, orders keys by bits
 * [begin_bit, end_bit) ascending, and runs on the stream (recorded when it captures a graph). */
#ifndef SERL_SIMT_CUB_RADIX_SORT
#define SERL_SIMT_CUB_RADIX_SORT

#include <algorithm>
#include <numeric>
#include <vector>

namespace cub {

struct DeviceRadixSort {
    template <class K, class V, class N>
    static cudaError_t SortPairs(void *d_temp_storage, size_t &temp_storage_bytes, const K *keys_in, K *keys_out,
                                 const V *values_in, V *values_out, N num_items, int begin_bit = 0,
                                 int end_bit = sizeof(K) * 8, cudaStream_t stream = 0) {
        static_assert(std::is_unsigned<K>::value, "the emulator sorts unsigned keys (serl's only use)");
        if (!d_temp_storage) {
            temp_storage_bytes = 256;
            return cudaSuccess;
        }
        if (begin_bit < 0 || end_bit > (int)sizeof(K) * 8 || begin_bit >= end_bit || num_items < 0) return cudaErrorInvalidValue;
        const long long n = (long long)num_items;
        simt::enqueue(stream, [=]() {
            const unsigned long long span = end_bit - begin_bit >= 64 ? ~0ull : (1ull << (end_bit - begin_bit)) - 1;
            auto key = [&](long long i) { return ((unsigned long long)keys_in[i] >> begin_bit) & span; };
            std::vector<long long> order(n);
            std::iota(order.begin(), order.end(), 0LL);
            std::stable_sort(order.begin(), order.end(), [&](long long a, long long b) { return key(a) < key(b); });
            std::vector<K> ks(n);
            std::vector<V> vs(n);
            for (long long i = 0; i < n; i++) ks[i] = keys_in[order[i]], vs[i] = values_in[order[i]];
            std::copy(ks.begin(), ks.end(), keys_out);
            std::copy(vs.begin(), vs.end(), values_out);
        });
        return cudaSuccess;
    }
};

} // namespace cub

#endif
