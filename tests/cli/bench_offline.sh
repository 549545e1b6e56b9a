#!/usr/bin/env bash
# `cinfer bench throughput` and `cinfer bench latency` on tinyqwen2-code:
# token counts add up, the JSON fields exist and are sane, bad flags fail.
set -euo pipefail
src=${CINFER_SOURCE_DIR:-.}
bin=${CINFER_BIN:-$src/build/cinfer}
m=$src/models/tinyqwen2-code
tp=$("$bin" bench throughput -m "$m" --num-prompts 12 --input-len 24 --output-len 8 --json 2>/dev/null)
lat=$("$bin" bench latency -m "$m" --batch-size 3 --input-len 16 --output-len 6 --num-iters 2 --json 2>/dev/null)
echo "$tp"
echo "$lat"
python3 - "$tp" "$lat" <<'PY'
import json, sys
tp, lat = json.loads(sys.argv[1]), json.loads(sys.argv[2])
checks = [
    ("throughput counts", tp["num_requests"] == 12 and tp["generated_tokens"] == 96 and tp["prompt_tokens"] == 288),
    ("throughput rates", tp["output_tokens_per_s"] > 0 and tp["requests_per_s"] > 0),
    ("step phases", all(tp["step_phases"][k] >= 0 for k in ("schedule_s", "forward_s", "sample_s", "output_s"))),
    ("latency shape", lat["batch_size"] == 3 and lat["output_len"] == 6 and lat["num_iters"] == 2),
    ("latency order", 0 < lat["ttft_ms"] < 1000 * lat["e2e_mean_s"] and lat["tpot_ms"] > 0),
    ("percentiles", lat["e2e_p50_s"] <= lat["e2e_p90_s"] <= lat["e2e_p99_s"]),
]
bad = [n for n, ok in checks if not ok]
print("%d passed, %d failed %s" % (len(checks) - len(bad), len(bad), bad))
sys.exit(1 if bad else 0)
PY
if "$bin" bench latency -m "$m" --batch-size 0 2>/dev/null; then echo "batch 0 accepted"; exit 1; fi
if "$bin" bench latency -m "$m" --input-len 100000 --output-len 8 2>/dev/null; then echo "too long accepted"; exit 1; fi
echo ok
