/* SPDX-License-Identifier: MIT */
/*
 * wino_tile.h — the Winograd F(2x2, 3x3) tile transforms (see
 * ops_winograd.c), written once over a vector type and included by ref.c,
 * avx2.c and avx512.c, each of which defines first:
 *   WT_VEC            the vector type, WT_LANES floats
 *   WT_MASK(n)        a mask value for the first n (1..WT_LANES) lanes
 *   WT_LD(m, p)       masked load (lanes off -> 0), WT_ST(m, p, v) masked store
 *   WT_ADD, WT_SUB    lane-wise a + b, a - b
 *   WT_SET1(x)        broadcast
 *   WT_ACT(v, act, lo, hi)  ReLU / ReLU6 (act 1) or nothing
 * Every lane is computed with the same float operations in the same
 * order at every level (adds and subtracts only, no FMA), so the
 * transforms themselves give the same bits everywhere.
 */

/* v[xi * st + c] = (B^T d B)[xi] for the channels c < C of one 4x4 input
 * tile, d[a*4+b] pointing at pixel (a, b) (a zero pixel for padding);
 * B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1]. */
static void wino_in(const float *const *d, int C, float *v, size_t st)
{
    for (int c = 0; c < C; c += WT_LANES) {
        const WT_MASK_T m = WT_MASK(C - c < WT_LANES ? C - c : WT_LANES);
        WT_VEC t[4][4];
        for (int b = 0; b < 4; b++) { /* B^T d, column b */
            WT_VEC d0 = WT_LD(m, d[b] + c), d1 = WT_LD(m, d[4 + b] + c);
            WT_VEC d2 = WT_LD(m, d[8 + b] + c), d3 = WT_LD(m, d[12 + b] + c);
            t[0][b] = WT_SUB(d0, d2), t[1][b] = WT_ADD(d1, d2);
            t[2][b] = WT_SUB(d2, d1), t[3][b] = WT_SUB(d1, d3);
        }
        for (int a = 0; a < 4; a++) { /* (B^T d) B, row a */
            float *p = v + (size_t)(a * 4) * st + c;
            WT_ST(m, p, WT_SUB(t[a][0], t[a][2]));
            WT_ST(m, p + st, WT_ADD(t[a][1], t[a][2]));
            WT_ST(m, p + 2 * st, WT_SUB(t[a][2], t[a][1]));
            WT_ST(m, p + 3 * st, WT_SUB(t[a][1], t[a][3]));
        }
    }
}

/* o[a*2+b][c] = act((A^T M A)[a][b] + bias[c]) for the channels c < C of
 * one tile, M[xi] at mm + xi * st; o[i] NULL = outside the output (not
 * written); A^T = [1 1 1 0; 0 1 -1 -1]. */
static void wino_out(const float *mm, size_t st, int C, const float *bias, int act, float act_max,
                     float *const *o)
{
    const WT_VEC lo = WT_SET1(0.0f), hi = WT_SET1(act_max > 0 ? act_max : INFINITY);
    const int av = act == 1;
    for (int c = 0; c < C; c += WT_LANES) {
        const WT_MASK_T m = WT_MASK(C - c < WT_LANES ? C - c : WT_LANES);
        WT_VEC s[2][4];
        for (int b = 0; b < 4; b++) { /* A^T M, column b */
            WT_VEC m0 = WT_LD(m, mm + (size_t)b * st + c);
            WT_VEC m1 = WT_LD(m, mm + (size_t)(4 + b) * st + c);
            WT_VEC m2 = WT_LD(m, mm + (size_t)(8 + b) * st + c);
            WT_VEC m3 = WT_LD(m, mm + (size_t)(12 + b) * st + c);
            s[0][b] = WT_ADD(WT_ADD(m0, m1), m2);
            s[1][b] = WT_SUB(WT_SUB(m1, m2), m3);
        }
        const WT_VEC bb = bias ? WT_LD(m, bias + c) : WT_SET1(0.0f);
        for (int a = 0; a < 2; a++) {
            WT_VEC y0 = WT_ADD(WT_ADD(WT_ADD(s[a][0], s[a][1]), s[a][2]), bb);
            WT_VEC y1 = WT_ADD(WT_SUB(WT_SUB(s[a][1], s[a][2]), s[a][3]), bb);
            if (o[a * 2])
                WT_ST(m, o[a * 2] + c, WT_ACT(y0, av, lo, hi));
            if (o[a * 2 + 1])
                WT_ST(m, o[a * 2 + 1] + c, WT_ACT(y1, av, lo, hi));
        }
    }
    if (act > 1) /* sigmoid / tanh: scalar, rare */
        for (int i = 0; i < 4; i++)
            for (int c = 0; o[i] && c < C; c++)
                o[i][c] = ims__act1(o[i][c], act, act_max);
}
