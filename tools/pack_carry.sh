#!/usr/bin/env bash
# pack_carry.sh — what a GPU session carries (.carry/, ignored by git; the
# device tool copies it with the tree, 64 MiB in all): stripped cinfer and
# CUDA-capable tests built here, with the OpenBLAS / gfortran runtime they
# link (the GPU machine has no such packages) -> .carry/bin.tgz; tokenizers
# -> .carry/tok.tgz; inflate_qwen2.py + the draft model -> .carry/spec.tgz.
# usage: tools/pack_carry.sh [BUILD_DIR]   (a CUDA build, e.g. build/)
set -euo pipefail
b=${1:-build}
shared=${CINFER_SHARED_DIR:-../shared}
tests=(test_cuda_model test_cuda_ops test_cuda_sampling test_engine test_engine_faults test_spec test_swa)
for t in test_cuda_quant test_cuda_fused test_quant_model test_structured test_grammar; do
    [ -f "tests/$t.c" ] && tests+=("$t")
done
cmake --build "$b" -j "$(nproc)" --target cinfer "${tests[@]}"
st=$(mktemp -d)
trap 'rm -rf "$st"' EXIT
mkdir -p "$st/bin" "$st/lib" .carry
for f in cinfer "${tests[@]}"; do strip -o "$st/bin/$f" "$b/$f"; done
for l in libopenblas.so.0 libgfortran.so.5 libquadmath.so.0; do
    cp -L "$(ldconfig -p | awk -v l=$l '$1 == l {print $NF; exit}')" "$st/lib/$l"
done
tar czf .carry/bin.tgz -C "$st" bin lib
if [ -d "$shared/tokenizers" ]; then
    mkdir -p "$st/tok" && cp -r "$shared/tokenizers/." "$st/tok/" && tar czf .carry/tok.tgz -C "$st" tok
fi
if [ -f "$shared/tools/inflate_qwen2.py" ]; then
    mkdir -p "$st/spec" && cp "$shared/tools/inflate_qwen2.py" "$st/spec/" &&
        cp -r "$shared/models/tinyqwen2-code-draft" "$st/spec/" && tar czf .carry/spec.tgz -C "$st" spec
fi
du -ch .carry/*.tgz | tail -1
