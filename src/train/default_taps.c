/* SPDX-License-Identifier: MIT */
/*
 * default_taps.c — measured default taps per known backbone. Chosen with
 * bench_finetune_eval (5 split seeds, see bench/RESULTS-finetune.md): the
 * raw pairs with the best instance recall that the fusion head lifts most
 * in category P@10.
 */
#include <string.h>

#include "train/train_int.h"

#define MID                                                                   \
    "StatefulPartitionedCall/sequential/keras_layer/StatefulPartitionedCall/" \
    "StatefulPartitionedCall/StatefulPartitionedCall/predict/"

/* 13/project + 16/project: the best raw instance pair (r@10 .928); fused,
 * P@10 .530 (vs .536 with feature_vector + 13/project, within noise) at
 * r@10 .888 (vs .863) */
static const char *const MID_TAPS[] = {
    MID "MobilenetV2/expanded_conv_13/project/BatchNorm/FusedBatchNormV3",
    MID "MobilenetV2/expanded_conv_16/project/BatchNorm/FusedBatchNormV3",
};
static const char *const MNV2_TAPS[] = {"block_10_project_BN", "block_13_expand_relu",
                                        "block_13_project_BN"};
static const char *const INCV3_TAPS[] = {"mixed5", "mixed6"};

const char *const *ims_train_default_taps(const char *model_name, int *n_taps)
{
    *n_taps = 0;
    if (!model_name)
        return NULL;
    if (!strcmp(model_name, "mobilenet_v2_mid"))
        return *n_taps = (int)IMS_ARRAY_LEN(MID_TAPS), MID_TAPS;
    if (!strcmp(model_name, "mobilenet_v2"))
        return *n_taps = (int)IMS_ARRAY_LEN(MNV2_TAPS), MNV2_TAPS;
    if (!strcmp(model_name, "inception_v3"))
        return *n_taps = (int)IMS_ARRAY_LEN(INCV3_TAPS), INCV3_TAPS;
    return NULL;
}
