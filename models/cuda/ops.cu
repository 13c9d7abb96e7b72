// CUDA kernels for edgebert-models' differentiable ops (built into PTX by build.rs with the `cuda`
// feature). Each replaces a chain of candle tensor ops (one launch and one allocation each) by one
// launch: LayerNorm, softmax over the last dim and exact GELU, forward and backward, f32.
//
// Row kernels use one warp per row (blockDim = (32, ROWS_PER_BLOCK)); every lane of a warp has the
// same row, so a warp leaves together and the shuffles stay full-warp.

#define FULL_MASK 0xffffffffu

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(FULL_MASK, v, o, 32);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(FULL_MASK, v, o, 32));
    return v;
}

// Mean and 1/sqrt(var + eps) of one row, two passes (as the CPU op: no E[x^2] - mean^2 cancellation).
__device__ __forceinline__ void row_stats(const float *xr, int cols, float eps, float *mean, float *rstd) {
    const int lane = threadIdx.x;
    float s = 0.f;
    for (int c = lane; c < cols; c += 32) s += xr[c];
    const float m = warp_sum(s) / cols;
    float ss = 0.f;
    for (int c = lane; c < cols; c += 32) {
        const float d = xr[c] - m;
        ss += d * d;
    }
    *mean = m;
    *rstd = 1.f / sqrtf(warp_sum(ss) / cols + eps);
}

// y = (x - mean) * rstd * gamma + beta, per row of `cols`.
extern "C" __global__ void edgebert_layer_norm_fwd_f32(const float *x, const float *gamma, const float *beta,
                                                       float *y, int rows, int cols, float eps) {
    const int row = blockIdx.x * blockDim.y + threadIdx.y;
    if (row >= rows) return;
    const float *xr = x + (size_t)row * cols;
    float *yr = y + (size_t)row * cols;
    float mean, rstd;
    row_stats(xr, cols, eps, &mean, &rstd);
    for (int c = threadIdx.x; c < cols; c += 32) yr[c] = (xr[c] - mean) * rstd * gamma[c] + beta[c];
}

// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)) with g = dy * gamma, xhat = (x - mean) * rstd.
// Also writes each row's (mean, rstd) to stats[2 * row] for edgebert_layer_norm_bwd_params_f32.
extern "C" __global__ void edgebert_layer_norm_bwd_f32(const float *x, const float *gamma, const float *dy,
                                                       float *dx, float *stats, int rows, int cols, float eps) {
    const int row = blockIdx.x * blockDim.y + threadIdx.y;
    if (row >= rows) return;
    const size_t off = (size_t)row * cols;
    const float *xr = x + off, *dyr = dy + off;
    float *dxr = dx + off;
    float mean, rstd;
    row_stats(xr, cols, eps, &mean, &rstd);
    // g is rounded the same way in both loops (__fmul_rn is never contracted into an FMA): where
    // the true dx is 0 (a row of equal values), g - mean(g) must cancel exactly, since rstd
    // (up to 1/sqrt(eps)) would magnify any rounding difference.
    float sg = 0.f, sgx = 0.f;
    for (int c = threadIdx.x; c < cols; c += 32) {
        const float g = __fmul_rn(dyr[c], gamma[c]);
        sg += g;
        sgx += g * (xr[c] - mean) * rstd;
    }
    const float mg = warp_sum(sg) / cols, mgx = warp_sum(sgx) / cols;
    for (int c = threadIdx.x; c < cols; c += 32) {
        const float xhat = (xr[c] - mean) * rstd;
        const float g = __fmul_rn(dyr[c], gamma[c]);
        dxr[c] = rstd * (__fsub_rn(g, mg) - xhat * mgx);
    }
    if (threadIdx.x == 0) {
        stats[2 * row] = mean;
        stats[2 * row + 1] = rstd;
    }
}

// Partial sums over a chunk of `chunk_rows` rows, one thread per column:
// partial[chunk * cols + c] = sum(dy * xhat), partial[(chunks + chunk) * cols + c] = sum(dy).
// Grid: (ceil(cols / blockDim.x), chunks). The caller sums the chunks (a fixed order: deterministic).
extern "C" __global__ void edgebert_layer_norm_bwd_params_f32(const float *x, const float *dy, const float *stats,
                                                              float *partial, int rows, int cols,
                                                              int chunk_rows) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= cols) return;
    const int chunk = blockIdx.y, chunks = gridDim.y;
    const int r0 = chunk * chunk_rows;
    const int r1 = min(rows, r0 + chunk_rows);
    float sgx = 0.f, sg = 0.f;
    for (int r = r0; r < r1; ++r) {
        const size_t i = (size_t)r * cols + c;
        const float g = dy[i];
        sg += g;
        sgx += g * (x[i] - stats[2 * r]) * stats[2 * r + 1];
    }
    partial[(size_t)chunk * cols + c] = sgx;
    partial[(size_t)(chunks + chunk) * cols + c] = sg;
}

// Numerically stable softmax of each row.
extern "C" __global__ void edgebert_softmax_fwd_f32(const float *x, float *y, int rows, int cols) {
    const int row = blockIdx.x * blockDim.y + threadIdx.y;
    if (row >= rows) return;
    const size_t off = (size_t)row * cols;
    const float *xr = x + off;
    float *yr = y + off;
    float m = -INFINITY;
    for (int c = threadIdx.x; c < cols; c += 32) m = fmaxf(m, xr[c]);
    m = warp_max(m);
    float s = 0.f;
    for (int c = threadIdx.x; c < cols; c += 32) {
        const float e = expf(xr[c] - m);
        yr[c] = e;
        s += e;
    }
    const float inv = 1.f / warp_sum(s);
    for (int c = threadIdx.x; c < cols; c += 32) yr[c] *= inv;
}

// dx = y * (dy - sum(dy * y)) per row.
extern "C" __global__ void edgebert_softmax_bwd_f32(const float *y, const float *dy, float *dx, int rows, int cols) {
    const int row = blockIdx.x * blockDim.y + threadIdx.y;
    if (row >= rows) return;
    const size_t off = (size_t)row * cols;
    const float *yr = y + off, *dyr = dy + off;
    float *dxr = dx + off;
    float s = 0.f;
    for (int c = threadIdx.x; c < cols; c += 32) s += dyr[c] * yr[c];
    s = warp_sum(s);
    for (int c = threadIdx.x; c < cols; c += 32) dxr[c] = yr[c] * (dyr[c] - s);
}

// y = 0.5 x (1 + erf(x / sqrt 2)).
extern "C" __global__ void edgebert_gelu_erf_fwd_f32(const float *x, float *y, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const float v = x[i];
        y[i] = 0.5f * v * (1.f + erff(v * 0.70710678118654752f));
    }
}

// dx = dy * (Phi(x) + x phi(x)).
extern "C" __global__ void edgebert_gelu_erf_bwd_f32(const float *x, const float *dy, float *dx, size_t n) {
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const float v = x[i];
        const float cdf = 0.5f * (1.f + erff(v * 0.70710678118654752f));
        const float pdf = 0.39894228040143268f * expf(-0.5f * v * v);
        dx[i] = dy[i] * (cdf + v * pdf);
    }
}

// Embedding gradient, deterministic: rows[u] gets the sum of dy over the positions
// pos[offsets[u] .. offsets[u + 1]] that hold token ids[u], in that order (the host groups the
// positions). One block per distinct token; threads stride over the columns.
extern "C" __global__ void edgebert_embedding_bwd_f32(const float *dy, const unsigned int *ids,
                                                      const unsigned int *offsets, const unsigned int *pos,
                                                      float *dtable, int cols) {
    const unsigned int u = blockIdx.x;
    const size_t row = (size_t)ids[u] * cols;
    const unsigned int p0 = offsets[u], p1 = offsets[u + 1];
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        float s = 0.f;
        for (unsigned int p = p0; p < p1; ++p) s += dy[(size_t)pos[p] * cols + c];
        dtable[row + c] = s;
    }
}
