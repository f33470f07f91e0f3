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
#ifndef SCRAPL_FREQ_T /* the main part (the file includes itself below) */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK 4096

/* Task t of a (rows x column blocks) loop over BLOCK-column blocks, nb = blocks per
 * row: its row and column range [c0, c1). */
static inline void row_block(int64_t t, int64_t nb, int64_t cols, int64_t *r, int64_t *c0, int64_t *c1) {
    *r = t / nb;
    *c0 = (t % nb) * BLOCK;
    *c1 = *c0 + BLOCK < cols ? *c0 + BLOCK : cols;
}

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
/* out = sqrt(re^2 + im^2) + 1e-12 over (rows, cols) with row strides; when save,   \
 * also pre = re / out and pim = im / out (the phasor; pre, pim may be re, im). */      \
void modulus_##SUF(T *re, T *im, T *out, T *pre, T *pim, int64_t rows, int64_t cols,     \
                   int64_t s_re, int64_t s_im, int64_t s_out, int64_t s_pre,              \
                   int64_t s_pim, int save, int nthreads) {                             \
    int64_t nb = (cols + BLOCK - 1) / BLOCK;                                             \
    _Pragma("omp parallel for num_threads(nthreads) schedule(static)")                  \
    for (int64_t t = 0; t < rows * nb; ++t) {                                            \
        int64_t r, c0, c1;                                                               \
        row_block(t, nb, cols, &r, &c0, &c1);                                            \
        T *x = re + r * s_re, *y = im + r * s_im, *o = out + r * s_out;                  \
        if (save) {                                                                     \
            T *px = pre + r * s_pre, *py = pim + r * s_pim;                              \
            _Pragma("omp simd")                                                         \
            for (int64_t i = c0; i < c1; ++i) {                                          \
                T a = x[i], b = y[i];                                                    \
                T m = SQRT(a * a + b * b) + (T)1e-12;                                    \
                o[i] = m; px[i] = a / m; py[i] = b / m;                                  \
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
        int64_t r, c0, c1;                                                               \
        row_block(t, nb, cols, &r, &c0, &c1);                                            \
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
/* out = z * g / (|z| + 1e-12) (out may be z): the modulus backward for complex     \
 * rows z and a real gradient g, (rows, cols) with row strides. */                      \
void scale_cplx_##SUF(const T *z, const T *g, T *out, int64_t rows, int64_t cols,        \
                      int64_t s_z, int64_t s_g, int64_t s_out, int nthreads) {          \
    int64_t nb = (cols + BLOCK - 1) / BLOCK;                                             \
    _Pragma("omp parallel for num_threads(nthreads) schedule(static)")                  \
    for (int64_t t = 0; t < rows * nb; ++t) {                                            \
        int64_t r, c0, c1;                                                               \
        row_block(t, nb, cols, &r, &c0, &c1);                                            \
        const T *x = z + 2 * r * s_z;                                                    \
        const T *q = g + r * s_g;                                                        \
        T *o = out + 2 * r * s_out;                                                      \
        _Pragma("omp simd")                                                             \
        for (int64_t i = c0; i < c1; ++i) {                                              \
            T a = x[2 * i], b = x[2 * i + 1];                                            \
            T s = q[i] / (SQRT(a * a + b * b) + (T)1e-12);                               \
            o[2 * i] = a * s; o[2 * i + 1] = b * s;                                      \
        }                                                                               \
    }                                                                                   \
}                                                                                       \
                                                                                        \
/* Second-order window gather: for every row (b, f) of spec (complex (B, nf, Lh)) and \
 * run (src, dst, n, desc) of segs (int64 (nseg, 4)):                                   \
 *   out[b, row0 + f, dst + j] = spec[b, f, src + j] * coef[dst + j]   (j < n)          \
 * read in reverse (src + n - 1 - j) for descending runs; the complex value times the  \
 * real pair coef = (c0, c1) is (re c0, im c1).  out: complex (B, n_out, width). */      \
void gather_segments_##SUF(const T *spec, int64_t B, int64_t nf, int64_t Lh, T *out,     \
                           int64_t n_out, int64_t width, int64_t row0, const T *coef,   \
                           const int64_t *segs, int64_t nseg, int nthreads) {           \
    _Pragma("omp parallel for num_threads(nthreads) schedule(static)")                  \
    for (int64_t r = 0; r < B * nf; ++r) {                                               \
        int64_t b = r / nf, f = r % nf;                                                  \
        const T *x = spec + 2 * r * Lh;                                                  \
        T *o = out + 2 * ((b * n_out + row0 + f) * width);                               \
        for (int64_t q = 0; q < nseg; ++q) {                                             \
            int64_t src = segs[4 * q], dst = segs[4 * q + 1], n = segs[4 * q + 2];        \
            const T *c = coef + 2 * dst;                                                 \
            T *d = o + 2 * dst;                                                          \
            if (segs[4 * q + 3]) {                                                       \
                const T *e = x + 2 * (src + n - 1);                                      \
                for (int64_t j = 0; j < n; ++j) {                                        \
                    d[2 * j] = e[-2 * j] * c[2 * j];                                     \
                    d[2 * j + 1] = e[-2 * j + 1] * c[2 * j + 1];                         \
                }                                                                       \
            } else {                                                                    \
                const T *e = x + 2 * src;                                                \
                _Pragma("omp simd")                                                     \
                for (int64_t j = 0; j < 2 * n; ++j) d[j] = e[j] * c[j];                  \
            }                                                                           \
        }                                                                               \
    }                                                                                   \
}                                                                                       \
                                                                                        \
/* Its adjoint, accumulated: G[b, f, src + j] += g[b, row0 + f, dst + j] * coef[dst+j] \
 * (reversed for descending runs; runs may overlap, so the runs of a row are added in  \
 * order, rows in parallel); then, when scale_ends, G[b, f, 0] and (for even_L)        \
 * G[b, f, Lh - 1] are doubled (the rfft adjoint weights). */                           \
void scatter_segments_##SUF(const T *g, int64_t n_g, int64_t width, int64_t row0,        \
                            const T *coef, const int64_t *segs, int64_t nseg, T *G,      \
                            int64_t B, int64_t nf, int64_t Lh, int scale_ends, int even_L,\
                            int nthreads) {                                             \
    _Pragma("omp parallel for num_threads(nthreads) schedule(static)")                  \
    for (int64_t r = 0; r < B * nf; ++r) {                                               \
        int64_t b = r / nf, f = r % nf;                                                  \
        T *x = G + 2 * r * Lh;                                                           \
        const T *o = g + 2 * ((b * n_g + row0 + f) * width);                             \
        for (int64_t q = 0; q < nseg; ++q) {                                             \
            int64_t src = segs[4 * q], dst = segs[4 * q + 1], n = segs[4 * q + 2];        \
            const T *c = coef + 2 * dst;                                                 \
            const T *d = o + 2 * dst;                                                    \
            if (segs[4 * q + 3]) {                                                       \
                T *e = x + 2 * (src + n - 1);                                            \
                for (int64_t j = 0; j < n; ++j) {                                        \
                    e[-2 * j] += d[2 * j] * c[2 * j];                                    \
                    e[-2 * j + 1] += d[2 * j + 1] * c[2 * j + 1];                        \
                }                                                                       \
            } else {                                                                    \
                T *e = x + 2 * src;                                                      \
                _Pragma("omp simd")                                                     \
                for (int64_t j = 0; j < 2 * n; ++j) e[j] += d[j] * c[j];                 \
            }                                                                           \
        }                                                                               \
        if (scale_ends) {                                                               \
            x[0] *= 2; x[1] *= 2;                                                        \
            if (even_L) { x[2 * (Lh - 1)] *= 2; x[2 * (Lh - 1) + 1] *= 2; }              \
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

/* ------------------------------------------------------------------------------
 * The extended two-sided spectrum of a real signal (core.extended_spectrum) and
 * its adjoint, one pass each.  x_hat complex (B, n / 2 + 1), ext complex (B, n + extra)
 * with ext[j] = X[j mod n], X[j] = x_hat[j] (j <= n / 2), conj(x_hat[n - j]) above;
 * n even, extra <= n.  The adjoint gx[k] = G[k] + conj(G[n - k]) (0 < k < n / 2),
 * G[j] = g[j] + g[n + j] (j < extra), times w[k] when w is given (the weights of
 * the rfft adjoint, core.rfft_adjoint, folded in).
 * ------------------------------------------------------------------------------ */
#define DEFINE_EXTEND(T, SUF)                                                            \
void extend_##SUF(const T *xh, T *ext, int64_t B, int64_t n, int64_t extra, int nthreads) { \
    int64_t h = n / 2 + 1, E = n + extra;                                                \
    _Pragma("omp parallel for num_threads(nthreads) schedule(static)")                  \
    for (int64_t b = 0; b < B; ++b) {                                                    \
        const T *x = xh + 2 * b * h;                                                     \
        T *e = ext + 2 * b * E;                                                          \
        memcpy(e, x, sizeof(T) * (size_t)(2 * h));                                       \
        for (int64_t j = h; j < n; ++j) { e[2 * j] = x[2 * (n - j)]; e[2 * j + 1] = -x[2 * (n - j) + 1]; } \
        memcpy(e + 2 * n, e, sizeof(T) * (size_t)(2 * extra));                          \
    }                                                                                   \
}                                                                                       \
                                                                                        \
void extend_adjoint_##SUF(const T *g, T *gx, const T *w, int64_t B, int64_t n,           \
                          int64_t extra, int nthreads) {                                 \
    int64_t h = n / 2 + 1, E = n + extra;                                                \
    _Pragma("omp parallel for num_threads(nthreads) schedule(static)")                  \
    for (int64_t b = 0; b < B; ++b) {                                                    \
        const T *e = g + 2 * b * E;                                                      \
        T *o = gx + 2 * b * h;                                                           \
        for (int64_t k = 0; k < h; ++k) {                                                \
            T re = e[2 * k], im = e[2 * k + 1];                                          \
            if (k < extra) { re += e[2 * (n + k)]; im += e[2 * (n + k) + 1]; }           \
            if (k > 0 && k < n - k) {                                                    \
                int64_t m = n - k;                                                       \
                T r2 = e[2 * m], i2 = e[2 * m + 1];                                      \
                if (m < extra) { r2 += e[2 * (n + m)]; i2 += e[2 * (n + m) + 1]; }       \
                re += r2; im -= i2;                                                      \
            }                                                                           \
            if (w) { re *= w[k]; im *= w[k]; }                                           \
            o[2 * k] = re; o[2 * k + 1] = im;                                            \
        }                                                                               \
    }                                                                                   \
}

DEFINE_EXTEND(float, f32)
DEFINE_EXTEND(double, f64)

/* ------------------------------------------------------------------------------
 * Frequential scattering, modulus and time averaging of one path, fused:
 *
 *   y[b, r, t]   = sum_k Mc[r, k] y2[b, k, t]            (complex, Mc = Mr + i Mi)
 *   out[b, r, c] = sum_t (|y[b, r, t]| + 1e-12) AT[c, t]
 *
 * and its adjoint with respect to y2 for a gradient g of out:
 *
 *   gy2[b, k, t] = sum_r conj(Mc[r, k]) y[b, r, t] / (|y[b, r, t]| + 1e-12)
 *                                        * sum_c g[b, r, c] AT[c, t]
 *
 * computed FTB time samples and four rows r at a time (register tiles), so that y
 * never leaves the cache; the backward recomputes it instead of keeping it.
 * Layouts: y2, gy2 complex (B, n, T2) contiguous; Mr, Mi real (R, n) contiguous;
 * AT real (Tc, T2) with row stride sAT; out, g real (B, R, Tc) contiguous; band
 * NULL, or int64 (T2 / FTB rounded up, 2): for each FTB-sample block the columns
 * c = (start + j) % Tc, j < count, outside which its rows of AT are taken as zero
 * (the time-averaging filter's negligible tails).  The
 * time axis is cut into nch chunks chosen by the caller; tasks are (b, chunk).  The
 * forward keeps one vector of float partial sums per (r, c) over a chunk (each lane
 * sums at most chunk / 16 terms), adds the lanes in double precision and the chunks
 * in order: the result does not depend on the number of threads.
 * The template below (SCRAPL_FREQ_T) is this file included into itself once per
 * precision; its arithmetic may use fused multiply-adds.
 * ------------------------------------------------------------------------------ */
#define FTB 64
#ifdef _OPENMP
#include <omp.h>
#define THREAD_NUM() omp_get_thread_num()
#else
#define THREAD_NUM() 0
#endif
#define FN2(a, b) a##_##b
#define FN1(a, b) FN2(a, b)
#define FN(name) FN1(name, SCRAPL_FREQ_SUF)

#define SCRAPL_FREQ_T float
#define SCRAPL_FREQ_SUF f32
#define SCRAPL_FREQ_SQRT sqrtf
#include "_kernels.c"
#undef SCRAPL_FREQ_T
#undef SCRAPL_FREQ_SUF
#undef SCRAPL_FREQ_SQRT
#define SCRAPL_FREQ_T double
#define SCRAPL_FREQ_SUF f64
#define SCRAPL_FREQ_SQRT sqrt
#include "_kernels.c"
#undef SCRAPL_FREQ_T
#undef SCRAPL_FREQ_SUF
#undef SCRAPL_FREQ_SQRT

/* ------------------------------------------------------------------------------
 * Planned FFTs through the MKL DFTI interface that torch's CPU library exports.
 *
 * torch.fft creates and commits a new MKL descriptor at every call, which costs
 * about 0.2 ms at 65536 points (twiddle tables): a large share of a one-path step.
 * Here a descriptor is committed once per (precision, kind, length, batch, threads)
 * and reused (native.py caches them).  The function pointers come from Python
 * (ctypes lookups in libtorch_cpu), so nothing links against MKL.
 * The numeric DFTI constants are those of MKL's public mkl_dfti.h.
 * ------------------------------------------------------------------------------ */
typedef long mkl_long;
typedef void *dfti_handle;
typedef mkl_long (*dfti_create_fn)(dfti_handle *, int, ...);
typedef mkl_long (*dfti_set_fn)(dfti_handle, int, ...);
typedef mkl_long (*dfti_commit_fn)(dfti_handle);
typedef mkl_long (*dfti_compute_fn)(dfti_handle, void *, ...);
typedef mkl_long (*dfti_free_fn)(dfti_handle *);

enum {
    DFTI_FORWARD_SCALE = 4, DFTI_BACKWARD_SCALE = 5, DFTI_NUMBER_OF_TRANSFORMS = 7,
    DFTI_CONJUGATE_EVEN_STORAGE = 10, DFTI_PLACEMENT = 11, DFTI_INPUT_DISTANCE = 14,
    DFTI_OUTPUT_DISTANCE = 15, DFTI_PACKED_FORMAT = 21, DFTI_THREAD_LIMIT = 27,
    DFTI_COMPLEX = 32, DFTI_REAL = 33, DFTI_COMPLEX_COMPLEX = 39, DFTI_NOT_INPLACE = 44,
    DFTI_CCE_FORMAT = 57
};

static dfti_create_fn dfti_create[2];
static dfti_set_fn dfti_set;
static dfti_commit_fn dfti_commit;
static dfti_compute_fn dfti_forward, dfti_backward;
static dfti_free_fn dfti_free;

void dfti_init(void *create_s, void *create_d, void *set, void *commit, void *forward,
               void *backward, void *free_) {
    dfti_create[0] = (dfti_create_fn)create_s;
    dfti_create[1] = (dfti_create_fn)create_d;
    dfti_set = (dfti_set_fn)set;
    dfti_commit = (dfti_commit_fn)commit;
    dfti_forward = (dfti_compute_fn)forward;
    dfti_backward = (dfti_compute_fn)backward;
    dfti_free = (dfti_free_fn)free_;
}

/* A committed out-of-place batched 1-D plan.  kind 0: real -> complex (forward,
 * unscaled); kind 1: complex -> real (backward, scaled 1 / n); kind 2: complex ->
 * complex, both directions scaled by `scale`.  Batches are contiguous rows.
 * Returns NULL (and the MKL status in *status) on failure. */
void *dfti_plan(int dbl, int kind, mkl_long n, mkl_long howmany, double scale, int threads,
                mkl_long *status) {
    dfti_handle h = 0;
    mkl_long st = dfti_create[dbl ? 1 : 0](&h, kind == 2 ? DFTI_COMPLEX : DFTI_REAL, n);
    mkl_long half = n / 2 + 1;
    if (st == 0) st = dfti_set(h, DFTI_PLACEMENT, DFTI_NOT_INPLACE);
    if (st == 0) st = dfti_set(h, DFTI_NUMBER_OF_TRANSFORMS, howmany);
    if (kind == 2) {
        if (st == 0) st = dfti_set(h, DFTI_INPUT_DISTANCE, n);
        if (st == 0) st = dfti_set(h, DFTI_OUTPUT_DISTANCE, n);
        if (st == 0) st = dfti_set(h, DFTI_FORWARD_SCALE, scale);
        if (st == 0) st = dfti_set(h, DFTI_BACKWARD_SCALE, scale);
    } else {
        if (st == 0) st = dfti_set(h, DFTI_CONJUGATE_EVEN_STORAGE, DFTI_COMPLEX_COMPLEX);
        if (st == 0) st = dfti_set(h, DFTI_PACKED_FORMAT, DFTI_CCE_FORMAT);
        /* distances are those of this plan's own input and output */
        if (st == 0) st = dfti_set(h, DFTI_INPUT_DISTANCE, kind == 0 ? n : half);
        if (st == 0) st = dfti_set(h, DFTI_OUTPUT_DISTANCE, kind == 0 ? half : n);
        if (kind == 1 && st == 0) st = dfti_set(h, DFTI_BACKWARD_SCALE, 1.0 / (double)n);
    }
    if (st == 0 && threads > 0) st = dfti_set(h, DFTI_THREAD_LIMIT, (mkl_long)threads);
    if (st == 0) st = dfti_commit(h);
    *status = st;
    if (st != 0) {
        if (h) dfti_free(&h);
        return 0;
    }
    return h;
}

/* Run a plan: forward (r2c, or c2c forward) or backward (c2r, or c2c backward). */
mkl_long dfti_run(void *plan, int forward, void *in, void *out) {
    return forward ? dfti_forward((dfti_handle)plan, in, out) : dfti_backward((dfti_handle)plan, in, out);
}

void dfti_release(void *plan) {
    dfti_handle h = (dfti_handle)plan;
    if (h) dfti_free(&h);
}

/* ------------------------------------------------------------------------------
 * One first-order group of a path, all its filter chunks in one call (the loops
 * of core._group_forward / core._group_backward with their element-wise kernels
 * and planned FFTs, without a Python round trip per chunk).  Chunk c holds the
 * filters [bounds[c], bounds[c + 1]); plans_inv[c] / plans_fwd[c] are the
 * committed plans of its inverse / forward real FFTs (length L, batched over the
 * chunk's rows); a kernel runs threaded when it touches at least par_min values.
 * Returns 0, or 2 when an FFT failed (the caller falls back to torch).
 * ------------------------------------------------------------------------------ */
#define GROUP_NT(n) ((n) < par_min ? 1 : nthreads)

/* Optional timing of the planned FFTs run inside the group kernels (for the
 * benchmarks' profiles: benchmarks/bench_matrix.py); off unless switched on. */
#include <time.h>
static int timing_on = 0;
static double timing_fft = 0.0;
static inline double wall_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
/* Switch the timing on (1) or off (0); either way the sum restarts at zero. */
void scrapl_timing(int on) { timing_on = on; timing_fft = 0.0; }
/* Seconds spent in the FFTs of the group kernels since scrapl_timing(1). */
double scrapl_timing_fft(void) { return timing_fft; }
static inline mkl_long timed_run(void *plan, int forward, void *in, void *out) {
    if (!timing_on) return dfti_run(plan, forward, in, out);
    double t0 = wall_now();
    mkl_long st = dfti_run(plan, forward, in, out);
    timing_fft += wall_now() - t0;
    return st;
}
#define DEFINE_GROUP(T, SUF)                                                             \
/* Forward: Z = window planes, P = irfft(Z) (2, rows, fc, L), U = |P|, S = rfft(U),    \
 * out[:, row0 + f0 + f] = second-order window of S.  With phasor[c] (not NULL), the  \
 * phasor P / U of the chunk's first n_grad rows is written there, (2, n_grad, fc, L). \
 * Scratch: Z (2 rows fcmax Lh 2), P (2 rows fcmax L), U (rows fcmax L), S (rows     \
 * fcmax Lh 2). */                                                                      \
int group_forward_##SUF(const T *ext, int64_t rows, int64_t E, const int64_t *idx,        \
                        const T *h2, int64_t W, int64_t L, int64_t nchunks,               \
                        const int64_t *bounds, void *const *plans_inv,                    \
                        void *const *plans_fwd, T *Z, T *P, T *U, T *S, T *const *phasor,  \
                        int64_t n_grad, T *out, int64_t n_out, int64_t width,             \
                        int64_t row0, const T *coef, const int64_t *segs, int64_t nseg,   \
                        int64_t par_min, int nthreads) {                                 \
    int64_t Lh = L / 2 + 1;                                                              \
    for (int64_t c = 0; c < nchunks; ++c) {                                              \
        int64_t f0 = bounds[c], fc = bounds[c + 1] - f0, n = rows * fc;                  \
        fill_planes_##SUF(ext, E, idx + f0 * W, h2 + f0 * W, W, Z, rows, fc, Lh,          \
                          GROUP_NT(4 * n * Lh));                                         \
        if (timed_run(plans_inv[c], 0, Z, P)) return 2;                                   \
        T *re = P, *im = P + n * L;                                                      \
        int64_t ng = phasor ? n_grad * fc : 0;                                           \
        if (ng) {                                                                       \
            T *ph = phasor[c];                                                           \
            modulus_##SUF(re, im, U, ph, ph + ng * L, ng, L, L, L, L, L, L, 1,           \
                          GROUP_NT(ng * L));                                             \
        }                                                                               \
        if (n > ng)                                                                     \
            modulus_##SUF(re + ng * L, im + ng * L, U + ng * L, re, im, n - ng, L, L, L, \
                          L, L, L, 0, GROUP_NT((n - ng) * L));                           \
        if (timed_run(plans_fwd[c], 1, U, S)) return 2;                                   \
        gather_segments_##SUF(S, rows, fc, Lh, out, n_out, width, row0 + f0, coef, segs, \
                              nseg, GROUP_NT(n * Lh));                                   \
    }                                                                                   \
    return 0;                                                                           \
}                                                                                       \
                                                                                        \
/* Backward, for B rows: G = gradient of S (zero outside [lo, hi): all of G when the   \
 * chunk width changes, else only [lo, hi) is re-zeroed), GU = irfft adjoint of G,    \
 * GP = phasor[c] * GU (2, B, fc, L), GZ = rfft(GP), gext += adjoint of the window     \
 * fill.  Scratch: G (B fcmax Lh 2), GU (B fcmax L), GP (2 B fcmax L),                 \
 * GZ (2 B fcmax Lh 2). */                                                              \
int group_backward_##SUF(const T *g, int64_t B, int64_t n_g, int64_t width, int64_t row0, \
                         const T *coef, const int64_t *segs, int64_t nseg, int64_t lo,    \
                         int64_t hi, int64_t L, int64_t nchunks, const int64_t *bounds,    \
                         void *const *plans_inv, void *const *plans_fwd, T *G, T *GU,      \
                         T *GP, T *GZ, T *const *phasor, const int64_t *idx, const T *h2,  \
                         int64_t W, T *gext, int64_t E, int64_t par_min, int nthreads) {   \
    int64_t Lh = L / 2 + 1, zeroed = -1;                                                 \
    for (int64_t c = 0; c < nchunks; ++c) {                                              \
        int64_t f0 = bounds[c], fc = bounds[c + 1] - f0, n = B * fc;                     \
        if (fc != zeroed) {                                                             \
            memset(G, 0, sizeof(T) * (size_t)(2 * n * Lh));                              \
            zeroed = fc;                                                                 \
        } else {                                                                        \
            for (int64_t r = 0; r < n; ++r)                                              \
                memset(G + 2 * (r * Lh + lo), 0, sizeof(T) * (size_t)(2 * (hi - lo)));   \
        }                                                                               \
        scatter_segments_##SUF(g, n_g, width, row0 + f0, coef, segs, nseg, G, B, fc, Lh, \
                               1, L % 2 == 0, GROUP_NT(n * Lh));                         \
        if (timed_run(plans_inv[c], 0, G, GU)) return 2;                                  \
        const T *ph = phasor[c];                                                         \
        int64_t m = n * L;                                                               \
        _Pragma("omp parallel for num_threads(GROUP_NT(2 * m)) schedule(static)")       \
        for (int64_t b = 0; b < (m + BLOCK - 1) / BLOCK; ++b) {                          \
            int64_t i0 = b * BLOCK, i1 = i0 + BLOCK < m ? i0 + BLOCK : m;                \
            _Pragma("omp simd")                                                         \
            for (int64_t i = i0; i < i1; ++i) {                                          \
                GP[i] = ph[i] * GU[i];                                                   \
                GP[m + i] = ph[m + i] * GU[i];                                           \
            }                                                                           \
        }                                                                               \
        if (timed_run(plans_fwd[c], 1, GP, GZ)) return 2;                                 \
        combine_add_##SUF(GZ, B, fc, Lh, idx + f0 * W, h2 + f0 * W, W, gext, E,          \
                          GROUP_NT(2 * n * Lh));                                         \
    }                                                                                   \
    return 0;                                                                           \
}

DEFINE_GROUP(float, f32)
DEFINE_GROUP(double, f64)

/* Version of this kernel interface (checked by native.py). */
int scrapl_kernels_abi(void) { return 11; }

#else /* SCRAPL_FREQ_T: the frequential kernels of one precision (see above) */

#if defined(__clang__)
#pragma clang fp contract(fast)
#elif defined(__GNUC__)
#pragma GCC push_options
#pragma GCC optimize("fp-contract=fast")
#endif

#define T SCRAPL_FREQ_T
#define V FN(freq_vec)
#define VL ((int64_t)(64 / sizeof(T)))
#define NT (FTB / VL)
typedef T V __attribute__((vector_size(64)));

static inline V FN(vload)(const T *p) { V v; memcpy(&v, p, sizeof v); return v; }
static inline void FN(vstore)(T *p, V v) { memcpy(p, &v, sizeof v); }

/* yr, yi (n, FTB) <- samples [s, s + m) of y2b (complex (n, T2)), zeros beyond m. */
static void FN(freq_load)(const T *y2b, int64_t n, int64_t T2, int64_t s, int64_t m, T *yr, T *yi) {
    for (int64_t k = 0; k < n; ++k) {
        const T *src = y2b + 2 * (k * T2 + s);
        T *a = yr + k * FTB, *c = yi + k * FTB;
        for (int64_t j = 0; j < m; ++j) { a[j] = src[2 * j]; c[j] = src[2 * j + 1]; }
        for (int64_t j = m; j < FTB; ++j) { a[j] = 0; c[j] = 0; }
    }
}

/* The operator in tiles of four rows: Mt[(tile * n + k) * 4 + q] = M[4 tile + q, k]
 * (zero for rows >= R), for the real and imaginary parts. */
static void FN(freq_tiles)(const T *Mr, const T *Mi, int64_t R, int64_t n, T *tr, T *ti) {
    int64_t tiles = (R + 3) / 4;
    for (int64_t tl = 0; tl < tiles; ++tl)
        for (int64_t k = 0; k < n; ++k)
            for (int64_t q = 0; q < 4; ++q) {
                int64_t r = 4 * tl + q;
                tr[(tl * n + k) * 4 + q] = r < R ? Mr[r * n + k] : 0;
                ti[(tl * n + k) * 4 + q] = r < R ? Mi[r * n + k] : 0;
            }
}

/* zr, zi (4, FTB): the tile's four rows of M y over the block (yr, yi). */
static inline void FN(freq_rows)(const T *tr, const T *ti, int64_t n, const T *yr, const T *yi, T *zr, T *zi) {
    for (int64_t t = 0; t < NT; ++t) {
        V r0 = {0}, r1 = {0}, r2 = {0}, r3 = {0}, i0 = {0}, i1 = {0}, i2 = {0}, i3 = {0};
        for (int64_t k = 0; k < n; ++k) {
            const V a = FN(vload)(yr + k * FTB + t * VL), b = FN(vload)(yi + k * FTB + t * VL);
            const T *p = tr + 4 * k, *q = ti + 4 * k;
            r0 += p[0] * a - q[0] * b; i0 += p[0] * b + q[0] * a;
            r1 += p[1] * a - q[1] * b; i1 += p[1] * b + q[1] * a;
            r2 += p[2] * a - q[2] * b; i2 += p[2] * b + q[2] * a;
            r3 += p[3] * a - q[3] * b; i3 += p[3] * b + q[3] * a;
        }
        FN(vstore)(zr + 0 * FTB + t * VL, r0); FN(vstore)(zi + 0 * FTB + t * VL, i0);
        FN(vstore)(zr + 1 * FTB + t * VL, r1); FN(vstore)(zi + 1 * FTB + t * VL, i1);
        FN(vstore)(zr + 2 * FTB + t * VL, r2); FN(vstore)(zi + 2 * FTB + t * VL, i2);
        FN(vstore)(zr + 3 * FTB + t * VL, r3); FN(vstore)(zi + 3 * FTB + t * VL, i3);
    }
}

/* P[q * Tc + c] += u[q] * w[c] lane by lane, summed over the block's NT vectors, for
 * the tile's nq rows (u: (4, FTB); w: rows c with stride sw) and the columns
 * c = (c0 + j) % Tc, j < nc (the block's band of the averaging).  Register tiles of
 * four rows by four columns. */
static inline void FN(freq_average)(const T *u, const T *w, int64_t sw, int64_t Tc, int64_t c0, int64_t nc,
                                    int64_t nq, V *P) {
    int64_t j = 0;
    if (nq == 4) {
        for (; j + 4 <= nc; j += 4) {
            int64_t ca = (c0 + j) % Tc, cb = (c0 + j + 1) % Tc, cc = (c0 + j + 2) % Tc, cd = (c0 + j + 3) % Tc;
            const T *wa = w + ca * sw, *wb = w + cb * sw, *wc = w + cc * sw, *wd = w + cd * sw;
            V a00 = {0}, a01 = {0}, a02 = {0}, a03 = {0}, a10 = {0}, a11 = {0}, a12 = {0}, a13 = {0};
            V a20 = {0}, a21 = {0}, a22 = {0}, a23 = {0}, a30 = {0}, a31 = {0}, a32 = {0}, a33 = {0};
            for (int64_t t = 0; t < NT; ++t) {
                const V u0 = FN(vload)(u + 0 * FTB + t * VL), u1 = FN(vload)(u + 1 * FTB + t * VL);
                const V u2 = FN(vload)(u + 2 * FTB + t * VL), u3 = FN(vload)(u + 3 * FTB + t * VL);
                const V w0 = FN(vload)(wa + t * VL), w1 = FN(vload)(wb + t * VL);
                const V w2 = FN(vload)(wc + t * VL), w3 = FN(vload)(wd + t * VL);
                a00 += u0 * w0; a01 += u0 * w1; a02 += u0 * w2; a03 += u0 * w3;
                a10 += u1 * w0; a11 += u1 * w1; a12 += u1 * w2; a13 += u1 * w3;
                a20 += u2 * w0; a21 += u2 * w1; a22 += u2 * w2; a23 += u2 * w3;
                a30 += u3 * w0; a31 += u3 * w1; a32 += u3 * w2; a33 += u3 * w3;
            }
            P[0 * Tc + ca] += a00; P[0 * Tc + cb] += a01; P[0 * Tc + cc] += a02; P[0 * Tc + cd] += a03;
            P[1 * Tc + ca] += a10; P[1 * Tc + cb] += a11; P[1 * Tc + cc] += a12; P[1 * Tc + cd] += a13;
            P[2 * Tc + ca] += a20; P[2 * Tc + cb] += a21; P[2 * Tc + cc] += a22; P[2 * Tc + cd] += a23;
            P[3 * Tc + ca] += a30; P[3 * Tc + cb] += a31; P[3 * Tc + cc] += a32; P[3 * Tc + cd] += a33;
        }
    }
    for (; j < nc; ++j) {
        int64_t c = (c0 + j) % Tc;
        for (int64_t q = 0; q < nq; ++q) {
            V acc = {0};
            for (int64_t t = 0; t < NT; ++t) acc += FN(vload)(u + q * FTB + t * VL) * FN(vload)(w + c * sw + t * VL);
            P[q * Tc + c] += acc;
        }
    }
}

/* gu[q, :] = sum_c g[q * Tc + c] w[c, :] over the block and the columns c = (c0 + j)
 * % Tc, j < nc (gu: (4, FTB), zero for rows q >= nq). */
static inline void FN(freq_average_adjoint)(const T *g, int64_t nq, const T *w, int64_t sw, int64_t Tc, int64_t c0,
                                            int64_t nc, T *gu) {
    const T *g0 = g, *g1 = g + (nq > 1 ? Tc : 0), *g2 = g + (nq > 2 ? 2 * Tc : 0), *g3 = g + (nq > 3 ? 3 * Tc : 0);
    const T k1 = nq > 1, k2 = nq > 2, k3 = nq > 3;
    for (int64_t t = 0; t < NT; ++t) {
        V a0 = {0}, a1 = {0}, a2 = {0}, a3 = {0};
        for (int64_t j = 0; j < nc; ++j) {
            int64_t c = (c0 + j) % Tc;
            const V x = FN(vload)(w + c * sw + t * VL);
            a0 += g0[c] * x; a1 += g1[c] * x; a2 += g2[c] * x; a3 += g3[c] * x;
        }
        FN(vstore)(gu + 0 * FTB + t * VL, a0);
        FN(vstore)(gu + 1 * FTB + t * VL, k1 * a1);
        FN(vstore)(gu + 2 * FTB + t * VL, k2 * a2);
        FN(vstore)(gu + 3 * FTB + t * VL, k3 * a3);
    }
}

/* Rows c of AT over samples [s, s + FTB): a pointer into AT, or (tail block, m <
 * FTB) into pad, a zero-padded copy; row stride returned in *stride. */
static const T *FN(freq_avg_rows)(const T *AT, int64_t Tc, int64_t sAT, int64_t s, int64_t m, T *pad,
                                  int64_t *stride) {
    if (m == FTB) { *stride = sAT; return AT + s; }
    for (int64_t c = 0; c < Tc; ++c) {
        for (int64_t j = 0; j < m; ++j) pad[c * FTB + j] = AT[c * sAT + s + j];
        for (int64_t j = m; j < FTB; ++j) pad[c * FTB + j] = 0;
    }
    *stride = FTB;
    return pad;
}

int FN(freq_forward)(const T *y2, int64_t B, int64_t n, int64_t T2, const T *Mr, const T *Mi, int64_t R,
                     const T *AT, int64_t Tc, int64_t sAT, const int64_t *band, T *out, int64_t nch,
                     int nthreads) {
    int64_t clen = (T2 + nch - 1) / nch, tiles = (R + 3) / 4;
    clen = (clen + FTB - 1) / FTB * FTB;
    /* per thread: yr, yi (n FTB each), zr, zi (4 FTB each), pad (Tc FTB), P (R Tc VL) */
    int64_t per = 2 * n * FTB + 8 * FTB + Tc * FTB + R * Tc * VL;
    per = (per + VL - 1) / VL * VL;
    double *part = (double *)calloc((size_t)(B * nch * R * Tc), sizeof(double));
    T *tiled = (T *)malloc(sizeof(T) * (size_t)(8 * tiles * n));
    T *scratch = (T *)aligned_alloc(64, sizeof(T) * (size_t)(nthreads * per));
    if (!part || !tiled || !scratch) { free(part); free(tiled); free(scratch); return 1; }
    T *tr = tiled, *ti = tiled + 4 * tiles * n;
    FN(freq_tiles)(Mr, Mi, R, n, tr, ti);
    _Pragma("omp parallel num_threads(nthreads)")
    {
        T *yr = scratch + THREAD_NUM() * per, *yi = yr + n * FTB, *zr = yi + n * FTB, *zi = zr + 4 * FTB;
        T *pad = zi + 4 * FTB;
        V *P = (V *)(void *)(pad + Tc * FTB);
        _Pragma("omp for schedule(static)")
        for (int64_t task = 0; task < B * nch; ++task) {
            int64_t b = task / nch, t0 = (task % nch) * clen;
            int64_t t1 = t0 + clen < T2 ? t0 + clen : T2;
            memset(P, 0, sizeof(V) * (size_t)(R * Tc));
            for (int64_t s = t0; s < t1; s += FTB) {
                int64_t m = t1 - s < FTB ? t1 - s : FTB, sw;
                FN(freq_load)(y2 + 2 * b * n * T2, n, T2, s, m, yr, yi);
                const T *w = FN(freq_avg_rows)(AT, Tc, sAT, s, m, pad, &sw);
                for (int64_t tl = 0; tl < tiles; ++tl) {
                    FN(freq_rows)(tr + 4 * tl * n, ti + 4 * tl * n, n, yr, yi, zr, zi);
                    int64_t nq = R - 4 * tl < 4 ? R - 4 * tl : 4;
                    _Pragma("omp simd")
                    for (int64_t j = 0; j < 4 * FTB; ++j)  /* u, in zr */
                        zr[j] = SCRAPL_FREQ_SQRT(zr[j] * zr[j] + zi[j] * zi[j]) + (T)1e-12;
                    FN(freq_average)(zr, w, sw, Tc, band ? band[2 * (s / FTB)] : 0, band ? band[2 * (s / FTB) + 1] : Tc,
                                     nq, P + 4 * tl * Tc);
                }
            }
            double *acc = part + task * R * Tc;
            for (int64_t i = 0; i < R * Tc; ++i) {
                double v = 0;
                for (int64_t l = 0; l < VL; ++l) v += (double)P[i][l];
                acc[i] = v;
            }
        }
    }
    for (int64_t b = 0; b < B; ++b)
        for (int64_t i = 0; i < R * Tc; ++i) {
            double v = 0;
            for (int64_t ch = 0; ch < nch; ++ch) v += part[(b * nch + ch) * R * Tc + i];
            out[b * R * Tc + i] = (T)v;
        }
    free(part);
    free(tiled);
    free(scratch);
    return 0;
}

int FN(freq_backward)(const T *y2, int64_t B, int64_t n, int64_t T2, const T *Mr, const T *Mi, int64_t R,
                      const T *AT, int64_t Tc, int64_t sAT, const int64_t *band, const T *g, T *gy2, int64_t nch,
                      int nthreads) {
    int64_t clen = (T2 + nch - 1) / nch, tiles = (R + 3) / 4;
    clen = (clen + FTB - 1) / FTB * FTB;
    /* per thread: yr, yi, gr, gi (n FTB each), zr, zi, gu (4 FTB each), pad (Tc FTB) */
    int64_t per = 4 * n * FTB + 12 * FTB + Tc * FTB;
    per = (per + VL - 1) / VL * VL;
    T *tiled = (T *)malloc(sizeof(T) * (size_t)(8 * tiles * n));
    T *scratch = (T *)aligned_alloc(64, sizeof(T) * (size_t)(nthreads * per));
    if (!tiled || !scratch) { free(tiled); free(scratch); return 1; }
    T *tr = tiled, *ti = tiled + 4 * tiles * n;
    FN(freq_tiles)(Mr, Mi, R, n, tr, ti);
    _Pragma("omp parallel num_threads(nthreads)")
    {
        T *yr = scratch + THREAD_NUM() * per, *yi = yr + n * FTB, *gr = yi + n * FTB, *gi = gr + n * FTB;
        T *zr = gi + n * FTB, *zi = zr + 4 * FTB, *gu = zi + 4 * FTB, *pad = gu + 4 * FTB;
        _Pragma("omp for schedule(static)")
        for (int64_t task = 0; task < B * nch; ++task) {
            int64_t b = task / nch, t0 = (task % nch) * clen;
            int64_t t1 = t0 + clen < T2 ? t0 + clen : T2;
            for (int64_t s = t0; s < t1; s += FTB) {
                int64_t m = t1 - s < FTB ? t1 - s : FTB, sw;
                FN(freq_load)(y2 + 2 * b * n * T2, n, T2, s, m, yr, yi);
                const T *w = FN(freq_avg_rows)(AT, Tc, sAT, s, m, pad, &sw);
                memset(gr, 0, sizeof(T) * (size_t)(2 * n * FTB));
                for (int64_t tl = 0; tl < tiles; ++tl) {
                    FN(freq_rows)(tr + 4 * tl * n, ti + 4 * tl * n, n, yr, yi, zr, zi);
                    int64_t nq = R - 4 * tl < 4 ? R - 4 * tl : 4;
                    FN(freq_average_adjoint)(g + (b * R + 4 * tl) * Tc, nq, w, sw, Tc,
                                             band ? band[2 * (s / FTB)] : 0, band ? band[2 * (s / FTB) + 1] : Tc, gu);
                    _Pragma("omp simd")
                    for (int64_t j = 0; j < 4 * FTB; ++j) {  /* g y / |y|, in zr, zi (0 for rows >= R) */
                        T sc = gu[j] / (SCRAPL_FREQ_SQRT(zr[j] * zr[j] + zi[j] * zi[j]) + (T)1e-12);
                        zr[j] *= sc; zi[j] *= sc;
                    }
                    const T *p = tr + 4 * tl * n, *q = ti + 4 * tl * n;
                    for (int64_t t = 0; t < NT; ++t) {
                        const V a0 = FN(vload)(zr + 0 * FTB + t * VL), b0 = FN(vload)(zi + 0 * FTB + t * VL);
                        const V a1 = FN(vload)(zr + 1 * FTB + t * VL), b1 = FN(vload)(zi + 1 * FTB + t * VL);
                        const V a2 = FN(vload)(zr + 2 * FTB + t * VL), b2 = FN(vload)(zi + 2 * FTB + t * VL);
                        const V a3 = FN(vload)(zr + 3 * FTB + t * VL), b3 = FN(vload)(zi + 3 * FTB + t * VL);
                        for (int64_t k = 0; k < n; ++k) {
                            const T *pk = p + 4 * k, *qk = q + 4 * k;
                            V xr = FN(vload)(gr + k * FTB + t * VL), xi = FN(vload)(gi + k * FTB + t * VL);
                            xr += pk[0] * a0 + qk[0] * b0 + pk[1] * a1 + qk[1] * b1
                                + pk[2] * a2 + qk[2] * b2 + pk[3] * a3 + qk[3] * b3;
                            xi += pk[0] * b0 - qk[0] * a0 + pk[1] * b1 - qk[1] * a1
                                + pk[2] * b2 - qk[2] * a2 + pk[3] * b3 - qk[3] * a3;
                            FN(vstore)(gr + k * FTB + t * VL, xr);
                            FN(vstore)(gi + k * FTB + t * VL, xi);
                        }
                    }
                }
                for (int64_t k = 0; k < n; ++k) {
                    T *dst = gy2 + 2 * ((b * n + k) * T2 + s);
                    const T *pr = gr + k * FTB, *pi = gi + k * FTB;
                    for (int64_t j = 0; j < m; ++j) { dst[2 * j] = pr[j]; dst[2 * j + 1] = pi[j]; }
                }
            }
        }
    }
    free(tiled);
    free(scratch);
    return 0;
}

#undef T
#undef V
#undef VL
#undef NT
#if !defined(__clang__) && defined(__GNUC__)
#pragma GCC pop_options
#endif

#endif /* SCRAPL_FREQ_T */
