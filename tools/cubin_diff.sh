#!/usr/bin/env bash
# cubin_diff.sh — whether a change to a CUDA file changed its machine code,
# without a GPU: the sm_90a cubin of FILE.cu from the working tree and from
# REV (default HEAD; the whole src/ of REV, so header changes count), both
# built with BUILD_DIR's nvcc command less -lineinfo (nvcc is deterministic
# then: same source, same bytes). Identical cubins prove a refactor a no-op
# on Hopper; otherwise it prints each kernel whose code size changed, and
# VERBOSE=1 ptxas's registers / spills of both.
# usage: tools/cubin_diff.sh BUILD_DIR src/backend/cuda/FILE.cu [REV]
#   BUILD_DIR: a CUDA build (e.g. build-h, configured with sm_90a)
set -euo pipefail
b=$(cd "$1" && pwd)
f=$2
rev=${3:-HEAD}
root=$(git rev-parse --show-toplevel)
t=$(mktemp -d)
trap 'rm -rf "$t"' EXIT
cmd=$(ninja -C "$b" -t commands cinfer | grep -F " $root/$f " | head -1 || true)
[ -n "$cmd" ] || cmd=$(ninja -C "$b" -t commands cinfer | grep -F "$f" | head -1 || true)
[ -n "$cmd" ] || {
    echo "cubin_diff: no compile command for $f in $b" >&2
    exit 2
}
# no line info, no depfile, a cubin instead of an object
cmd=$(sed -e 's/ -lineinfo//' -e 's/ -MD -MT [^ ]* -MF [^ ]*//' -e 's/ -c / -cubin /' <<<"$cmd")
mkdir -p "$t/old"
git -C "$root" archive "$rev" src include | tar x -C "$t/old"
build() { # build SRC_ROOT OUT
    local c=${cmd//-I$root\/src/-I$1/src}
    c=${c//-I$root\/include/-I$1/include}
    c=${c// $root\/$f / $1/$f }
    c=$(sed -e "s# -o [^ ]*# -o $2#" <<<"$c")
    (cd "$b" && eval "$c ${VERBOSE:+-Xptxas -v}") 2>"$2.log" || {
        cat "$2.log" >&2
        exit 1
    }
}
build "$root" "$t/new.cubin"
build "$t/old" "$t/old.cubin"
if cmp -s "$t/new.cubin" "$t/old.cubin"; then
    echo "cubin_diff: $f: identical to $rev (sm_90a)"
    exit 0
fi
sizes() { readelf -SW "$1" 2>/dev/null | awk '$2 ~ /^\.text\./ {print substr($2, 7), $6}' | sort; }
changed=$(join -a1 -a2 -e - -o 0,1.2,2.2 <(sizes "$t/old.cubin") <(sizes "$t/new.cubin") |
    while read -r k o n; do
        if [ "$o" != "$n" ]; then
            echo "  $k: $o -> $n"
        elif ! cmp -s <(readelf -x ".text.$k" "$t/old.cubin" 2>/dev/null) \
            <(readelf -x ".text.$k" "$t/new.cubin" 2>/dev/null); then
            echo "  $k: $o, same size, other code"
        fi
    done)
if [ -z "$changed" ]; then # e.g. the host code instantiates the kernels in another order
    echo "cubin_diff: $f: every kernel's code identical to $rev's (the cubins differ in layout only)"
    exit 0
fi
echo "cubin_diff: $f differs from $rev; kernels whose code changed (old -> new size, hex bytes):"
echo "$changed"
if [ -n "${VERBOSE:-}" ]; then
    for v in old new; do
        echo "-- ptxas, $v"
        grep -E "registers|spill" "$t/$v.cubin.log" | sort | uniq -c
    done
fi
exit 1
