#!/bin/sh
# On the GPU machine, from a folder holding src/, bench/kernels/ and
# (optionally) a test_cuda_ops binary built elsewhere: builds and runs the
# prefill attention lab, the SDPA reference, compute-sanitizer on the lab's
# quick mode, and test_cuda_ops. Logs go to $OUT when set.
set -u
O=${OUT:-.}
nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -Isrc -lineinfo -Xptxas -v \
  bench/kernels/prefill_attention.cu -o kernel_prefill_attention >$O/ptxas.txt 2>&1 || { cat $O/ptxas.txt; exit 1; }
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw --format=csv
./kernel_prefill_attention 2>&1 | tee $O/lab.txt
python3 bench/kernels/prefill_attention_sdpa.py 2>&1 | tee $O/sdpa.txt
if [ "${SANITIZE:-1}" = 1 ]; then
  compute-sanitizer --tool memcheck ./kernel_prefill_attention --quick >$O/memcheck.txt 2>&1; echo "memcheck rc=$?"; tail -3 $O/memcheck.txt
  compute-sanitizer --tool racecheck ./kernel_prefill_attention --quick >$O/racecheck.txt 2>&1; echo "racecheck rc=$?"; tail -3 $O/racecheck.txt
fi
if [ -x ./test_cuda_ops ]; then
  export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
  ( time ./test_cuda_ops ) >$O/test_cuda_ops.txt 2>&1; echo "test_cuda_ops rc=$?"
  grep -E "FAIL|fail|prefill|all ops|real" $O/test_cuda_ops.txt | head -30
fi
