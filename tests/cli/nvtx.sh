#!/usr/bin/env bash
# NVTX ranges around the engine's phases (CUDA builds; Nsight Systems shows
# them): run generate under tests/nvtx/nvtx_count.c, an NVTX injection
# library that counts pushes per range name, and check every phase of every
# step is there, nested at most 2 deep, and every push popped. The ranges are
# host-side, so the CPU device shows them too.
set -euo pipefail
[ "${CINFER_HAVE_CUDA:-OFF}" = ON ] || { echo "SKIP: not a CUDA build (no NVTX ranges)"; exit 77; }
[ "${CINFER_SANITIZE:-OFF}" = ON ] && { echo "SKIP: sanitizer build"; exit 77; }
src=${CINFER_SOURCE_DIR:-.}
bin=${CINFER_BIN:-$src/build/cinfer}
lib=${CINFER_BUILD_DIR:-$src/build}/libnvtx_count.so
[ -f "$lib" ] || { echo "FAIL: $lib not built"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0
check() { local n=$1; shift; if "$@"; then passed=$((passed + 1)); echo "ok   $n"; else failed=$((failed + 1)); echo "FAIL $n"; fi; }
count() { awk -v k="$1" '$1 == k {print $2}' "$tmp/nvtx.txt"; }

NVTX_INJECTION64_PATH=$lib NVTX_COUNT_OUT=$tmp/nvtx.txt "$bin" generate -m "$src/models/tinyqwen2-code" \
    -p "def f(x):" -n 16 --temperature 0 --speculative-method ngram --num-speculative-tokens 2 \
    >/dev/null 2>&1
cat "$tmp/nvtx.txt"
steps=$(count step)
check "ranges recorded ($steps steps)" test "${steps:-0}" -ge 1
for r in schedule forward sample update output; do
    check "range '$r' in every step ($(count $r))" test "$(count $r)" = "$steps"
done
check "every push popped, nesting <= 2" test "$(count pops)" = "$((steps * 6))" -a "$(count open)" = 0 \
    -a "$(count max_depth)" = 2
echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
