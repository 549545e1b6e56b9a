#!/bin/sh
# On the GPU machine, from a folder holding src/, bench/kernels/ and
# (optionally) a test_cuda_ops binary built elsewhere: builds and runs the
# prefill attention lab, the SDPA reference, compute-sanitizer on the lab's
# quick mode, and test_cuda_ops. Logs go to $OUT when set.
set -u
O=${OUT:-.}
nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -Isrc -lineinfo -Xptxas -v \
  bench/kernels/prefill_attention.cu -o kernel_prefill_attention >$O/ptxas.txt 2>&1 || { cat $O/ptxas.txt; exit 1; }
cuobjdump -sass kernel_prefill_attention | grep -oE "HGMMA\.[0-9A-Za-z]+|HMMA\.[0-9A-Z]+" | sort | uniq -c
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw --format=csv
# a quick pass first: if a version breaks the CUDA context (exit 2), time the rest without the wgmma ones
./kernel_prefill_attention --quick >$O/quick.txt 2>&1
rc=$?; echo "quick rc=$rc"; grep -E "FAIL|==" $O/quick.txt
[ $rc = 2 ] && { tail -5 $O/quick.txt; export LAB_NO_WG=1; }
./kernel_prefill_attention 2>&1 | tee $O/lab.txt
python3 bench/kernels/prefill_attention_sdpa.py 2>&1 | tee $O/sdpa.txt
if [ "${SANITIZE:-1}" = 1 ]; then
  compute-sanitizer --tool memcheck ./kernel_prefill_attention --quick >$O/memcheck.txt 2>&1; echo "memcheck rc=$?"; tail -3 $O/memcheck.txt
  compute-sanitizer --tool racecheck ./kernel_prefill_attention --quick >$O/racecheck.txt 2>&1; echo "racecheck rc=$?"; tail -3 $O/racecheck.txt
fi
export LD_LIBRARY_PATH=/usr/local/cuda/lib64:${LD_LIBRARY_PATH:-}
for t in test_cuda_ops test_cuda_ops_nopipe; do
  [ -x ./$t ] || continue
  ./$t >$O/$t.txt 2>&1; echo "$t rc=$?"
  grep -E "FAIL|fail|prefill|all ops" $O/$t.txt | head -20
done
