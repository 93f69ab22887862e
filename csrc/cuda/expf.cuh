/* e^x bit for bit as the CPU library's serl_exp8 (csrc/cpu/expf_avx2.h: Cephes polynomial, the same
 * fused and unfused steps), so log-probabilities and the sampler's weights agree with the CPU. x <
 * −87.34 (−inf included) gives exactly 0, x > 88.38 gives +inf, NaN stays NaN. */
#ifndef SERL_CUDA_EXPF_CUH
#define SERL_CUDA_EXPF_CUH

__device__ __forceinline__ float serl_expf(float x) {
    if (x != x) return x;
    const float hi = 88.3762626647949f, lo = -87.3365447505531f;
    const bool under = x < lo, over = x > hi;
    x = fmaxf(lo, fminf(hi, x));
    float n = rintf(__fmul_rn(x, 1.44269504088896341f));
    float r = fmaf(-n, 0.693359375f, x);
    r = fmaf(-n, -2.12194440e-4f, r);
    float p = 1.9875691500e-4f;
    p = fmaf(p, r, 1.3981999507e-3f);
    p = fmaf(p, r, 8.3334519073e-3f);
    p = fmaf(p, r, 4.1665795894e-2f);
    p = fmaf(p, r, 1.6666665459e-1f);
    p = fmaf(p, r, 5.0000001201e-1f);
    float r2 = __fmul_rn(r, r);
    float y = fmaf(p, r2, __fadd_rn(r, 1.0f));
    int ni = (int)n, n1 = ni >> 1, n2 = ni - n1;
    y = __fmul_rn(__fmul_rn(y, __int_as_float((n1 + 127) << 23)), __int_as_float((n2 + 127) << 23));
    if (under) y = 0.0f;
    if (over) y = __int_as_float(0x7F800000);
    return y;
}

#endif
