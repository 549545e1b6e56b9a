#!/usr/bin/env bash
# pack_carry.sh — what a GPU session carries (.carry/, ignored by git; the
# device tool copies it with the tree, 64 MiB in all): stripped cinfer and
# CUDA-capable tests built here, with the OpenBLAS / gfortran runtime they
# link (the GPU machine has no such packages) -> .carry/bin.tgz; tokenizers
# -> .carry/tok.tgz; inflate_qwen2.py + the draft model -> .carry/spec.tgz.
# usage: tools/pack_carry.sh [BUILD_DIR]   (a CUDA build, e.g. build/)
#   PACK_TARGETS="cinfer kernel_prefill_attention ...": only these binaries
#   (default: cinfer and the CUDA tests below); PACK_XZ=1: xz instead of
#   gzip, .carry/bin.txz (about a third smaller; a minute of both cores);
#   PACK_NAME=q: .carry/q.txz (or .tgz) instead of bin, tokenizers and the
#   draft model left as they are (another archive beside a carried one).
# A quick build for one GPU call (sm_90a only, half the code):
#   cmake -G Ninja -B build-h -DCMAKE_BUILD_TYPE=Release -DCINFER_BUILD_LABS=OFF \
#     -DCINFER_CUDA_GENCODE="-gencode=arch=compute_90a,code=sm_90a"
#   PACK_XZ=1 PACK_TARGETS="cinfer kernel_prefill_attention test_cuda_ops test_cuda_model" \
#     tools/pack_carry.sh build-h
# then on the device: mkdir -p /tmp/c && tar xJf .carry/bin.txz -C /tmp/c &&
#   tar xzf .carry/tok.tgz -C /tmp/c && LD_LIBRARY_PATH=/tmp/c/lib tools/gpu_next.sh
#   /tmp/c/bin /tmp/c/tok/llama3   (carry .carry/bin.txz and .carry/tok.tgz).
set -euo pipefail
b=${1:-build}
shared=${CINFER_SHARED_DIR:-../shared}
tests=(cinfer test_cuda_model test_cuda_ops test_cuda_sampling test_engine test_engine_faults test_spec test_swa)
for t in test_cuda_quant test_cuda_fused test_quant_model test_structured test_grammar; do
    [ -f "tests/$t.c" ] && tests+=("$t")
done
if [ -n "${PACK_TARGETS:-}" ]; then
    read -r -a tests <<<"$PACK_TARGETS"
fi
cmake --build "$b" -j "$(nproc)" --target "${tests[@]}"
st=$(mktemp -d)
trap 'rm -rf "$st"' EXIT
mkdir -p "$st/bin" "$st/lib" .carry
for f in "${tests[@]}"; do strip -o "$st/bin/$f" "$b/$f"; done
for l in libopenblas.so.0 libgfortran.so.5 libquadmath.so.0; do
    cp -L "$(ldconfig -p | awk -v l=$l '$1 == l {print $NF; exit}')" "$st/lib/$l"
done
if [ "${PACK_XZ:-0}" = 1 ]; then
    tar cJf ".carry/${PACK_NAME:-bin}.txz" -C "$st" bin lib
else
    tar czf ".carry/${PACK_NAME:-bin}.tgz" -C "$st" bin lib
fi
[ -z "${PACK_NAME:-}" ] || exit 0
if [ -d "$shared/tokenizers" ]; then
    mkdir -p "$st/tok" && cp -r "$shared/tokenizers/." "$st/tok/" && tar czf .carry/tok.tgz -C "$st" tok
fi
if [ -f "$shared/tools/inflate_qwen2.py" ]; then
    mkdir -p "$st/spec" && cp "$shared/tools/inflate_qwen2.py" "$st/spec/" &&
        cp -r "$shared/models/tinyqwen2-code-draft" "$st/spec/" && tar czf .carry/spec.tgz -C "$st" spec
fi
du -ch .carry/*.t?z | tail -1
