/* SPDX-License-Identifier: MIT */
/*
 * exec_int.h — the executor's private structures: thread pool, GEMM front
 * end, execution plan and session (see exec_plan.c for the planning essay).
 */
#ifndef IMS_NN_EXEC_INT_H
#define IMS_NN_EXEC_INT_H

#include "kernels/kernels.h"
#include "nn_int.h"

/* ---- exec_pool.c: a fixed pool of worker threads ------------------------- */

typedef struct ims__pool ims__pool;
/* fn(ctx, begin, end) processes items [begin, end) of a parallel loop. */
typedef void (*ims__range_fn)(void *ctx, int64_t begin, int64_t end);

/* n_threads >= 1 (the caller counts as one: n_threads - 1 workers start). */
int ims__pool_new(int n_threads, ims__pool **out);
void ims__pool_free(ims__pool *p);
int ims__pool_threads(const ims__pool *p); /* 1 for a NULL pool */
/* Run fn over [0, n) split into chunks of at least `grain` items on all
 * threads of p (p may be NULL: one call on the caller's thread). Returns
 * when every chunk is done. Not reentrant. Each item must be computed the
 * same way whatever the split, so results do not depend on thread count. */
void ims__pool_for(ims__pool *p, int64_t n, int64_t grain, ims__range_fn fn, void *ctx);
/* The same with chunks of exactly `chunk` items, claimed in index order
 * (so items are started in order, whichever thread runs them). */
void ims__pool_for_chunk(ims__pool *p, int64_t n, int64_t chunk, ims__range_fn fn, void *ctx);
/* Index of the calling thread within its pool: 0 for the caller of
 * ims__pool_for, 1..n_threads-1 for workers. */
int ims__pool_tid(void);

/* ---- gemm.c --------------------------------------------------------------- */

/* Once per process, before any ims__gemm: OpenBLAS to one thread (its
 * thread count is process-global; our pool does the splitting). */
void ims__gemm_init(void);
/* C[M x N] = A[M x K] . B[K x N] (row-major, leading dimensions), then
 * C = act(C + bias) per column. Large products go to single-threaded
 * OpenBLAS cblas_sgemm, small ones to the kernel table's own GEMM, both
 * over a fixed grid of blocks of C run by the pool (bit-identical results
 * for any thread count). */
void ims__gemm(const ims__nn_kernels *k, ims__pool *pool, int M, int N, int K,
               const float *A, int lda, const float *B, int ldb, float *C, int ldc,
               const float *bias, int act, float act_max);
/* C = act(A . B + bias) with B and bias packed by ims__pack_b: the own
 * AVX2 path for convolutions (weights packed once per session, bias and
 * activation applied in registers). Split over (row block, panel group)
 * tasks on the pool. */
/* fill(ctx, row0, rows, dst) writes rows [row0, row0+rows) of A (K floats
 * each, contiguous) to dst: im2col done per row block, in cache, by the
 * thread that multiplies it. */
typedef void (*ims__fill_fn)(const void *ctx, int64_t row0, int rows, float *dst);
typedef struct ims__gemm_a {
    const float *A;    /* A itself (fill == NULL), row stride lda */
    int lda;
    ims__fill_fn fill; /* or rows produced on demand into per-thread scratch */
    const void *ctx;
    float *scratch; /* n_threads blocks of `slot` floats, one per pool tid */
    size_t slot;    /* floats per thread block (>= ims__gemm_mc(k, K)*K of every conv) */
} ims__gemm_a;
void ims__gemm_packed(const ims__nn_kernels *k, ims__pool *pool, int M, int N, int K,
                      const ims__gemm_a *a, const float *Bp, const float *bias_p, float *C,
                      int ldc, int act, float act_max);
/* Rows per block of A for a depth of K with kernel table k (the block
 * stays in L2; a multiple of k->mr). */
int ims__gemm_mc(const ims__nn_kernels *k, int K);
/* Floats ims__pack_b writes for a K x N matrix (panels, then the bias). */
size_t ims__packed_size(int K, int N);
/* Pack B (K x N, row-major) and bias (N floats or NULL) into dst (64-byte
 * aligned, ims__packed_size floats); the packed bias follows the panels. */
void ims__pack_b(const float *B, const float *bias, int K, int N, float *dst);

/* ---- ops_winograd.c: F(2x2, 3x3) for stride-1 3x3 convolutions ---------- */

/* The planner's rule (shape only): 3x3, stride 1, dilation 1, output >= 16x16. */
int ims__wino_ok(const ims__node *n, int cin);
/* Tiles per task block for kernel table k. */
int ims__wino_mt(const ims__nn_kernels *k, int cin);
/* Floats of per-thread scratch one Winograd convolution needs. */
size_t ims__wino_scratch(const ims__nn_kernels *k, int cin, int cout);
/* Floats of packed weights: 16 transformed kernels, each as ims__pack_b. */
size_t ims__wino_packed_size(int cin, int cout);
/* Transform and pack the HWIO 3x3 kernel W (tmp: cin*cout floats). */
void ims__wino_pack(const float *W, int cin, int cout, float *tmp, float *dst);

/* Products with M*N*K below this many multiply-adds use the own kernel. */
#define IMS_GEMM_BLAS_MIN_MACS (64 * 64 * 64)

/* ---- session.c ------------------------------------------------------------ */

/* The engine's environment switches, read once per process (pthread_once,
 * at the first session) and never again: getenv is not safe against a
 * concurrent setenv, and does not belong in a hot path. */
typedef struct ims__nn_env {
    int no_pack;      /* IMS_NN_GEMM=blas: no packed GEMM, OpenBLAS for every product */
    int no_fuse;      /* IMS_NN_FUSE=0: no fused blocks at all */
    int no_fuse_proj; /* IMS_NN_FUSE=1: expansion + depthwise only, no projection (+ residual) */
    int profile;      /* IMS_NN_PROFILE=1: per-node times on stderr at session free */
    int no_wino;      /* IMS_NN_WINOGRAD=0: stride-1 3x3 convolutions by im2col, not Winograd */
} ims__nn_env;
/* The settings (also runs ims__gemm_init once); never NULL. */
const ims__nn_env *ims__nn_env_get(void);
/* Tests only: replace the settings for sessions created afterwards. Not
 * thread-safe: call while no other thread uses the library. */
void ims__nn_env_set(const ims__nn_env *e);

/* ---- exec_plan.c / exec.c ------------------------------------------------- */

/* Where a node's output lives: arena + off (or the caller's input for node
 * 0); pixel p of image n at base + (n*h*w + p)*ld. */
typedef struct ims__view {
    int64_t off;  /* float offset into the arena (-1: the caller's input) */
    int32_t ld;   /* floats between consecutive pixels (>= c) */
    int32_t root; /* node owning the storage (self, a concat, an in-place input) */
} ims__view;

/* Per-node plan kinds: skipped (unneeded, folded PAD), run, pure view of
 * another node's storage, or fused into its consumer (a 1x1 expansion
 * computed row by row inside the depthwise convolution that reads it; a
 * depthwise convolution, and the projection before a residual ADD, computed
 * a few rows at a time inside the block's last node: see ops_conv.c). */
enum { IMS_X_SKIP = 0, IMS_X_RUN = 1, IMS_X_VIEW = 2, IMS_X_FUSED = 3 };

struct ims_nn_session {
    const ims_nn_model *m;
    const ims__graph *g;
    const ims__nn_kernels *k;
    int max_batch, n_threads, want_probs;
    ims__pool *pool;
    /* plan, per graph node */
    uint8_t *kind;       /* IMS_X_* : skipped (unneeded, folded PAD), run, pure view */
    ims__view *view;
    uint32_t *in0;       /* first input after folding PADs into convolutions */
    int32_t *pads;       /* 4 per node: effective t, b, l, r */
    int32_t *tap_of;     /* per node: index of the first tap it feeds, -1 */
    int32_t *fuse_src;   /* per depthwise node: the fused 1x1 expansion, -1 */
    int32_t *fuse_dw;    /* per projection / residual ADD ending a fused block: its depthwise, -1 */
    float *fring;        /* per thread: 3-row ring of expansion rows (fused blocks) */
    size_t n_fring;      /* floats per thread */
    float *fbuf;         /* per thread: depthwise output rows of a fused block */
    size_t n_fbuf;       /* floats per thread */
    const float **frows; /* per thread: input row pointers (max_rows each) */
    int max_rows;
    /* taps */
    int n_taps;
    uint32_t *taps;      /* node per tap */
    int32_t *tap_off;    /* feature offset per tap */
    int dim;
    /* memory */
    float *arena;        /* activations, planned by liveness */
    size_t n_arena;      /* floats */
    float *packed;       /* convolution weights packed for ims__gemm_packed */
    int64_t *pack_off;   /* per node: float offset into packed, -1 = not packed */
    uint8_t *wino;       /* per node: 1 = Winograd F(2x2,3x3) (packed as ims__wino_pack) */
    float *tscratch;     /* per-thread im2col blocks for ims__gemm_packed (or Winograd) */
    size_t n_tscratch;   /* floats per thread block (the largest conv's mc*K) */
    float *scratch;      /* im2col rows / gathers */
    size_t n_scratch;    /* floats */
    int n_ctx;           /* arenas / scratches: n_threads for image-parallel runs, or 1 */
    double *prof;        /* IMS_NN_PROFILE=1: seconds per node (single-context runs) */
    long prof_images;    /* images those seconds cover */
};

/* One execution context: what the ops see while running the graph over n
 * images (always 1 today) with one arena. Image-parallel runs give every
 * thread its own context (pool NULL, own arena and scratch); otherwise one
 * context uses the pool inside each op. */
typedef struct ims__run {
    const ims__graph *g;
    const ims__nn_kernels *k;
    ims__pool *pool;         /* NULL: single-threaded ops */
    const uint8_t *kind;     /* plan (copied from the session) */
    const ims__view *view;
    const uint32_t *in0;
    const int32_t *pads;
    const int64_t *pack_off;
    const float *packed;
    const uint8_t *wino;
    const int32_t *fuse_src, *fuse_dw;
    float *fring, *fbuf;
    size_t n_fring, n_fbuf;
    const float **frows;
    int max_rows;
    float *arena, *scratch, *tscratch;
    size_t n_scratch, n_tscratch;
    const float *input;
    int n;
} ims__run;

/* Build the plan and allocate memory for s (fields m, g, k, max_batch,
 * n_threads and the taps already set). */
int ims__plan(ims_nn_session *s, ims_error *err);
/* Execute one node for s->n images. */
void ims__exec_node(ims__run *s, uint32_t i);
/* Pointer to image 0 of node i's output. */
static inline float *ims__out_ptr(const ims__run *s, uint32_t i)
{
    return s->view[i].off < 0 ? (float *)s->input : s->arena + s->view[i].off;
}

/* A node's output as seen by an op: n images of h x w pixels, pixel stride
 * ld, image stride h*w*ld. */
typedef struct ims__tensor {
    float *p;
    int n, h, w, c, ld;
} ims__tensor;

static inline ims__tensor ims__tensor_of(const ims__run *s, uint32_t i)
{
    const ims__node *nd = &s->g->nodes[i];
    ims__tensor t = {ims__out_ptr(s, i), s->n, nd->h, nd->w, nd->c, s->view[i].ld};
    return t;
}
static inline int64_t ims__img_stride(const ims__tensor *t)
{
    return (int64_t)t->h * t->w * t->ld;
}
static inline const float *ims__weights(const ims__run *s, int64_t off)
{
    return off >= 0 ? s->g->weights + off : NULL;
}

/* ops_*.c: execute node i of s (inputs from the plan, output to its view). */
void ims__op_conv2d(ims__run *s, uint32_t i);
void ims__op_conv_winograd(ims__run *s, uint32_t i); /* ops_winograd.c */
void ims__op_dwconv2d(ims__run *s, uint32_t i);
/* A fused block [1x1 expansion] -> 3x3 depthwise -> 1x1 projection [-> ADD]
 * ending at node i (s->fuse_dw[i] >= 0); ops_conv.c. */
void ims__op_fused_block(ims__run *s, uint32_t i);
/* Output rows per depthwise group of a fused block whose depthwise output
 * is out_h x out_w, run over n images on `threads` threads (the most for
 * threads = n = 1). Any value gives the same bits; it only sizes the work. */
int ims__fuse_rows(int out_h, int out_w, int n, int threads);
void ims__op_dense(ims__run *s, uint32_t i);
void ims__op_pool(ims__run *s, uint32_t i); /* MAXPOOL, AVGPOOL */
void ims__op_gap(ims__run *s, uint32_t i);
/* Mean over pixels of x for each image into out[n * ld_out + j]. */
void ims__gap_into(ims__run *s, const ims__tensor *x, float *out, int ld_out);
void ims__op_add(ims__run *s, uint32_t i);
void ims__op_concat(ims__run *s, uint32_t i);
void ims__op_pad(ims__run *s, uint32_t i);
void ims__op_affine(ims__run *s, uint32_t i); /* AFFINE, ACT */
void ims__op_softmax(ims__run *s, uint32_t i);
void ims__op_reshape(ims__run *s, uint32_t i);
void ims__op_l2norm(ims__run *s, uint32_t i);

#endif /* IMS_NN_EXEC_INT_H */
