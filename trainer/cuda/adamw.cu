// CUDA kernels of edgebert-trainer's optimizer (built into PTX by build.rs with the `cuda` feature):
// the fused AdamW update (one launch per parameter instead of ~16 tensor ops) and the squared
// gradient norm in two deterministic stages (fixed partial order, one device-to-host read per step).

// torch.optim.AdamW: p *= 1 - lr*wd; m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
// p -= (lr / bc1) * m / (sqrt(v) / sqrt(bc2) + eps), with g = grad * grad_scale (clipping).
extern "C" __global__ void edgebert_adamw_f32(float *p, const float *grad, float *m, float *v, size_t n,
                                             float lr, float decay, float beta1, float beta2, float eps,
                                             float bc1, float bc2_sqrt, float grad_scale) {
    const float step_size = lr / bc1;
    const float shrink = 1.f - lr * decay;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const float g = grad[i] * grad_scale;
        float pv = p[i] * shrink;
        const float mv = beta1 * m[i] + (1.f - beta1) * g;
        const float vv = beta2 * v[i] + (1.f - beta2) * g * g;
        m[i] = mv;
        v[i] = vv;
        pv -= step_size * mv / (sqrtf(vv) / bc2_sqrt + eps);
        p[i] = pv;
    }
}

// partial[blockIdx.x] = sum of g^2 over this block's grid-stride share. blockDim.x must be 256.
extern "C" __global__ void edgebert_sumsq_partial_f32(const float *g, size_t n, float *partial) {
    __shared__ float s[256];
    float acc = 0.f;
    for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < n; i += (size_t)gridDim.x * blockDim.x) {
        const float x = g[i];
        acc += x * x;
    }
    s[threadIdx.x] = acc;
    __syncthreads();
    for (int w = 128; w > 0; w >>= 1) {
        if (threadIdx.x < w) s[threadIdx.x] += s[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) partial[blockIdx.x] = s[0];
}

// out[0] = sum of partial[0..n] in double, one block of 256 threads.
extern "C" __global__ void edgebert_sum_f32(const float *partial, size_t n, double *out) {
    __shared__ double s[256];
    double acc = 0.0;
    for (size_t i = threadIdx.x; i < n; i += blockDim.x) acc += partial[i];
    s[threadIdx.x] = acc;
    __syncthreads();
    for (int w = 128; w > 0; w >>= 1) {
        if (threadIdx.x < w) s[threadIdx.x] += s[threadIdx.x + w];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[0] = s[0];
}
