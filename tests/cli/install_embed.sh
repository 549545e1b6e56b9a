#!/usr/bin/env bash
# make install into a temporary prefix, then: the installed files (SONAME,
# only cinfer_* exported), `cinfer --version`, examples/stream.c built with
# `pkg-config --cflags --libs cinfer` (shared) and against libcinfer.a, both
# streaming the greedy continuation `cinfer generate` prints; no CUDA library
# NEEDED by the binary or the library, and a CPU run with LD_LIBRARY_PATH
# pointing nowhere.
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
echo "$pass passed, $fail failed"
[ "$fail" = 0 ]
