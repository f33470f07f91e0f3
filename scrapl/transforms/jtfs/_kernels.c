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
/* out = sqrt(re^2 + im^2) + 1e-12 over (rows, cols) with row strides; when save,     \
 * also re /= out, im /= out (the phasor) in place. */                                  \
void modulus_##SUF(T *re, T *im, T *out, int64_t rows, int64_t cols, int64_t s_re,       \
                   int64_t s_im, int64_t s_out, int save, int nthreads) {               \
    int64_t nb = (cols + BLOCK - 1) / BLOCK;                                             \
    _Pragma("omp parallel for num_threads(nthreads) schedule(static)")                  \
    for (int64_t t = 0; t < rows * nb; ++t) {                                            \
        int64_t r, c0, c1;                                                               \
        row_block(t, nb, cols, &r, &c0, &c1);                                            \
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

/* Version of this kernel interface (checked by native.py). */
int scrapl_kernels_abi(void) { return 5; }
