#!/usr/bin/env bash
# Structured outputs and tool calls through the official `openai` npm client
# (chat.completions.parse with JSON schemas via response_format, streaming
# reassembled by the client), validated with npm `ajv` and reference parsers,
# against `cinfer serve` on tinyqwen2-code at temperature 1.0: 10 schemas,
# json_object, 5 regexes, 3 GBNF grammars, tool_choice required / named,
# tool_choice auto parsed from a forced Hermes call, and unsupported schemas
# -> 400 without a hang. CINFER_STRUCTURED_N requests per case (default 3;
# the issue's full counts: 20). Prints the completion rate. Skips (77)
# without node/npm or when npm cannot install its packages.
. "$(dirname "$0")/serve_common.bash"
command -v node >/dev/null && command -v npm >/dev/null || { echo "SKIP: node/npm not installed"; exit 77; }
mkdir -p "$tmp/npm"
if ! (cd "$tmp/npm" && timeout 120 npm install --no-audit --no-fund --silent --no-save openai@4 ajv@8 >"$tmp/npm.log" 2>&1); then
    echo "SKIP: npm install openai ajv failed (no network?)"
    tail -n 5 "$tmp/npm.log"
    exit 77
fi

start_server --max-num-seqs 64 --served-model-name tiny
cp "$(dirname "$0")/structured_npm.js" "$tmp/npm/t.js"
(cd "$tmp/npm" && timeout 900 node t.js "$base" "${CINFER_STRUCTURED_N:-3}")
rc=$?
if [ $rc -ne 0 ]; then
    echo "--- server log (tail)"
    tail -n 20 "$tmp/server.log"
fi
exit $rc
