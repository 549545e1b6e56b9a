#!/usr/bin/env bash
# Speculative sampling preserves the distribution (tools/spec_chisq.py, a
# small run of the issue's 5 x 2,000 test): the first three tokens' joint
# counts with n-gram and draft-model speculation vs without, at temperature 1
# and with top-p 0.9, distinct seeds. The negative control (temperature 1.4
# instead of speculation) must be found significant, so the test can fail.
set -euo pipefail
cd "${CINFER_SOURCE_DIR:-.}"
BIN=${CINFER_BIN:-build/cinfer}
command -v python3 >/dev/null || { echo "SKIP: no python3"; exit 77; }
DRAFT="${CINFER_SHARED_DIR:-../shared}/models/tinyqwen2-code-draft"
run() { python3 tools/spec_chisq.py --bin "$BIN" -n 400 --prompts 3 --alpha 0.001 "$@"; }
run --spec "--speculative-method ngram --num-speculative-tokens 4"
run --spec "--speculative-method ngram --num-speculative-tokens 4" --top-p 0.9
if [ -d "$DRAFT" ]; then
    run --spec "--speculative-method draft --speculative-model $DRAFT --num-speculative-tokens 4"
else
    echo "draft model not found at $DRAFT: draft-model case skipped"
fi
if run --spec "" --control-temperature 1.4; then
    echo "FAIL: the negative control (temperature 1.4 vs 1.0) was not detected"
    exit 1
fi
echo "4 passed, 0 failed"
