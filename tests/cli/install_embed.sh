#!/usr/bin/env bash
# make install into a temporary prefix, then: the installed files (SONAME,
# only cinfer_* exported), `cinfer --version`, examples/stream.c built with
# `pkg-config --cflags --libs cinfer` (shared) and against libcinfer.a, both
# streaming the greedy continuation `cinfer generate` prints; no CUDA library
# NEEDED by the binary or the library, a CPU run with LD_LIBRARY_PATH
# pointing nowhere and, in a CUDA build run as root, with cuBLASLt hidden
# (then --device cuda is one error line).
set -euo pipefail
src=${CINFER_SOURCE_DIR:-.}
build=${CINFER_BUILD_DIR:-$src/build}
command -v pkg-config >/dev/null || { echo "skip: no pkg-config"; exit 77; }
cc=${CC:-cc}
cflags=""
[ "${CINFER_SANITIZE:-OFF}" = ON ] && cflags="-fsanitize=address,undefined"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0 pass=0
check() { if eval "$2"; then pass=$((pass + 1)); else echo "FAIL: $1"; fail=$((fail + 1)); fi; }

cmake --install "$build" --prefix "$tmp/p" >/dev/null
p=$tmp/p
for f in bin/cinfer lib/libcinfer.so lib/libcinfer.a include/cinfer.h lib/pkgconfig/cinfer.pc; do
    check "installed $f" "[ -e $p/$f ]"
done
check "SONAME libcinfer.so.0" "readelf -d $p/lib/libcinfer.so | grep -q 'SONAME.*libcinfer.so.0'"
others=$(nm -D --defined-only "$p/lib/libcinfer.so" | awk '{print $3}' | grep -v '^cinfer_' || true)
check "only cinfer_* exported (others: $others)" "[ -z '$others' ]"
check "cinfer_engine_create exported" "nm -D --defined-only $p/lib/libcinfer.so | grep -q ' cinfer_engine_create$'"
ver=$("$p/bin/cinfer" --version)
echo "$ver"
check "--version names version, commit, backends" \
    "echo '$ver' | grep -qE '^cinfer [0-9]+\.[0-9]+\.[0-9]+ \(commit [0-9a-f]+\)' && echo '$ver' | grep -q '^backends: cpu'"
check "no CUDA library NEEDED" \
    "! readelf -d $p/bin/cinfer $p/lib/libcinfer.so | grep NEEDED | grep -qiE 'cublas|cudart|libcuda'"

m=$src/models/tinyqwen2-code
prompt="def fibonacci(n):"
export PKG_CONFIG_PATH=$p/lib/pkgconfig
flags=$(pkg-config --cflags --libs cinfer)
echo "pkg-config --cflags --libs cinfer: $flags"
# shellcheck disable=SC2086
$cc -std=c11 -Wall -Wextra -Werror $cflags "$src/examples/stream.c" $flags -o "$tmp/stream"
# shellcheck disable=SC2086
$cc -std=c11 $cflags "$src/examples/stream.c" $(pkg-config --cflags cinfer) \
    $(pkg-config --libs --static cinfer | sed "s|-lcinfer |$p/lib/libcinfer.a |") -o "$tmp/stream_static"
check "static example needs no libcinfer.so" "! readelf -d $tmp/stream_static | grep -q libcinfer"

want=$("$p/bin/cinfer" generate -m "$m" -p "$prompt" -n 24 --temperature 0 --device cpu 2>/dev/null)
got=$(LD_LIBRARY_PATH=$p/lib "$tmp/stream" "$m" "$prompt" 24 2>"$tmp/err")
got_static=$("$tmp/stream_static" "$m" "$prompt" 24 2>/dev/null)
echo "example: $got"
check "example streams generate's text" '[ "$got" = "$want" ] && [ -n "$got" ]'
check "static example streams the same" '[ "$got_static" = "$want" ]'
check "example counted 24 tokens" "grep -q '\[24 tokens\]' $tmp/err"
nowhere=$(LD_LIBRARY_PATH=/nonexistent "$p/bin/cinfer" generate -m "$m" -p "$prompt" -n 8 \
    --temperature 0 --device cpu 2>/dev/null)
check "CPU run with LD_LIBRARY_PATH=/nonexistent" '[ -n "$nowhere" ]'
# CUDA builds: hide cuBLASLt for real (a mount namespace with an empty tmpfs
# over every directory that holds it), where unshare is allowed (root).
if [ "${CINFER_HAVE_CUDA:-OFF}" = ON ] && unshare -m true 2>/dev/null; then
    dirs=$( (ldconfig -p | sed -n 's/.*libcublasLt\.so.* => \(.*\)\/libcublasLt.*/\1/p'
        ls -d /usr/local/cuda*/lib64 /usr/local/cuda*/lib 2>/dev/null) | xargs -r -n1 readlink -f | sort -u)
    hide="for d in $(echo $dirs); do mount -t tmpfs none \$d; done"
    # shellcheck disable=SC2016
    unshare -m sh -c "$hide"'
        "$0" generate -m "$1" -p "$2" -n 8 --temperature 0 --device cpu >"$3/hidden_cpu" 2>/dev/null
        echo "cpu rc=$?" >"$3/hidden_rc"
        "$0" generate -m "$1" -p "$2" -n 8 --device cuda >/dev/null 2>"$3/hidden_cuda_err"
        echo "cuda rc=$?" >>"$3/hidden_rc"' "$p/bin/cinfer" "$m" "$prompt" "$tmp"
    echo "cuBLASLt hidden ($(echo $dirs)): $(tr '\n' ' ' <"$tmp/hidden_rc")$(cat "$tmp/hidden_cuda_err")"
    check "CUDA libraries hidden: --device cpu runs" \
        'grep -q "cpu rc=0" $tmp/hidden_rc && [ -s $tmp/hidden_cpu ]'
    check "CUDA libraries hidden: --device cuda is one error naming libcublasLt" \
        'grep -q "cuda rc=1" $tmp/hidden_rc && grep -q "cannot load libcublasLt" $tmp/hidden_cuda_err'
fi
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
