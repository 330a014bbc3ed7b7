/* SPDX-License-Identifier: MIT */
/*
 * exec.c — running a planned session: nodes in order, each through its op,
 * then the taps produced by the node are pooled into the feature rows and
 * the classifier output copied out, so no buffer needs to outlive its
 * readers (see exec_plan.c).
 */
#include <string.h>

#include "exec_int.h"

void ims__exec_node(ims__run *s, uint32_t i)
{
    if (s->fuse_dw && s->fuse_dw[i] >= 0) { /* the last node of a fused block runs it */
        ims__op_fused_block(s, i);
        return;
    }
    switch (s->g->nodes[i].op) {
    case IMS_OP_CONV2D: ims__op_conv2d(s, i); break;
    case IMS_OP_DWCONV2D: ims__op_dwconv2d(s, i); break;
    case IMS_OP_DENSE: ims__op_dense(s, i); break;
    case IMS_OP_MAXPOOL:
    case IMS_OP_AVGPOOL: ims__op_pool(s, i); break;
    case IMS_OP_GAP: ims__op_gap(s, i); break;
    case IMS_OP_ADD: ims__op_add(s, i); break;
    case IMS_OP_CONCAT: ims__op_concat(s, i); break;
    case IMS_OP_PAD: ims__op_pad(s, i); break;
    case IMS_OP_AFFINE:
    case IMS_OP_ACT: ims__op_affine(s, i); break;
    case IMS_OP_SOFTMAX: ims__op_softmax(s, i); break;
    case IMS_OP_RESHAPE: ims__op_reshape(s, i); break;
    case IMS_OP_L2NORM:
        ims__op_l2norm(s, i);
        break;
    default: IMS_ASSERT(!"unknown op (graph not validated?)");
    }
}
