/* SPDX-License-Identifier: MIT */
/* metric.c — names of metrics and storage kinds (CLI flags, file dumps). */
#include <string.h>

#include "index_int.h"

const char *ims_metric_name(int metric)
{
    switch (metric) {
    case IMS_METRIC_L2:
        return "l2";
    case IMS_METRIC_IP:
        return "ip";
    case IMS_METRIC_COSINE:
        return "cosine";
    }
    return "?";
}

int ims_metric_from_name(const char *name)
{
    if (!strcmp(name, "l2"))
        return IMS_METRIC_L2;
    if (!strcmp(name, "ip"))
        return IMS_METRIC_IP;
    if (!strcmp(name, "cosine"))
        return IMS_METRIC_COSINE;
    return -1;
}

const char *ims_storage_name(int storage)
{
    switch (storage) {
    case IMS_STORAGE_F32:
        return "f32";
    case IMS_STORAGE_F16:
        return "f16";
    case IMS_STORAGE_INT8:
        return "int8";
    }
    return "?";
}

int ims_storage_from_name(const char *name)
{
    if (!strcmp(name, "f32"))
        return IMS_STORAGE_F32;
    if (!strcmp(name, "f16"))
        return IMS_STORAGE_F16;
    if (!strcmp(name, "int8"))
        return IMS_STORAGE_INT8;
    return -1;
}
