/* SPDX-License-Identifier: MIT */
/* dispatch.c — the kernel table for a CPU level (see kernels.h). The rule is
 * the index module's (src/index/distance_ref.c): the best level <= `level`
 * that this build has and this CPU supports; never NULL. */
#include "imgsim/imgsim.h"
#include "kernels.h"

const ims__nn_kernels *ims__nn_kernels_for(int level)
{
#if defined(IMS_HAVE_AVX512)
    if (level >= IMS_CPU_AVX512 && ims_cpu_detect() >= IMS_CPU_AVX512)
        return &ims__nn_kernels_avx512;
#endif
#if defined(IMS_HAVE_AVX2)
    if (level >= IMS_CPU_AVX2 && ims_cpu_detect() >= IMS_CPU_AVX2)
        return &ims__nn_kernels_avx2;
#endif
    (void)level;
    return &ims__nn_kernels_ref;
}
