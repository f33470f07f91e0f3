/* Fused CPU kernels of the JTFS first-order scalogram (see native.py).
 *
 * Each kernel replaces a sequence of element-wise torch operations by one pass
 * over memory, parallelised with OpenMP (the runtime torch itself loads).  The
 * arithmetic is the one of the torch fallback in core.py, operation by operation,
 * so results agree to the last unit or two of float rounding.
 *
 * Layouts (all contiguous unless a stride is given; complex = interleaved re, im):
 *   ext   complex (B, E), row stride E            extended input spectrum
 *   Z     real (2, B, nf, Lh, 2)                  one-sided inverse-FFT inputs
 *   idx   int64 (nf_all, W): idx[f * W] = start_f  window starts (row f)
 *   h2    real (nf_all, W)                        window values h / 2
 *   gZ    complex (2, B, nf, Lh)                  rfft of the backward planes
 *   gext  complex (B, E)                          gradient of ext (accumulated)
 *
 * Compiled twice, for float (suffix _f32) and double (_f64).
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#define BLOCK 4096

#define DEFINE_KERNELS(T, SUF, SQRT)                                                    \
/* Z[0, b, f] = (0, ext[b, s_f : s_f + W] * h2[f], 0 ...),  Z[1] = -i Z[0]. */          \
void fill_planes_##SUF(const T *ext, int64_t E, const int64_t *idx, const T *h2,         \
                       int64_t W, T *Z, int64_t B, int64_t nf, int64_t Lh,               \
                       int nthreads) {                                                  \
    int64_t rows = B * nf, plane = rows * Lh * 2;                                        \
    _Pragma("omp parallel for num_threads(nthreads) schedule(static)")                  \
    for (int64_t r = 0; r < rows; ++r) {                                                 \
        int64_t b = r / nf, f = r % nf;                                                  \
        const T *e = ext + 2 * (b * E + idx[f * W]);                                     \
        const T *h = h2 + f * W;                                                         \
        T *z0 = Z + r * Lh * 2, *z1 = z0 + plane;                                        \
        z0[0] = 0; z0[1] = 0; z1[0] = 0; z1[1] = 0;                                      \
        T *a = z0 + 2, *c = z1 + 2;                                                      \
        _Pragma("omp simd")                                                             \
        for (int64_t w = 0; w < W; ++w) {                                                \
            T re = e[2 * w] * h[w], im = e[2 * w + 1] * h[w];                            \
            a[2 * w] = re; a[2 * w + 1] = im;                                            \
            c[2 * w] = im; c[2 * w + 1] = -re;                                           \
        }                                                                               \
        memset(z0 + 2 * (W + 1), 0, sizeof(T) * 2 * (Lh - W - 1));                      \
        memset(z1 + 2 * (W + 1), 0, sizeof(T) * 2 * (Lh - W - 1));                      \
    }                                                                                   \
}                                                                                       \
                                                                                        \
/* out = sqrt(re^2 + im^2) + 1e-12 over (rows, cols) with row strides; when save,     \
 * also re /= out, im /= out (the phasor) in place. */                                  \
void modulus_##SUF(T *re, T *im, T *out, int64_t rows, int64_t cols, int64_t s_re,       \
                   int64_t s_im, int64_t s_out, int save, int nthreads) {               \
    int64_t nb = (cols + BLOCK - 1) / BLOCK;                                             \
    _Pragma("omp parallel for num_threads(nthreads) schedule(static)")                  \
    for (int64_t t = 0; t < rows * nb; ++t) {                                            \
        int64_t r = t / nb, c0 = (t % nb) * BLOCK;                                       \
        int64_t c1 = c0 + BLOCK < cols ? c0 + BLOCK : cols;                              \
        T *x = re + r * s_re, *y = im + r * s_im, *o = out + r * s_out;                  \
        if (save) {                                                                     \
            _Pragma("omp simd")                                                         \
            for (int64_t i = c0; i < c1; ++i) {                                          \
                T a = x[i], b = y[i];                                                    \
                T m = SQRT(a * a + b * b) + (T)1e-12;                                    \
                o[i] = m; x[i] = a / m; y[i] = b / m;                                    \
            }                                                                           \
        } else {                                                                        \
            _Pragma("omp simd")                                                         \
            for (int64_t i = c0; i < c1; ++i) {                                          \
                T a = x[i], b = y[i];                                                    \
                o[i] = SQRT(a * a + b * b) + (T)1e-12;                                   \
            }                                                                           \
        }                                                                               \
    }                                                                                   \
}                                                                                       \
                                                                                        \
/* out = |z| + 1e-12 for complex rows z (interleaved), (rows, cols) with row         \
 * strides in complex / real elements. */                                              \
void modulus_cplx_##SUF(const T *z, T *out, int64_t rows, int64_t cols, int64_t s_z,     \
                        int64_t s_out, int nthreads) {                                  \
    int64_t nb = (cols + BLOCK - 1) / BLOCK;                                             \
    _Pragma("omp parallel for num_threads(nthreads) schedule(static)")                  \
    for (int64_t t = 0; t < rows * nb; ++t) {                                            \
        int64_t r = t / nb, c0 = (t % nb) * BLOCK;                                       \
        int64_t c1 = c0 + BLOCK < cols ? c0 + BLOCK : cols;                              \
        const T *x = z + 2 * r * s_z;                                                    \
        T *o = out + r * s_out;                                                          \
        _Pragma("omp simd")                                                             \
        for (int64_t i = c0; i < c1; ++i) {                                              \
            T a = x[2 * i], b = x[2 * i + 1];                                            \
            o[i] = SQRT(a * a + b * b) + (T)1e-12;                                       \
        }                                                                               \
    }                                                                                   \
}                                                                                       \
                                                                                        \
/* z *= g / (|z| + 1e-12) in place: the modulus backward for complex rows z and a     \
 * real gradient g, (rows, cols) with row strides. */                                   \
void scale_cplx_##SUF(T *z, const T *g, int64_t rows, int64_t cols, int64_t s_z,         \
                      int64_t s_g, int nthreads) {                                      \
    int64_t nb = (cols + BLOCK - 1) / BLOCK;                                             \
    _Pragma("omp parallel for num_threads(nthreads) schedule(static)")                  \
    for (int64_t t = 0; t < rows * nb; ++t) {                                            \
        int64_t r = t / nb, c0 = (t % nb) * BLOCK;                                       \
        int64_t c1 = c0 + BLOCK < cols ? c0 + BLOCK : cols;                              \
        T *x = z + 2 * r * s_z;                                                          \
        const T *q = g + r * s_g;                                                        \
        _Pragma("omp simd")                                                             \
        for (int64_t i = c0; i < c1; ++i) {                                              \
            T a = x[2 * i], b = x[2 * i + 1];                                            \
            T s = q[i] / (SQRT(a * a + b * b) + (T)1e-12);                               \
            x[2 * i] = a * s; x[2 * i + 1] = b * s;                                      \
        }                                                                               \
    }                                                                                   \
}                                                                                       \
                                                                                        \
/* gext[b, s_f + w] += (gZ[0, b, f, 1 + w] + i gZ[1, b, f, 1 + w]) * h2[f, w]          \
 * (the adjoint of fill_planes; windows of neighbouring filters overlap, so the        \
 * filters of one batch row are added in order, rows in parallel). */                  \
void combine_add_##SUF(const T *gZ, int64_t B, int64_t nf, int64_t Lh, const int64_t *idx,\
                       const T *h2, int64_t W, T *gext, int64_t E, int nthreads) {       \
    int64_t plane = B * nf * Lh * 2;                                                     \
    _Pragma("omp parallel for num_threads(nthreads) schedule(static)")                  \
    for (int64_t b = 0; b < B; ++b) {                                                    \
        for (int64_t f = 0; f < nf; ++f) {                                               \
            const T *g0 = gZ + ((b * nf + f) * Lh + 1) * 2, *g1 = g0 + plane;            \
            const T *h = h2 + f * W;                                                     \
            T *d = gext + 2 * (b * E + idx[f * W]);                                      \
            _Pragma("omp simd")                                                         \
            for (int64_t w = 0; w < W; ++w) {                                            \
                d[2 * w] += (g0[2 * w] - g1[2 * w + 1]) * h[w];                          \
                d[2 * w + 1] += (g0[2 * w + 1] + g1[2 * w]) * h[w];                      \
            }                                                                           \
        }                                                                               \
    }                                                                                   \
}

DEFINE_KERNELS(float, f32, sqrtf)
DEFINE_KERNELS(double, f64, sqrt)

/* Version of this kernel interface (checked by native.py). */
int scrapl_kernels_abi(void) { return 2; }
