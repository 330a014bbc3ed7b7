/* SPDX-License-Identifier: MIT */
/*
 * ops_elem.c — pixel-wise ops: ADD, CONCAT, PAD, AFFINE, ACT, SOFTMAX and
 * RESHAPE. Work is split over pixels of the whole batch (a pixel of image n
 * at index n*h*w + p), channels innermost. ADD, ACT and AFFINE may run in
 * place (output view == an input view; every element is read before it is
 * written). CONCAT copies only the inputs that the planner could not place
 * in their slice already.
 */
#include <math.h>
#include <string.h>

#include "exec_int.h"

typedef struct elem_job {
    const ims__run *s;
    const ims__node *nd;
    ims__tensor y;
    uint32_t i;
} elem_job;

/* Pointer to pixel q (batch-wide index) of a tensor. */
static inline float *px(const ims__tensor *t, int64_t q)
{
    int64_t P = (int64_t)t->h * t->w;
    return t->p + (q / P) * ims__img_stride(t) + (q % P) * t->ld;
}

static void add_items(void *ctx, int64_t b, int64_t e)
{
    const elem_job *j = ctx;
    const uint32_t *in = ims__node_inputs(j->s->g, j->nd);
    const int C = j->y.c, n_in = (int)j->nd->n_inputs;
    /* whole runs of pixels when every operand is contiguous (ld == c) */
    int flat = j->y.ld == C;
    for (int k = 0; k < n_in && flat; k++)
        flat = j->s->view[in[k]].ld == C;
    int64_t step = flat ? e - b : 1;
    for (int64_t q = b; q < e; q += step) {
        float *o = px(&j->y, q);
        int kb = 0; /* the input computed in place, if any, is the base */
        for (int k = 0; k < n_in; k++) {
            ims__tensor xk = ims__tensor_of(j->s, in[k]);
            if (px(&xk, q) == o)
                kb = k;
        }
        ims__tensor xb = ims__tensor_of(j->s, in[kb]);
        const float *a = px(&xb, q);
        if (o != a)
            memcpy(o, a, (size_t)(C * step) * sizeof(float));
        for (int k = 0; k < n_in; k++) {
            if (k == kb)
                continue;
            ims__tensor xk = ims__tensor_of(j->s, in[k]);
            j->s->k->vadd(o, px(&xk, q), C * step);
        }
        if (j->nd->act)
            j->s->k->bias_act(o, step, C, C, NULL, (int)j->nd->act, j->nd->act_max);
    }
}

void ims__op_add(ims__run *s, uint32_t i)
{
    elem_job j = {s, &s->g->nodes[i], ims__tensor_of(s, i), i};
    ims__pool_for(s->pool, (int64_t)s->n * j.y.h * j.y.w, 256, add_items, &j);
}

static void concat_items(void *ctx, int64_t b, int64_t e)
{
    const elem_job *j = ctx;
    const uint32_t *in = ims__node_inputs(j->s->g, j->nd);
    int c0 = 0;
    for (uint32_t k = 0; k < j->nd->n_inputs; k++) {
        ims__tensor xk = ims__tensor_of(j->s, in[k]);
        if (xk.p != j->y.p + c0 || xk.ld != j->y.ld) /* not already in its slice */
            for (int64_t q = b; q < e; q++)
                memcpy(px(&j->y, q) + c0, px(&xk, q), (size_t)xk.c * sizeof(float));
        c0 += xk.c;
    }
}

void ims__op_concat(ims__run *s, uint32_t i)
{
    elem_job j = {s, &s->g->nodes[i], ims__tensor_of(s, i), i};
    ims__pool_for(s->pool, (int64_t)s->n * j.y.h * j.y.w, 256, concat_items, &j);
}

static void pad_items(void *ctx, int64_t b, int64_t e)
{
    const elem_job *j = ctx;
    const ims__node *nd = j->nd;
    ims__tensor x = ims__tensor_of(j->s, j->s->in0[j->i]);
    const int64_t P = (int64_t)j->y.h * j->y.w;
    for (int64_t q = b; q < e; q++) {
        int img = (int)(q / P), p = (int)(q % P), oy = p / j->y.w, ox = p % j->y.w;
        int iy = oy - nd->pad_t, ix = ox - nd->pad_l;
        float *o = px(&j->y, q);
        if (iy < 0 || iy >= x.h || ix < 0 || ix >= x.w)
            memset(o, 0, (size_t)j->y.c * sizeof(float));
        else
            memcpy(o, x.p + img * ims__img_stride(&x) + ((int64_t)iy * x.w + ix) * x.ld,
                   (size_t)j->y.c * sizeof(float));
    }
}

void ims__op_pad(ims__run *s, uint32_t i)
{
    elem_job j = {s, &s->g->nodes[i], ims__tensor_of(s, i), i};
    ims__pool_for(s->pool, (int64_t)s->n * j.y.h * j.y.w, 256, pad_items, &j);
}

static void affine_items(void *ctx, int64_t b, int64_t e)
{
    const elem_job *j = ctx;
    const ims__node *nd = j->nd;
    ims__tensor x = ims__tensor_of(j->s, j->s->in0[j->i]);
    const int C = j->y.c, affine = nd->op == IMS_OP_AFFINE;
    const float *sc = affine ? ims__weights(j->s, nd->weight) : NULL;
    const float *sh = affine ? ims__weights(j->s, nd->bias) : NULL;
    const int sc_all = affine && nd->n_weight == C, sh_all = sh && nd->n_bias == C;
    if (affine && !sc_all && !sh_all && x.ld == C && j->y.ld == C) { /* scalars: flat */
        float *o = px(&j->y, b);
        j->s->k->vscale(o, px(&x, b), (e - b) * C, sc[0], sh ? sh[0] : 0.0f);
        if (nd->act)
            j->s->k->bias_act(o, e - b, C, C, NULL, (int)nd->act, nd->act_max);
        return;
    }
    for (int64_t q = b; q < e; q++) {
        float *o = px(&j->y, q);
        const float *a = px(&x, q);
        if (affine)
            for (int c = 0; c < C; c++)
                o[c] = a[c] * sc[sc_all ? c : 0] + (sh ? sh[sh_all ? c : 0] : 0.0f);
        else if (o != a)
            memmove(o, a, (size_t)C * sizeof(float));
        if (nd->act)
            j->s->k->bias_act(o, 1, C, C, NULL, (int)nd->act, nd->act_max);
    }
}

void ims__op_affine(ims__run *s, uint32_t i)
{
    elem_job j = {s, &s->g->nodes[i], ims__tensor_of(s, i), i};
    ims__pool_for(s->pool, (int64_t)s->n * j.y.h * j.y.w, 256, affine_items, &j);
}

void ims__op_softmax(ims__run *s, uint32_t i)
{
    ims__tensor x = ims__tensor_of(s, s->in0[i]), y = ims__tensor_of(s, i);
    for (int n = 0; n < s->n; n++) {
        const float *a = x.p + n * ims__img_stride(&x);
        float *o = y.p + n * ims__img_stride(&y);
        float mx = a[0];
        for (int c = 1; c < y.c; c++)
            mx = a[c] > mx ? a[c] : mx;
        double sum = 0;
        for (int c = 0; c < y.c; c++) {
            o[c] = expf(a[c] - mx);
            sum += o[c];
        }
        float inv = (float)(1.0 / sum);
        for (int c = 0; c < y.c; c++)
            o[c] *= inv;
    }
}

void ims__op_reshape(ims__run *s, uint32_t i)
{
    ims__tensor x = ims__tensor_of(s, s->in0[i]), y = ims__tensor_of(s, i);
    for (int n = 0; n < s->n; n++)
        for (int64_t p = 0; p < (int64_t)x.h * x.w; p++)
            memcpy(y.p + n * ims__img_stride(&y) + p * x.c,
                   x.p + n * ims__img_stride(&x) + p * x.ld, (size_t)x.c * sizeof(float));
}

/* The formula of the train module's heads (ims__inv_l2), so an encoder's
 * normalisations round as ims_train_apply's do. */
void ims__op_l2norm(ims__run *s, uint32_t i)
{
    ims__tensor x = ims__tensor_of(s, s->in0[i]), y = ims__tensor_of(s, i);
    for (int n = 0; n < s->n; n++) {
        const float *a = x.p + n * ims__img_stride(&x);
        float *o = y.p + n * ims__img_stride(&y);
        float inv = ims__inv_l2(a, y.c);
        for (int c = 0; c < y.c; c++)
            o[c] = a[c] * inv;
    }
}
