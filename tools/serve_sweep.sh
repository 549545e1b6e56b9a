#!/usr/bin/env bash
# serve_sweep.sh — `cinfer bench serve` at a list of request rates against a
# running server; writes OUT_DIR/rate_R.json per rate, OUT_DIR/sweep.json
# (all of them, in order) and OUT_DIR/sweep.tsv (one row per rate, ms), which
# tools/plot_serve.gp turns into a latency-vs-rate PNG.
#
#   tools/serve_sweep.sh OUT_DIR "2 4 8 16 32 inf" --port 8000 --num-prompts 200 \
#       --input-len 64 --output-len 64 --ignore-eos -m models/tinyqwen2-code
#
# Environment: CINFER_BIN (default build/cinfer). A 16-request warm-up runs
# first and is not recorded. Failed requests are reported in the TSV and do
# not stop the sweep.
set -uo pipefail
if [ $# -lt 2 ]; then
    sed -n '2,12p' "$0"
    exit 1
fi
out=$1 rates=$2
shift 2
bin=${CINFER_BIN:-build/cinfer}
# One TSV row / the combined JSON, with jq or else python3 (GPU hosts may lack jq).
row() {
    if command -v jq >/dev/null; then
        jq -r --arg r "$1" '[$r, .completed, .failed, .request_throughput, .output_throughput,
            .median_ttft_ms, .p99_ttft_ms, .median_tpot_ms, .p99_tpot_ms, .median_itl_ms, .p99_itl_ms,
            .median_e2el_ms, .p99_e2el_ms] | map(if type == "number" then (. * 100 | round / 100) else . end)
            | @tsv' "$2"
    else
        python3 -c 'import json, sys
d = json.load(open(sys.argv[2]))
k = ["completed", "failed", "request_throughput", "output_throughput"] + [p + "_" + m + "_ms"
     for m in ("ttft", "tpot", "itl", "e2el") for p in ("median", "p99")]
print("\t".join([sys.argv[1]] + [str(round(d[x], 2)) for x in k]))' "$1" "$2"
    fi
}
combine() {
    if command -v jq >/dev/null; then
        jq -s . "$@"
    else
        python3 -c 'import json, sys; print(json.dumps([json.load(open(f)) for f in sys.argv[1:]], indent=2))' "$@"
    fi
}
mkdir -p "$out"

"$bin" bench serve "$@" --num-prompts 16 --request-rate inf --max-concurrency 8 >/dev/null 2>&1

printf 'rate\tcompleted\tfailed\treq_s\tout_tok_s\tttft_p50\tttft_p99\ttpot_p50\ttpot_p99\titl_p50\titl_p99\te2e_p50\te2e_p99\n' >"$out/sweep.tsv"
files=()
for r in $rates; do
    echo "== rate $r" >&2
    "$bin" bench serve "$@" --request-rate "$r" --json "$out/rate_$r.json" >&2
    [ -s "$out/rate_$r.json" ] || { echo "serve_sweep.sh: rate $r produced no JSON" >&2; continue; }
    files+=("$out/rate_$r.json")
    row "$r" "$out/rate_$r.json" >>"$out/sweep.tsv"
done
[ ${#files[@]} -gt 0 ] && combine "${files[@]}" >"$out/sweep.json"
column -t "$out/sweep.tsv" 2>/dev/null || cat "$out/sweep.tsv"
