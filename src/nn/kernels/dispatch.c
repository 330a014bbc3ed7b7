/* SPDX-License-Identifier: MIT */
/* dispatch.c — the kernel table for a CPU level (see kernels.h). */
#include "imgsim/imgsim.h"
#include "kernels.h"

const ims__nn_kernels *ims__nn_kernels_for(int level)
{
#if defined(IMS_HAVE_AVX2)
    if (level >= IMS_CPU_AVX2 && ims_cpu_detect() >= IMS_CPU_AVX2)
        return &ims__nn_kernels_avx2;
#endif
    (void)level;
    return &ims__nn_kernels_ref;
}
