#!/usr/bin/env bash
# `cinfer generate --temperature 0 -n 48` must reproduce every continuation
# of models/tinyqwen2-code/golden_public.json token for token (HF fp32).
set -euo pipefail
exec python3 "$(dirname "$0")/golden_generate.py"
