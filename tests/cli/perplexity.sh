#!/usr/bin/env bash
# `cinfer perplexity` on val_text.txt: mean NLL within 0.5% of the README's
# HF float32 value (1.80503, golden_public.json validation.mean_ce).
set -euo pipefail
src=${CINFER_SOURCE_DIR:-.}
bin=${CINFER_BIN:-$src/build/cinfer}
m=$src/models/tinyqwen2-code
out=$("$bin" perplexity -m "$m" -f "$m/val_text.txt" --ctx 512)
echo "$out"
python3 - "$out" "$m/golden_public.json" <<'PY'
import json, sys
vals = dict(kv.split("=") for kv in sys.argv[1].split())
ref = json.load(open(sys.argv[2]))["validation"]
got, want = float(vals["mean_nll"]), ref["mean_ce"]
rel = abs(got - want) / want
ok = rel <= 0.005 and int(vals["tokens"]) == ref["n_predicted"]
print(f"mean_nll {got:.6f} vs HF {want:.6f}: rel diff {rel:.2e}; tokens {vals['tokens']}")
print(f"{int(ok)} passed, {int(not ok)} failed")
sys.exit(0 if ok else 1)
PY
