/* pdl.cu — the process-wide switch of programmatic dependent launch
 * (pdl.cuh). The backend turns it on at init on Hopper unless CINFER_PDL=0. */
#include "backend/cuda/cuda_kernels.h"
#include "backend/cuda/pdl.cuh"

extern "C" void ci_cu_set_pdl(int on) {
    ci_cu_pdl_on = on ? 1 : 0;
}
